#!/bin/sh
# convert-salvage.sh - convert --salvage against qemu-img convert 7.2:
# qcow2 v2 and v3 sources with a compressed cluster whose data is damaged
# (its reads fail with EIO), converted to raw, qcow2 and QED.  Both tools
# must succeed, name the same unreadable sectors in the same words, and
# write the same content (zeroes for what could not be read).  Without
# --salvage the convert fails and leaves no target.  Both tools read in
# parallel, so the lines are compared in sorted order.
. "$(dirname "$0")/../lib.sh"

# damage IMG INDEX: overwrite the compressed data of L2 entry INDEX of the
# first L2 table
damage() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'r+b'); idx = int(sys.argv[2])
h = f.read(72)
cb = struct.unpack('>I', h[20:24])[0]; l1 = struct.unpack('>Q', h[40:48])[0]
f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8 * idx); e = struct.unpack('>Q', f.read(8))[0]
assert e & (1 << 62), "not a compressed cluster"
f.seek(e & ((1 << (62 - (cb - 8))) - 1)); f.write(b'\xde\xad\xbe\xef' * 8)
PY
}

for so in compat=1.1 compat=0.10 cluster_size=4096; do
    rm -f "$T/src"
    qimg create -q -f qcow2 -o "$so" "$T/src" 1M
    qio -c 'write -c -P 5 0 64k' -c 'write -c -P 6 64k 64k' -c 'write -P 7 128k 64k' "$T/src" >/dev/null
    damage "$T/src" "$([ "$so" = cluster_size=4096 ] && echo 17 || echo 1)"
    for tf in raw qcow2 qed; do
        tag="qcow2 $so -> $tf"
        rm -f "$T/q.out" "$T/i.out"
        qimg convert --salvage -O "$tf" "$T/src" "$T/q.out" 2>"$T/q.err"; qrc=$?
        ic convert --salvage -O "$tf" "$T/src" "$T/i.out" 2>"$T/i.err"; irc=$?
        sed 's/^qemu-img: //' "$T/q.err" | sort >"$T/q.msgs"; sed 's/^imgchain: //' "$T/i.err" | sort >"$T/i.msgs"
        expect "$tag: --salvage succeeds as qemu-img's (exit $qrc)" test "$irc" = "$qrc"
        expect "$tag: ... naming the same unreadable sectors, one line each" cmp "$T/q.msgs" "$T/i.msgs"
        expect "$tag: ... at least one" grep -q 'error while reading offset' "$T/i.msgs"
        expect "$tag: ... and writing the same content" qimg compare -q -f "$tf" -F "$tf" "$T/q.out" "$T/i.out"
        expect "$tag: ... with the readable data intact" \
            qio -f "$tf" -c 'read -P 5 0 64k' -c 'read -P 7 128k 64k' "$T/i.out"
        rm -f "$T/i.out"
        expect_rc "$tag: without --salvage the convert fails" 1 ic convert -O "$tf" "$T/src" "$T/i.out"
        expect "$tag: ... and leaves no target" test ! -e "$T/i.out"
    done
done
finish
