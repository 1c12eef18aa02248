#!/bin/sh
# amend.sh - imgchain amend against qemu-img amend 7.2 over qcow2 v2 and v3
# (plain, extended L2, zstd, external data file, internal snapshots,
# overlays), QED and raw: each case runs both tools on identical copies and
# compares exit codes, stdout, qemu-img's error texts (which imgchain must
# print after "imgchain: FILE: "), the format-specific info (--output=json),
# the virtual size, the guest content, the allocation map (offsets aside)
# and qemu-img check of imgchain's result.  A refusal must leave the file
# byte for byte as it was.
. "$(dirname "$0")/../lib.sh"

# setup FMT CREATE_OPTS SIZE [QEMU_IO_CMDS...]: $T/q/img and $T/i/img
setup() {
    _f=$1; _o=$2; _s=$3; shift 3
    rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
    if [ -n "$_o" ]; then qimg create -q -f "$_f" -o "$_o" "$T/q/img" "$_s"
    else qimg create -q -f "$_f" "$T/q/img" "$_s"; fi
    for _c in "$@"; do qio -f "$_f" -c "$_c" "$T/q/img" >/dev/null || echo "setup: $_c failed"; done
    FMT=$_f
    mv "$T/q/img" "$T/orig"; cp "$T/orig" "$T/q/img"; cp "$T/orig" "$T/i/img"
}

flatmap() {
    qimg map -f "$FMT" --output=json "$1" | sed 's/, "offset": [0-9]*//' |
        sed 's/"zero": true, "data": true/"zero": false, "data": true/' |
        sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), \(.*\)}.*/\1 \2 \3/p' |
        awk '{ s = $1; l = $2; $1 = ""; $2 = ""; f = $0
               if (n && f == pf && ps + pl == s) { pl += l; next }
               if (n) print ps, pl, pf; ps = s; pl = l; pf = f; n = 1 }
             END { if (n) print ps, pl, pf }'
}

# the format-specific info and the size as qemu-img reports them
spec() {
    qimg info -U -f "$FMT" --output=json "$1" 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["virtual-size"], json.dumps(d.get("format-specific"), sort_keys=True))' |
        sed 's|/[qi]/|/X/|g' # each copy's own absolute data file name
}

# same_amend DESC ARGS...: both tools on their copy (the last argument is
# "img"); everything listed at the top must agree.
same_amend() {
    _d=$1; shift
    cp "$T/i/img" "$T/i.before"
    (cd "$T/q" && qimg amend "$@") >"$T/q.out" 2>"$T/q.err"; _qrc=$?
    (cd "$T/i" && ic amend "$@") >"$T/i.out" 2>"$T/i.err"; _irc=$?
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    [ "$_irc" = 0 ] || cmp -s "$T/i.before" "$T/i/img" || _why="$_why the refusal changed the file;"
    cmp -s "$T/q.out" "$T/i.out" || _why="$_why stdout differs;"
    sed -n 's/^qemu-img: //p' "$T/q.err" | grep -v '^warning' >"$T/q.msgs"
    while IFS= read -r _m; do
        grep -qF -- "$_m" "$T/i.err" || _why="$_why missing message '$_m';"
    done <"$T/q.msgs"
    [ "$(spec "$T/q/img")" = "$(spec "$T/i/img")" ] || _why="$_why info differs;"
    qimg compare -q -f "$FMT" -F "$FMT" "$T/q/img" "$T/i/img" || _why="$_why content differs;"
    [ "$(flatmap "$T/q/img")" = "$(flatmap "$T/i/img")" ] || _why="$_why map differs;"
    case $FMT in raw) ;; *) qimg check -q -f "$FMT" "$T/i/img" || _why="$_why check not clean;" ;; esac
    if [ -z "$_why" ]; then
        pass "$_d (exit $_irc)"
    else
        fail "$_d:$_why"
        sed 's/^/    qemu-img: /' "$T/q.out" "$T/q.err"; sed 's/^/    imgchain: /' "$T/i.out" "$T/i.err"
        spec "$T/q/img" | sed 's/^/    qemu info: /'; spec "$T/i/img" | sed 's/^/    ic info:   /'
    fi
}

DATA1='write -P 1 0 1000k'
DATA2='write -P 2 3M 64k'
DATA3='write -z 2M 128k'

for o in compat=0.10 compat=1.1 "compat=1.1,lazy_refcounts=on" "cluster_size=4096" \
         "cluster_size=512,refcount_bits=64"; do
    tag="qcow2 $o"
    setup qcow2 "$o" 4M "$DATA1" "$DATA2"
    same_amend "$tag: compat=1.1" -o compat=1.1 img
    same_amend "$tag: lazy_refcounts=on" -o lazy_refcounts=on img
    same_amend "$tag: lazy_refcounts=off" -o lazy_refcounts=off img
    same_amend "$tag: refcount_bits=64" -o refcount_bits=64 img
    same_amend "$tag: refcount_bits=1" -f qcow2 -o refcount_bits=1 img
    same_amend "$tag: compat=0.10 with refcount_bits=1 is refused" -o compat=0.10 img
    same_amend "$tag: compat=0.10,refcount_bits=16" -o compat=0.10,refcount_bits=16 img
    same_amend "$tag: refcount_bits=8 on v2 is refused" -o refcount_bits=8 img
    same_amend "$tag: lazy_refcounts=on on v2 is refused" -o lazy_refcounts=on img
    same_amend "$tag: compat=v3 and lazy refcounts in one go" -o compat=v3 -o lazy_refcounts=on img
    same_amend "$tag: size=8M" -o size=8M img
    same_amend "$tag: size=2M shrinks, as qemu-img amend does" -o size=2M img
    same_amend "$tag: -q compat=0.10" -q -o compat=0.10 img
done

# zero clusters are expanded on a downgrade, with and without a backing file
setup qcow2 "" 4M "$DATA1" "$DATA3" 'write -z 3M 64k'
same_amend "v3 zero clusters without a backing file: compat=0.10" -o compat=0.10 img
rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
qimg create -q -f qcow2 "$T/q/base" 4M; qio -c 'write -P 7 0 4M' "$T/q/base" >/dev/null
qimg create -q -f qcow2 -b base -F qcow2 "$T/q/img"
qio -c 'write -z 0 64k' -c 'write -P 3 64k 64k' -c 'write -z 1M 128k' "$T/q/img" >/dev/null
qio -c 'write -z 64k 64k' "$T/q/img" >/dev/null
cp "$T/q/base" "$T/q/img" "$T/i/"; FMT=qcow2
same_amend "overlay with zero clusters over a backing file: compat=0.10" -o compat=0.10 img
expect "... the zeroes still hide the backing file's data" qio -c 'read -P 0 0 128k' -c 'read -P 0 1M 128k' "$T/i/img"

# internal snapshots
setup qcow2 compat=0.10 4M "$DATA1"
qimg snapshot -c s1 "$T/q/img"; qio -c 'write -P 9 0 64k' "$T/q/img" >/dev/null; cp "$T/q/img" "$T/i/img"
same_amend "v2 with an internal snapshot: compat=1.1 (the table gets v3 extra data)" -o compat=1.1 img
same_amend "with an internal snapshot: refcount_bits=1 is refused (refcount 2)" -o refcount_bits=1 img
same_amend "with an internal snapshot: refcount_bits=2" -o refcount_bits=2 img
same_amend "with an internal snapshot: back to refcount_bits=16" -o refcount_bits=16 img
same_amend "with an internal snapshot: compat=0.10" -o compat=0.10 img
qimg convert -l s1 -O raw "$T/q/img" "$T/q/s1.raw"; qimg convert -l s1 -O raw "$T/i/img" "$T/i/s1.raw"
expect "the snapshot reads as before" cmp -s "$T/q/s1.raw" "$T/i/s1.raw"
setup qcow2 compat=1.1 4M "$DATA1" 'write -z 1M 64k'
qimg snapshot -c s1 "$T/i/img"
cp "$T/i/img" "$T/i.before"
expect_out "beyond qemu-img: zero clusters a snapshot holds refuse a downgrade" \
    'snapshot holds zero clusters' ic amend -o compat=0.10 "$T/i/img"
expect "... and the file is unchanged" cmp -s "$T/i.before" "$T/i/img"

# format refusals with qemu-img's messages
setup qcow2 extended_l2=on 4M "$DATA1"
same_amend "extended L2: compat=0.10 is refused" -o compat=0.10 img
setup qcow2 compression_type=zstd 4M "$DATA1"
same_amend "zstd without compressed clusters: compat=0.10" -o compat=0.10 img
setup qcow2 compression_type=zstd 4M 'write -c 0 64k'
same_amend "zstd with compressed clusters: compat=0.10 is refused" -o compat=0.10 img
# qemu-img 7.2 opens a relative data-file name from the current folder,
# not the image's: each copy is made with its own absolute data file
mkdf() { # DIR
    qimg create -q -f qcow2 -o "data_file=$1/img.data,data_file_raw=on" "$1/img" 4M
    qio -c 'write -P 5 0 64k' "$1/img" >/dev/null
    cp "$1/img.data" "$1/other.data"
}
rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"; mkdf "$T/q"; mkdf "$T/i"; FMT=qcow2
same_amend "external data file: compat=0.10 is refused" -o compat=0.10 img
same_amend "external data file: data_file_raw=on when already raw" -o data_file_raw=on img
same_amend "external data file: data_file_raw=off" -o data_file_raw=off img
same_amend "external data file: data_file_raw=on on an existing image is refused" -o data_file_raw=on img
qimg amend -o "data_file=$T/q/other.data" "$T/q/img"; ic amend -o "data_file=$T/i/other.data" "$T/i/img"
expect "external data file: data_file renames it in the header as qemu-img does" \
    python3 -c "import sys; q = open(sys.argv[1], 'rb').read(); i = open(sys.argv[2], 'rb').read(); sys.exit(q.replace(b'/q/', b'/i/') != i)" "$T/q/img" "$T/i/img"
expect "... and the renamed image reads its data" qio -c 'read -P 5 0 64k' "$T/i/img"
setup qcow2 "" 4M "$DATA1"
for o in backing_file=x backing_fmt=raw cluster_size=4k preallocation=full compression_type=zstd \
         extended_l2=on foo=1 compat=0.9 compat= refcount_bits=3 refcount_bits=128 refcount_bits=0 \
         refcount_bits=x lazy_refcounts=maybe size=x data_file_raw=on data_file=x ,compat=1.1; do
    same_amend "option $o is refused" -o "$o" img
done
same_amend "lazy_refcounts without a value means on" -o lazy_refcounts img
same_amend "a key given twice keeps the last value" -o size=8M,size=6M img
setup qed "" 4M "$DATA1"
same_amend "QED: no option amendment" -f qed -o size=8M img
setup raw "" 4M "$DATA1"
same_amend "raw: no option amendment" -f raw -o size=8M img
setup qcow2 "" 4M "$DATA1"
same_amend "-f raw over a qcow2 image: no option amendment" -f raw -o size=8M img
ic amend -o help "$T/i/img" >"$T/i.help"; qimg amend -o help "$T/q/img" | grep -v encrypt >"$T/q.help"
expect "-o help lists qemu-img's amend options (encryption aside)" cmp -s "$T/q.help" "$T/i.help"

# beyond qemu-img: persistent dirty bitmaps refuse a downgrade, named
setup qcow2 "" 4M "$DATA1"
qimg bitmap --add "$T/i/img" b0; qimg bitmap --add "$T/i/img" backup-2
cp "$T/i/img" "$T/i.before"
expect_rc "an image with persistent bitmaps: compat=0.10 is refused (exit 1)" 1 \
    ic amend -o compat=0.10 "$T/i/img"
expect_out "... naming every bitmap" "'b0', 'backup-2'" ic amend -o compat=0.10 "$T/i/img"
expect "... and the file is unchanged, byte for byte" cmp -s "$T/i.before" "$T/i/img"
expect "... lazy_refcounts=on still works on it" ic amend -o lazy_refcounts=on "$T/i/img"
expect "... and its bitmaps are intact" sh -c "qemu-img info '$T/i/img' | grep -q backup-2 && qemu-img check -q '$T/i/img'"

# usage
expect_rc "amend without -o is a usage error" 64 ic amend "$T/i/img"
expect_rc "amend without FILE is a usage error" 64 ic amend -o compat=1.1
expect_rc "amend with two files is a usage error" 64 ic amend -o compat=1.1 "$T/i/img" "$T/i/img"
expect_rc "an unknown flag is a usage error" 64 ic amend -z -o compat=1.1 "$T/i/img"
expect_rc "--force is accepted" 0 ic amend --force -o compat=1.1 "$T/i/img"
expect_rc "amend -h exits 0" 0 ic amend -h
expect_rc "a missing file fails with 1" 1 ic amend -o compat=1.1 "$T/nosuch.qcow2"
setup qcow2 "" 4M "$DATA1"
(qemu-io -f qcow2 -c 'sleep 3000' "$T/i/img" >/dev/null 2>&1 &)
sleep 1
expect_rc "a locked image is refused with exit 75" 75 ic amend -o compat=0.10 "$T/i/img"
sleep 2.5
expect "the locked refusal wrote nothing" cmp -s "$T/i/img" "$T/q/img"
finish
