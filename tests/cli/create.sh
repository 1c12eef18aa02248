#!/bin/sh
# imgchain create: the "Formatting ..." line equals qemu-img's for each
# format and option set, -q is silent, the images are what qemu-img sees
# as valid, and refused creates touch nothing.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
mkdir q i
qimg create -q -f qcow2 q/base.qcow2 32M && cp q/base.qcow2 i/base.qcow2
qimg create -q -f raw q/base.raw 16M && cp q/base.raw i/base.raw

# same_line DESC ARGS...: run both tools in their own directory with the
# same relative names; their first output lines must be identical.
same_line() {
    _d=$1; shift
    (cd q && qimg create "$@") >"$T/q.out" 2>&1
    (cd i && ic create "$@") >"$T/i.out" 2>&1; _rc=$?
    if [ "$_rc" = 0 ] && [ "$(head -n 1 "$T/q.out")" = "$(head -n 1 "$T/i.out")" ]; then
        pass "$_d"
    else
        fail "$_d (rc $_rc)"; echo "    qemu-img: $(head -n 1 "$T/q.out")"; echo "    imgchain: $(cat "$T/i.out")"
    fi
}
same_line "qcow2 defaults" -f qcow2 x1.qcow2 64M
same_line "qcow2 v2, 4k clusters" -f qcow2 -o compat=0.10,cluster_size=4k x2.qcow2 64M
same_line "qcow2 all feature options" -f qcow2 \
    -o preallocation=metadata,lazy_refcounts=on,extended_l2=on,compression_type=zstd,refcount_bits=8 x3.qcow2 1G
same_line "qcow2 data file" -f qcow2 -o data_file=x4.data,data_file_raw=on x4.qcow2 1M
same_line "qcow2 over a backing file, size taken from it" -f qcow2 -b base.qcow2 -F qcow2 x5.qcow2
same_line "qcow2 over a raw backing file, size given" -f qcow2 -b base.raw -F raw x6.qcow2 64M
same_line "qed defaults" -f qed x7.qed 64M
same_line "qed over raw" -f qed -b base.raw -F raw x8.qed
same_line "qed cluster and table size" -f qed -o cluster_size=4k,table_size=2 x9.qed 8M
same_line "raw" -f raw x10.raw 64M
same_line "size suffixes" -f qcow2 x11.qcow2 1.5G

for f in x1.qcow2 x2.qcow2 x3.qcow2 x4.qcow2 x5.qcow2 x6.qcow2 x7.qed x8.qed x9.qed; do
    # (from inside i/: qemu-img 7.2 resolves a relative data_file against
    # the current directory, not the image's)
    expect "qemu-img check accepts the created $f" sh -c "cd i && qemu-img check -q $f"
done
for f in x1.qcow2 x3.qcow2 x5.qcow2 x7.qed x10.raw x11.qcow2; do
    expect "virtual size of $f equals qemu-img's" \
        sh -c "[ \"\$(qemu-img info -U --output=json q/$f | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"virtual-size\"])')\" = \
                 \"\$(qemu-img info -U --output=json i/$f | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"virtual-size\"])')\" ]"
done

expect_rc "-q prints nothing" 0 sh -c "[ -z \"\$('$IMGCHAIN_BIN' create -q -f qcow2 i/q.qcow2 1M 2>&1)\" ]"
expect_rc "-u creates over a missing backing file when SIZE is given" 0 \
    ic create -q -f qcow2 -u -b missing.qcow2 -F qcow2 i/u.qcow2 1M
expect_out "info shows the recorded backing file of -u" "backing file: missing.qcow2" \
    ic info i/u.qcow2
expect_rc "-b without -F is refused" 1 ic create -q -f qcow2 -b base.qcow2 i/nofmt.qcow2
expect "the refused create left nothing" test ! -e i/nofmt.qcow2

ic create -q -f raw i/keep.raw 1M && ic io -f raw -q i/keep.raw -c 'write -P 9 0 4k'
expect_rc "an invalid option is refused" 1 ic create -q -f qcow2 -o cluster_size=3000 i/keep.raw 1M
expect "an existing file survives a refused create" ic io -f raw -q -r i/keep.raw -c 'read -P 9 0 4k'
expect_rc "an unknown -o option is refused" 1 ic create -q -f qcow2 -o bogus=1 i/keep.raw 1M
expect "... and the file still survives" ic io -f raw -q -r i/keep.raw -c 'read -P 9 0 4k'
expect_rc "creating over an existing image replaces it" 0 ic create -q -f qcow2 i/keep.raw 2M
expect_out "... as a qcow2 image" "file format: qcow2" ic info i/keep.raw

# QED geometries qemu 7.2 cannot open (its largest-image size wraps to 0) are
# created only on request; those it opens are created as asked.
for o in cluster_size=4M cluster_size=8M,table_size=2 cluster_size=16M,table_size=1 \
         cluster_size=2M,table_size=16; do
    expect_rc "qed $o is refused (qemu 7.2 cannot open it)" 1 ic create -q -f qed -o $o i/big.qed 64M
    expect "... and nothing is created" test ! -e i/big.qed
    expect_rc "qemu-img 7.2 refuses qed $o as well" 1 qimg create -q -f qed -o $o q/big.qed 64M
    rm -f q/big.qed
done
expect_out "the refusal names the option that forces it" "force_large_clusters=on" \
    ic create -q -f qed -o cluster_size=4M i/big.qed 64M
for o in cluster_size=4M,table_size=2 cluster_size=2M,table_size=8; do
    expect_rc "qed $o is created" 0 ic create -q -f qed -o $o i/ok.qed 64M
    expect "qemu-img check accepts qed $o" qemu-img check -q i/ok.qed
    rm -f i/ok.qed
done
expect_rc "force_large_clusters=on creates 4 MiB clusters" 0 \
    ic create -q -f qed -o cluster_size=4M,force_large_clusters=on i/forced.qed 64M
expect_out "imgchain reads the forced image" "cluster_size: 4194304" ic info i/forced.qed
expect_rc "imgchain writes and reads it back" 0 \
    ic io -q i/forced.qed -c 'write -P 7 5M 64k' -c 'read -P 7 5M 64k'
expect_rc "imgchain checks it clean" 0 ic check -q i/forced.qed
finish
