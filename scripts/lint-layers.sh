#!/bin/sh
# Enforces the layering of docs/architecture.md: dependencies point one way.
#   util <- io <- image <- {qcow2, qed} <- chain <- snap -> {xml, qmp}
# tools/ uses only include/imgchain; only src/xml includes libxml2; only
# src/io/io-posix.c (and the aio backend) call the OS file API.
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
        *)     echo "" ;;
    esac
}

for dir in src/*/; do
    mod=$(basename "$dir")
    ok=$(allowed "$mod")
    for f in "$dir"*.c "$dir"*.h; do
        [ -f "$f" ] || continue
        for inc in $(sed -n 's/^#include "\([a-z0-9_-]*\)\/.*".*/\1/p' "$f"); do
            [ "$inc" = imgchain ] && continue
            case " $ok " in *" $inc "*) ;; *) bad "$f includes $inc/ (module $mod may use: $ok)";; esac
        done
        if [ "$mod" != xml ] && grep -q '#include <libxml/' "$f"; then bad "$f includes libxml2 (only src/xml may)"; fi
        if [ "$mod" != qmp ] && grep -q '#include <sys/socket.h>' "$f"; then bad "$f uses sockets (only src/qmp may)"; fi
        case "$f" in
            src/io/io-posix.c|src/io/io-aio.c|src/io/io-lock.c|src/io/io-dir.c) ;;
            *) if grep -Eq '#include <(fcntl|sys/file|sys/stat)\.h>' "$f"; then bad "$f uses the OS file API (only src/io/io-posix.c may)"; fi ;;
        esac
    done
done
for f in tools/*.c tools/*.h; do
    [ -f "$f" ] || continue
    if grep -Eq '#include "(util|io|image|qcow2|qed|chain|snap|xml|qmp)/' "$f"; then bad "$f includes a private header"; fi
done
[ $fail = 0 ] && echo "lint-layers: ok"
exit $fail
