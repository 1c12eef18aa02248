#!/bin/sh
# imgchain convert: formats and options (-O, -o, -c, -t none, -p, -q, -l,
# -U), flattening chains, sparseness of the result, refusals.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# A three-layer chain raw <- qcow2 <- qed with data in every layer.
qimg create -q -f raw base.raw 8M
qio -f raw -c 'write -P 1 0 2M' -c 'write -P 2 6M 1M' base.raw >/dev/null
qimg create -q -f qcow2 -b base.raw -F raw mid.qcow2 8M
qio -c 'write -P 3 1M 2M' -c 'write -z 6M 512k' mid.qcow2 >/dev/null
qimg create -q -f qed -b mid.qcow2 -F qcow2 top.qed
qio -c 'write -P 4 2500k 100k' -c 'write -P 5 7M 4k' top.qed >/dev/null
qimg convert -O raw top.qed model.raw
cp base.raw base.orig

expect "chain -> raw equals qemu-img's flattening" sh -c "'$IMGCHAIN_BIN' convert top.qed out.raw && cmp out.raw model.raw"
for fmt in qcow2 qed raw; do
    expect "chain -> $fmt reads back as the model" sh -c \
        "'$IMGCHAIN_BIN' convert -O $fmt top.qed out.$fmt && qemu-img compare -F raw out.$fmt model.raw"
done
expect "the qcow2 result checks clean" qimg check out.qcow2
expect "the qed result checks clean" qimg check out.qed
expect_out "the result has no backing file" '"virtual-size": 8388608' ic info --output=json out.qcow2
expect "the result has no backing file (no backing-filename key)" sh -c "! '$IMGCHAIN_BIN' info --output=json out.qcow2 | grep -q backing"

expect "-o cluster_size=4k,compat=0.10 is applied" sh -c \
    "'$IMGCHAIN_BIN' convert -O qcow2 -o cluster_size=4k,compat=0.10 top.qed o4k.qcow2 && \
     '$IMGCHAIN_BIN' info o4k.qcow2 | grep -q 'cluster_size: 4096' && \
     '$IMGCHAIN_BIN' info o4k.qcow2 | grep -q 'compat: 0.10' && qemu-img compare -F raw o4k.qcow2 model.raw"
expect "-c writes compressed clusters that read back" sh -c \
    "'$IMGCHAIN_BIN' convert -c -O qcow2 top.qed c.qcow2 && qemu-img check c.qcow2 && qemu-img compare -F raw c.qcow2 model.raw"
expect "-c clusters have no host offset in the map (compressed)" sh -c \
    "qemu-img map --output=json c.qcow2 | grep '\"data\": true' | grep -vq offset"
expect "-c with 4k clusters and zstd" sh -c \
    "'$IMGCHAIN_BIN' convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd top.qed cz.qcow2 && \
     qemu-img check cz.qcow2 && qemu-img compare -F raw cz.qcow2 model.raw"
expect "-t none to raw" sh -c "'$IMGCHAIN_BIN' convert -t none top.qed direct.raw && cmp direct.raw model.raw"
expect "-t none to qcow2" sh -c "'$IMGCHAIN_BIN' convert -t none -O qcow2 top.qed direct.qcow2 && qemu-img compare -F raw direct.qcow2 model.raw"
expect_rc "-q prints nothing" 0 sh -c "[ -z \"\$('$IMGCHAIN_BIN' convert -q top.qed q.raw 2>&1)\" ]"
expect_rc "-p without a terminal prints nothing" 0 sh -c "[ -z \"\$('$IMGCHAIN_BIN' convert -p top.qed p.raw 2>&1)\" ]"
if command -v script >/dev/null 2>&1; then
    script -qec "'$IMGCHAIN_BIN' convert -p top.qed tty.raw" /dev/null >"$T/tty.out" 2>&1
    expect "-p on a terminal ends at (100.00/100%)" grep -q '(100.00/100%)' "$T/tty.out"
    expect "-p on a terminal starts at (0.00/100%)" grep -q '(0.00/100%)' "$T/tty.out"
fi

# Unallocated and zero ranges are not written: a 1 GiB image with 64 KiB of
# data converts to a raw file that uses little space.
qimg create -q -f qcow2 sparse.qcow2 1G
qio -c 'write -P 6 512M 64k' -c 'write -z 0 100M' sparse.qcow2 >/dev/null
ic convert sparse.qcow2 sparse.raw
expect "a sparse source gives a sparse raw file" sh -c "[ \$(du -k sparse.raw | cut -f1) -lt 1024 ]"
expect "... with the same content" qimg compare -f qcow2 -F raw sparse.qcow2 sparse.raw
ic convert -O qcow2 sparse.qcow2 sparse2.qcow2
expect "a sparse source gives a small qcow2 file" sh -c "[ \$(stat -c %s sparse2.qcow2) -lt 1048576 ]"
# Zero-filled data clusters are detected and skipped too.
qimg create -q -f qcow2 zeros.qcow2 64M
qio -c 'write -P 0 0 32M' zeros.qcow2 >/dev/null
ic convert -O qcow2 zeros.qcow2 zeros-out.qcow2
expect "written zeroes are not copied" sh -c "[ \$(stat -c %s zeros-out.qcow2) -lt 1048576 ]"

# -l: an internal snapshot.
qimg create -q -f qcow2 snap.qcow2 4M
qio -c 'write -P 7 0 1M' snap.qcow2 >/dev/null
qimg snapshot -c first snap.qcow2
qio -c 'write -P 8 0 2M' snap.qcow2 >/dev/null
qimg convert -l snapshot.name=first -O raw snap.qcow2 snap-q.raw
expect "-l snapshot.name= exports the snapshot" sh -c "'$IMGCHAIN_BIN' convert -l snapshot.name=first snap.qcow2 s1.raw && cmp s1.raw snap-q.raw"
expect "-l snapshot.id= exports the snapshot" sh -c "'$IMGCHAIN_BIN' convert -l snapshot.id=1 snap.qcow2 s2.raw && cmp s2.raw snap-q.raw"
expect "-l ID_OR_NAME exports the snapshot" sh -c "'$IMGCHAIN_BIN' convert -l first snap.qcow2 s3.raw && cmp s3.raw snap-q.raw"
expect_out "-l with an unknown snapshot fails and names it" "snap\.qcow2" ic convert -l nosuch snap.qcow2 s4.raw
expect "... and leaves no target" test ! -e s4.raw
expect_rc "-l on a format without snapshots fails" 1 ic convert -l first top.qed s5.raw

# A failed convert of an image the target cannot hold leaves no file.
expect_rc "-c to qed is refused" 1 ic convert -c -O qed top.qed cq.qed
expect "... before creating anything" test ! -e cq.qed
expect_rc "the target cannot be a backing file of the source" 1 ic convert top.qed base.raw
expect "... which is left untouched" cmp base.raw base.orig
expect_rc "backing_file in -o is refused" 1 ic convert -O qcow2 -o backing_file=base.raw top.qed bf.qcow2
finish
