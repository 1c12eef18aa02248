#!/bin/sh
# Exit 75 means only "locked by another process, try again"; an interrupted
# commit's journal answers 76 (finish it with --resume first), so a script
# that retries on 75 never loops on a journal.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# A commit that fails after its journal exists: the overlay's data cluster
# points past the end of the file, so emptying the overlay fails.
qimg create -q -f qcow2 base.qcow2 1M
qimg create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 3 0 64k' top.qcow2 >/dev/null
python3 "$IC_TOP/tests/helpers/qcow2-poke.py" top.qcow2 past-eof
expect_rc "the failing commit exits 1" 1 ic commit top.qcow2
expect "it leaves its journal" test -e top.qcow2.imgchain-journal

expect_rc "a second commit exits 76, not 75" 76 ic commit top.qcow2
expect_out "... saying what to do" \
    "^imgchain: .*top.qcow2: an interrupted commit was found; finish it with --resume first\$" \
    ic commit top.qcow2
expect_rc "a rebase of the image with the journal exits 76" 76 ic rebase -b "" top.qcow2
expect_rc "rebase -u too" 76 ic rebase -u -b base.qcow2 -F qcow2 top.qcow2
ic commit --resume top.qcow2 >/dev/null 2>&1; rc=$?
expect "commit --resume answers neither 75 nor 76 (rc $rc)" test "$rc" != 75 -a "$rc" != 76

# A lock another process holds is still 75.
qimg create -q -f qcow2 held.qcow2 1M
qemu-io -f qcow2 -c 'sleep 30000' held.qcow2 >/dev/null 2>&1 &
holder=$!
ino=$(stat -c %i held.qcow2)
i=0
while ! grep -q ":$ino " /proc/locks 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
expect_rc "a held image exits 75" 75 ic io -c 'write 0 512' held.qcow2
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

# ... and so is a write lock another program (not qemu) holds on a lock byte.
truncate -s 1M other.img
expect "a write lock held by another program answers 75" python3 -c '
import fcntl, os, subprocess, sys
fd = os.open("other.img", os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 100)
r = subprocess.run([sys.argv[1], "info", "other.img"], capture_output=True)
sys.exit(0 if r.returncode == 75 else 1)' "$IMGCHAIN_BIN"

expect_out "the usage text lists 76" "76 an interrupted operation" ic help
finish
