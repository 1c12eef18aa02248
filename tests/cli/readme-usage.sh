#!/bin/sh
# readme-usage.sh - the README documents the CLI as it is: every usage line
# a command prints on -h (every subcommand, and every xml sub-subcommand)
# appears in README.md word for word (spacing aside), every option any
# usage line names appears in the README, and every exit code the tools
# define (tools/*.c, tools/*.h) is in the README's exit-code table.  The
# list of commands comes from `imgchain help`, so a new command or option
# is caught the day it is added.
. "$(dirname "$0")/../lib.sh"
README=$IC_TOP/README.md

# README lines, leading spaces removed and runs of spaces squeezed
sed 's/^ *//; s/  */ /g' "$README" >"$T/readme.txt"

check_cmd() { # DESC CMD...
    _d=$1; shift
    "$@" 2>/dev/null | sed 's/^usage: //; s/^ *//; s/  */ /g' >"$T/usage.txt"
    _miss=""
    while IFS= read -r _l; do
        [ -n "$_l" ] || continue
        case $_l in imgchain*) ;; *) _l="imgchain $_l" ;; esac
        # a continuation line (no "imgchain" word of its own) is looked for as is
        grep -qF -- "$_l" "$T/readme.txt" || grep -qF -- "${_l#imgchain }" "$T/readme.txt" ||
            _miss="$_miss
    missing: $_l"
    done <"$T/usage.txt"
    if [ -z "$_miss" ]; then pass "$_d"; else fail "$_d:$_miss"; fi
    for _o in $(grep -o -- '--\?[a-zA-Z][a-zA-Z-]*' "$T/usage.txt" | grep '^-' | sort -u); do
        grep -qF -- "$_o" "$T/readme.txt" || fail "$_d: option $_o is not in the README"
    done
}

cmds=$(ic help | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p' | sort -u)
for c in $cmds; do
    check_cmd "the README has '$c -h' word for word" ic "$c" -h
done
for s in format validate align; do
    check_cmd "the README has 'xml $s -h' word for word" ic xml "$s" -h
done
expect "the README documents 'imgchain help' and 'imgchain --version'" \
    sh -c "grep -qF 'imgchain help [COMMAND]' '$README' && grep -qF 'imgchain --version' '$README'"

# the exit-code table: lines "| N | ..." (or "| N, M | ...")
sed -n 's/^| *\([0-9][0-9, ]*\) *|.*/\1/p' "$README" | tr ',' '\n' | tr -d ' ' | sort -un >"$T/codes.doc"
grep -ho 'define [A-Z_]*EXIT[A-Z_]* *[0-9][0-9]*' "$IC_TOP"/tools/*.c "$IC_TOP"/tools/*.h |
    awk '{ print $3 }' | sort -un >"$T/codes.src"
for code in $(cat "$T/codes.src"); do
    expect "exit code $code (defined in tools/) is in the README's table" grep -qx "$code" "$T/codes.doc"
done
expect_out "the exit-code table names dependents --fail-if-used" \
    '^\| 2 \|.*dependents --fail-if-used' cat "$README"
finish
