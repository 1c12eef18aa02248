#!/bin/sh
# Oracle: images made by qemu-img/qemu-io in every configuration the qcow2
# and QED engines support.  For each one:
#   imgchain convert -O raw  ==  qemu-img convert -O raw   (cmp)
#   imgchain info --output=json  ==  qemu-img info --output=json  (parsed)
#   imgchain map  --output=json  ==  qemu-img map  --output=json  (parsed)
# Chains (raw and qcow2, three or more deep) are also compared with
# --backing-chain.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

SIZE=8M
# json_eq QEMU IMGCHAIN: equal JSON (maps normalised, see cli_json_cmp.py);
# prints the differences when not.
json_eq() { python3 "$IC_TOP/tests/oracle/cli_json_cmp.py" "$1" "$2"; }

# check NAME [EXTRA info ARGS]: the three comparisons for image NAME
# (the map comparison only once per image, without the extra arguments).
check() {
    _n=$1; shift
    qimg convert -O raw "$_n" "$T/q.raw" 2>"$T/q.err"
    if ic convert -O raw "$_n" "$T/i.raw" 2>"$T/i.err" && cmp -s "$T/q.raw" "$T/i.raw"; then
        pass "$_n: convert -O raw equals qemu-img's"
    else
        fail "$_n: convert -O raw differs from qemu-img's"; sed 's/^/    /' "$T/i.err"
        cmp "$T/q.raw" "$T/i.raw" 2>&1 | sed 's/^/    /'
    fi
    rm -f "$T/q.raw" "$T/i.raw"
    for what in info map; do
        if [ $what = info ]; then set -- "$@"; else set --; fi
        qimg $what --output=json "$@" "$_n" >"$T/q.json" 2>&1
        ic $what --output=json "$@" "$_n" >"$T/i.json" 2>&1
        if json_eq "$T/q.json" "$T/i.json" >"$T/diff.out" 2>&1; then
            pass "$_n: $what JSON equals qemu-img's"
        else
            fail "$_n: $what JSON differs from qemu-img's"
            cat "$T/diff.out"
        fi
    done
}

# fill NAME CLUSTER [nocompress]: qemu-io writes data (aligned and not),
# zero writes, discards and (unless nocompress) compressed clusters.
fill() {
    _c=$2
    qio -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1000000 70000' -c 'write -z 2M 256k' \
        -c "discard 96k 64k" -c 'write -P 0x33 7M 1M' -c 'write -P 0x44 3M 512' "$1" >/dev/null \
        || fail "qemu-io could not fill $1"
    if [ "${3:-}" != nocompress ]; then
        # (a 2 MiB cluster at 6M would overlap the data written at 7M)
        _second=""; [ "$_c" -lt 1048576 ] && _second="write -c -P 0x66 6M $_c"
        qio -c "write -c -P 0x55 4M $_c" ${_second:+-c "$_second"} "$1" >/dev/null \
            || fail "qemu-io could not write compressed clusters to $1"
    fi
}

for spec in "0.10 512" "0.10 4096" "0.10 65536" "1.1 512" "1.1 65536" "1.1 2097152"; do
    set -- $spec
    n="c$1-$2.qcow2"
    qimg create -q -f qcow2 -o compat=$1,cluster_size=$2 "$n" $SIZE
    fill "$n" "$2"
    check "$n"
done
for rb in 1 8 64; do
    n="rb$rb.qcow2"
    qimg create -q -f qcow2 -o refcount_bits=$rb "$n" $SIZE
    fill "$n" 65536
    check "$n"
done
for cs in 16384 65536; do
    n="l2x-$cs.qcow2"
    qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs "$n" $SIZE
    fill "$n" $cs
    qio -c 'write -P 0x77 6M 2k' -c 'write -z 6200k 1k' "$n" >/dev/null
    check "$n"
done
qimg create -q -f qcow2 -o compression_type=zstd zstd.qcow2 $SIZE
fill zstd.qcow2 65536
check zstd.qcow2

qimg create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 $SIZE
fill lazy.qcow2 65536
check lazy.qcow2
qimg create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 $SIZE
qio -c 'write -P 0x12 0 1M' -c 'sigraise 9' dirty.qcow2 >/dev/null 2>&1
check dirty.qcow2

for raw in on off; do
    n="df-$raw.qcow2"
    qimg create -q -f qcow2 -o data_file=df-$raw.data,data_file_raw=$raw "$n" $SIZE
    fill "$n" 65536 nocompress
    check "$n"
done
qimg create -q -f qcow2 -o preallocation=metadata prealloc.qcow2 $SIZE
fill prealloc.qcow2 65536 nocompress
check prealloc.qcow2

qimg create -q -f qcow2 snaps.qcow2 $SIZE
qio -c 'write -P 1 0 1M' snaps.qcow2 >/dev/null
qimg snapshot -c s1 snaps.qcow2
qio -c 'write -P 2 512k 1M' snaps.qcow2 >/dev/null
qimg snapshot -c s2 snaps.qcow2
check snaps.qcow2

qimg create -q -f qed plain.qed $SIZE
fill plain.qed 65536 nocompress
check plain.qed
qimg create -q -f qed -o cluster_size=4096,table_size=2 small.qed $SIZE
fill small.qed 4096 nocompress
check small.qed

# A qcow2 chain four deep, shorter layers below longer ones.
qimg create -q -f qcow2 q0.qcow2 4M
qio -c 'write -P 1 0 4M' q0.qcow2 >/dev/null
qimg create -q -f qcow2 -b q0.qcow2 -F qcow2 q1.qcow2 6M
qio -c 'write -P 2 1M 1M' -c 'write -z 3M 64k' q1.qcow2 >/dev/null
qimg create -q -f qcow2 -o compat=0.10 -b q1.qcow2 -F qcow2 q2.qcow2 8M
qio -c 'write -P 3 1536k 1M' -c 'write -P 4 7M 4k' q2.qcow2 >/dev/null
qimg create -q -f qcow2 -b q2.qcow2 -F qcow2 q3.qcow2
qio -c 'write -P 5 100 200' -c 'discard 1M 64k' q3.qcow2 >/dev/null
check q3.qcow2
check q3.qcow2 --backing-chain

# A raw base under qed and qcow2 layers (three deep).
qimg create -q -f raw r0.raw 6M
qio -f raw -c 'write -P 9 0 6M' r0.raw >/dev/null
qimg create -q -f qed -b r0.raw -F raw r1.qed 8M
qio -c 'write -P 8 2M 2M' r1.qed >/dev/null
qimg create -q -f qcow2 -b r1.qed -F qed r2.qcow2
qio -c 'write -P 7 3M 100k' -c 'write -z 5M 1M' r2.qcow2 >/dev/null
check r2.qcow2
check r2.qcow2 --backing-chain
check r0.raw
finish
