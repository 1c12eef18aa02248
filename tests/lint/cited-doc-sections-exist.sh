#!/bin/sh
# Every citation of a repository document in the code names a file that
# exists in docs/, and every section it names in quotes
#     docs/qcow2.md, "L2 entries"
#     docs/qcow2.md, "Refcounts" and "Crash ordering"
# is a heading of that file (any level, exact text).  A citation may wrap
# onto the next comment line.  The checker runs on the repository, then on
# small trees that break it, so a checker that stopped failing is noticed.
. "$(dirname "$0")/../lib.sh"

# check_citations ROOT: prints one line per broken citation, exit 1 if any.
check_citations() {
    (
    cd "$1" || exit 2
    files=$(find src include tools tests scripts bench -type f \
                \( -name '*.[ch]' -o -name '*.sh' -o -name '*.py' \) 2>/dev/null | sort)
    [ -n "$files" ] || exit 0
    # FILE:LINE<TAB>DOC<TAB>SECTION (SECTION empty when the citation names
    # the document only), one line per document or section cited.
    # shellcheck disable=SC2086
    awk '
    function strip(l) {
        sub(/^[ \t]*(\/\*+|\*+|\/\/+|#+)?[ \t]*/, "", l)
        return l
    }
    FNR == 1 { flush(); name = FILENAME; n = 0 }
    { line[++n] = $0 }
    END { flush() }
    function flush(   i, s, joined, pos, start, doc, rest, sec, got) {
        for (i = 1; i <= n; i++) {
            s = line[i]
            joined = s " " (i < n ? strip(line[i + 1]) : "")
            pos = 0
            while (match(substr(joined, pos + 1), /docs\/[A-Za-z0-9_-]+\.md/)) {
                start = pos + RSTART
                if (start > length(s))
                    break   # begins on the next line: reported there
                doc = substr(joined, start, RLENGTH)
                rest = substr(joined, start + RLENGTH)
                pos = start + RLENGTH - 1
                got = 0
                while (match(rest, /^(,| and|, and) *"[^"]*"/)) {
                    sec = substr(rest, 1, RLENGTH)
                    sub(/^[^"]*"/, "", sec)
                    sub(/"$/, "", sec)
                    printf "%s:%d\t%s\t%s\n", name, i, doc, sec
                    got = 1
                    rest = substr(rest, RLENGTH + 1)
                }
                if (!got)
                    printf "%s:%d\t%s\t\n", name, i, doc
            }
        }
        n = 0
    }' $files > "$T/.cite"
    bad=0
    tab=$(printf '\t')
    while IFS="$tab" read -r where doc sec; do
        if [ ! -f "$doc" ]; then
            echo "$where: cites $doc, which does not exist"
            bad=1
        elif [ -n "$sec" ] &&
             ! sed -n 's/^#\{1,6\}[[:space:]]\{1,\}//p' "$doc" | sed 's/[[:space:]#]*$//' | grep -Fxq -- "$sec"; then
            echo "$where: cites $doc, \"$sec\", which is not a heading of $doc"
            bad=1
        fi
    done < "$T/.cite"
    rm -f "$T/.cite"
    exit $bad
    )
}

expect "every document and section cited in the repository exists" check_citations "$IC_TOP"

# A miniature tree: one document, one source file citing it.  The document
# path is assembled so that this script does not cite it itself.
D=docs
mk() {
    rm -rf "$T/t"; mkdir -p "$T/t/docs" "$T/t/src/x"
    printf '# Fmt\n\n## L2 entries\n\n### Crash ordering ##\n' > "$T/t/$D/fmt.md"
    printf '/* layout: %s/fmt.md, "L2 entries" */\n' "$D" > "$T/t/src/x/x.c"
}
# breaks DESC PATTERN: the checker fails on the tree and says PATTERN.
breaks() {
    if check_citations "$T/t" >"$T/.out" 2>&1; then fail "$1 (the checker passed)"; return; fi
    if grep -Eq -- "$2" "$T/.out"; then pass "$1"; else fail "$1 (no /$2/)"; sed 's/^/    /' "$T/.out"; fi
}

mk
expect "a tree whose citations all resolve passes" check_citations "$T/t"
mk; printf '/* see %s/fmt.md, "L2 entries" and "Crash ordering" */\n' "$D" >> "$T/t/src/x/x.c"
expect "a citation of two sections, one a closed heading, passes" check_citations "$T/t"
mk; printf '/* see %s/fmt.md,\n * "Crash ordering" */\n' "$D" >> "$T/t/src/x/x.c"
expect "a citation wrapped onto the next comment line passes" check_citations "$T/t"

mk; printf '/* see %s/fmt.md, "L3 entries" */\n' "$D" >> "$T/t/src/x/x.c"
breaks "a cited section that is not a heading fails" 'src/x/x.c:2: cites docs.fmt\.md, "L3 entries", which is not'
mk; sed -i 's/^## L2 entries$/## L2 table entries/' "$T/t/$D/fmt.md"
breaks "a heading renamed under a citation fails" 'src/x/x.c:1: cites docs.fmt\.md, "L2 entries"'
mk; printf '/* see %s/fmt.md, "L2 entries" and "Recovery" */\n' "$D" >> "$T/t/src/x/x.c"
breaks "the second section of a citation is checked too" '"Recovery", which is not a heading'
mk; printf '/* see %s/fmt.md,\n * "Nowhere" */\n' "$D" >> "$T/t/src/x/x.c"
breaks "a wrapped citation of a missing section fails" 'src/x/x.c:2: cites docs.fmt\.md, "Nowhere"'
mk; printf '/* see %s/gone.md */\n' "$D" >> "$T/t/src/x/x.c"
breaks "a cited document that does not exist fails" 'cites docs.gone\.md, which does not exist'
mk; printf '# see %s/fmt.md, "Fm" \n' "$D" > "$T/t/src/x/x.sh"
breaks "a prefix of a heading is not a heading" 'x.sh:1: cites docs.fmt\.md, "Fm"'
finish
