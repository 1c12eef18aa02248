#!/bin/sh
# qemu-dirty-extents.sh IMAGE BITMAP - the dirty extents of persistent
# bitmap BITMAP as qemu reads them: the image exported read-only by
# qemu-nbd with the bitmap (-B), read by `qemu-img map` through
# x-dirty-bitmap, where dirty ranges come out as "data": false.  Prints
# one "START LENGTH" line per extent, adjacent ones merged.  The server
# serves one client and exits.
set -eu
img=$1; bm=$2
dir=$(mktemp -d /tmp/ic-nbd.XXXXXX)
trap 'rm -rf "$dir"' EXIT
timeout 60 qemu-nbd -r --fork -f qcow2 -B "$bm" -k "$dir/s" "$img"
timeout 60 qemu-img map --output=json --image-opts \
    "driver=nbd,server.type=unix,server.path=$dir/s,x-dirty-bitmap=qemu:dirty-bitmap:$bm" |
python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["data"]:
        continue
    if out and out[-1][0] + out[-1][1] == e["start"]:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"]])
for s, l in out:
    print(s, l)
'
