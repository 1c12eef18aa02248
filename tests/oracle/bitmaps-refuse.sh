#!/bin/sh
# bitmaps-refuse.sh - an image holding persistent dirty bitmaps (made by
# qemu-img: enabled, disabled, in-use; with internal snapshots; extended L2)
# is never written by imgchain: every write operation exits non-zero with
# one line naming the file and the bitmaps, the file stays byte for byte
# as it was, and qemu-img still lists every bitmap and checks clean.
# Read-only operations keep working.  check -r on a clean image reports it
# clean without writing; on a leaked one it repairs the refcounts and keeps
# every bitmap bit for bit.  A bitmaps extension
# without autoclear bit 0 (qemu ignores it) does not block writes, and
# imgchain then leaves the image as qemu-io would.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
POKE="python3 $IC_TOP/tests/helpers/qcow2-bitmap-poke.py"

# mk NAME OPTS [extra]: a 64 MiB image with bm0 (enabled, 1 MiB written
# after it was added), bm1 (disabled, granularity 512) and, with "inuse",
# bm2 flagged in-use; with "snap", an internal snapshot s0 made first.
mk() {
    rm -f "$1"
    qimg create -q -f qcow2 -o "$2" "$1" 64M
    qio -c 'write -P 0x11 0 256k' "$1" >/dev/null
    case " ${3:-} " in *" snap "*) qimg snapshot -c s0 "$1" ;; esac
    qimg bitmap --add "$1" bm0
    qio -c 'write -P 0x22 1M 1M' "$1" >/dev/null
    qimg bitmap --add -g 512 "$1" bm1
    qimg bitmap --disable "$1" bm1
    case " ${3:-} " in *" inuse "*)
        qimg bitmap --add -g 2M "$1" bm2
        $POKE "$1" in-use bm2 ;;
    esac
}

# refused DESC IMG NAMES CMD...: CMD exits 1 with the refusal naming IMG
# and NAMES, and IMG (and every *.qcow2 here) is byte for byte unchanged.
refused() {
    _d=$1; _img=$2; _names=$3; shift 3
    sha256sum ./*.qcow2 >"$T/before.sum"
    "$@" >"$T/.out" 2>&1; _rc=$?
    if [ "$_rc" = 1 ]; then pass "$_d: exit 1"; else fail "$_d: exit $_rc, wanted 1"; sed 's/^/    /' "$T/.out" | head -n 8; fi
    if grep -Eq "^imgchain: (.*: )?$_img: image has persistent dirty bitmaps \($_names\) that imgchain cannot keep up to date; refusing to write it$" "$T/.out"; then
        pass "$_d: the error names $_img and ($_names)"
    else
        fail "$_d: no refusal naming $_img ($_names)"; sed 's/^/    /' "$T/.out" | head -n 8
    fi
    if [ "$(wc -l <"$T/.out")" -le 2 ]; then pass "$_d: at most the finding and the error"; else fail "$_d: $(wc -l <"$T/.out") lines of output"; fi
    if sha256sum -c --quiet "$T/before.sum" >/dev/null 2>&1; then pass "$_d: no image changed"; else fail "$_d: an image changed"; sha256sum -c "$T/before.sum" | sed 's/^/    /'; fi
    _left=$(ls -A | grep -i journal || true)
    if [ -z "$_left" ]; then pass "$_d: no journal left behind"; else fail "$_d: left $_left"; fi
}

# intact IMG FLAGS...: qemu-img info lists each "name:flags" given (flags as
# a comma list, "" for none) and qemu-img check finds no error and no leak.
intact() {
    _img=$1; shift
    qimg info --output=json "$_img" >"$T/info.json" 2>&1
    for _bf in "$@"; do
        if python3 - "$T/info.json" "$_bf" <<'PY'
import json, sys
name, flags = sys.argv[2].split(":")
want = [f for f in flags.split(",") if f]
bms = json.load(open(sys.argv[1]))["format-specific"]["data"].get("bitmaps", [])
sys.exit(0 if any(b["name"] == name and b["flags"] == want for b in bms) else 1)
PY
        then pass "$_img: qemu-img info lists $_bf"; else fail "$_img: qemu-img info lacks $_bf"; head -c 2000 "$T/info.json"; fi
    done
    expect "$_img: qemu-img check clean" qimg check -q "$_img"
}

for v in "cluster_size=65536" "cluster_size=65536,extended_l2=on" "cluster_size=512" \
         "cluster_size=2M"; do
  for extra in "" "snap inuse"; do
    tag="$v${extra:+ $extra}"
    mk a.qcow2 "$v" "$extra"
    names="bm0, bm1"
    flags="bm0:auto bm1:"
    case " $extra " in *" inuse "*) names="bm0, bm1, bm2"; flags="$flags bm2:in-use,auto" ;; esac
    intact a.qcow2 $flags
    qimg convert -O raw a.qcow2 a.raw

    refused "$tag: io write" a.qcow2 "$names" ic io -c 'write -P 0x33 8M 64k' a.qcow2
    refused "$tag: io zero write" a.qcow2 "$names" ic io -c 'write -z 0 64k' a.qcow2
    refused "$tag: io discard" a.qcow2 "$names" ic io -c 'discard 0 64k' a.qcow2
    refused "$tag: snapshot -c" a.qcow2 "$names" ic snapshot -c s1 a.qcow2
    case " $extra " in *" snap "*)
        refused "$tag: snapshot -a" a.qcow2 "$names" ic snapshot -a s0 a.qcow2
        refused "$tag: snapshot -d" a.qcow2 "$names" ic snapshot -d s0 a.qcow2 ;;
    esac
    refused "$tag: rebase -u" a.qcow2 "$names" ic rebase -u -b base.qcow2 -F qcow2 a.qcow2
    qimg create -q -f qcow2 -b a.qcow2 -F qcow2 ov.qcow2
    qio -c 'write -P 0x44 4M 128k' ov.qcow2 >/dev/null
    refused "$tag: commit into the base" a.qcow2 "$names" ic commit ov.qcow2
    refused "$tag: commit -b into the base" a.qcow2 "$names" ic commit -b a.qcow2 ov.qcow2
    qimg create -q -f qcow2 other.qcow2 64M
    refused "$tag: safe rebase of the image" a.qcow2 "$names" ic rebase -b other.qcow2 -F qcow2 a.qcow2
    rm -f ov.qcow2 other.qcow2

    sha256sum a.qcow2 >"$T/a.sum"
    expect "$tag: check -r all on the clean image exits 0" ic check -r all a.qcow2
    expect_out "$tag: check -r all reports it clean" '^No errors were found on the image' ic check -r all a.qcow2
    expect "$tag: check -r leaks --output=json exits 0" ic check -r leaks --output=json a.qcow2
    expect "$tag: check -r wrote nothing" sha256sum -c --quiet "$T/a.sum"

    # reads still work and write nothing
    expect "$tag: info" ic info a.qcow2
    expect "$tag: check" ic check a.qcow2
    expect "$tag: map" ic map a.qcow2
    expect_out "$tag: io -r reads the data" 'read 1048576/1048576' ic io -r -c 'read -P 0x22 1M 1M' a.qcow2
    expect "$tag: compare with its raw copy" ic compare a.qcow2 a.raw
    expect "$tag: convert from it" ic convert -O qcow2 a.qcow2 b.qcow2
    rm -f b.qcow2
    expect "$tag: snapshot -l" ic snapshot -l a.qcow2
    expect "$tag: reads wrote nothing" sha256sum -c --quiet "$T/a.sum"
    intact a.qcow2 $flags

    # a damaged image with bitmaps: -r repairs the refcounts (nothing the
    # guest reads changes) and keeps every bitmap, flags and bits as they were
    $POKE a.qcow2 digest >"$T/bm.before"
    for r in leaks all; do
        cp a.qcow2 leak.qcow2
        python3 "$IC_TOP/tests/helpers/qcow2-poke.py" leak.qcow2 leak
        expect_rc "$tag: check of a leaked image exits 3" 3 ic check leak.qcow2
        expect "$tag: check -r $r repairs the leak" ic check -r $r leak.qcow2
        intact leak.qcow2 $flags
        $POKE leak.qcow2 digest >"$T/bm.after"
        expect "$tag: check -r $r kept every bitmap bit for bit" cmp "$T/bm.before" "$T/bm.after"
        expect "$tag: check -r $r kept the guest data" ic compare leak.qcow2 a.raw
    done
    rm -f leak.qcow2 a.raw
  done
done

# The top of a commit holding bitmaps: refused before the base is touched.
mk base.qcow2 "cluster_size=65536"
qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qimg bitmap --add top.qcow2 tb
qio -c 'write -P 0x55 0 64k' top.qcow2 >/dev/null
refused "commit of a top holding bitmaps" top.qcow2 "tb" ic commit top.qcow2
intact top.qcow2 "tb:auto"
rm -f base.qcow2 top.qcow2

# Many bitmaps: the message stays one line and counts the names it omits.
qimg create -q -f qcow2 many.qcow2 64M
i=0
while [ $i -lt 40 ]; do qimg bitmap --add many.qcow2 "bitmap-with-a-long-name-$i"; i=$((i + 1)); done
sha256sum many.qcow2 >"$T/m.sum"
expect_rc "40 bitmaps: io write exits 1" 1 ic io -c 'write 0 512' many.qcow2
expect_out "40 bitmaps: the message counts the rest" ', and [0-9]+ more\) that imgchain' ic io -c 'write 0 512' many.qcow2
expect "40 bitmaps: nothing written" sha256sum -c --quiet "$T/m.sum"
rm -f many.qcow2

# A directory qemu refuses: still refused for writing, readable read-only.
mk bad.qcow2 "cluster_size=65536"
$POKE bad.qcow2 break-dir
sha256sum bad.qcow2 >"$T/b.sum"
expect_rc "broken directory: io write exits 1" 1 ic io -c 'write 0 512' bad.qcow2
expect_out "broken directory: refusal says the directory is unreadable" \
    "^imgchain: bad.qcow2: image has 2 persistent dirty bitmap\(s\) \(bitmap directory unreadable: Bitmap 'bm0' doesn't satisfy the constraints\)" \
    ic io -c 'write 0 512' bad.qcow2
expect "broken directory: io -r still reads" ic io -r -c 'read 0 512' bad.qcow2
expect "broken directory: nothing written" sha256sum -c --quiet "$T/b.sum"
rm -f bad.qcow2

# An extension without autoclear bit 0: qemu ignores it, so it blocks
# nothing; imgchain's write leaves what qemu-io's leaves (the extension
# dropped, its clusters leaked).
mk ign.qcow2 "cluster_size=65536"
$POKE ign.qcow2 drop-autoclear
cp ign.qcow2 ign-q.qcow2
qimg check ign.qcow2 >q.out 2>&1; qrc=$?
expect_rc "ignored extension: imgchain check counts its clusters as leaks, as qemu-img (rc $qrc)" "$qrc" ic check ign.qcow2
expect_out "ignored extension: the same leak count as qemu-img" "^$(grep -o '^[0-9]* leaked clusters' q.out)" ic check ign.qcow2
expect "ignored extension: imgchain io write" ic io -c 'write -P 0x66 8M 64k' ign.qcow2
qio -c 'write -P 0x66 8M 64k' ign-q.qcow2 >/dev/null 2>&1
qimg check --output=json ign.qcow2 >ic.json 2>/dev/null
qimg check --output=json ign-q.qcow2 >q.json 2>/dev/null
expect "ignored extension: qemu-img check gives the same leaks after imgchain and qemu-io" \
    python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); k=("leaks","corruptions","check-errors"); sys.exit(0 if [a.get(x) for x in k]==[b.get(x) for x in k] and a.get("leaks") else 1)' ic.json q.json
expect_out "ignored extension: qemu-img info lists no bitmaps any more" '"corrupt": false' qimg info --output=json ign.qcow2
if qimg info --output=json ign.qcow2 | grep -q '"bitmaps"'; then fail "ignored extension: bitmaps listed"; else pass "ignored extension: not listed"; fi
expect "ignored extension: check -r leaks frees the clusters" ic check -r leaks ign.qcow2
expect "ignored extension: qemu-img check clean after the repair" qimg check -q ign.qcow2
rm -f ign.qcow2 ign-q.qcow2 ic.json q.json q.out

finish
