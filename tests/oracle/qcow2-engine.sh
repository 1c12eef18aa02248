#!/bin/sh
# qcow2-engine.sh - the qcow2 engine against qemu 7.2 as oracle.
#  1. Images qemu-img/qemu-io make (both compat levels, 512 B..2 MiB
#     clusters, refcount_bits 1..64, extended L2 with subcluster writes,
#     zlib and zstd compressed clusters, lazy refcounts, zero writes,
#     discards, data files, metadata preallocation, a 4-deep mixed chain):
#     imgchain reads exactly what qemu reads (convert -O raw, byte equal).
#  2. Images imgchain writes (random offsets and lengths, over a backing
#     file, compressed): qemu-img check finds no errors and no leaks, and
#     qemu-img compare equals a raw model that got the same qemu-io writes.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

same_read() { # NAME
    qimg convert -O raw "$1" q.raw 2>/dev/null
    if ic convert -O raw "$1" i.raw >i.err 2>&1 && cmp -s q.raw i.raw; then
        pass "$1: imgchain reads what qemu reads"
    else
        fail "$1: reads differ"; sed 's/^/    /' i.err; cmp q.raw i.raw 2>&1 | head -2
    fi
    rm -f q.raw i.raw
}
W="-c 'write -P 0x11 0 100k' -c 'write -P 0x22 1000000 70000' -c 'write -z 2M 256k' -c 'discard 96k 64k' -c 'write -P 0x33 5M 1M' -c 'write -P 0x44 3M 512' -c 'write -z 5200k 3k'"

for c in 0.10 1.1; do
    for cs in 512 4096 65536 2097152; do
        n=c$c-$cs.qcow2
        qimg create -q -f qcow2 -o compat=$c,cluster_size=$cs $n 8M
        eval qio $W $n >/dev/null || fail "qemu-io failed on $n"
        qio -c "write -c -P 0x55 6M $cs" $n >/dev/null
        same_read $n
    done
done
for rb in 1 2 4 8 16 32 64; do
    n=rb$rb.qcow2
    qimg create -q -f qcow2 -o refcount_bits=$rb,cluster_size=4096 $n 8M
    eval qio $W $n >/dev/null
    qio -c 'write -c -P 0x66 6M 4k' -c 'write -c -P 0x67 6148k 4k' $n >/dev/null
    same_read $n
done
for cs in 16384 65536; do
    n=l2x-$cs.qcow2
    qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs $n 8M
    eval qio $W $n >/dev/null
    qio -c 'write -P 0x77 6M 2k' -c 'write -z 6200k 1k' -c 'write -c -P 0x78 7M 64k' $n >/dev/null
    same_read $n
done
qimg create -q -f qcow2 -o compression_type=zstd zstd.qcow2 8M
qio -c 'write -c -P 0x21 0 64k' -c 'write -c -P 0x22 1M 64k' -c 'write -P 0x23 2M 10k' zstd.qcow2 >/dev/null
same_read zstd.qcow2
qimg create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 8M
qio -c 'write -P 0x12 0 1M' -c 'sigraise 9' dirty.qcow2 >/dev/null 2>&1
same_read dirty.qcow2
expect "a dirty image opened read-write is repaired (qemu-img check clean)" \
    sh -c "$IMGCHAIN_BIN io dirty.qcow2 -c 'write -P 0x13 2M 4k' >/dev/null && qemu-img check -q dirty.qcow2"
for raw in on off; do
    qimg create -q -f qcow2 -o data_file=df-$raw.data,data_file_raw=$raw df-$raw.qcow2 8M
    eval qio $W df-$raw.qcow2 >/dev/null
    same_read df-$raw.qcow2
done
qimg create -q -f qcow2 -o preallocation=metadata prealloc.qcow2 8M
qio -c 'write -P 0x31 1M 100k' prealloc.qcow2 >/dev/null
same_read prealloc.qcow2
# a raw base and three qcow2 layers with mixed options
qimg create -q -f raw r0.raw 6M
qio -f raw -c 'write -P 9 0 6M' r0.raw >/dev/null
qimg create -q -f qcow2 -o compat=0.10,cluster_size=4096 -b r0.raw -F raw l1.qcow2 8M
qio -c 'write -P 1 1M 1M' -c 'write -z 3M 64k' l1.qcow2 >/dev/null
qimg create -q -f qcow2 -o extended_l2=on -b l1.qcow2 -F qcow2 l2.qcow2
qio -c 'write -P 2 1536k 5k' -c 'write -P 4 7M 4k' l2.qcow2 >/dev/null
qimg create -q -f qcow2 -o cluster_size=512 -b l2.qcow2 -F qcow2 l3.qcow2
qio -c 'write -P 5 100 200' -c 'discard 1M 64k' l3.qcow2 >/dev/null
same_read l3.qcow2

# 2. imgchain writes; qemu-io makes the same writes on a raw model
rand_cmds() { # SEED SIZE N
    awk -v seed="$1" -v size="$2" -v n="$3" 'BEGIN { srand(seed);
        for (i = 0; i < n; i++) { off = int(rand() * (size - 300000)); len = 1 + int(rand() * 250000);
            k = int(rand() * 10);
            if (k < 7) printf "-c \"write -P %d %d %d\" ", (i % 250) + 1, off, len;
            else printf "-c \"write -z %d %d\" ", off, len } }'
}
for opts in "cluster_size=512" "compat=0.10,cluster_size=4096" "cluster_size=65536,refcount_bits=1" \
            "extended_l2=on,cluster_size=32768" "cluster_size=2M" "lazy_refcounts=on,refcount_bits=64"; do
    rm -f w.qcow2 w.raw
    ic create -q -f qcow2 -o "$opts" w.qcow2 16M
    qimg create -q -f raw w.raw 16M
    cmds=$(rand_cmds 7 16777216 40)
    eval ic io w.qcow2 $cmds >/dev/null || fail "imgchain io failed ($opts)"
    eval qio -f raw $cmds w.raw >/dev/null
    expect "imgchain-written ($opts) passes qemu-img check" qimg check -q w.qcow2
    expect "imgchain-written ($opts) equals the raw model" qimg compare -q w.raw w.qcow2
done
# over a backing file
qimg create -q -f qcow2 b.qcow2 16M
qio -c 'write -P 0x5a 0 16M' b.qcow2 >/dev/null
ic create -q -f qcow2 -b b.qcow2 -F qcow2 -o cluster_size=4096 o.qcow2
qimg convert -O raw b.qcow2 o.raw
cmds=$(rand_cmds 11 16777216 40)
eval ic io o.qcow2 $cmds >/dev/null || fail "imgchain io over a backing file failed"
eval qio -f raw $cmds o.raw >/dev/null
expect "overlay written by imgchain passes qemu-img check" qimg check -q o.qcow2
expect "overlay written by imgchain equals the raw model" qimg compare -q o.raw o.qcow2
# compressed convert
qio -f raw -c 'write -P 3 1M 2M' o.raw >/dev/null
expect "convert -c makes a qcow2 that qemu-img checks clean" sh -c "$IMGCHAIN_BIN convert -c -O qcow2 o.raw c.qcow2 && qemu-img check -q c.qcow2"
expect "convert -c output equals its source" qimg compare -q o.raw c.qcow2
expect_out "convert -c output has compressed clusters" '"compressed": true|compressed' \
    sh -c "qemu-img check --output=json c.qcow2"
ic convert -c -O qcow2 -o compression_type=zstd o.raw z.qcow2 >/dev/null 2>&1
expect "zstd convert -c equals its source" qimg compare -q o.raw z.qcow2
expect "zstd convert -c passes qemu-img check" qimg check -q z.qcow2
finish
