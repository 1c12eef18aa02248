#!/bin/sh
# dd.sh - imgchain dd against qemu-img dd 7.2: for sources of every format
# (chains, zero and compressed clusters, holes) and outputs raw, qcow2 and
# QED, with bs/count/skip combinations including qemu-img's quirks (count
# counts from the start of the input, a skip past the end warns and makes
# an empty image), the exit code, the output's virtual size and guest
# content must equal qemu-img's, and qemu-img check must pass on the output.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

vsize() { qimg info -f "$1" --output=json "$2" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'; }

# same_dd DESC OUTFMT ARGS...: ARGS without of=; each tool writes its own
same_dd() {
    _d=$1; _of=$2; shift 2
    rm -f "q.$_of" "i.$_of"
    qimg dd -O "$_of" "$@" "of=q.$_of" >"$T/q.out" 2>&1; _qrc=$?
    ic dd -O "$_of" "$@" "of=i.$_of" >"$T/i.out" 2>&1; _irc=$?
    _why=""
    [ "$_qrc" = "$_irc" ] || _why="$_why exit $_irc, qemu-img $_qrc;"
    if [ "$_qrc" = 0 ]; then
        [ "$(vsize "$_of" "q.$_of")" = "$(vsize "$_of" "i.$_of")" ] || _why="$_why virtual size differs;"
        qimg compare -q -f "$_of" -F "$_of" "q.$_of" "i.$_of" || _why="$_why content differs;"
        case $_of in raw) ;; *) qimg check -q -f "$_of" "i.$_of" || _why="$_why check not clean;" ;; esac
    fi
    if [ -z "$_why" ]; then
        pass "$_d (exit $_irc)"
    else
        fail "$_d:$_why"
        sed 's/^/    qemu-img: /' "$T/q.out"; sed 's/^/    imgchain: /' "$T/i.out"
    fi
}

qimg create -q -f qcow2 v3.qcow2 10M
qio -c 'write -P 1 0 3M' -c 'write -P 2 5M 1000' -c 'write -z 6M 1M' -c 'write -P 3 10000000 485760' v3.qcow2 >/dev/null
qimg create -q -f qcow2 -o compat=0.10,cluster_size=4096 v2.qcow2 3M
qio -c 'write -P 4 1000 5000' v2.qcow2 >/dev/null
qimg create -q -f qcow2 -o extended_l2=on ext.qcow2 4M
qio -c 'write -P 5 4k 4k' -c 'write -P 6 70k 100k' ext.qcow2 >/dev/null
qimg create -q -f qed d.qed 5M
qio -f qed -c 'write -P 7 1M 1M' d.qed >/dev/null
qimg create -q -f raw r.raw 3000000
qio -f raw -c 'write -P 8 100 1000' -c 'write -P 9 2M 4096' r.raw >/dev/null
qimg convert -c -O qcow2 v3.qcow2 comp.qcow2
qimg create -q -f raw base.raw 6M
qio -f raw -c 'write -P 10 0 6M' base.raw >/dev/null
qimg create -q -f qcow2 -b base.raw -F raw top.qcow2 8M
qio -c 'write -P 11 1M 64k' -c 'write -z 2M 1M' top.qcow2 >/dev/null

for src in v3.qcow2 v2.qcow2 ext.qcow2 d.qed r.raw comp.qcow2 top.qcow2; do
    for of in raw qcow2 qed; do
        same_dd "$src -> $of, defaults" "$of" "if=$src"
    done
    same_dd "$src: bs=1M count=2" raw bs=1M count=2 "if=$src"
    same_dd "$src: bs=64k skip=3" qcow2 bs=64k skip=3 "if=$src"
    same_dd "$src: bs=1000 count=1234 skip=17 (count counts from the start)" raw bs=1000 count=1234 skip=17 "if=$src"
done
same_dd "bs=1 count=3 skip=1" raw bs=1 count=3 skip=1 if=v3.qcow2
same_dd "bs=3 count=5 into QED (size rounded up to 512)" qed bs=3 count=5 if=v3.qcow2
same_dd "bs=1000 count=1 into qcow2 (size rounded up to 512)" qcow2 bs=1000 count=1 if=v3.qcow2
same_dd "bs=1.5k count=3" raw bs=1.5k count=3 if=v3.qcow2
same_dd "count=0 makes an empty image" raw count=0 if=v3.qcow2
same_dd "count larger than the input" raw bs=1M count=100 skip=2 if=v3.qcow2
same_dd "count smaller than skip" raw bs=1M count=1 skip=2 if=v3.qcow2
same_dd "a skip past the end warns and makes an empty image" raw bs=1M skip=20 if=v3.qcow2
expect_out "... with qemu-img's warning" 'v3.qcow2: cannot skip to specified offset' \
    ic dd bs=1M skip=20 if=v3.qcow2 of=empty.raw
same_dd "-f raw reads a qcow2 file as raw" raw -f raw if=v3.qcow2
same_dd "-U (force share)" qcow2 -U if=top.qcow2
same_dd "operands in any order" raw if=v3.qcow2 skip=2 bs=4k count=300
qimg create -q -f raw exists.raw 1M; qio -f raw -c 'write -P 1 0 1M' exists.raw >/dev/null
cp exists.raw q.raw; cp exists.raw i.raw
qimg dd bs=4k count=10 if=v2.qcow2 of=q.raw >/dev/null 2>&1
ic dd bs=4k count=10 if=v2.qcow2 of=i.raw >/dev/null 2>&1
expect "an existing output is replaced, as with qemu-img" cmp -s q.raw i.raw

# refusals
expect_out "without of=" 'Must specify both input and output files' ic dd if=v3.qcow2
expect_rc "... is a usage error" 64 ic dd if=v3.qcow2
expect_out "an unknown operand" 'unrecognized operand foo' ic dd foo=1 if=v3.qcow2 of=x.raw
expect_out "an operand without =" 'unrecognized operand foo' ic dd foo if=v3.qcow2 of=x.raw
expect_out "bs=0" 'Invalid bs specified. Must be between 1 and 2147483647.' ic dd bs=0 if=v3.qcow2 of=x.raw
expect_out "bs too large" 'Invalid bs specified. Must be between 1 and 2147483647.' ic dd bs=3000000000 if=v3.qcow2 of=x.raw
expect_out "a malformed count" 'Invalid count specified' ic dd count=-1 if=v3.qcow2 of=x.raw
expect_out "a malformed skip" 'Invalid skip specified' ic dd skip=x if=v3.qcow2 of=x.raw
expect_out "an unknown output format" 'Unknown file format' ic dd -O foo if=v3.qcow2 of=x.raw
expect "... creates nothing" test ! -e x.raw
expect_rc "a missing input fails with 1" 1 ic dd if=nosuch of=y.raw
cp v3.qcow2 v3.before
expect_rc "the input as output fails on its lock (75)" 75 ic dd bs=1M count=1 if=v3.qcow2 of=v3.qcow2
expect "... and the input is unchanged" cmp -s v3.qcow2 v3.before
expect_rc "dd -h exits 0" 0 ic dd -h
finish
