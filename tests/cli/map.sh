#!/bin/sh
# imgchain map: human and JSON output (golden map.out) for chains with
# data, zero clusters, discards and a short backing file; range options.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/golden.inc"
cd "$T" || exit 1

ic create -q -f raw base.raw 2M
ic io -q -f raw base.raw -c 'write -P 1 0 256k' -c 'write -P 2 1M 64k'
ic create -q -f qcow2 -b base.raw -F raw mid.qcow2 4M
ic io -q mid.qcow2 -c 'write -P 3 128k 128k' -c 'write -z 1M 64k'
ic create -q -f qed -b mid.qcow2 -F qcow2 top.qed
ic io -q top.qed -c 'write -P 4 3M 64k' -c 'write -P 5 0 4k'
g imgchain map base.raw
g imgchain map mid.qcow2
g imgchain map top.qed
g imgchain map --output=json top.qed
g imgchain map --output=json --start-offset=1M --max-length=1M top.qed
g imgchain map --output=json --start-offset=64k --max-length=64k mid.qcow2
g imgchain map --output=json --start-offset=8M top.qed
g imgchain map -f qed --output=human top.qed

ic create -q -f qcow2 c.qcow2 1M
qio -c 'write -c -P 7 0 64k' c.qcow2 >/dev/null
g imgchain map --output=json c.qcow2
g imgchain map c.qcow2
golden map
finish
