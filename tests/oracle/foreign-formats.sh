#!/bin/sh
# Foreign formats: a probed vmdk, vdi, vhdx, vpc, parallels, LUKS, qcow (v1),
# bochs, cloop or dmg file is refused by name ("FILE: FMT images are not
# supported", exit 1) as a top image and as a backing file, and is never
# written; -f raw or a recorded raw backing format is obeyed; a raw image
# whose format was probed refuses a write that would make it probe as
# another format, as qemu does.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# nofmt OVERLAY: turns the qcow2 overlay's backing-format header extension
# into an unknown one, so the overlay records a backing file but no format.
nofmt() {
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(104)
version = struct.unpack(">I", h[4:8])[0]
pos = struct.unpack(">I", h[100:104])[0] if version >= 3 else 72
while True:
    f.seek(pos)
    magic, length = struct.unpack(">II", f.read(8))
    if magic == 0:
        sys.exit("no backing format extension")
    if magic == 0xE2792ACA:
        f.seek(pos)
        f.write(struct.pack(">I", 0x1c0ffee1))
        break
    pos += 8 + (length + 7) // 8 * 8
EOF
}

# made by qemu-img
qimg create -q -f vmdk sparse.vmdk 1M
qimg create -q -f vmdk -o subformat=monolithicFlat desc.vmdk 1M
qimg create -q -f vdi x.vdi 1M
qimg create -q -f vhdx x.vhdx 1M
qimg create -q -f vpc x.vpc 1M
qimg create -q -f parallels x.parallels 1M
qimg create -q -f qcow x.qcow 1M
# written by hand: qemu-img cannot create bochs, cloop or dmg files, and its
# LUKS create runs a PBKDF2 benchmark that fails ("Unable to get accurate CPU
# usage") on machines whose thread CPU clock does not move, so the LUKS
# header is written by hand too: the probe reads only the magic and version.
python3 - <<'EOF'
def put(buf, off, data):
    buf[off:off + len(data)] = data
b = bytearray(65536)
put(b, 0, b"Bochs Virtual HD Image\0")
put(b, 32, b"Redolog\0")
put(b, 48, b"Growing\0")
put(b, 64, (0x00020000).to_bytes(4, "little"))
open("x.bochs", "wb").write(b)
l = bytearray(1 << 20)
put(l, 0, b"LUKS\xba\xbe")
put(l, 6, (1).to_bytes(2, "big"))
put(l, 8, b"aes\0")
open("x.luks", "wb").write(l)
c = bytearray(65536)
put(c, 0, b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$IMAGE offset=1048576\n")
open("x.cloop", "wb").write(c)
d = bytearray(b"\x5a" * 65536)
open("x.dmg", "wb").write(d)
EOF

expect "qemu-img probes the hand-made bochs file as bochs" \
    sh -c "qemu-img info --output=json x.bochs 2>&1 | grep -q bochs"
expect "qemu-img probes the hand-made LUKS header as LUKS" \
    sh -c "qemu-img info x.luks 2>&1 | grep -q LUKS"

for spec in sparse.vmdk:vmdk desc.vmdk:vmdk x.vdi:vdi x.vhdx:vdi x.vpc:vpc x.parallels:parallels \
            x.qcow:qcow x.luks:luks x.bochs:bochs x.cloop:cloop x.dmg:dmg; do
    f=${spec%%:*}; fmt=${spec#*:}
    [ "$f" = x.vhdx ] && fmt=vhdx
    msg="^imgchain: (.*: )?$f: $fmt images are not supported\$"
    before=$(sha256sum "$f" desc-flat.vmdk | sha256sum)

    expect_rc "info $f exits 1" 1 ic info "$f"
    expect_out "info $f names the format" "$msg" ic info "$f"
    expect_rc "io write on $f exits 1" 1 ic io "$f" -c 'write 0 512'
    expect_out "io write on $f names the format" "$msg" ic io "$f" -c 'write 0 512'
    expect_rc "convert -O qcow2 from $f exits 1" 1 ic convert -O qcow2 "$f" out.qcow2
    expect "convert from $f leaves no target" test ! -e out.qcow2
    expect_rc "map of $f exits 1" 1 ic map "$f"
    expect_rc "check of $f exits 1" 1 ic check "$f"
    expect_rc "compare with $f exits 2 (cannot open), as qemu-img's" 2 ic compare "$f" "$f"

    # an overlay that records the backing file but not its format
    rm -f ov.qcow2
    qimg create -q -f qcow2 -u -b "$f" -F raw ov.qcow2 1M && nofmt ov.qcow2
    expect "qemu-img sees no backing format on the $f overlay" \
        sh -c "! qemu-img info -U ov.qcow2 | grep -q 'backing file format'"
    expect_rc "commit into $f exits 1" 1 ic commit ov.qcow2
    expect_out "commit into $f names the format" "^imgchain: .*$f: $fmt images are not supported\$" \
        ic commit ov.qcow2
    expect_rc "info --backing-chain over $f exits 1" 1 ic info --backing-chain ov.qcow2
    expect_rc "io -r over $f exits 1" 1 ic io -r ov.qcow2 -c 'read 0 512'
    expect_out "check --chain over $f reports the format" "$fmt images are not supported" \
        ic check --chain ov.qcow2

    after=$(sha256sum "$f" desc-flat.vmdk | sha256sum)
    expect "$f is byte for byte unchanged" test "$before" = "$after"
done

# Named rather than probed, the formats get the same answer.
expect_out "-f vmdk is refused as not supported" \
    "^imgchain: sparse.vmdk: vmdk images are not supported\$" ic info -f vmdk sparse.vmdk
qimg create -q -f qcow2 -u -b sparse.vmdk -F vmdk named.qcow2 1M
expect_out "a recorded vmdk backing format is refused as not supported" \
    "^imgchain: named.qcow2: backing file .*sparse.vmdk: vmdk images are not supported\$" \
    ic info --backing-chain named.qcow2

# A fixed VHD keeps its footer only at its end: qemu probes it as raw, and so
# does imgchain.
qimg create -q -f vpc -o subformat=fixed fixed.vpc 1M
expect_out "a fixed VHD probes as raw, as in qemu-img" "^file format: raw" ic info fixed.vpc
expect_out "qemu-img also probes the fixed VHD as raw" "^file format: raw" qimg info fixed.vpc

# An empty file named .dmg is raw (qemu does not probe empty files).
: > empty.dmg
expect_out "an empty .dmg file is raw" "^file format: raw" ic info empty.dmg

# The user's word: -f raw and a recorded raw backing format are obeyed.
cp sparse.vmdk user.vmdk
expect_out "info -f raw on a vmdk" "^file format: raw" ic info -f raw user.vmdk
expect_rc "io -f raw writes a vmdk as raw" 0 ic io -f raw user.vmdk -c 'write -P 0x11 4096 512'
expect_rc "qemu-io reads what io -f raw wrote" 0 qio -f raw -c 'read -P 0x11 4096 512' user.vmdk
qimg create -q -f qcow2 -u -b sparse.vmdk -F raw rawov.qcow2 64k
expect_rc "a recorded raw backing format is obeyed" 0 ic info --backing-chain rawov.qcow2
expect_rc "map over a recorded raw vmdk works" 0 ic map rawov.qcow2

# A raw image opened by probing refuses a write that would make it probe as
# vmdk; qemu refuses the same commit.
head -c 512 sparse.vmdk > hdr.bin
for tool in qemu imgchain; do
    rm -f base.raw ov.qcow2
    truncate -s 1M base.raw
    qimg create -q -f qcow2 -b base.raw -F raw ov.qcow2
    qio -c 'write -s hdr.bin 0 512' ov.qcow2 >/dev/null
    nofmt ov.qcow2
    sum=$(sha256sum < base.raw)
    if [ $tool = qemu ]; then
        expect_rc "qemu-img refuses to commit a vmdk header into a probed raw base" 1 \
            qimg commit ov.qcow2
    else
        expect_rc "imgchain refuses to commit a vmdk header into a probed raw base" 1 \
            ic commit ov.qcow2
        expect_out "the refusal says why" "base.raw: .*probe as vmdk" ic commit ov.qcow2
    fi
    expect "the probed raw base is unchanged after the $tool commit" \
        test "$sum" = "$(sha256sum < base.raw)"
done
# ... but a write that keeps it raw goes through, and so does a named raw.
expect_rc "a plain write to a probed raw image works" 0 ic io base.raw -c 'write -P 0x22 0 512'
rm -f ov.qcow2
qimg create -q -f qcow2 -b base.raw -F raw ov.qcow2
qio -c 'write -s hdr.bin 0 512' ov.qcow2 >/dev/null
expect_rc "commit of the header into a base recorded as raw works" 0 ic commit ov.qcow2
expect "the base recorded as raw now holds the header" cmp -n 512 base.raw hdr.bin

finish
