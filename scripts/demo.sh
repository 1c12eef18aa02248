#!/bin/sh
# The main job: the snapshot lifecycle on a generated image, step by step,
# every step checked (the demo stops at the first failure).
#
#   make demo        (installs missing packages, builds, runs this)
#
# 1. create a 1 GiB qcow2 image and write a pattern into it
# 2. take internal snapshot "installed", list it (human and JSON)
# 3. change the disk, take "updated", then revert to "installed" and prove
#    the old bytes are back
# 4. export a snapshot with convert -l, delete a snapshot
# 5. take an external snapshot (an overlay whose backing file is the image),
#    write into it, show the chain, commit it back
# 6. check: no corruption, no leak (and qemu-img agrees, when installed)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
IC="$top/$BUILD/imgchain"
D=$(mktemp -d /tmp/imgchain-demo.XXXXXX)
trap 'rm -rf "$D"' EXIT
step() { printf '\n== %s\n' "$*"; }
run() {
    printf '$ imgchain'
    for a in "$@"; do
        case "$a" in *" "*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac
    done | sed "s|$D/||g"
    printf '\n'
    "$IC" "$@"
}

step "1. a fresh 1 GiB disk with some data"
run create -f qcow2 "$D/disk.qcow2" 1G
run io "$D/disk.qcow2" -c "write -P 0x11 0 4M" -c "write -P 0x22 512M 1M"

step "2. internal snapshot 'installed'"
run snapshot -c installed "$D/disk.qcow2"
run snapshot -l "$D/disk.qcow2"

step "3. change the disk, snapshot 'updated', revert to 'installed'"
run io "$D/disk.qcow2" -c "write -P 0x33 0 4M"
run snapshot -c updated "$D/disk.qcow2"
run snapshot -a installed "$D/disk.qcow2"
run io "$D/disk.qcow2" -c "read -P 0x11 0 4M" -c "read -P 0x22 512M 1M"

step "4. export 'updated' to a raw file, then delete it"
run convert -O raw -l snapshot.name=updated "$D/disk.qcow2" "$D/updated.raw"
run io -f raw "$D/updated.raw" -c "read -P 0x33 0 4M"
run snapshot -d updated "$D/disk.qcow2"
run info --output=json "$D/disk.qcow2"

step "5. external snapshot: an overlay on top of the disk"
run create -f qcow2 -b disk.qcow2 -F qcow2 "$D/overlay.qcow2"
run io "$D/overlay.qcow2" -c "write -P 0x44 1M 1M"
run info --backing-chain "$D/overlay.qcow2"
run commit "$D/overlay.qcow2"
run io "$D/disk.qcow2" -c "read -P 0x44 1M 1M" -c "read -P 0x11 0 1M"

step "6. check"
run check "$D/disk.qcow2"
if command -v qemu-img >/dev/null 2>&1; then
    echo "$ qemu-img check disk.qcow2"
    qemu-img check "$D/disk.qcow2"
    echo "$ qemu-img snapshot -l disk.qcow2"
    qemu-img snapshot -l "$D/disk.qcow2"
fi
printf '\ndemo: every step succeeded\n'

# The same lifecycle over a whole VM: scripts/demo-domain.sh.
BUILD=$BUILD sh "$top/scripts/demo-domain.sh"
