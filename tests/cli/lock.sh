#!/bin/sh
# Locking: while qemu-io holds an image read-write, every imgchain command
# that opens it exits 75 with one line naming the image, and the image is
# unchanged; -U reads still work; once qemu-io is gone the commands work.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

qimg create -q -f qcow2 held.qcow2 4M
qio -c 'write -P 1 0 64k' held.qcow2 >/dev/null
qimg create -q -f raw held.raw 1M

# hold FILE FMT: qemu-io keeps FILE open read-write for up to 30 s; waits
# until its lock shows in /proc/locks.  Sets $holder.
hold() {
    qemu-io -f "$2" -c 'sleep 30000' "$1" >/dev/null 2>&1 &
    holder=$!
    _ino=$(stat -c %i "$1")
    _i=0
    while ! grep -q ":$_ino " /proc/locks 2>/dev/null; do
        _i=$((_i + 1))
        if [ $_i -gt 100 ]; then fail "qemu-io did not take its lock on $1"; return 1; fi
        sleep 0.1
    done
}
release() { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; }

locked() { # DESC CMD...: exit 75, one stderr line naming the file
    _d=$1; shift
    "$@" >/dev/null 2>"$T/.err"; _rc=$?
    if [ "$_rc" = 75 ] && [ "$(wc -l <"$T/.err")" = 1 ] && grep -q "held\." "$T/.err"; then
        pass "$_d"
    else
        fail "$_d (rc $_rc)"; sed 's/^/    /' "$T/.err"
    fi
}

cp held.qcow2 before.qcow2
if hold held.qcow2 qcow2; then
    locked "info of a written image exits 75" ic info held.qcow2
    locked "map of a written image exits 75" ic map held.qcow2
    locked "io write exits 75" ic io -c 'write -P 2 0 64k' held.qcow2
    locked "io read exits 75" ic io -r -c 'read 0 64k' held.qcow2
    locked "convert from a written image exits 75" ic convert held.qcow2 out.raw
    locked "convert onto a written image exits 75" ic convert -f raw -O qcow2 held.raw held.qcow2
    locked "create over a written image exits 75" ic create -q -f qcow2 held.qcow2 1M
    locked "compare with a written image exits 75" ic compare held.qcow2 before.qcow2
    expect "info -U works while the image is written" ic info -U held.qcow2
    expect "map -U works while the image is written" ic map -U held.qcow2
    expect "io -r -U works while the image is written" ic io -r -U -c 'read -P 1 0 64k' held.qcow2
    release
fi
expect "the held image was not changed" cmp held.qcow2 before.qcow2
expect "no target was left by the refused convert" test ! -e out.raw
expect "after qemu-io exits, writing works" ic io -q -c 'write -P 2 0 64k' held.qcow2

if hold held.raw raw; then
    locked "io on a held raw image exits 75" ic io -f raw -c 'write 0 1' held.raw
    release
fi

# imgchain holds its own locks: qemu-io and qemu-img cannot write an image
# while imgchain io has it open (its sleep command keeps it open).
ic create -q -f raw big.raw 1M
ic io -f raw -q big.raw -c 'write 0 4k' -c 'sleep 3000' &
icpid=$!
_ino=$(stat -c %i big.raw); _i=0
while ! grep -q ":$_ino " /proc/locks 2>/dev/null && [ $_i -lt 100 ]; do _i=$((_i + 1)); sleep 0.05; done
expect_out "qemu-io cannot write an image imgchain writes" 'Failed to get "write" lock' \
    qio -f raw -c 'write 0 1' big.raw
expect_out "qemu-img cannot resize it either" 'Failed to get .*lock' qimg resize -f raw big.raw 2M
kill $icpid 2>/dev/null; wait $icpid 2>/dev/null
finish
