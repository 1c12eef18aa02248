#!/bin/sh
# Enforces the layering of docs/architecture.md: dependencies point one way.
#   util <- io <- image <- {qcow2, qed} <- chain <- snap -> {xml, qmp}
# Rules (each violation is one line naming the file; exit 1 if any):
#   1. a module includes only the modules below it;
#   2. from another module it includes only that module's interface
#      headers (INTERFACE below), never a private one such as io/io-aio.h;
#   3. only src/image calls driver ops and only src/io calls io ops: no
#      `drv->` or `ops->` anywhere else;
#   4. only src/xml includes libxml2; only src/qmp opens sockets and
#      builds QMP / guest-agent messages; only the POSIX, aio, lock and
#      folder backends of src/io use the OS file API;
#   5. tools/ includes only the public headers (include/imgchain);
#   6. no comment cites a file outside the repository (the design notes
#      and format references live in docs/).
# Usage: lint-layers.sh [ROOT]  (default: the current folder)
root=${1:-.}
cd "$root" || exit 2
fail=0
bad() { echo "lint-layers: $*" >&2; fail=1; }

allowed() {
    case "$1" in
        util)  echo "util" ;;
        io)    echo "util io" ;;
        image) echo "util io image" ;;
        qcow2) echo "util io image qcow2" ;;
        qed)   echo "util io image qed" ;;
        chain) echo "util io image chain" ;;
        xml)   echo "util xml" ;;
        qmp)   echo "util qmp" ;;
        snap)  echo "util io image chain snap xml qmp" ;;
        *)     echo "?" ;;
    esac
}

# Headers another module may include (every util header is one).
INTERFACE="io/io.h io/io-dir.h image/image.h image/driver.h chain/chain.h xml/xml.h qmp/qmp.h"

for dir in src/*/; do
    [ -d "$dir" ] || continue
    mod=$(basename "$dir")
    ok=$(allowed "$mod")
    if [ "$ok" = "?" ]; then
        bad "src/$mod is not a known layer (add it to scripts/lint-layers.sh and docs/architecture.md)"
        continue
    fi
    for f in "$dir"*.c "$dir"*.h; do
        [ -f "$f" ] || continue
        for inc in $(sed -n 's/^#include "\([a-z0-9_-]*\/[a-z0-9_.-]*\)".*/\1/p' "$f"); do
            m=${inc%%/*}
            [ "$m" = imgchain ] && continue
            case " $ok " in
                *" $m "*) ;;
                *) bad "$f includes $inc (module $mod may use: $ok)"; continue ;;
            esac
            if [ "$m" != "$mod" ] && [ "$m" != util ]; then
                case " $INTERFACE " in
                    *" $inc "*) ;;
                    *) bad "$f includes $inc, a private header of src/$m" ;;
                esac
            fi
        done
        case "$mod" in
            image|io) ;;
            *) grep -n -E '(drv|ops)->' "$f" | sed "s|^|$f:|" | while IFS= read -r l; do
                   echo "lint-layers: $l: driver and io ops are called only by src/image and src/io" >&2
               done
               if grep -q -E '(drv|ops)->' "$f"; then fail=1; fi ;;
        esac
        if [ "$mod" != xml ] && grep -q '#include <libxml/' "$f"; then bad "$f includes libxml2 (only src/xml may)"; fi
        if [ "$mod" != qmp ] && grep -Eq '#include <sys/(socket|un)\.h>|"execute"' "$f"; then bad "$f speaks to a socket or builds a QMP message (only src/qmp may)"; fi
        case "$f" in
            src/io/io-posix.c|src/io/io-aio.c|src/io/io-lock.c|src/io/io-dir.c) ;;
            *) if grep -Eq '#include <(fcntl|sys/file|sys/stat)\.h>' "$f"; then bad "$f uses the OS file API (only src/io's backends may)"; fi ;;
        esac
    done
done
for f in tools/*.c tools/*.h; do
    [ -f "$f" ] || continue
    if grep -Eq '#include "(util|io|image|qcow2|qed|chain|snap|xml|qmp)/' "$f"; then bad "$f includes a private header"; fi
    if grep -q -E '(drv|ops)->' "$f"; then bad "$f calls a driver or io op"; fi
done
# Rule 6: citations of documents that are not in the repository.
CITE='\.\./shared|shared/(reference|design)|CONVENTIONS\.md|qcow2-qed\.md|libvirt-snapshots\.md|domain-snapshots\.md|[Rr]eference:? +(sections? +)?[0-9]+\.[0-9]+|/work/'
for f in $(find src include tools tests scripts bench -type f \( -name '*.[ch]' -o -name '*.sh' -o -name '*.py' -o -name '*.inc' -o -name '*.def' \) 2>/dev/null) Makefile; do
    [ -f "$f" ] || continue
    [ "$f" = scripts/lint-layers.sh ] && continue
    grep -n -E "$CITE" "$f" | while IFS= read -r l; do
        echo "lint-layers: $f:$l: cites a file outside the repository (state the fact or cite docs/)" >&2
    done
    if grep -q -E "$CITE" "$f"; then fail=1; fi
done
[ $fail = 0 ] && echo "lint-layers: ok"
exit $fail
