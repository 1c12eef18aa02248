#!/bin/sh
# domain-bitmaps.sh - an external domain snapshot carries the enabled
# persistent bitmaps of the image it freezes into the new overlay, empty
# and enabled, as libvirt does (src/snap/domain-create.c note 6), so an
# incremental backup goes on where the writes now land.  Disabled bitmaps
# stay behind; the frozen image's bitmaps are unchanged; qemu-img agrees.
. "$(dirname "$0")/../lib.sh"

I="$T/img"
mkdir -p "$I"
SD="--state-dir $T/state"
qimg create -q -f qcow2 "$I/a.qcow2" 16M
qimg create -q -f qcow2 "$I/b.qcow2" 16M
qimg bitmap --add "$I/a.qcow2" bm0
qimg bitmap --add -g 512 "$I/a.qcow2" bm1
qimg bitmap --disable "$I/a.qcow2" bm1
qimg bitmap --add -g 1M "$I/a.qcow2" bm2
qio -c 'write -P 0x11 1M 64k' "$I/a.qcow2" >/dev/null
cat >"$T/vm.xml" <<XML
<domain type='kvm'>
  <name>vm</name>
  <memory unit='KiB'>524288</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/b.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
ic define $SD "$T/vm.xml" >/dev/null

bitmaps() { # IMAGE: "name granularity flags" per bitmap, as qemu-img info lists them
    qimg info --output=json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for b in d.get("format-specific", {}).get("data", {}).get("bitmaps", []):
    print(b["name"], b["granularity"], ",".join(b["flags"]) or "-")'
}
before=$(bitmaps "$I/a.qcow2")
expect "the frozen image starts with three bitmaps" test "$(echo "$before" | wc -l)" = 3

expect "snapshot-create-as with external overlays" ic snapshot-create-as $SD vm s1 --disk-only \
    --diskspec "vda,snapshot=external,file=$I/a.s1" --diskspec "vdb,snapshot=external,file=$I/b.s1"
expect "the overlay of vda holds the enabled bitmaps, enabled, with their granularity" \
    test "$(bitmaps "$I/a.s1")" = "$(printf 'bm0 65536 auto\nbm2 1048576 auto')"
expect "the overlay of vdb (no bitmaps frozen) holds none" test -z "$(bitmaps "$I/b.s1")"
expect "the frozen image's bitmaps are unchanged" test "$(bitmaps "$I/a.qcow2")" = "$before"
expect "the overlay's bitmaps start empty" test -z "$(ic bitmap --dump --output=json "$I/a.s1" bm0 | grep start)"
expect "the frozen image's bm0 still has its dirty extent" \
    sh -c "'$IMGCHAIN_BIN' bitmap --dump '$I/a.qcow2' bm0 | grep -q '^0x100000 *0x10000'"

expect "a write into the active overlay" ic io "$I/a.s1" -c 'write -P 0x22 4M 64k'
expect "is recorded in the overlay's bm0" \
    test "$(ic bitmap --dump "$I/a.s1" bm0 | tail -n +2)" = "$(printf '0x400000        0x10000')"
expect "qemu-img check: the overlay is clean" qimg check -q "$I/a.s1"
expect "qemu-img check: the frozen image is clean" qimg check -q "$I/a.qcow2"
expect "a second external snapshot carries the overlay's bitmaps on" \
    ic snapshot-create-as $SD vm s2 --disk-only --diskspec "vda,snapshot=external,file=$I/a.s2" \
    --diskspec "vdb,snapshot=no"
expect "the second overlay holds them too" \
    test "$(bitmaps "$I/a.s2")" = "$(printf 'bm0 65536 auto\nbm2 1048576 auto')"
finish
