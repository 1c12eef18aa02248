#!/bin/sh
# convert-sparse.sh - convert -S SIZE (the sparse threshold) against
# qemu-img convert 7.2: sources holding data with zero runs of several
# lengths, unallocated ranges and zero clusters, converted to raw, qcow2 v2
# and v3, and QED targets; the allocation maps (offsets aside, adjacent
# runs merged) and contents must agree.  Malformed sizes are usage errors
# (64; qemu-img exits 1) with qemu-img's message.
. "$(dirname "$0")/../lib.sh"

flatmap() { # FMT FILE
    qimg map -f "$1" --output=json "$2" | sed 's/, "offset": [0-9]*//' |
        sed 's/"zero": true, "data": true/"zero": false, "data": true/' |
        sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), \(.*\)}.*/\1 \2 \3/p' |
        awk '{ s = $1; l = $2; $1 = ""; $2 = ""; f = $0
               if (n && f == pf && ps + pl == s) { pl += l; next }
               if (n) print ps, pl, pf; ps = s; pl = l; pf = f; n = 1 }
             END { if (n) print ps, pl, pf }'
}

ZEROES='write -P 0 0 1M'
DATA='write -P 1 0 4k;write -P 1 12k 4k;write -P 1 64k 64k;write -P 1 200k 512;write -P 1 300k 1k;write -P 1 303k 1k;write -P 1 1536k 8k'
mksrc() { # FMT FILE
    qimg create -q -f "$1" "$2" 2M
    qio -f "$1" -c "$ZEROES" "$2" >/dev/null
    _ifs=$IFS; IFS=';'; for _c in $DATA; do qio -f "$1" -c "$_c" "$2" >/dev/null; done; IFS=$_ifs
    [ "$1" = qcow2 ] && qio -f qcow2 -c 'write -z 512k 64k' "$2" >/dev/null
    return 0
}

for sf in raw qcow2; do
    mksrc "$sf" "$T/src.$sf"
    for t in "raw " "qcow2 compat=1.1" "qcow2 compat=0.10" "qcow2 cluster_size=4096" "qed "; do
        set -- $t; tf=$1; to=${2:-}
        for S in 0 512 4k 8k 64k 1M 16M; do
            rm -f "$T/q.out" "$T/i.out"
            qimg convert -f "$sf" -S "$S" -O "$tf" ${to:+-o $to} "$T/src.$sf" "$T/q.out"
            ic convert -f "$sf" -S "$S" -O "$tf" ${to:+-o $to} "$T/src.$sf" "$T/i.out"; rc=$?
            tag="$sf -> $tf${to:+ $to}: -S $S"
            if [ "$rc" = 0 ] && [ "$(flatmap "$tf" "$T/q.out")" = "$(flatmap "$tf" "$T/i.out")" ] &&
               qimg compare -q -f "$sf" -F "$tf" "$T/src.$sf" "$T/i.out"; then
                pass "$tag: the same allocation as qemu-img's"
            else
                fail "$tag (exit $rc)"
                flatmap "$tf" "$T/q.out" | sed 's/^/    qemu: /'; flatmap "$tf" "$T/i.out" | sed 's/^/    ic:   /'
            fi
        done
    done
done
for S in 1000 511 32M 16385k x -1 1.5; do
    qimg convert -S "$S" -O raw "$T/src.raw" "$T/q.bad" 2>"$T/q.err"; qrc=$?
    ic convert -S "$S" -O raw "$T/src.raw" "$T/i.bad" 2>"$T/i.err"; irc=$?
    msg=$(sed -n '1s/^qemu-img: //p' "$T/q.err")
    if [ "$qrc" = 1 ] && [ "$irc" = 64 ] && grep -qF -- "$msg" "$T/i.err" && [ ! -e "$T/i.bad" ]; then
        pass "-S $S is refused with qemu-img's message, nothing created"
    else
        fail "-S $S: exit $irc (qemu-img $qrc)"; sed 's/^/    /' "$T/q.err" "$T/i.err"
    fi
done
finish
