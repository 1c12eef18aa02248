#!/bin/sh
# bitmaps-maintain.sh - every imgchain write operation keeps the persistent
# dirty bitmaps of an image made by qemu-img (enabled at 512 B, 64 KiB and
# 2 MiB granularity, disabled, in-use; internal snapshots; 512 B to 2 MiB
# clusters, extended L2) true, judged against qemu doing the same thing to
# a copy:
#  - the dirty extents (read through qemu-nbd -B and x-dirty-bitmap,
#    tests/helpers/qemu-dirty-extents.sh) of every enabled bitmap contain
#    qemu's (io writes, zero writes, discards, compressed writes: equal);
#    disabled bitmaps read exactly as before; in-use ones keep their flag;
#  - imgchain bitmap --dump prints the extents qemu exports;
#  - qemu-img info lists every bitmap with the flags it had; qemu-img check
#    is clean.
# Bitmaps qemu cannot load still make every write refuse, with nothing
# written; read-only commands keep working; a resize is refused as qemu
# refuses it.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
POKE="python3 $IC_TOP/tests/helpers/qcow2-bitmap-poke.py"
DIRTY="sh $IC_TOP/tests/helpers/qemu-dirty-extents.sh"
ENABLED="fine def coarse"

# mk NAME OPTS: 32 MiB with data, snapshot s0, more data, then the bitmaps
# (each after some writes, so they differ) and an in-use one.
mk() {
    rm -f "$1"
    qimg create -q -f qcow2 -o "$2" "$1" 32M
    qio -c 'write -P 0x11 0 1M' -c 'write -P 0x12 9M 300k' "$1" >/dev/null
    qimg snapshot -c s0 "$1"
    qio -c 'write -P 0x13 512k 1M' "$1" >/dev/null
    qimg bitmap --add -g 512 "$1" fine
    qio -c 'write -P 0x14 3M 5000' "$1" >/dev/null
    qimg bitmap --add "$1" def
    qimg bitmap --add -g 2M "$1" coarse
    qio -c 'write -P 0x15 20M 70000' "$1" >/dev/null
    qimg bitmap --add "$1" off
    qio -c 'write -P 0x16 30M 1M' "$1" >/dev/null
    qimg bitmap --disable "$1" off
    qimg bitmap --add "$1" used
    $POKE "$1" in-use used
}

FLAGS="fine:auto def:auto coarse:auto off: used:in-use,auto"

# flags_ok IMG: qemu-img info lists every bitmap with the flags of $FLAGS
flags_ok() {
    qimg info --output=json "$1" 2>/dev/null | python3 -c '
import json, sys
want = [tuple(x.split(":")) for x in sys.argv[1].split()]
bms = json.load(sys.stdin)["format-specific"]["data"].get("bitmaps", [])
got = [(b["name"], ",".join(b["flags"])) for b in bms]
sys.exit(0 if got == want else 1)' "$FLAGS"
}

# contains OURS QEMU: every byte of QEMU's extents is in OURS's
contains() {
    python3 - "$1" "$2" <<'PY'
import sys
def load(p):
    return [tuple(map(int, l.split())) for l in open(p) if l.strip()]
ours, theirs = load(sys.argv[1]), load(sys.argv[2])
for s, l in theirs:
    e = s + l
    if not any(a <= s and e <= a + b for a, b in ours):
        # may span several adjacent extents of ours: walk them
        pos = s
        for a, b in sorted(ours):
            if a <= pos < a + b:
                pos = a + b
            if pos >= e:
                break
        if pos < e:
            print("qemu marks %d+%d, imgchain does not" % (s, l))
            sys.exit(1)
PY
}

# judge TAG MODE: i.qcow2 (imgchain did it) against q.qcow2 (qemu did it),
# MODE "equal" or "contains" for the enabled bitmaps; off must equal its
# state in base.off.
judge() {
    expect "$1: qemu-img check clean" qimg check -q i.qcow2
    if flags_ok i.qcow2; then pass "$1: every bitmap listed with its flags"
    else fail "$1: bitmaps or flags changed"; qimg info i.qcow2 | sed -n '/bitmaps:/,/refcount/p' | head -n 30; fi
    for b in $ENABLED; do
        $DIRTY i.qcow2 $b >i.ext; $DIRTY q.qcow2 $b >q.ext
        if [ "$2" = equal ]; then
            if cmp -s i.ext q.ext; then pass "$1: $b marks what qemu marks"
            else fail "$1: $b differs from qemu's"; diff q.ext i.ext | head -n 6 | sed 's/^/    /'; fi
        elif contains i.ext q.ext >c.out; then pass "$1: $b holds every extent qemu marks"
        else fail "$1: $b misses some of qemu's"; sed 's/^/    /' c.out; fi
        ic bitmap --dump --output=json i.qcow2 $b | python3 -c '
import json, sys
for e in json.load(sys.stdin): print(e["start"], e["length"])' >d.ext
        expect "$1: bitmap --dump $b prints what qemu exports" cmp d.ext i.ext
    done
    $DIRTY i.qcow2 off >i.ext
    expect "$1: the disabled bitmap is as it was" cmp i.ext base.off
}

for spec in "65536 cluster_size=65536" "512 cluster_size=512" "2097152 cluster_size=2M" \
            "16384 cluster_size=16384,extended_l2=on"; do
    cs=${spec%% *}; o=${spec#* }
    mk base.qcow2 "$o"
    $DIRTY base.qcow2 off >base.off
    qimg convert -l s0 -O raw base.qcow2 s0.raw

    cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
    set -- -c 'write -P 0x21 8M 64k' -c 'write -z 11M 5000' -c 'discard 12M 256k' \
           -c 'write -P 0x22 1000001 3' -c "write -c -P 0x23 16M $cs" -c 'write -P 0x24 33554431 1'
    expect "$o: io writes" ic io "$@" i.qcow2
    qio "$@" q.qcow2 >/dev/null
    judge "$o: io" equal

    for s in "-c s1" "-d s0"; do
        cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
        expect "$o: snapshot $s" ic snapshot $s i.qcow2
        qimg snapshot $s q.qcow2
        judge "$o: snapshot $s" equal
    done
    # qemu-img 7.2 refuses to apply a snapshot under enabled bitmaps;
    # imgchain applies it and marks the whole disk dirty
    cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
    expect "$o: snapshot -a" ic snapshot -a s0 i.qcow2
    judge "$o: snapshot -a" contains
    for b in $ENABLED; do
        expect_out "$o: snapshot -a: $b is dirty everywhere" '^0 33554432$' $DIRTY i.qcow2 $b
    done
    expect "$o: snapshot -a: the data is the snapshot's" ic compare i.qcow2 s0.raw

    cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
    for x in i q; do
        qimg create -q -f qcow2 -b $x.qcow2 -F qcow2 $x-ov.qcow2
        qio -c 'write -P 0x31 100k 700k' -c 'write -z 4M 64k' -c 'write -P 0x32 25M 1M' $x-ov.qcow2 >/dev/null
    done
    expect "$o: commit into the image" ic commit i-ov.qcow2
    qimg commit -q q-ov.qcow2
    judge "$o: commit" contains
    rm -f i-ov.qcow2 q-ov.qcow2

    cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
    qimg create -q -f qcow2 other.qcow2 32M
    qio -c 'write -P 0x41 0 2M' -c 'write -P 0x42 24M 1M' other.qcow2 >/dev/null
    expect "$o: rebase onto another backing file" ic rebase -b other.qcow2 -F qcow2 i.qcow2
    qimg rebase -q -b other.qcow2 -F qcow2 q.qcow2
    judge "$o: rebase" contains
    cp base.qcow2 i.qcow2; cp base.qcow2 q.qcow2
    expect "$o: rebase -u" ic rebase -u -b other.qcow2 -F qcow2 i.qcow2
    qimg rebase -q -u -b other.qcow2 -F qcow2 q.qcow2
    judge "$o: rebase -u" equal
    rm -f other.qcow2
done

# the top of a commit holding bitmaps: emptied after the commit, so every
# enabled bitmap is marked wholly dirty (over-marking is safe); qemu-img
# check is clean and the flags are as they were
mk b2.qcow2 "cluster_size=65536"
qimg create -q -f qcow2 -b b2.qcow2 -F qcow2 top.qcow2
qimg bitmap --add top.qcow2 tb
qio -c 'write -P 0x55 0 64k' top.qcow2 >/dev/null
expect "commit of a top holding bitmaps" ic commit top.qcow2
expect_out "the emptied top's bitmap is dirty everywhere" '^0 33554432$' $DIRTY top.qcow2 tb
expect "the top checks clean" qimg check -q top.qcow2
rm -f b2.qcow2 top.qcow2

# a base smaller than the top would have to grow: qemu refuses to resize
# an image with bitmaps, and so does imgchain, before writing anything
mk small.qcow2 "cluster_size=65536"
qimg create -q -f qcow2 -b small.qcow2 -F qcow2 big.qcow2 64M
qio -c 'write 40M 64k' big.qcow2 >/dev/null
sha256sum small.qcow2 big.qcow2 >g.sum
expect_rc "commit into a smaller base holding bitmaps exits 1" 1 ic commit big.qcow2
expect_out "the error says why" "Can't resize an image which has bitmaps" ic commit big.qcow2
expect "nothing was written" sha256sum -c --quiet g.sum
rm -f small.qcow2 big.qcow2 g.sum

# bitmaps qemu cannot load: every write refused before anything is written
# (qemu refuses to open such an image at all); reads keep working
mk bad.qcow2 "cluster_size=65536"
$POKE bad.qcow2 break-dir
sha256sum bad.qcow2 >b.sum
for c in "io -c write\ 0\ 512" "snapshot -c s9" "snapshot -a s0" "rebase -u -b x.qcow2 -F qcow2"; do
    eval "set -- $c"
    expect_rc "unloadable bitmaps: $c exits 1" 1 ic "$@" bad.qcow2
    expect_out "unloadable bitmaps: $c says why" \
        "^imgchain: (.*: )?bad.qcow2: cannot load the persistent dirty bitmaps, so the image cannot be written: Bitmap 'fine' doesn't satisfy the constraints$" \
        ic "$@" bad.qcow2
done
expect "unloadable bitmaps: io -r still reads" ic io -r -c 'read -P 0x16 30M 1M' bad.qcow2
expect "unloadable bitmaps: nothing written" sha256sum -c --quiet b.sum
rm -f bad.qcow2 b.sum

# check -r on an image holding bitmaps: a clean one is not written, a
# leaked one is repaired and every bitmap kept bit for bit
mk c.qcow2 "cluster_size=65536"
sha256sum c.qcow2 >c.sum
expect "check -r all on the clean image" ic check -r all c.qcow2
expect "check -r all wrote nothing" sha256sum -c --quiet c.sum
$POKE c.qcow2 digest >dig.before
python3 "$IC_TOP/tests/helpers/qcow2-poke.py" c.qcow2 leak
expect_rc "a leaked image: check exits 3" 3 ic check c.qcow2
expect "check -r leaks repairs it" ic check -r leaks c.qcow2
$POKE c.qcow2 digest >dig.after
expect "check -r kept every bitmap bit for bit" cmp dig.before dig.after
cp c.qcow2 i.qcow2
if flags_ok i.qcow2; then pass "check -r kept the flags"; else fail "check -r changed the flags"; fi
expect "qemu-img check clean after the repair" qimg check -q c.qcow2
rm -f c.qcow2 c.sum i.qcow2

# An extension without autoclear bit 0: qemu ignores it; imgchain's write
# leaves what qemu-io's leaves (the extension dropped, its clusters leaked).
mk ign.qcow2 "cluster_size=65536"
$POKE ign.qcow2 drop-autoclear
cp ign.qcow2 ign-q.qcow2
expect "ignored extension: imgchain io write" ic io -c 'write -P 0x66 8M 64k' ign.qcow2
qio -c 'write -P 0x66 8M 64k' ign-q.qcow2 >/dev/null 2>&1
qimg check --output=json ign.qcow2 >ic.json 2>/dev/null
qimg check --output=json ign-q.qcow2 >q.json 2>/dev/null
expect "ignored extension: qemu-img check gives the same leaks after imgchain and qemu-io" \
    python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); k=("leaks","corruptions","check-errors"); sys.exit(0 if [a.get(x) for x in k]==[b.get(x) for x in k] and a.get("leaks") else 1)' ic.json q.json
if qimg info --output=json ign.qcow2 | grep -q '"bitmaps"'; then fail "ignored extension: bitmaps listed"; else pass "ignored extension: no bitmaps listed any more"; fi
expect "ignored extension: check -r leaks frees the clusters" ic check -r leaks ign.qcow2
expect "ignored extension: qemu-img check clean after the repair" qimg check -q ign.qcow2

finish
