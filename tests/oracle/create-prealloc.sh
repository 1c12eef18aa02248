#!/bin/sh
# create-prealloc.sh - imgchain create -o preallocation=falloc|full against
# qemu-img create 7.2 for raw, qcow2 v2/v3/extended L2/small clusters and
# QED, at 64 MiB or less: same output and exit code, the same allocation
# map (host offsets aside), the file's length, the space allocated for it
# (raw and qcow2; QED's falloc and full only concern its small header
# area) and a clean qemu-img check.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

flatmap() { # FMT FILE
    qimg map -f "$1" --output=json "$2" | sed 's/, "offset": [0-9]*//' |
        sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), \(.*\)}.*/\1 \2 \3/p' |
        awk '{ s = $1; l = $2; $1 = ""; $2 = ""; f = $0
               if (n && f == pf && ps + pl == s) { pl += l; next }
               if (n) print ps, pl, pf; ps = s; pl = l; pf = f; n = 1 }
             END { if (n) print ps, pl, pf }'
}

# same_create DESC FMT OPTS SIZE
same_create() {
    _d=$1; _f=$2; _o=$3; _s=$4
    rm -f "q.$_f" "i.$_f"
    qimg create -f "$_f" -o "$_o" "q.$_f" "$_s" >q.raw-out 2>&1; _qrc=$?
    ic create -f "$_f" -o "$_o" "i.$_f" "$_s" >i.raw-out 2>&1; _irc=$?
    sed 's/^qemu-img: q/X: /; s/q\./X./' q.raw-out >q.out
    sed 's/^imgchain: i/X: /; s/i\./X./' i.raw-out >i.out
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    cmp -s q.out i.out || _why="$_why output differs;"
    if [ "$_qrc" = 0 ] && [ -z "$_why" ]; then
        [ "$(flatmap "$_f" "q.$_f")" = "$(flatmap "$_f" "i.$_f")" ] || _why="$_why map differs;"
        # the file's length and allocated space within 1%: metadata placement
        # differs with small clusters, file systems round extents differently
        _ql=$(stat -c %s "q.$_f"); _il=$(stat -c %s "i.$_f")
        [ $((_il * 100)) -ge $((_ql * 99)) ] && [ $((_il * 99)) -le $((_ql * 100)) ] ||
            _why="$_why file length $_il, qemu-img $_ql;"
        _qb=$(stat -c %b "q.$_f"); _ib=$(stat -c %b "i.$_f")
        [ "$_f" = qed ] || { [ $((_ib * 100)) -ge $((_qb * 99)) ] && [ $((_ib * 99)) -le $((_qb * 100)) ]; } ||
            _why="$_why allocated $_ib blocks, qemu-img $_qb;"
        case $_f in raw) ;; *) qimg check -q -f "$_f" "i.$_f" || _why="$_why check not clean;" ;; esac
    fi
    if [ -z "$_why" ]; then pass "$_d (exit $_irc)"; else
        fail "$_d:$_why"; sed 's/^/    qemu-img: /' q.out; sed 's/^/    imgchain: /' i.out
        flatmap "$_f" "q.$_f" | sed 's/^/    qemu map: /'; flatmap "$_f" "i.$_f" | sed 's/^/    ic map:   /'
    fi
}

for m in falloc full; do
    same_create "raw preallocation=$m" raw preallocation=$m 24M
    same_create "raw preallocation=$m, unaligned size" raw preallocation=$m 1000001
    same_create "qcow2 preallocation=$m" qcow2 preallocation=$m 40M
    same_create "qcow2 v2 preallocation=$m" qcow2 compat=0.10,preallocation=$m 20M
    same_create "qcow2 extended L2 preallocation=$m" qcow2 extended_l2=on,preallocation=$m 20M
    same_create "qcow2 512-byte clusters, 64-bit refcounts, preallocation=$m" qcow2 \
        cluster_size=512,refcount_bits=64,preallocation=$m 6M
    same_create "qcow2 2M clusters preallocation=$m" qcow2 cluster_size=2M,preallocation=$m 64M
    same_create "qcow2 lazy refcounts preallocation=$m (left clean)" qcow2 \
        lazy_refcounts=on,preallocation=$m 8M
    same_create "QED preallocation=$m" qed preallocation=$m 30M
done
ic create -q -f qcow2 -o preallocation=full full.qcow2 40M
expect "a fully preallocated qcow2 reads zeroes" qio -r -c 'read -P 0 0 40M' full.qcow2
expect "... and its 40 MiB are allocated on the host" test $(($(stat -c %b full.qcow2) * 512)) -ge 41943040
expect_out "metadata preallocation stays refused for raw, as by qemu-img" \
    'Unsupported preallocation mode: metadata' ic create -f raw -o preallocation=metadata m.raw 1M
qimg create -q -f raw base.raw 1M
rm -f x.qcow2
expect_out "preallocation over a backing file is refused as by qemu-img" \
    'Backing file and preallocation can only be used at the same time if extended_l2 is on' \
    ic create -f qcow2 -b base.raw -F raw -o preallocation=full x.qcow2 4M
expect "... and creates nothing" test ! -e x.qcow2
expect_out "an unknown preallocation mode is refused" 'invalid parameter value: foo' \
    ic create -f qcow2 -o preallocation=foo x.qcow2 4M
finish
