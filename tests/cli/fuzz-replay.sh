#!/bin/sh
# Damaged-input replay: images made by qemu-img (qcow2 v2/v3 with snapshots,
# compressed clusters and a backing name; QED) and libvirt snapshot XML are
# mutated deterministically (byte flips, truncations, field-sized garbage in
# the first 4 KiB), and every mutant is replayed through the fuzz targets.
# Each must fail cleanly or succeed: a crash, a hang or (under
# SANITIZE=address,undefined) any sanitizer report fails the test.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
FZ="$IC_TOP/$BUILD/tests/fuzz"
[ -x "$FZ/fuzz-image" ] || { fail "fuzz replay drivers not built ($FZ)"; finish; }

qimg create -q -f qcow2 -o cluster_size=4096 v3.qcow2 1M
qio -c 'write -P 1 0 64k' -c 'write -c -P 2 128k 4k' -c 'write -z 256k 8k' v3.qcow2 >/dev/null
qimg snapshot -c s1 v3.qcow2
qio -c 'write -P 3 0 8k' v3.qcow2 >/dev/null
qimg create -q -f qcow2 -o compat=0.10,cluster_size=4096 -b v3.qcow2 -F qcow2 v2.qcow2
qio -c 'write -P 4 4k 4k' v2.qcow2 >/dev/null
qimg create -q -f qed -o cluster_size=4096,table_size=2 a.qed 1M
qio -c 'write -P 5 0 12k' a.qed >/dev/null
cat > snap.xml <<'XML'
<domainsnapshot>
  <name>s1</name>
  <description>d</description>
  <state>running</state>
  <creationTime>1700000000</creationTime>
  <memory snapshot='external' file='/var/lib/mem.save'/>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/>
      <source file='/var/lib/vda.s1'/>
    </disk>
    <disk name='vdb' snapshot='no'/>
  </disks>
</domainsnapshot>
XML

# Prefix byte for fuzz-image: 0 qcow2, 1 qed, 2 probe; +8 also runs check.
python3 - <<'PY'
import random
r = random.Random(20261125)
def emit(name, prefix, data, n):
    for i in range(n):
        d = bytearray(data)
        kind = i % 4
        if kind == 0:
            for _ in range(r.randint(1, 8)):
                p = r.randrange(min(len(d), 4096)); d[p] = r.randrange(256)
        elif kind == 1:
            p = r.randrange(0, min(len(d), 4096) - 8)
            d[p:p + 8] = r.choice([b"\xff" * 8, b"\x00" * 8, b"\x7f" + b"\xff" * 7,
                                   bytes(r.randrange(256) for _ in range(8))])
        elif kind == 2:
            d = d[:r.randrange(len(d))]
        else:
            for _ in range(r.randint(1, 4)):
                p = r.randrange(len(d)); d[p] ^= 1 << r.randrange(8)
        with open("m-%s-%04d" % (name, i), "wb") as f:
            f.write(bytes([prefix + (8 if i % 2 else 0)]) + bytes(d))
emit("v3", 0, open("v3.qcow2", "rb").read(), 300)
emit("v2", 2, open("v2.qcow2", "rb").read(), 200)
emit("qed", 1, open("a.qed", "rb").read(), 200)
x = open("snap.xml", "rb").read()
for i in range(200):
    d = bytearray(x)
    for _ in range(r.randint(1, 6)):
        p = r.randrange(len(d)); d[p] = r.choice(b"<>/='\"&;x0 \n")
    open("x-%04d" % i, "wb").write(bytes(d))
PY

# The unmutated inputs must open (the targets are not refusing everything).
printf '\000' > ok.img && cat v3.qcow2 >> ok.img
expect "fuzz-image replays the unmutated qcow2 image" timeout 60 $IC_WRAP "$FZ/fuzz-image" ok.img
expect_rc "700 mutated images replay without a crash or sanitizer report" 0 \
    timeout 600 $IC_WRAP "$FZ/fuzz-image" m-*
expect_rc "200 mutated snapshot documents replay without a crash or sanitizer report" 0 \
    timeout 300 $IC_WRAP "$FZ/fuzz-snapshot-xml" x-*
finish
