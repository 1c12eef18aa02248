#!/bin/sh
# chain-names.sh - commit -b BASE finds BASE as qemu-img does: as a backing
# name written in the chain, relative to the folder of the image that
# writes it, from any current folder; qemu-img commit on a copy of the same
# chain is the oracle.  Then imgchain's extension on its own: BASE as a path
# from the current folder, which qemu-img refuses.
. "$(dirname "$0")/../lib.sh"

# mk DIR: DIR/top.qcow2 -> mid2.qcow2 -> sub/mid.qed -> sub/base.raw, each
# backing name relative to the folder of the image that records it.
mk() {
    d=$1
    rm -rf "$d"; mkdir -p "$d/sub"
    qimg create -q -f raw "$d/sub/base.raw" 4M
    qio -f raw -c 'write -P 1 0 4M' "$d/sub/base.raw" >/dev/null
    qimg create -q -f qed -b base.raw -F raw "$d/sub/mid.qed" 4M
    qio -f qed -c 'write -P 2 1M 1M' "$d/sub/mid.qed" >/dev/null
    qimg create -q -f qcow2 -b sub/mid.qed -F qed "$d/mid2.qcow2" 4M
    qio -f qcow2 -c 'write -P 3 2M 512k' "$d/mid2.qcow2" >/dev/null
    qimg create -q -f qcow2 -b mid2.qcow2 -F qcow2 "$d/top.qcow2" 4M
    qio -f qcow2 -c 'write -P 4 3M 64k' "$d/top.qcow2" >/dev/null
}

# item 2's case: -b sub/mid.qed, run from /, the chain elsewhere
mk "$T/i"; mk "$T/q"
sum() { md5sum "$1/top.qcow2" "$1/mid2.qcow2" "$1/sub/base.raw" | cut -d' ' -f1 | md5sum; }
before=$(sum "$T/i")
expect "qemu-img commit -b sub/mid.qed run from / succeeds (the oracle)" \
    sh -c "cd / && qemu-img commit -q -b sub/mid.qed '$T/q/top.qcow2'"
expect "imgchain commit -b sub/mid.qed run from / finds mid2's backing name" \
    sh -c "cd / && '$IMGCHAIN_BIN' commit -q -b sub/mid.qed '$T/i/top.qcow2'"
expect "the named base holds what qemu-img's commit puts there" \
    qimg compare -q -f qed -F qed "$T/i/sub/mid.qed" "$T/q/sub/mid.qed"
expect "the images above and below the base are untouched" test "$before" = "$(sum "$T/i")"
expect "qemu-img check finds the base clean" qimg check -q "$T/i/sub/mid.qed"

# the name is resolved against each overlay's folder: "base.raw" is what
# sub/mid.qed records, so it names sub/base.raw even when the current folder
# holds another base.raw outside the chain
mk "$T/i"; mk "$T/q"
qimg create -q -f raw "$T/i/base.raw" 4M; cp "$T/i/base.raw" "$T/i/stray-before"
qimg create -q -f raw "$T/q/base.raw" 4M
expect "qemu-img commit -b base.raw picks the chain's sub/base.raw (the oracle)" \
    sh -c "cd '$T/q' && qemu-img commit -q -b base.raw top.qcow2"
expect "imgchain commit -b base.raw picks the chain's sub/base.raw" \
    sh -c "cd '$T/i' && '$IMGCHAIN_BIN' commit -q -b base.raw top.qcow2"
expect "sub/base.raw holds what qemu-img's commit puts there" \
    cmp -s "$T/i/sub/base.raw" "$T/q/sub/base.raw"
expect "the base.raw of the current folder is not touched" cmp -s "$T/i/base.raw" "$T/i/stray-before"

# qemu-img's rule comes first: img.qcow2 from top's folder is the middle
# layer, while from the current folder (sub/) it is the bottom one
for w in i q; do
    d=$T/p$w; rm -rf "$d"; mkdir -p "$d/sub"
    qimg create -q -f qcow2 "$d/sub/img.qcow2" 2M
    qio -c 'write -P 1 0 2M' "$d/sub/img.qcow2" >/dev/null
    qimg create -q -f qcow2 -b sub/img.qcow2 -F qcow2 "$d/img.qcow2" 2M
    qio -c 'write -P 2 0 1M' "$d/img.qcow2" >/dev/null
    qimg create -q -f qcow2 -b img.qcow2 -F qcow2 "$d/top.qcow2" 2M
    qio -c 'write -P 3 0 64k' "$d/top.qcow2" >/dev/null
done
cp "$T/pi/sub/img.qcow2" "$T/pi/bottom-before"
expect "qemu-img commit -b img.qcow2 from sub/ (the oracle)" \
    sh -c "cd '$T/pq/sub' && qemu-img commit -q -b img.qcow2 ../top.qcow2"
expect "imgchain commit -b img.qcow2 from sub/" \
    sh -c "cd '$T/pi/sub' && '$IMGCHAIN_BIN' commit -q -b img.qcow2 ../top.qcow2"
expect "the backing-name match wins: the middle layer got the data, as with qemu-img" \
    qimg compare -q "$T/pi/img.qcow2" "$T/pq/img.qcow2"
expect "the bottom layer (the current folder's img.qcow2) is untouched" \
    cmp -s "$T/pi/sub/img.qcow2" "$T/pi/bottom-before"

# imgchain's extension on its own: BASE as a path from the current folder.
# From sub/, "mid.qed" is no backing name of the chain (mid2 writes
# sub/mid.qed), so qemu-img refuses it; imgchain finds the file by path.
mk "$T/i"; mk "$T/q"
expect_rc "qemu-img refuses -b mid.qed from sub/ (not a backing name)" 1 \
    sh -c "cd '$T/q/sub' && qemu-img commit -q -b mid.qed ../top.qcow2"
expect "imgchain accepts -b mid.qed from sub/ as a path from the current folder" \
    sh -c "cd '$T/i/sub' && '$IMGCHAIN_BIN' commit -q -b mid.qed ../top.qcow2"
expect "the base found by path holds what -b sub/mid.qed gives with qemu-img" \
    sh -c "cd / && qemu-img commit -q -b sub/mid.qed '$T/q/top.qcow2' &&
           qemu-img compare -q -f qed -F qed '$T/i/sub/mid.qed' '$T/q/sub/mid.qed'"
mk "$T/i"
expect "an absolute path to a layer is found from any folder" \
    sh -c "cd / && '$IMGCHAIN_BIN' commit -q -b '$T/i/sub/mid.qed' '$T/i/top.qcow2'"
mk "$T/i"
expect "a path through another spelling (..) is found by its real path" \
    sh -c "cd '$T/i/sub' && '$IMGCHAIN_BIN' commit -q -b ../sub/./mid.qed ../top.qcow2"

# names that match nothing are refused, and nothing is written
mk "$T/i"
before=$(md5sum "$T/i/top.qcow2" "$T/i/mid2.qcow2" "$T/i/sub/mid.qed" "$T/i/sub/base.raw" | md5sum)
expect_out "a name matching no layer is refused, naming it" "did not find 'nosuch.qed' in the backing chain" \
    sh -c "cd / && '$IMGCHAIN_BIN' commit -b nosuch.qed '$T/i/top.qcow2'"
expect_rc "the top image itself is no base" 1 \
    sh -c "cd '$T/i' && '$IMGCHAIN_BIN' commit -b top.qcow2 top.qcow2"
expect "refused names wrote nothing" test "$before" = \
    "$(md5sum "$T/i/top.qcow2" "$T/i/mid2.qcow2" "$T/i/sub/mid.qed" "$T/i/sub/base.raw" | md5sum)"
finish
