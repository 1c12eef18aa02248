#!/bin/sh
# imgchain info: human output (golden info.out) for raw, qed and qcow2
# layers, chains, snapshots, dirty images; backing-file problems.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/golden.inc"
cd "$T" || exit 1

ic create -q -f raw base.raw 4M
ic create -q -f qed -b base.raw -F raw mid.qed
ic create -q -f qcow2 -b mid.qed -F qed top.qcow2
ic io -q top.qcow2 -c 'write -P 1 0 64k'
g imgchain info base.raw
g imgchain info mid.qed
g imgchain info top.qcow2
g imgchain info --backing-chain top.qcow2
g imgchain info -f qcow2 --output=human top.qcow2

ic create -q -f qcow2 -o compat=0.10,cluster_size=4k,refcount_bits=16 v2.qcow2 1G
qimg snapshot -c snap1 v2.qcow2
qimg snapshot -c 'second snapshot' v2.qcow2
g imgchain info v2.qcow2

ic create -q -f qcow2 -o lazy_refcounts=on,extended_l2=on,compression_type=zstd lazy.qcow2 8M
qio -c 'write 0 64k' -c 'sigraise 9' lazy.qcow2 >/dev/null 2>&1
g imgchain info lazy.qcow2

ic create -q -f qcow2 -o data_file=ext.data,data_file_raw=on ext.qcow2 2M
g imgchain info ext.qcow2

# A dangling backing file does not matter without --backing-chain.
ic create -q -f qcow2 -u -b gone.qcow2 -F qcow2 dangling.qcow2 1M
g imgchain info dangling.qcow2
g imgchain info --backing-chain dangling.qcow2
# A backing loop is an error, not a hang.
ic create -q -f qcow2 -u -b loop2.qcow2 -F qcow2 loop1.qcow2 1M
ic create -q -f qcow2 -u -b loop1.qcow2 -F qcow2 loop2.qcow2 1M
g imgchain info --backing-chain loop1.qcow2
g imgchain info -f qed top.qcow2
golden info
finish
