#!/bin/sh
# convert-backing.sh - convert -B BACKING -F FMT against qemu-img convert
# 7.2: the target is an overlay of BACKING holding what the source's top
# image allocates above its own backing file.  Source chains of qcow2 v2,
# v3 and QED, targets of qcow2 v2, v3 and QED; map --output=json of both
# targets must be identical (offsets included: the same clusters in the
# same order), as must exit codes, messages, contents and the backing
# names recorded.
. "$(dirname "$0")/../lib.sh"

# chain FMT OPTS: base (all 1s), mid (data, zero), top (data, zero data, zero)
chain() {
    rm -rf "$T/q" "$T/i"; mkdir -p "$T/q" "$T/i"
    _o=${2:+-o $2}
    qimg create -q -f "$1" $_o "$T/q/base" 4M
    qio -f "$1" -c 'write -P 1 0 4M' "$T/q/base" >/dev/null
    qimg create -q -f "$1" $_o -b base -F "$1" "$T/q/mid"
    qio -f "$1" -c 'write -P 2 1M 64k' -c 'write -z 2M 64k' "$T/q/mid" >/dev/null
    qimg create -q -f "$1" $_o -b mid -F "$1" "$T/q/top"
    qio -f "$1" -c 'write -P 3 3M 64k' -c 'write -P 0 3200k 64k' -c 'write -P 4 100k 8k' "$T/q/top" >/dev/null
    [ "$1" = qed ] || qio -f "$1" -c 'write -z 3584k 128k' "$T/q/top" >/dev/null
    cp "$T/q/base" "$T/q/mid" "$T/q/top" "$T/i/"
}

same() { # DESC ARGS... (the target is "out")
    _d=$1; shift
    (cd "$T/q" && qimg convert "$@") >"$T/q.out" 2>"$T/q.err"; _qrc=$?
    (cd "$T/i" && ic convert "$@") >"$T/i.out" 2>"$T/i.err"; _irc=$?
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    sed -n 's/^qemu-img: //p' "$T/q.err" >"$T/q.msgs"
    while IFS= read -r _m; do
        grep -qF -- "$_m" "$T/i.err" || _why="$_why missing message '$_m';"
    done <"$T/q.msgs"
    if [ "$_irc" = 0 ]; then
        # a data cluster over a host hole reads "zero": true; cp may make
        # holes of written zeroes in the copied backing files, so that flag
        # says nothing about the images
        (cd "$T/q" && qimg map --output=json out) | sed 's/"zero": true, "data": true/"zero": false, "data": true/' >"$T/q.map"
        (cd "$T/i" && qimg map --output=json out) | sed 's/"zero": true, "data": true/"zero": false, "data": true/' >"$T/i.map"
        cmp -s "$T/q.map" "$T/i.map" || _why="$_why map differs;"
        qimg compare -q "$T/q/out" "$T/i/out" || _why="$_why content differs;"
        [ "$(cd "$T/q" && qimg info out | grep backing | sed 's/ (actual path.*//')" = \
          "$(cd "$T/i" && qimg info out | grep backing | sed 's/ (actual path.*//')" ] ||
            _why="$_why backing differs;"
        qimg check -q "$T/i/out" || _why="$_why check not clean;"
    else
        [ -e "$T/i/out" ] && _why="$_why a refused convert left a target;"
    fi
    if [ -z "$_why" ]; then pass "$_d (exit $_irc)"; else
        fail "$_d:$_why"; sed 's/^/    qemu-img: /' "$T/q.err"; sed 's/^/    imgchain: /' "$T/i.err"
        diff "$T/q.map" "$T/i.map" | sed 's/^/    /' | head -20
    fi
    rm -f "$T/q/out" "$T/i/out"
}

for s in "qcow2 compat=1.1" "qcow2 compat=0.10" "qed "; do
    set -- $s; sf=$1; so=${2:-}
    chain "$sf" "$so"
    for t in "qcow2 compat=1.1" "qcow2 compat=0.10" "qcow2 cluster_size=4096" "qed "; do
        set -- $t; tf=$1; to=${2:-}
        tag="$sf${so:+ $so} chain -> $tf${to:+ $to}"
        if [ -n "$to" ]; then
            same "$tag: -B base" -O "$tf" -o "$to" -B base -F "$sf" top out
        else
            same "$tag: -B base" -O "$tf" -B base -F "$sf" top out
        fi
    done
    same "$sf chain: -B mid (top's data only, over another backing file)" -O qcow2 -B mid -F "$sf" top out
    same "$sf chain: -B without -F is refused" -O qcow2 -B base top out
    same "$sf chain: -B to a raw target is refused" -O raw -B base -F "$sf" top out
    expect_rc "$sf chain: -B naming a missing file fails" 1 ic convert -O qcow2 -B none -F "$sf" "$T/i/top" "$T/i/out"
    expect "... and leaves no target" test ! -e "$T/i/out"
done
chain qcow2 ""
expect "the target reads the source where the chains agree (base under mid and top)" \
    sh -c "cd '$T/i' && '$IMGCHAIN_BIN' convert -O qcow2 -B mid -F qcow2 top out && qemu-img compare -q top out"
finish
