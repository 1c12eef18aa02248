#!/bin/sh
# snapshot-interop.sh - imgchain snapshots against qemu-img: qemu-img check is
# clean after every imgchain snapshot operation (cluster sizes, refcount
# widths, v2 and v3, compressed clusters, extended L2); qemu-img reads
# imgchain's snapshots (snapshot -l, convert -l) and imgchain reads and
# applies qemu-img's; refusals (duplicate name, refcount_bits=1) change
# nothing.
. "$(dirname "$0")/../lib.sh"

clean() { expect "$1: qemu-img check clean" qimg check -q "$2"; }

for o in "cluster_size=65536" "cluster_size=512" "cluster_size=4096,refcount_bits=8" \
         "cluster_size=65536,refcount_bits=64" "compat=0.10" \
         "cluster_size=65536,extended_l2=on" "cluster_size=16384,refcount_bits=32"; do
    f="$T/a.qcow2"
    rm -f "$f"
    qimg create -q -f qcow2 -o "$o" "$f" 8M
    qio -c 'write -P 0x11 0 128k' -c 'write -c -P 0x22 1M 64k' -c 'write -P 0x33 3M 4k' "$f" >/dev/null
    qimg convert -O raw "$f" "$T/v1.raw"
    expect "$o: create s1" ic snapshot -c s1 "$f"
    clean "$o: after create" "$f"
    expect_out "$o: qemu-img lists s1" '^1 +s1 ' qimg snapshot -l "$f"
    qio -c 'write -P 0x44 0 64k' -c 'write -c -P 0x55 2M 64k' "$f" >/dev/null
    clean "$o: after writes over the snapshot" "$f"
    qimg convert -O raw "$f" "$T/v2.raw"
    expect "$o: create s2" ic snapshot -c s2 "$f"
    clean "$o: after second create" "$f"
    expect_rc "$o: duplicate name refused" 1 ic snapshot -c s1 "$f"
    qimg convert -l s1 -O raw "$f" "$T/s1.raw"
    expect "$o: qemu-img convert -l s1 reads the snapshot" cmp "$T/s1.raw" "$T/v1.raw"
    ic convert -l snapshot.name=s2 -O raw "$f" "$T/s2.raw"
    expect "$o: imgchain convert -l reads s2" cmp "$T/s2.raw" "$T/v2.raw"
    expect "$o: apply s1 by name" ic snapshot -a s1 "$f"
    clean "$o: after apply" "$f"
    qimg convert -O raw "$f" "$T/now.raw"
    expect "$o: active data is s1's" cmp "$T/now.raw" "$T/v1.raw"
    qio -c 'write -P 0x66 64k 64k' "$f" >/dev/null
    clean "$o: writes after apply" "$f"
    expect "$o: apply s2 by id" ic snapshot -a 2 "$f"
    qimg convert -O raw "$f" "$T/now.raw"
    expect "$o: active data is s2's" cmp "$T/now.raw" "$T/v2.raw"
    expect "$o: delete s1" ic snapshot -d s1 "$f"
    clean "$o: after delete" "$f"
    qimg snapshot -c q1 "$f"
    qio -c 'write -P 0x77 0 64k' "$f" >/dev/null
    expect "$o: apply qemu-img's snapshot" ic snapshot -a q1 "$f"
    qimg convert -O raw "$f" "$T/now.raw"
    expect "$o: data is qemu-img's snapshot's" cmp "$T/now.raw" "$T/v2.raw"
    expect "$o: delete qemu-img's snapshot" ic snapshot -d q1 "$f"
    expect "$o: delete s2" ic snapshot -d s2 "$f"
    clean "$o: after deleting all" "$f"
    expect_rc "$o: imgchain check clean" 0 ic check "$f"
done

# refcount_bits=1: no cluster can take a second reference
f="$T/r1.qcow2"
qimg create -q -f qcow2 -o refcount_bits=1 "$f" 4M
qio -c 'write -P 1 0 64k' "$f" >/dev/null
cp "$f" "$T/r1.before"
expect_out "refcount_bits=1: create refused with a clear error" "refcount_bits=1" ic snapshot -c s "$f"
expect "refcount_bits=1: image unchanged" cmp "$f" "$T/r1.before"

# refcount_bits=2 with packed compressed clusters: a host cluster at refcount
# 3 cannot take another reference (qemu-img leaks clusters here)
f="$T/r2.qcow2"
qimg create -q -f qcow2 -o cluster_size=16384,refcount_bits=2 "$f" 4M
qio -c 'write -c -P 0x22 0 64k' "$f" >/dev/null
cp "$f" "$T/r2.before"
expect_out "refcount at its maximum: create refused" "maximum for refcount_bits=2" ic snapshot -c s "$f"
expect "refcount at its maximum: image unchanged" cmp "$f" "$T/r2.before"
clean "refcount at its maximum: no leak" "$f"

# 1000 snapshots: the table stays in memory; check stays clean
f="$T/many.qcow2"
qimg create -q -f qcow2 "$f" 1M
qio -c 'write -P 1 0 64k' "$f" >/dev/null
i=0; ok=true
while [ $i -lt 200 ]; do ic snapshot -c "n$i" "$f" || ok=false; i=$((i + 1)); done
expect "200 snapshots created" $ok
clean "200 snapshots" "$f"
expect_out "qemu-img lists the 200th" '^200 +n199 ' qimg snapshot -l "$f"
finish
