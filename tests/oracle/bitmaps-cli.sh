#!/bin/sh
# bitmaps-cli.sh - `imgchain bitmap` against `qemu-img bitmap`: the same
# actions on two copies (add with default and explicit granularities,
# disabled adds, clear, enable, disable, merge from the same image and
# from another file, remove, several actions in one command) leave the
# same bitmaps: qemu-img info's list equal, every consistent bitmap's dirty
# extents equal (qemu-nbd, x-dirty-bitmap), qemu-img check clean.  Errors
# as qemu-img's (existing name, missing bitmap, bad granularity, in-use
# bitmap, v2 image), exit 1, nothing changed.  --dump prints exactly the
# extents qemu exports.  convert --bitmaps copies them as qemu-img's does.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
POKE="python3 $IC_TOP/tests/helpers/qcow2-bitmap-poke.py"
DIRTY="sh $IC_TOP/tests/helpers/qemu-dirty-extents.sh"

# bitmaps IMG: "name flags granularity" per bitmap, from qemu-img info
bitmaps() {
    qimg info --output=json "$1" | python3 -c '
import json, sys
for b in json.load(sys.stdin)["format-specific"]["data"].get("bitmaps", []):
    print(b["name"], ",".join(b["flags"]) or "-", b["granularity"])'
}

# same TAG: i.qcow2 and q.qcow2 hold the same bitmaps with the same bits
same() {
    bitmaps i.qcow2 >i.list; bitmaps q.qcow2 >q.list
    if cmp -s i.list q.list; then pass "$1: the same bitmaps as qemu-img's"
    else fail "$1: bitmaps differ from qemu-img's"; diff q.list i.list | sed 's/^/    /'; fi
    while read -r n f g; do
        case $f in *in-use*) continue ;; esac
        $DIRTY i.qcow2 "$n" >i.ext; $DIRTY q.qcow2 "$n" >q.ext
        if cmp -s i.ext q.ext; then pass "$1: $n has qemu's bits"
        else fail "$1: $n differs"; diff q.ext i.ext | head -n 5 | sed 's/^/    /'; fi
    done <q.list
    expect "$1: qemu-img check clean" qimg check -q i.qcow2
}

# both TAG ARGS...: imgchain bitmap ARGS on i.qcow2, qemu-img bitmap on q.qcow2
both() {
    _t=$1; shift
    expect "$_t: imgchain bitmap $*" ic bitmap "$@" i.qcow2 "$BM"
    qimg bitmap "$@" q.qcow2 "$BM"
    same "$_t"
}

for o in "cluster_size=65536" "cluster_size=512" "cluster_size=2M" \
         "cluster_size=16384,extended_l2=on"; do
    rm -f i.qcow2 q.qcow2 src.qcow2
    qimg create -q -f qcow2 -o "$o" i.qcow2 24M
    qio -c 'write -P 1 0 1M' i.qcow2 >/dev/null
    cp i.qcow2 q.qcow2
    BM=dflt both "$o: add" --add
    BM=g512 both "$o: add -g 512" --add -g 512
    BM=off both "$o: add --disable" --add -g 64k --disable
    BM=big both "$o: add -g 2M" --add -g 2M
    for x in i q; do qio -c 'write -P 2 3M 100k' -c 'write -z 10M 5000' -c 'discard 0 64k' $x.qcow2 >/dev/null; done
    same "$o: after writes"
    BM=off both "$o: enable" --enable
    for x in i q; do qio -c 'write -P 3 20M 1M' $x.qcow2 >/dev/null; done
    BM=off both "$o: disable" --disable
    BM=g512 both "$o: merge from the same image" --merge big
    qimg create -q -f qcow2 src.qcow2 24M
    qimg bitmap --add -g 4k src.qcow2 s
    qio -c 'write 7M 12345' src.qcow2 >/dev/null
    BM=off both "$o: merge from another file" --merge s -b src.qcow2 -F qcow2
    BM=big both "$o: clear" --clear
    BM=new both "$o: several actions in one command" --add --disable --merge g512
    BM=dflt both "$o: remove" --remove
    BM=g512 both "$o: remove" --remove
    for n in $(bitmaps q.qcow2 | cut -d' ' -f1); do
        ic bitmap --dump --output=json i.qcow2 "$n" | python3 -c '
import json, sys
for e in json.load(sys.stdin): print(e["start"], e["length"])' >d.ext
        $DIRTY q.qcow2 "$n" >q.ext
        expect "$o: --dump $n prints qemu's extents" cmp d.ext q.ext
    done
    for n in $(bitmaps q.qcow2 | cut -d' ' -f1); do
        BM=$n both "$o: remove the rest ($n)" --remove
    done
    if qimg info --output=json i.qcow2 | grep -q '"bitmaps"'; then fail "$o: bitmaps left"; else pass "$o: no bitmaps left"; fi
    expect "$o: the extension and the autoclear bit are gone" python3 -c '
import struct, sys
f = open(sys.argv[1], "rb"); h = f.read(65536)
sys.exit(1 if struct.unpack(">Q", h[88:96])[0] & 1 or struct.pack(">I", 0x23852875) in h[:4096] else 0)' i.qcow2
done

# convert --bitmaps against qemu-img convert --bitmaps: the top image's
# bitmaps (enabled, disabled, 512 B to 2 MiB) copied with their flags and
# bits, plain and compressed, from a chain; in-use ones refused before the
# target exists, or skipped with --skip-broken-bitmaps; a raw target refused
rm -f cb.qcow2 cbase.qcow2
qimg create -q -f qcow2 cbase.qcow2 24M
qio -c 'write -P 7 0 4M' cbase.qcow2 >/dev/null
qimg create -q -f qcow2 -b cbase.qcow2 -F qcow2 cb.qcow2
qimg bitmap --add cb.qcow2 on
qimg bitmap --add -g 512 cb.qcow2 fine
qio -c 'write -P 8 1M 100k' -c 'write -z 9M 4k' cb.qcow2 >/dev/null
qimg bitmap --add -g 2M cb.qcow2 big
qimg bitmap --disable cb.qcow2 fine
qio -c 'write -P 9 20M 3' cb.qcow2 >/dev/null
for c in "" "-c"; do
    rm -f i.qcow2 q.qcow2
    expect "convert --bitmaps $c" ic convert --bitmaps $c -O qcow2 cb.qcow2 i.qcow2
    qimg convert --bitmaps $c -O qcow2 cb.qcow2 q.qcow2
    same "convert --bitmaps $c"
    expect "convert --bitmaps $c: the data is the chain's" qimg compare -q cb.qcow2 i.qcow2
done
$POKE cb.qcow2 in-use on
rm -f i.qcow2 q.qcow2
expect_rc "convert --bitmaps with an in-use bitmap exits 1" 1 ic convert --bitmaps -O qcow2 cb.qcow2 i.qcow2
expect_out "convert --bitmaps with an in-use bitmap says why" "Cannot copy inconsistent bitmap 'on'" ic convert --bitmaps -O qcow2 cb.qcow2 i.qcow2
if [ -e i.qcow2 ]; then fail "the refused convert created its target"; else pass "the refused convert created no target"; fi
expect_out "--skip-broken-bitmaps skips it with a warning" "warning: Skipping inconsistent bitmap 'on'" \
    ic convert --bitmaps --skip-broken-bitmaps -O qcow2 cb.qcow2 i.qcow2
qimg convert --bitmaps --skip-broken-bitmaps -O qcow2 cb.qcow2 q.qcow2 2>/dev/null
same "convert --bitmaps --skip-broken-bitmaps"
expect_out "a raw target cannot hold bitmaps" "Format driver 'raw' does not support bitmaps" ic convert --bitmaps -O raw cb.qcow2 x.raw
expect_rc "--skip-broken-bitmaps needs --bitmaps" 64 ic convert --skip-broken-bitmaps -O qcow2 cb.qcow2 y.qcow2
rm -f i.qcow2 q.qcow2 cb.qcow2 cbase.qcow2 x.raw y.qcow2

# errors, each leaving the image as it was
rm -f e.qcow2
qimg create -q -f qcow2 e.qcow2 16M
qimg bitmap --add e.qcow2 x
qimg bitmap --add e.qcow2 used
$POKE e.qcow2 in-use used
sha256sum e.qcow2 >e.sum
err() { # err DESC PATTERN ARGS...
    _d=$1; _p=$2; shift 2
    expect_rc "$_d: exit 1" 1 ic bitmap "$@"
    expect_out "$_d: says why" "$_p" ic bitmap "$@"
    expect "$_d: nothing changed" sha256sum -c --quiet e.sum
}
err "add of an existing name" "Operation add on bitmap x failed: .*Bitmap already exists: x" --add e.qcow2 x
err "remove of a missing bitmap" "Operation remove on bitmap y failed: .*Dirty bitmap 'y' not found" --remove e.qcow2 y
err "granularity 256" "Granularity must be power of 2 and at least 512" --add -g 256 e.qcow2 y
err "granularity 3000" "Granularity must be power of 2 and at least 512" --add -g 3000 e.qcow2 y
err "clear of an in-use bitmap" "Bitmap 'used' is inconsistent and cannot be used" --clear e.qcow2 used
err "merge from a missing bitmap" "Dirty bitmap 'nope' not found" --merge nope e.qcow2 x
err "merge from an in-use bitmap" "Bitmap 'used' is inconsistent and cannot be used" --merge used e.qcow2 x
err "dump of an in-use bitmap" "Bitmap 'used' is inconsistent and cannot be used" --dump e.qcow2 used
expect_rc "no action is a usage error" 64 ic bitmap e.qcow2 x
expect_rc "-g without --add is a usage error" 64 ic bitmap --clear -g 4k e.qcow2 x
expect_rc "-b without --merge is a usage error" 64 ic bitmap --clear -b e.qcow2 e.qcow2 x
expect "the in-use bitmap can be removed" ic bitmap --remove e.qcow2 used
expect "qemu-img check clean after removing it" qimg check -q e.qcow2
qimg create -q -f qcow2 -o compat=0.10 v2.qcow2 16M
sha256sum v2.qcow2 >v2.sum
expect_out "a v2 image cannot store bitmaps" "Cannot store dirty bitmaps in qcow2 v2 files" ic bitmap --add v2.qcow2 x
expect "the v2 image is unchanged" sha256sum -c --quiet v2.sum
qimg create -q -f raw r.raw 1M
expect_out "a raw image has no bitmaps" "format raw cannot store persistent dirty bitmaps" ic bitmap -f raw --add r.raw x

finish
