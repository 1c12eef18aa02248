#!/bin/sh
# compare-progress.sh - imgchain compare -p: the result and exit code are
# qemu-img compare's (with and without -p); progress goes to stderr, and
# only on a terminal (run under script(1) for a pseudo-terminal), never
# with -q.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

qimg create -q -f qcow2 a.qcow2 64M
qio -c 'write -P 1 0 10M' a.qcow2 >/dev/null
cp a.qcow2 b.qcow2
cp a.qcow2 c.qcow2; qio -c 'write -P 2 33M 512' c.qcow2 >/dev/null

# result lines of qemu-img compare -p (its progress is on stdout, between \r)
qresult() { qimg compare -p "$@" | tr '\r' '\n' | grep -v '/100%)' | grep -v '^$'; }

for pair in "a.qcow2 b.qcow2" "a.qcow2 c.qcow2"; do
    set -- $pair
    qresult "$1" "$2" >q.out; qimg compare -p "$1" "$2" >/dev/null 2>&1; qrc=$?
    ic compare -p "$1" "$2" >i.out 2>i.err; irc=$?
    expect "compare -p $1 $2: exit code as qemu-img's ($qrc)" test "$irc" = "$qrc"
    expect "compare -p $1 $2: stdout holds qemu-img's result line" cmp -s q.out i.out
    expect "compare -p $1 $2: no progress without a terminal" test ! -s i.err
done
if command -v script >/dev/null 2>&1; then
    script -qc "'$IMGCHAIN_BIN' compare -p a.qcow2 b.qcow2" /dev/null >tty.out 2>&1
    expect "on a terminal, -p shows progress up to 100%" grep -q '(100.00/100%)' tty.out
    expect "... and the result" grep -q 'Images are identical.' tty.out
    script -qc "'$IMGCHAIN_BIN' compare -p -q a.qcow2 c.qcow2" /dev/null >tty.out 2>&1
    expect "-q silences -p" test ! -s tty.out
else
    echo "SKIP: script(1) is missing; terminal progress not checked"
fi
expect_rc "compare -p with one image is a usage error" 64 ic compare -p a.qcow2
finish
