#!/bin/sh
# convert-existing.sh - convert -n (write into an existing target) and -W
# against qemu-img convert 7.2, over qcow2 v2 and v3, QED and raw targets
# and sources: both tools write into identical pre-filled targets; exit
# codes, qemu-img's error texts, the target's content and its allocation
# map (offsets aside) must agree, and qemu-img check must pass.
. "$(dirname "$0")/../lib.sh"

flatmap() { # FMT FILE
    qimg map -f "$1" --output=json "$2" | sed 's/, "offset": [0-9]*//' |
        sed 's/"zero": true, "data": true/"zero": false, "data": true/' |
        sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\), \(.*\)}.*/\1 \2 \3/p' |
        awk '{ s = $1; l = $2; $1 = ""; $2 = ""; f = $0
               if (n && f == pf && ps + pl == s) { pl += l; next }
               if (n) print ps, pl, pf; ps = s; pl = l; pf = f; n = 1 }
             END { if (n) print ps, pl, pf }'
}

# mk FMT OPTS SIZE FILE: an image filled with 0x99
mk() {
    if [ -n "$2" ]; then qimg create -q -f "$1" -o "$2" "$4" "$3"; else qimg create -q -f "$1" "$4" "$3"; fi
    qio -f "$1" -c "write -P 0x99 0 $3" "$4" >/dev/null
}

# same_convert DESC TFMT ARGS...: ARGS end with SRC and "tgt"
same_convert() {
    _d=$1; _tf=$2; shift 2
    cp "$T/i/tgt" "$T/i.before"
    (cd "$T/q" && qimg convert "$@") >"$T/q.out" 2>"$T/q.err"; _qrc=$?
    (cd "$T/i" && ic convert "$@") >"$T/i.out" 2>"$T/i.err"; _irc=$?
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    [ "$_irc" = 0 ] || cmp -s "$T/i.before" "$T/i/tgt" || _why="$_why the refusal changed the target;"
    sed -n 's/^qemu-img: //p' "$T/q.err" >"$T/q.msgs"
    while IFS= read -r _m; do
        grep -qF -- "$_m" "$T/i.err" || _why="$_why missing message '$_m';"
    done <"$T/q.msgs"
    qimg compare -q -f "$_tf" -F "$_tf" "$T/q/tgt" "$T/i/tgt" || _why="$_why content differs;"
    [ "$(flatmap "$_tf" "$T/q/tgt")" = "$(flatmap "$_tf" "$T/i/tgt")" ] || _why="$_why map differs;"
    case $_tf in raw) ;; *) qimg check -q -f "$_tf" "$T/i/tgt" || _why="$_why check not clean;" ;; esac
    if [ -z "$_why" ]; then pass "$_d (exit $_irc)"; else
        fail "$_d:$_why"; sed 's/^/    qemu-img: /' "$T/q.err"; sed 's/^/    imgchain: /' "$T/i.err"
        flatmap "$_tf" "$T/q/tgt" | sed 's/^/    qemu map: /'; flatmap "$_tf" "$T/i/tgt" | sed 's/^/    ic map:   /'
    fi
}

for s in "qcow2 compat=1.1" "qcow2 compat=0.10" "qed " "raw "; do
    set -- $s; sf=$1; so=${2:-}
    rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
    if [ -n "$so" ]; then qimg create -q -f "$sf" -o "$so" "$T/q/src" 4M; else qimg create -q -f "$sf" "$T/q/src" 4M; fi
    qio -f "$sf" -c 'write -P 1 0 1M' -c 'write -P 2 3M 64k' "$T/q/src" >/dev/null
    [ "$sf" = raw ] || qio -f "$sf" -c 'write -z 2M 128k' "$T/q/src" >/dev/null
    cp "$T/q/src" "$T/i/src"
    for t in "qcow2 compat=1.1" "qcow2 compat=0.10" "qed " "raw "; do
        set -- $t; tf=$1; to=${2:-}
        tag="$sf${so:+ $so} -> $tf${to:+ $to}"
        rm -f "$T/q/tgt"; mk "$tf" "$to" 4M "$T/q/tgt"; cp "$T/q/tgt" "$T/i/tgt"
        same_convert "$tag: -n into a same-sized target" "$tf" -n -f "$sf" -O "$tf" src tgt
        rm -f "$T/q/tgt"; mk "$tf" "$to" 8M "$T/q/tgt"; cp "$T/q/tgt" "$T/i/tgt"
        same_convert "$tag: -n -W into a larger target (its tail is kept)" "$tf" -n -W -f "$sf" -O "$tf" src tgt
        rm -f "$T/q/tgt"; mk "$tf" "$to" 2M "$T/q/tgt"; cp "$T/q/tgt" "$T/i/tgt"
        same_convert "$tag: -n into a smaller target is refused" "$tf" -n -f "$sf" -O "$tf" src tgt
    done
done
rm -f "$T/q/tgt"; mk qcow2 "" 4M "$T/q/tgt"; cp "$T/q/tgt" "$T/i/tgt"
same_convert "-n with -o is refused" qcow2 -n -O qcow2 -o cluster_size=4k -f raw src tgt
# an overlay target keeps its backing file; the zeroes hide it
rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
# (a qcow2 source: from a raw file with a hole at offset 0, qemu-img writes
# the first cluster as zero data, because qemu reports a raw file's first
# block as data; imgchain writes a zero cluster there: the same content)
qimg create -q -f qcow2 "$T/q/src" 4M; qio -c 'write -P 3 1M 1M' "$T/q/src" >/dev/null
mk qcow2 "" 4M "$T/q/base"; qimg create -q -f qcow2 -b base -F qcow2 "$T/q/tgt"
cp "$T/q/src" "$T/q/base" "$T/q/tgt" "$T/i/"
same_convert "-n into an overlay: its backing file's data is hidden" qcow2 -n -f qcow2 -O qcow2 src tgt
expect "... the overlay reads the source" qimg compare -q -f qcow2 -F qcow2 "$T/i/src" "$T/i/tgt"
expect "... and still names its backing file" sh -c "qemu-img info '$T/i/tgt' | grep -q 'backing file: base'"
rm -rf "$T/i"; mkdir -p "$T/i"
expect_out "-n to a missing target fails" 'No such file' ic convert -n -O qcow2 "$T/q/src" "$T/i/none"
expect "... and creates nothing" test ! -e "$T/i/none"
finish
