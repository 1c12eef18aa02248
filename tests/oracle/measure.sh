#!/bin/sh
# measure.sh - imgchain measure against qemu-img measure 7.2: the human and
# JSON output must be byte-identical for -O qcow2 (every cluster size,
# refcount width, extended L2, compat, preallocation) and -O raw, with
# --size and with sources of every format (data, zero and compressed
# clusters, holes, backing chains, internal snapshots, persistent bitmaps);
# refusals print qemu-img's message.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# same_measure DESC ARGS...: stdout equal to qemu-img's, human and JSON,
# both exit 0
same_measure() {
    _d=$1; shift
    _ok=1
    for _o in human json; do
        qimg measure --output=$_o "$@" >"$T/q.out" 2>&1; _qrc=$?
        ic measure --output=$_o "$@" >"$T/i.out" 2>&1; _irc=$?
        if [ "$_qrc" != 0 ] || [ "$_irc" != 0 ] || ! cmp -s "$T/q.out" "$T/i.out"; then
            _ok=0
            fail "$_d ($_o: imgchain exit $_irc, qemu-img exit $_qrc)"
            sed 's/^/    qemu-img: /' "$T/q.out"; sed 's/^/    imgchain: /' "$T/i.out"
        fi
    done
    [ $_ok = 1 ] && pass "$_d"
}

# same_refusal DESC ARGS...: both fail; qemu-img's first message appears in
# imgchain's error
same_refusal() {
    _d=$1; shift
    qimg measure "$@" >"$T/q.out" 2>&1; _qrc=$?
    ic measure "$@" >"$T/i.out" 2>&1; _irc=$?
    _m=$(sed -n '1s/^qemu-img: //p' "$T/q.out")
    if [ "$_qrc" != 0 ] && [ "$_irc" != 0 ] && [ -n "$_m" ] && grep -qF -- "$_m" "$T/i.out"; then
        pass "$_d (exit $_irc)"
    else
        fail "$_d (imgchain exit $_irc, qemu-img exit $_qrc)"
        sed 's/^/    qemu-img: /' "$T/q.out"; sed 's/^/    imgchain: /' "$T/i.out"
    fi
}

# --size N: the figures of an empty image
for s in 0 1 511 512 1000 1M 64M 1G 1.5G 100G 16T; do
    same_measure "-O raw --size $s" -O raw --size $s
    same_measure "-O qcow2 --size $s" -O qcow2 --size $s
done
for cs in 512 1k 4k 16k 64k 256k 1M 2M; do
    for s in 1M 3G 100G; do
        same_measure "-O qcow2 cluster_size=$cs --size $s" -O qcow2 -o cluster_size=$cs --size $s
    done
    for rb in 1 2 4 8 32 64; do
        same_measure "-O qcow2 cluster_size=$cs refcount_bits=$rb --size 20G" \
            -O qcow2 -o cluster_size=$cs,refcount_bits=$rb --size 20G
    done
done
for cs in 16k 64k 2M; do
    same_measure "-O qcow2 extended_l2 cluster_size=$cs --size 10G" \
        -O qcow2 -o extended_l2=on,cluster_size=$cs --size 10G
done
for p in off metadata falloc full; do
    same_measure "-O qcow2 preallocation=$p --size 5G" -O qcow2 -o preallocation=$p --size 5G
    same_measure "-O raw preallocation=$p --size 5G" -O raw -o preallocation=$p --size 5G
done
same_measure "-O qcow2 compat=0.10" -O qcow2 -o compat=0.10 --size 7G
same_measure "-O qcow2 ignored options (lazy_refcounts, compression_type, data_file)" \
    -O qcow2 -o lazy_refcounts=on,compression_type=zstd,data_file=x.raw --size 7G
same_measure "-O qcow2 -o size= is overridden by --size" -O qcow2 -o size=5M --size 1G
same_measure "the default target format is raw" --size 3G

# sources
qimg create -q -f qcow2 v3.qcow2 64M
qio -c 'write -P 1 0 1M' -c 'write -P 2 3000k 4k' -c 'write -z 8M 2M' -c 'write -P 3 63M 1M' v3.qcow2 >/dev/null
qimg create -q -f qcow2 -o compat=0.10,cluster_size=4096 v2.qcow2 20M
qio -c 'write -P 1 100k 300k' -c 'write -P 0 5M 64k' v2.qcow2 >/dev/null
qimg create -q -f qcow2 -o extended_l2=on,cluster_size=128k ext.qcow2 20M
qio -c 'write -P 5 4k 8k' -c 'write -P 6 1M 100k' -c 'write -z 2M 64k' ext.qcow2 >/dev/null
qimg create -q -f qed d.qed 30M
qio -f qed -c 'write -P 1 1M 3M' d.qed >/dev/null
qimg create -q -f raw sparse.raw 10M
qio -f raw -c 'write -P 7 1000 3000' -c 'write -P 8 6M 5000' -c 'write -P 9 10481664 512' sparse.raw >/dev/null
qimg create -q -f raw odd.raw 1000001
qio -f raw -c 'write -P 7 999000 1001' odd.raw >/dev/null
qimg convert -c -O qcow2 v3.qcow2 comp.qcow2
qimg create -q -f raw base.raw 16M
qio -f raw -c 'write -P 4 0 16M' base.raw >/dev/null
qimg create -q -f qcow2 -b base.raw -F raw mid.qcow2 24M
qio -c 'write -P 5 20M 1M' -c 'write -z 0 1M' mid.qcow2 >/dev/null
qimg create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 32M
qio -c 'write -P 6 30M 64k' top.qcow2 >/dev/null
qimg create -q -f qcow2 snap.qcow2 16M
qio -c 'write -P 1 0 8M' snap.qcow2 >/dev/null
qimg snapshot -c s1 snap.qcow2
qio -c 'write -z 0 8M' -c 'write -P 2 12M 1M' snap.qcow2 >/dev/null
qimg create -q -f qcow2 bm.qcow2 100M
qimg bitmap --add bm.qcow2 b0
qimg bitmap --add -g 512 bm.qcow2 a-much-longer-bitmap-name
qimg bitmap --add -g 2M bm.qcow2 b2

for src in v3.qcow2 v2.qcow2 ext.qcow2 d.qed sparse.raw odd.raw comp.qcow2 top.qcow2 mid.qcow2 bm.qcow2; do
    same_measure "$src -> raw" -O raw "$src"
    same_measure "$src -> qcow2" -O qcow2 "$src"
    for cs in 512 4k 2M; do
        same_measure "$src -> qcow2 cluster_size=$cs" -O qcow2 -o cluster_size=$cs "$src"
    done
    same_measure "$src -> qcow2 extended_l2" -O qcow2 -o extended_l2=on "$src"
    same_measure "$src -> qcow2 compat=0.10 (no bitmaps line)" -O qcow2 -o compat=0.10 "$src"
    same_measure "$src -> qcow2 with a backing_file option" -O qcow2 -o backing_file=x.qcow2 "$src"
    same_measure "$src -> qcow2 preallocation=full" -O qcow2 -o preallocation=full "$src"
done
same_measure "-f raw over a qcow2 file" -O qcow2 -f raw v3.qcow2
same_measure "-U (force share)" -O qcow2 -U v3.qcow2
same_measure "-l an internal snapshot by name" -O qcow2 -l s1 snap.qcow2
same_measure "-l snapshot.name=" -O qcow2 -l snapshot.name=s1 snap.qcow2
same_measure "the active state of the same image" -O qcow2 snap.qcow2
same_measure "bitmaps into 512-byte clusters" -O qcow2 -o cluster_size=512 bm.qcow2
expect_out "the bitmaps line counts the three bitmaps" '^bitmaps size: [1-9]' ic measure -O qcow2 bm.qcow2

# refusals
same_refusal "-O qed is refused as qemu-img refuses it" -O qed --size 1G
same_refusal "-O qed with a source" -O qed v3.qcow2
same_refusal "an unknown target format" -O foo --size 1G
same_refusal "a cluster size that is no power of two" -O qcow2 -o cluster_size=3000 --size 1G
same_refusal "extended L2 with small clusters" -O qcow2 -o extended_l2=on,cluster_size=4k --size 1G
same_refusal "an unknown compat level" -O qcow2 -o compat=2.0 --size 1G
same_refusal "a refcount width that is no power of two" -O qcow2 -o refcount_bits=3 --size 1G
same_refusal "a refcount width other than 16 with compat=0.10" -O qcow2 -o compat=0.10,refcount_bits=8 --size 1G
same_refusal "an unknown preallocation mode" -O qcow2 -o preallocation=foo --size 1G
same_refusal "a size too large for the cluster size" -O qcow2 -o cluster_size=512 --size 1T
expect_out "a missing snapshot fails as qemu-img's does" '^imgchain: Failed to load snapshot: .*nosuch' \
    ic measure -O qcow2 -l nosuch snap.qcow2
same_refusal "neither --size nor a file" -O qcow2
same_refusal "--size with a file" -O qcow2 --size 1G v3.qcow2
same_refusal "two files" -O qcow2 v3.qcow2 v2.qcow2
expect_rc "a malformed --size is a usage error" 64 ic measure --size 1x
expect_rc "an unknown -o key fails" 1 ic measure -O qcow2 -o foo=bar --size 1G
expect_rc "a missing file fails with 1" 1 ic measure -O qcow2 nosuch.qcow2
expect_rc "measure -h exits 0" 0 ic measure -h
finish
