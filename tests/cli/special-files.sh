#!/bin/sh
# Backing files, data files and images that are not regular files or block
# devices (a FIFO, a symlink to one, a character device) are refused with a
# clear message, never opened in a way that blocks: every command runs
# under a timeout, so a regression fails (rc 124) instead of hanging.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
to() { timeout 20 "$IMGCHAIN_BIN" "$@"; }

mkfifo fifo
ln -s fifo fifo-link
qimg create -q -f qcow2 -u -b fifo -F raw ov.qcow2 1M
qimg create -q -f qcow2 -u -b fifo-link -F raw ovl.qcow2 1M
qimg create -q -f qcow2 -u -b fifo ovp.qcow2 1M 2>/dev/null ||
    { qimg create -q -f qcow2 -u -b fifo -F qcow2 ovp.qcow2 1M; }
qimg create -q -f qcow2 -u -b /dev/zero -F raw ovz.qcow2 1M
qimg create -q -f qcow2 ok.qcow2 1M
msg="fifo(-link)?: is a FIFO, not a regular file or block device"

for ov in ov.qcow2 ovl.qcow2 ovp.qcow2; do
    expect_rc "map over a FIFO backing file ($ov) exits 1" 1 to map "$ov"
    expect_out "... naming the FIFO" "$msg" to map "$ov"
    expect_rc "info --backing-chain over a FIFO ($ov) exits 1" 1 to info --backing-chain "$ov"
    expect_out "check --chain reports the FIFO ($ov)" "$msg" to check --chain "$ov"
    expect_rc "compare with a FIFO backing file ($ov) exits 2 (cannot open)" 2 \
        to compare "$ov" ok.qcow2
    expect_rc "convert from a FIFO-backed image ($ov) exits 1" 1 to convert -O raw "$ov" out.raw
    expect_rc "io -r over a FIFO ($ov) exits 1" 1 to io -r "$ov" -c 'read 0 512'
    expect_rc "commit into a FIFO ($ov) exits 1" 1 to commit "$ov"
done
expect_rc "rebase onto a FIFO exits 1" 1 to rebase -b fifo -F raw ok.qcow2
expect_out "... naming it" "$msg" to rebase -b fifo -F raw ok.qcow2
expect_rc "create over a FIFO backing file exits 1" 1 to create -f qcow2 -b fifo -F raw new.qcow2
expect "... and creates nothing" test ! -e new.qcow2
expect_rc "a FIFO named as the image exits 1" 1 to info fifo
expect_rc "create refuses a FIFO as its target" 1 to create -f raw fifo 1M
expect "... which stays a FIFO" test -p fifo
expect_out "a character device as backing file is refused" \
    "/dev/zero: is a character device, not a regular file or block device" to map ovz.qcow2

# a data file replaced by a FIFO
qimg create -q -f qcow2 -o data_file=d.raw dd.qcow2 1M
rm d.raw && mkfifo d.raw
expect_rc "a FIFO data file is refused" 1 to io -r dd.qcow2 -c 'read 0 512'
expect_out "... naming it" "d.raw: is a FIFO, not a regular file or block device" \
    to info dd.qcow2
finish
