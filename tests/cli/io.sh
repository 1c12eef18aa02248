#!/bin/sh
# imgchain io: qemu-io's command syntax and summaries (golden io.out), the
# pattern check, zero writes and discards, on raw and qcow2 images.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/golden.inc"
cd "$T" || exit 1

ic create -q -f raw a.raw 1M
g imgchain io -f raw a.raw -c 'write -P 0x5a 0 4k' -c 'read -P 0x5a 0 4k' -c 'read -P 90 1k 1k'
g imgchain io -f raw a.raw -c 'read -P 0x5b 0 4k'
g imgchain io -f raw a.raw -c 'write 1M 1'
g imgchain io -f raw a.raw -c 'write -z 0 2k' -c 'read -P 0 0 2k' -c 'read -P 0x5a 2k 2k'
g imgchain io -f raw a.raw -c 'write 64k 64k' -c 'read -P 0xcd 64k 64k' -c flush
g imgchain io -f raw -q a.raw -c 'discard 64k 64k' -c 'read -P 0 64k 64k'
g imgchain io -f raw -r a.raw -c 'read -P 0 512k 512k'

ic create -q -f qcow2 b.qcow2 4M
g imgchain io b.qcow2 -c 'write -P 1 0 100k' -c 'write -z 1M 128k' -c 'write -P 2 3M 4096' -c 'discard 0 64k'
g imgchain io b.qcow2 -c 'read -P 0 0 64k' -c 'read -P 1 64k 36k' -c 'read -P 0 1M 128k' -c 'read -P 2 3M 4k'
golden io

expect "io: the pattern mismatch exits 1" sh -c "! '$IMGCHAIN_BIN' io -f raw a.raw -c 'read -P 1 0 1' >/dev/null"
expect "io: qemu-io reads what imgchain io wrote" qio -r -c 'read -P 2 3M 4k' b.qcow2
expect "io: a qcow2 written by imgchain io checks clean" qimg check b.qcow2
finish
