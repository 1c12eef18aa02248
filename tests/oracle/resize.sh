#!/bin/sh
# resize.sh - imgchain resize against qemu-img resize 7.2 over qcow2 v2, v3
# (plain and extended L2), QED and raw: each case runs both tools on
# identical copies and compares exit codes, stdout, qemu-img's error texts
# (which imgchain must print after "imgchain: FILE: "), the virtual size,
# the guest content (qemu-img compare), the allocation map (offsets aside)
# and qemu-img check of imgchain's result.
. "$(dirname "$0")/../lib.sh"

# setup FMT CREATE_OPTS SIZE [QEMU_IO_CMDS...]: $T/q/img and $T/i/img
setup() {
    _f=$1; _o=$2; _s=$3; shift 3
    rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
    if [ -n "$_o" ]; then qimg create -q -f "$_f" -o "$_o" "$T/q/img" "$_s"
    else qimg create -q -f "$_f" "$T/q/img" "$_s"; fi
    for _c in "$@"; do qio -f "$_f" -c "$_c" "$T/q/img" >/dev/null || echo "setup: $_c failed"; done
    FMT=$_f
    # both copies made the same way (cp may turn written zeroes into holes)
    mv "$T/q/img" "$T/orig"; cp "$T/orig" "$T/q/img"; cp "$T/orig" "$T/i/img"
}

# map of FILE without host offsets, adjacent runs with equal flags merged.
# A data run qemu-img also calls zero only says the host file has a hole
# there (it depends on the host layout, not on the image), so it counts as
# plain data.
flatmap() {
    qimg map -f "$FMT" --output=json "$1" | sed 's/, "offset": [0-9]*//' |
        sed 's/"zero": true, "data": true/"zero": false, "data": true/' |
        sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), \(.*\)}.*/\1 \2 \3/p' |
        awk '{ s = $1; l = $2; $1 = ""; $2 = ""; f = $0
               if (n && f == pf && ps + pl == s) { pl += l; next }
               if (n) print ps, pl, pf; ps = s; pl = l; pf = f; n = 1 }
             END { if (n) print ps, pl, pf }'
}

vsize() { qimg info -f "$FMT" --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

# same_resize DESC ARGS...: both tools on their copy (the last-but-one or
# last argument names "img"); everything listed at the top must agree.
same_resize() {
    _d=$1; shift
    cp "$T/i/img" "$T/i.before"
    (cd "$T/q" && qimg resize "$@") >"$T/q.out" 2>"$T/q.err"; _qrc=$?
    (cd "$T/i" && ic resize "$@") >"$T/i.out" 2>"$T/i.err"; _irc=$?
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    [ "$_irc" = 0 ] || cmp -s "$T/i.before" "$T/i/img" || _why="$_why the refusal changed the file;"
    cmp -s "$T/q.out" "$T/i.out" || _why="$_why stdout differs;"
    sed -n 's/^qemu-img: //p' "$T/q.err" >"$T/q.msgs"
    while IFS= read -r _m; do
        grep -qF -- "$_m" "$T/i.err" || _why="$_why missing message '$_m';"
    done <"$T/q.msgs"
    [ "$(vsize "$T/q/img")" = "$(vsize "$T/i/img")" ] || _why="$_why virtual size differs;"
    qimg compare -q -f "$FMT" -F "$FMT" "$T/q/img" "$T/i/img" || _why="$_why content differs;"
    [ "$(flatmap "$T/q/img")" = "$(flatmap "$T/i/img")" ] || _why="$_why map differs;"
    case $FMT in raw) ;; *) qimg check -q -f "$FMT" "$T/i/img" || _why="$_why check not clean;" ;; esac
    if [ -z "$_why" ]; then
        pass "$_d (exit $_irc)"
    else
        fail "$_d:$_why"
        sed 's/^/    qemu-img: /' "$T/q.out" "$T/q.err"; sed 's/^/    imgchain: /' "$T/i.out" "$T/i.err"
        flatmap "$T/q/img" | sed 's/^/    qemu map: /'; flatmap "$T/i/img" | sed 's/^/    ic map:   /'
    fi
}

DATA1='write -P 1 0 1000k'
DATA2='write -P 2 3M 64k'
DATA3='write -z 2M 128k'

for v in "qcow2 compat=0.10" "qcow2 compat=1.1" "qcow2 compat=1.1,extended_l2=on" \
         "qcow2 cluster_size=512" "qcow2 compat=0.10,cluster_size=4096" "qcow2 cluster_size=4096,refcount_bits=1" \
         "qed " "raw "; do
    set -- $v; f=$1; o=${2:-}
    tag="$f${o:+ $o}"
    z=$DATA3; [ "$f" = raw ] && z='write -P 0 2M 128k'
    setup "$f" "$o" 4M "$DATA1" "$DATA2" "$z"
    same_resize "$tag: grow to an absolute size" -f "$f" img 64M
    same_resize "$tag: grow by +SIZE" -f "$f" img +3M
    same_resize "$tag: the same size again" -f "$f" img 67M
    same_resize "$tag: a smaller size without --shrink is refused" -f "$f" img 2M
    same_resize "$tag: -SIZE without --shrink is refused (no -- needed)" -f "$f" img -1M
    same_resize "$tag: a size that ends up negative is refused" -f "$f" img -- -100M
    same_resize "$tag: size 0 is refused" --shrink -f "$f" img 0
    same_resize "$tag: preallocation while shrinking is refused" --shrink --preallocation=full -f "$f" img 1M
    same_resize "$tag: preallocation at the same size is refused" --preallocation=falloc -f "$f" img 67M
    same_resize "$tag: -q prints nothing" -q -f "$f" img +512
    same_resize "$tag: --shrink to a smaller size" --shrink -f "$f" img 3M
    same_resize "$tag: --shrink by -SIZE, through the data" --shrink -f "$f" img -- -1M
    same_resize "$tag: a size not a multiple of 512" -f "$f" img 3000001
    same_resize "$tag: grow again after the shrink" -f "$f" img 8M
    for m in metadata falloc full; do
        b0=$(stat -c %b "$T/i/img")
        same_resize "$tag: --preallocation=$m" --preallocation=$m -f "$f" img +4M
        b1=$(stat -c %b "$T/i/img")
        case $f/$m in qed/*|*/metadata) ;; *)
            expect "$tag: --preallocation=$m allocates the new 4 MiB on the host" \
                test $(( (b1 - b0) * 512 )) -ge 4194304 ;;
        esac
    done
done

# qcow2 with a small cluster: the L1 table and the refcount table both grow
setup qcow2 cluster_size=512 1M "$DATA1"
same_resize "512-byte clusters: grow 1M -> 64M (the L1 table grows 64-fold)" -f qcow2 img 64M
same_resize "512-byte clusters: grow to 2G (an L1 table longer than a refblock's range)" -f qcow2 img 2G
same_resize "512-byte clusters: metadata preallocation of 48M (the refcount table grows)" \
    --preallocation=metadata -f qcow2 img +48M
expect "512-byte clusters: the grown image still reads its data" \
    qio -f qcow2 -c 'read -P 1 0 1000k' "$T/i/img"

# overlays: the backing file holds data past the overlay's old size
mkover() { # FMT OPTS
    rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
    qimg create -q -f raw "$T/q/base.raw" 8M
    qio -f raw -c 'write -P 7 0 8M' "$T/q/base.raw" >/dev/null
    if [ -n "$2" ]; then qimg create -q -f "$1" -o "$2" -b base.raw -F raw "$T/q/img" 1M
    else qimg create -q -f "$1" -b base.raw -F raw "$T/q/img" 1M; fi
    qio -f "$1" -c 'write -P 3 0 64k' "$T/q/img" >/dev/null
    cp "$T/q/base.raw" "$T/q/img" "$T/i/"
    FMT=$1
}
mkover qcow2 compat=1.1
same_resize "v3 overlay: growing past the backing's data reads zeroes there" -f qcow2 img 12M
expect "v3 overlay: the new area reads as zeroes, not the backing's 7s" \
    qio -f qcow2 -c 'read -P 0 1M 11M' "$T/i/img"
mkover qcow2 compat=1.1,extended_l2=on
same_resize "extended-L2 overlay: growing past the backing's data reads zeroes there" -f qcow2 img 12M
mkover qcow2 compat=1.1
qio -f qcow2 -c 'write -P 4 1000k 24k' "$T/q/img" >/dev/null; cp "$T/q/img" "$T/i/img"
same_resize "v3 overlay, metadata preallocation over the backing's data" --preallocation=metadata -f qcow2 img 6M
mkover qcow2 compat=0.10
same_resize "v2 overlay: growing where the backing shows through is refused" -f qcow2 img 4M
expect "v2 overlay: the refusal wrote nothing" cmp -s "$T/i/img" "$T/q/img"
mkover qed ""
same_resize "QED overlay: growing where the backing shows through is refused" -f qed img 4M

# format refusals
setup qed "" 4M "$DATA1"
same_resize "QED: any shrink is refused" --shrink -f qed img 2M
for m in metadata falloc full; do
    same_resize "QED: --preallocation=$m is refused" --preallocation=$m -f qed img 8M
done
same_resize "QED: a size not a multiple of 512 is refused" -f qed img 8000001
setup raw "" 4M "$DATA1"
same_resize "raw: --preallocation=metadata is refused" --preallocation=metadata -f raw img 8M
same_resize "raw: any size, even unaligned" --shrink -f raw img 1000001

# internal snapshots: refused on v2, allowed on v3 (the snapshot keeps its data)
setup qcow2 compat=0.10 4M "$DATA1"
qimg snapshot -c s1 "$T/q/img"; cp "$T/q/img" "$T/i/img"
same_resize "v2 with an internal snapshot: refused" -f qcow2 img 8M
setup qcow2 compat=1.1 4M "$DATA1" "$DATA2"
qimg snapshot -c s1 "$T/q/img"; qio -c 'write -P 9 0 4M' "$T/q/img" >/dev/null; cp "$T/q/img" "$T/i/img"
same_resize "v3 with an internal snapshot: grow" -f qcow2 img 8M
same_resize "v3 with an internal snapshot: shrink" --shrink -f qcow2 img 2M
qimg convert -l s1 -O raw "$T/q/img" "$T/q/s1.raw"
qimg convert -l s1 -O raw "$T/i/img" "$T/i/s1.raw"
expect "v3 with an internal snapshot: the snapshot reads as before" cmp -s "$T/q/s1.raw" "$T/i/s1.raw"

# beyond qemu-img: persistent dirty bitmaps are refused (imgchain cannot
# resize them), before anything is written
setup qcow2 "" 4M "$DATA1"
qimg bitmap --add "$T/i/img" b0
cp "$T/i/img" "$T/i.before"
expect_out "an image with a persistent bitmap is refused, saying so" 'persistent dirty bitmap' \
    ic resize "$T/i/img" 8M
expect "... and the file is unchanged, byte for byte" cmp -s "$T/i.before" "$T/i/img"
expect "... and qemu-img still sees a consistent bitmap" \
    sh -c "! qemu-img info '$T/i/img' 2>&1 | grep -q 'lacking bitmap support\|inconsistent'"

# beyond qemu-img: a shrink lists the data it drops
setup qcow2 "" 8M 'write -P 1 0 1M' 'write -P 2 5M 64k' 'write -P 3 6M 1M' 'write -z 7M 64k'
ic resize --shrink -f qcow2 "$T/i/img" 4M >"$T/i.out" 2>&1
expect_out "a shrink names the data past the new end" 'drops data at offset 5242880, 65536 bytes' \
    cat "$T/i.out"
expect_out "... each range" 'drops data at offset 6291456, 1048576 bytes' cat "$T/i.out"
expect_out "... and gives the total" 'drops 1114112 bytes of data in 2 range' cat "$T/i.out"
expect "... and proceeds" sh -c "[ \"\$(qemu-img info --output=json '$T/i/img' | sed -n 's/.*\"virtual-size\": \\([0-9]*\\).*/\\1/p')\" = 4194304 ]"
setup qcow2 "" 8M 'write -P 1 0 1M' 'write -z 7M 64k'
ic resize --shrink -f qcow2 "$T/i/img" 4M >"$T/i.out" 2>&1
expect "a shrink over zero clusters and holes reports nothing" sh -c "! grep -q drops '$T/i.out'"
setup raw "" 8M 'write -P 1 6M 4k'
expect_out "raw: a shrink names the data past the new end" 'drops data at offset 6291456' \
    ic resize --shrink -f raw "$T/i/img" 4M

# usage
expect_rc "resize without SIZE is a usage error" 64 ic resize "$T/i/img"
expect_rc "an unknown preallocation mode is a usage error" 64 ic resize --preallocation=foo "$T/i/img" 8M
expect_rc "a malformed size is a usage error" 64 ic resize "$T/i/img" 1x
expect_rc "resize -h exits 0" 0 ic resize -h
expect_rc "a missing file fails with 1" 1 ic resize "$T/nosuch.qcow2" 1M
# a running qemu-io holds the image: 75, nothing written
setup qcow2 "" 4M "$DATA1"
(qemu-io -f qcow2 -c 'sleep 3000' "$T/i/img" >/dev/null 2>&1 &)
sleep 1
expect_rc "a locked image is refused with exit 75" 75 ic resize "$T/i/img" 8M
sleep 2.5
expect "the locked refusal wrote nothing" cmp -s "$T/i/img" "$T/q/img"
finish
