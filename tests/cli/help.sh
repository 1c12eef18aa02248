#!/bin/sh
# Every subcommand and sub-subcommand prints its usage on -h and --help
# with exit 0, on stdout; help, --version and `help CMD` do too.  The list
# of commands is read from `imgchain help`, so a new command is covered
# the day it is added.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# usage_ok DESC CMD...: exit 0, stdout starts with "usage: imgchain", stderr empty.
usage_ok() {
    _d=$1; shift
    "$@" >"$T/.so" 2>"$T/.se"; _rc=$?
    if [ "$_rc" = 0 ] && head -n 1 "$T/.so" | grep -q '^usage: imgchain' && [ ! -s "$T/.se" ]; then
        pass "$_d"
    else
        fail "$_d (rc $_rc)"; sed 's/^/    /' "$T/.so" "$T/.se" | head -n 5
    fi
}

expect_rc "help exits 0" 0 ic help
expect_out "help lists the commands" "^  info " ic help
expect_rc "--help exits 0" 0 ic --help
expect_out "--version prints the version" "^imgchain version [0-9]+\.[0-9]+" ic --version
expect_rc "no command is a usage error" 64 ic

cmds=$(ic help | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p' | sort -u)
n=$(echo "$cmds" | wc -w)
expect "help lists at least the twelve first commands ($n)" test "$n" -ge 12
for c in $cmds; do
    usage_ok "$c -h prints its usage and exits 0" ic $c -h
    usage_ok "$c --help prints its usage and exits 0" ic $c --help
    usage_ok "help $c prints its usage and exits 0" ic help $c
done
for s in format validate align; do
    usage_ok "xml $s -h prints its usage and exits 0" ic xml $s -h
    usage_ok "xml $s --help prints its usage and exits 0" ic xml $s --help
done
expect_out "xml -h names every xml subcommand" "xml align" ic xml -h
expect_rc "help of an unknown command is a usage error" 64 ic help frobnicate
finish
