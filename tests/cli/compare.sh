#!/bin/sh
# imgchain compare: exit codes and messages equal qemu-img compare's for
# identical, different, differently sized images and chains; -s, -q, -f/-F.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# same_as_qemu DESC ARGS...: stdout and exit code equal qemu-img compare's.
same_as_qemu() {
    _d=$1; shift
    qimg compare "$@" >"$T/q.out" 2>/dev/null; _qrc=$?
    ic compare "$@" >"$T/i.out" 2>/dev/null; _irc=$?
    if [ "$_qrc" = "$_irc" ] && cmp -s "$T/q.out" "$T/i.out"; then
        pass "$_d (exit $_irc)"
    else
        fail "$_d (imgchain exit $_irc, qemu-img exit $_qrc)"
        sed 's/^/    qemu-img: /' "$T/q.out"; sed 's/^/    imgchain: /' "$T/i.out"
    fi
}

qimg create -q -f raw a.raw 4M
qio -f raw -c 'write -P 1 0 1M' -c 'write -P 2 3M 4k' a.raw >/dev/null
cp a.raw same.raw
cp a.raw diff.raw && qio -f raw -c 'write -P 9 1000000 1' diff.raw >/dev/null
cp a.raw zero.raw && qio -f raw -c 'write -P 0 3M 4k' zero.raw >/dev/null
qimg create -q -f raw long0.raw 6M && qio -f raw -c 'write -P 1 0 1M' -c 'write -P 2 3M 4k' long0.raw >/dev/null
cp long0.raw long1.raw && qio -f raw -c 'write -P 3 5M 512' long1.raw >/dev/null
qimg convert -f raw -O qcow2 a.raw a.qcow2
qimg create -q -f qcow2 -b a.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 2 3M 4k' top.qcow2 >/dev/null

same_as_qemu "identical raw files" -f raw -F raw a.raw same.raw
same_as_qemu "one byte differs" -f raw -F raw a.raw diff.raw
same_as_qemu "a data block against zeroes" -f raw -F raw a.raw zero.raw
same_as_qemu "zeroes against a data block" -f raw -F raw zero.raw a.raw
same_as_qemu "longer image with a zero tail" -f raw -F raw a.raw long0.raw
same_as_qemu "longer image with data in the tail" -f raw -F raw a.raw long1.raw
same_as_qemu "strict: size differs" -s -f raw -F raw a.raw long0.raw
same_as_qemu "quiet, identical" -q -f raw -F raw a.raw same.raw
same_as_qemu "quiet, different" -q -f raw -F raw a.raw diff.raw
same_as_qemu "raw against its qcow2 copy" -f raw -F qcow2 a.raw a.qcow2
same_as_qemu "probing both formats" a.raw a.qcow2
same_as_qemu "a chain against the flat file" -F raw top.qcow2 a.raw
same_as_qemu "a chain against a different flat file" -F raw top.qcow2 diff.raw
expect_rc "a missing image exits 2" 2 ic compare a.raw missing.raw
expect_rc "a wrong format exits 2" 2 ic compare -f qed a.raw same.raw
finish
