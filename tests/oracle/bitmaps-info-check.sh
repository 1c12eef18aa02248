#!/bin/sh
# bitmaps-info-check.sh - persistent dirty bitmaps made by qemu-img
# (several per image, granularities 512 B to 2 MiB, enabled, disabled and
# in-use; internal snapshots; v3 with extended L2; 512 B to 2 MiB clusters)
# read by imgchain as qemu-img 7.2 reads them:
#  - info --output=json equals qemu-img's (parsed), and the human output is
#    qemu-img's line for line;
#  - check gives qemu-img check's exit code and counters on the clean
#    image and on images with one bitmap defect each (leaked or overlapping
#    data cluster, data past the end, a bad table entry of an in-use
#    bitmap, a broken directory, wrong counts, duplicate names, a table
#    of the wrong size): the same verdict everywhere;
#  - check -r all repairs what qemu-img's repairs (same counters) and keeps
#    every bitmap as it was.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
POKE="python3 $IC_TOP/tests/helpers/qcow2-bitmap-poke.py"
json_eq() { python3 "$IC_TOP/tests/oracle/cli_json_cmp.py" "$1" "$2"; }
# counters FILE: check JSON without the file name
counters() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("filename",None); print(json.dumps(d, sort_keys=True))' "$1" 2>/dev/null
}

# same_info TAG IMG: JSON and human info equal qemu-img's
same_info() {
    qimg info --output=json "$2" >q.json 2>/dev/null
    ic info --output=json "$2" >i.json 2>/dev/null
    if json_eq q.json i.json >diff.out 2>&1; then pass "$1: info JSON equals qemu-img's"
    else fail "$1: info JSON differs"; sed 's/^/    /' diff.out | head -n 12; fi
    qimg info "$2" >q.txt 2>/dev/null
    ic info "$2" >i.txt 2>/dev/null
    if diff q.txt i.txt >diff.out; then pass "$1: human info equals qemu-img's"
    else fail "$1: human info differs"; sed 's/^/    /' diff.out | head -n 20; fi
}

# same_check TAG IMG: exit code equal; counters equal when both completed
same_check() {
    qimg check --output=json "$2" >q.json 2>q.err; qrc=$?
    ic check --output=json "$2" >i.json 2>i.err; irc=$?
    if [ "$qrc" = "$irc" ]; then pass "$1: check exit $irc, as qemu-img"
    else fail "$1: check exit $irc, qemu-img $qrc"; sed 's/^/    /' q.err i.err | head -n 8; fi
    if [ "$qrc" != 1 ]; then
        if [ "$(counters q.json)" = "$(counters i.json)" ]; then pass "$1: check counters equal qemu-img's"
        else fail "$1: check counters differ"; echo "    qemu:     $(counters q.json)"; echo "    imgchain: $(counters i.json)"; fi
    elif grep -q '^imgchain: Check failed: .*[Bb]itmap' i.err; then
        pass "$1: the failed check names the bitmaps"
    else
        fail "$1: the failed check does not say why"; sed 's/^/    /' i.err | head -n 4
    fi
}

# same_repair TAG IMG: check -r all gives qemu-img's exit code and counters
# (on a copy), and every bitmap reads as it did before the repair, flags
# included; a repaired image is clean for qemu-img.  qemu-img 7.2's check
# -r drops the internal snapshots of an image holding bitmaps (its
# read-write open rewrites the header without them) and counts their
# clusters as leaks; where it did, the counters cannot agree, and imgchain
# must keep the snapshots.
same_repair() {
    cp "$2" rq.qcow2
    $POKE "$2" digest >dig.before
    qimg snapshot -l "$2" >snaps.before
    qimg check -r all --output=json rq.qcow2 >q.json 2>/dev/null; qrc=$?
    ic check -r all --output=json "$2" >i.json 2>i.err; irc=$?
    if [ "$qrc" = "$irc" ]; then pass "$1: check -r all exit $irc, as qemu-img"
    else fail "$1: check -r all exit $irc, qemu-img $qrc"; sed 's/^/    /' i.err | head -n 6; fi
    qimg snapshot -l rq.qcow2 >snaps.q
    if ! cmp -s snaps.before snaps.q; then
        echo "NOTE: $1: qemu-img check -r dropped the snapshots; counters not compared"
    elif [ "$(counters q.json)" = "$(counters i.json)" ]; then pass "$1: check -r all counters equal qemu-img's"
    else fail "$1: check -r all counters differ"; echo "    qemu:     $(counters q.json)"; echo "    imgchain: $(counters i.json)"; fi
    $POKE "$2" digest >dig.after
    expect "$1: check -r all kept every bitmap bit for bit" cmp dig.before dig.after
    qimg snapshot -l "$2" >snaps.after
    expect "$1: check -r all kept the internal snapshots" cmp snaps.before snaps.after
    if [ "$irc" = 0 ]; then expect "$1: qemu-img check clean after the repair" qimg check -q "$2"; fi
    rm -f rq.qcow2 snaps.before snaps.after snaps.q
}

# mk IMG OPTS [snap]: 32 MiB, six bitmaps: default granularity (enabled),
# 512 B and 4 KiB (enabled), 64 KiB (disabled), 1 MiB (enabled, in-use),
# 2 MiB (disabled); data written between the additions so every bitmap
# has data clusters and differs.
mk() {
    rm -f "$1"
    qimg create -q -f qcow2 -o "$2" "$1" 32M
    qio -c 'write -P 0x11 0 192k' "$1" >/dev/null
    [ "${3:-}" = snap ] && qimg snapshot -c s0 "$1"
    qimg bitmap --add "$1" bdef
    qio -c 'write -P 0x22 1M 300k' "$1" >/dev/null
    qimg bitmap --add -g 512 "$1" b512
    qimg bitmap --add -g 4k "$1" b4k
    qio -c 'write -P 0x33 5M 1M' -c 'write -z 9M 64k' "$1" >/dev/null
    qimg bitmap --add -g 64k "$1" b64k
    qio -c 'write -P 0x44 20M 2M' "$1" >/dev/null
    qimg bitmap --disable "$1" b64k
    qimg bitmap --add -g 1M "$1" b1m
    qimg bitmap --add -g 2M "$1" b2m
    qio -c 'discard 5M 128k' -c 'write -P 0x55 31M 1M' "$1" >/dev/null
    qimg bitmap --disable "$1" b2m
    [ "${3:-}" = snap ] && qimg snapshot -c s1 "$1"
    $POKE "$1" in-use b1m
}

for o in "cluster_size=65536" "cluster_size=512" "cluster_size=4096,refcount_bits=8" \
         "cluster_size=2M" "cluster_size=16384,extended_l2=on" \
         "cluster_size=65536,extended_l2=on,refcount_bits=2"; do
    for snap in "" snap; do
        tag="$o${snap:+ snap}"
        mk a.qcow2 "$o" "$snap"
        same_info "$tag" a.qcow2
        same_check "$tag: clean" a.qcow2
    done
done

# defects, on a 64 KiB-cluster image and a 512-byte one, with and without
# internal snapshots
for o in "cluster_size=65536" "cluster_size=512" "cluster_size=65536 snap" "cluster_size=512 snap"; do
    mk base.qcow2 $o
    for d in "leak-data bdef" "leak-data b1m" "data-over-l1 b4k" "data-past-eof b512" \
             "table-reserved b1m" "data-unaligned b1m" "table-reserved b512" \
             "table-unaligned b64k" "break-dir" "count 5" "count 7" "rename b4k b1m" "rename b512 bdef" \
             "leak"; do
        cp base.qcow2 d.qcow2
        if [ "$d" = leak ]; then
            python3 "$IC_TOP/tests/helpers/qcow2-poke.py" d.qcow2 leak
        else
            $POKE d.qcow2 $d
        fi
        same_check "$o: $d" d.qcow2
        if [ "$qrc" = 2 ] || [ "$qrc" = 3 ]; then same_repair "$o: $d" d.qcow2; fi
        # info as well, wherever qemu-img can open the image
        if qimg info d.qcow2 >/dev/null 2>&1; then same_info "$o: $d" d.qcow2
        else expect_rc "$o: $d: info fails as qemu-img's" 1 ic info d.qcow2; fi
    done
done

# a table of the wrong size for the disk (the virtual size poked down to
# 1 MiB): consistent bitmaps then make qemu refuse the image
mk r.qcow2 "cluster_size=512"
python3 - r.qcow2 <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b"); f.seek(24); f.write(struct.pack(">Q", 1 << 20))
PY
same_check "a bitmap table of the wrong size" r.qcow2
expect_rc "a bitmap table of the wrong size: info fails" 1 ic info r.qcow2

# an extension qemu ignores (autoclear bit 0 clear): no bitmaps listed, its
# clusters are leaks for both
mk ign.qcow2 "cluster_size=65536"
$POKE ign.qcow2 drop-autoclear
same_info "ignored extension" ign.qcow2
same_check "ignored extension" ign.qcow2

finish
