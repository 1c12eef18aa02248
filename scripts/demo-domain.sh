#!/bin/sh
# The domain snapshot lifecycle on a generated 2-disk VM, every step
# checked with qemu-img (the demo stops at the first failure).  Run by
# `make demo` after scripts/demo.sh; always in a temporary state folder.
#
# 1. define the VM (two qcow2 disks) and write data
# 2. snapshot "base" (external, disk-only), write, snapshot "app"
# 3. revert to "base" and branch: snapshots "test" and "test2" beside "app"
# 4. snapshot-list --tree, then revert to "app" and read its data back
# 5. delete the middle node "test": its overlay is committed down, "test2"
#    still reads what it captured
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
IC="$top/$BUILD/imgchain"
D=$(mktemp -d /tmp/imgchain-domain-demo.XXXXXX)
trap 'rm -rf "$D"' EXIT
SD="--state-dir $D/state"
step() { printf '\n== %s\n' "$*"; }
# prints the command and its output (paths shortened); fails as it fails
run() {
    printf '$ imgchain'
    for a in "$@"; do
        case "$a" in *" "*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac
    done | sed "s|$D/||g"
    printf '\n'
    rc=0
    "$IC" "$@" >"$D/.out" 2>&1 || rc=$?
    sed "s|$D/||g" "$D/.out"
    return $rc
}
active() { "$IC" domblklist $SD vm | awk -v d="$1" '$1 == d { print $2 }'; }
# every image passes qemu-img check; qemu-img reads both active chains
qcheck() {
    command -v qemu-img >/dev/null 2>&1 || return 0
    for f in "$D"/disk*; do
        qemu-img check -U -q "$f"
    done
    for d in vda vdb; do
        qemu-img info -U --backing-chain "$(active $d)" | grep -E '^(image|backing file):' |
            sed "s|$D/||g"
    done
    echo "qemu-img check: every image clean"
}

step "1. a VM with two disks"
"$IC" create -f qcow2 "$D/disk1.qcow2" 256M >/dev/null
"$IC" create -f qcow2 "$D/disk2.qcow2" 256M >/dev/null
cat >"$D/vm.xml" <<XML
<domain type='kvm'>
  <name>vm</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$D/disk1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$D/disk2.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
run define $SD "$D/vm.xml"
run domblklist $SD vm
run io "$D/disk1.qcow2" -c "write -P 0x11 0 4M"
run io "$D/disk2.qcow2" -c "write -P 0x21 0 1M"

step "2. snapshots 'base' and 'app' (external: overlays on the frozen images)"
run snapshot-create-as $SD vm base "installed system" --disk-only
run io "$(active vda)" -c "write -P 0x12 0 4M"
run snapshot-create-as $SD vm app "application added" --disk-only
run io "$(active vda)" -c "write -P 0x13 1M 1M"
run domblklist $SD vm
qcheck

step "3. revert to 'base' (--force: the writes after 'app' are dropped), branch 'test', 'test2'"
if run snapshot-revert $SD vm base; then
    echo "demo: the revert should have asked for --force" >&2
    exit 1
fi
run snapshot-revert $SD vm base --force
run io "$(active vda)" -c "read -P 0x11 0 4M"
run io "$(active vda)" -c "write -P 0x14 0 64k"
run snapshot-create-as $SD vm test "a test branch" --disk-only
run io "$(active vda)" -c "write -P 0x15 64k 64k"
run snapshot-create-as $SD vm test2 "more tests" --disk-only
qcheck

step "4. the tree; revert to 'app' and read its data back"
run snapshot-list $SD vm --tree
run snapshot-list $SD vm --parent
run snapshot-revert $SD vm app
run io "$(active vda)" -c "read -P 0x12 0 4M"
run snapshot-current $SD vm --name
qcheck

step "5. delete the middle node 'test': its overlay is committed down"
run snapshot-delete $SD vm test
run snapshot-list $SD vm --tree
run snapshot-info $SD vm test2
img=$("$IC" snapshot-dumpxml $SD vm test2 | python3 -c '
import sys, xml.etree.ElementTree as E
r = E.fromstring(sys.stdin.read())
print(r.find("domain/devices/disk/source").get("file"))')
run io -r -U "$img" -c "read -P 0x14 0 64k" -c "read -P 0x15 64k 64k"
run check --domain vm $SD
qcheck
printf '\ndemo: the domain lifecycle ran, every step checked\n'
