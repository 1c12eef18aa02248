#!/bin/sh
# tests/live/live.sh - snapshots of a running domain (docs/domain-live.md)
# against a real qemu-system-x86_64 (TCG, stopped CPUs: -S) with -blockdev
# disks on virtio-blk devices.  The guest's writes are HMP
# `qemu-io -d DEV/virtio-backend` over QMP, through the device, so they
# follow the switch; data is read back with qemu-io after qemu exits.
#
# Safety: qemu-ga runs on THIS host.  It runs with a temporary state folder
# and pid file and every RPC blocked except sync/ping/fsfreeze-status/
# freeze-list/thaw, behind tests/live/qga-proxy.py, which forwards a
# freeze-list only for exactly the test's loop-mounted ext4 and records
# anything else as a violation (checked below).  guest-fsfreeze-freeze is
# never sent to it.  The trap kills every process started here and runs
# fsfreeze -u on the loop mount.  No image, state folder or journal lives
# on that mount.
. "$(dirname "$0")/../lib.sh"
H=$IC_TOP/tests/live
PY=python3
MNT=""
PIDS=""
cleanup() {
    if [ -n "$MNT" ]; then
        fsfreeze -u "$MNT" 2>/dev/null
        umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    fi
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "SKIP: qemu-system-x86_64 is not installed (scripts/install-deps.sh installs qemu-system-x86)"
    finish
fi
qmp() { timeout 30 $PY "$H/qmpc.py" "$T/$1.mon" "$2" ${3:+"$3"}; }
hmp_write() { # VM DEV PATTERN OFFSET LEN
    qmp "$1" human-monitor-command \
        "{\"command-line\": \"qemu-io -d $2/virtio-backend \\\"write -P $3 $4 $5\\\"\"}" >/dev/null
}
# the names of qemu's block nodes, sorted
nodes() { qmp "$1" query-named-block-nodes '{"flat": true}' |
          $PY -c 'import json,sys; print(" ".join(sorted(n["node-name"] for n in json.load(sys.stdin))))'; }
# qdev=file of each device's active layer
active() { qmp "$1" query-block |
           $PY -c 'import json,sys; print(" ".join(b["qdev"].split("/")[3] + "=" + b["inserted"]["image"]["filename"] for b in json.load(sys.stdin)))'; }

# start_vm NAME DISK... : qemu with one virtio-blk device per disk (device
# id = target name), a QMP socket for imgchain and one for the test.
start_vm() {
    _vm=$1; shift
    _args=""; _xml=""
    for _d in "$@"; do
        _args="$_args -blockdev driver=file,filename=$T/$_vm-$_d.qcow2,node-name=f$_d"
        _args="$_args -blockdev driver=qcow2,file=f$_d,node-name=n$_d"
        _args="$_args -device virtio-blk-pci,drive=n$_d,id=$_d"
    done
    # shellcheck disable=SC2086
    qemu-system-x86_64 -machine q35,accel=tcg -S -nodefaults -display none -m 64 $_args \
        -qmp "unix:$T/$_vm.qmp,server=on,wait=off" -qmp "unix:$T/$_vm.mon,server=on,wait=off" \
        >"$T/$_vm.out" 2>&1 &
    eval "QPID_$_vm=$!"
    PIDS="$PIDS $!"
    for _i in $(seq 1 100); do [ -S "$T/$_vm.mon" ] && break; sleep 0.05; done
}
# define_vm NAME DISK... : images (64M qcow2) and the domain document
define_vm() {
    _vm=$1; shift
    {
        echo "<domain type='kvm'><name>$_vm</name><memory>65536</memory><vcpu>1</vcpu>"
        echo "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
        for _d in "$@"; do
            qimg create -q -f qcow2 "$T/$_vm-$_d.qcow2" 64M
            echo "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            echo "<source file='$T/$_vm-$_d.qcow2'/><target dev='$_d' bus='virtio'/></disk>"
        done
        echo "</devices></domain>"
    } >"$T/$_vm.xml"
}
S="--state-dir $T/state"
icf() { # FAULT ARGS...: imgchain with a failure injected (docs/domain-live.md)
    IMGCHAIN_TEST_LIVE_FAULT=$1; export IMGCHAIN_TEST_LIVE_FAULT; shift
    ic "$@"; _r=$?
    unset IMGCHAIN_TEST_LIVE_FAULT
    return $_r
}
strays() { # VM PATTERN: files matching PATTERN
    ls "$T" | grep -E "$2" || true
}

# ---- a three-disk domain ----------------------------------------------------
define_vm vm3 vda vdb vdc
qimg bitmap --add "$T/vm3-vda.qcow2" inc0
qimg bitmap --add --disable "$T/vm3-vda.qcow2" old0
start_vm vm3 vda vdb vdc
expect "define --qmp records the QMP socket" ic define $S "$T/vm3.xml" --qmp "$T/vm3.qmp"
expect_out "the private file holds the socket, not NAME.xml" "\"qmp\": \"$T/vm3.qmp\"" \
    cat "$T/state/vm3.imgchain.json"

for d in vda vdb vdc; do hmp_write vm3 $d 0x11 0 64k; done
expect_out "snapshot-create-as of the running domain switches all three disks" \
    "Domain snapshot s1 created" ic snapshot-create-as $S vm3 s1 --disk-only
expect_out "qemu's active layers are the new overlays" \
    "^vda=$T/vm3-vda.s1 vdb=$T/vm3-vdb.s1 vdc=$T/vm3-vdc.s1\$" active vm3
for d in vda vdb vdc; do hmp_write vm3 $d 0x22 65536 64k; done
expect_out "domblklist of the running domain reports qemu's active layers" \
    "vdc +$T/vm3-vdc.s1" ic domblklist $S vm3
expect_out "dumpxml of the running domain names the active overlay" \
    "<source file=.$T/vm3-vdb.s1./>" ic dumpxml $S vm3
qmp vm3 query-named-block-nodes '{"flat": true}' >"$T/nodes.json"
expect_out "the enabled persistent bitmap is carried into the overlay, the disabled one is not" \
    '^\[\["inc0", true, true\]\]$' $PY -c '
import json, sys
print(json.dumps([[b["name"], b["persistent"], b["recording"]] for n in json.load(open(sys.argv[1]))
                  if n["image"]["filename"].endswith("vm3-vda.s1") and n["drv"] == "qcow2"
                  for b in n.get("dirty-bitmaps", [])]))' "$T/nodes.json"
expect_out "overlays are mode 0600" '^-rw-------' ls -l "$T/vm3-vda.s1"

expect_out "snapshot-revert of a running domain is refused: stop it first" \
    "cannot revert a running domain.*stop it first" ic snapshot-revert $S vm3 s1
expect_out "snapshot-delete of a running domain is refused: stop it first" \
    "stop it first" ic snapshot-delete $S vm3 s1
expect_rc "imgchain never writes an image qemu holds: its lock refuses the write (exit 75)" 75 \
    ic io "$T/vm3-vda.s1" -c "write -P 0x33 0 4k"
expect_out "the refusal says which lock" 'vm3-vda.s1: failed to get "write" lock' \
    ic io "$T/vm3-vda.s1" -c "write -P 0x33 0 4k"

# failures before the transaction leave the VM on its images, no nodes, no files
before_nodes=$(nodes vm3)
before_active=$(active vm3)
check_clean() { # WHAT
    if [ "$(nodes vm3)" = "$before_nodes" ] && [ "$(active vm3)" = "$before_active" ] &&
       [ -z "$(strays vm3 '\.s2$')" ] && [ ! -e "$T/state/vm3.journal" ]; then
        pass "$1: the VM runs on its old images, no stray nodes, files or journal"
    else
        fail "$1: not clean"; echo "    nodes $(nodes vm3)"; echo "    active $(active vm3)"; ls "$T" | sed 's/^/    /'
    fi
}
expect_out "a blockdev-add qemu refuses fails the snapshot naming the command" \
    "blockdev-add: qemu says" icf blockdev-add snapshot-create-as $S vm3 s2 --disk-only
check_clean "blockdev-add failure"
expect_out "a transaction qemu refuses fails the snapshot naming the command" \
    "transaction: qemu says" icf transaction snapshot-create-as $S vm3 s2 --disk-only
check_clean "transaction failure"
for step in kill-after-files kill-after-add; do
    env IMGCHAIN_TEST_LIVE_FAULT=$step "$IMGCHAIN_BIN" snapshot-create-as $S vm3 s2 --disk-only >/dev/null 2>&1
    rc=$?
    if [ $rc = 137 ] && [ -e "$T/state/vm3.journal" ]; then pass "$step: killed, journal left"
    else fail "$step: rc $rc, journal $(ls "$T/state")"; fi
    expect_out "$step: the next command rolls back and says what it removed" \
        "rolled back interrupted snapshot-create-live of 's2': removed .*removed file $T/vm3-vda.s2" \
        ic snapshot-current $S vm3 s1
    check_clean "$step"
done
env IMGCHAIN_TEST_LIVE_FAULT=kill-after-transaction "$IMGCHAIN_BIN" snapshot-create-as $S vm3 s2 --disk-only >/dev/null 2>&1
expect_out "killed after the transaction: the next command finishes the snapshot" \
    "finished interrupted snapshot-create-live of 's2'" ic snapshot-current $S vm3 s1
expect_out "the finished snapshot is listed" " s2 " ic snapshot-list $S vm3
expect_out "and the domain follows qemu's active layers" "vda +$T/vm3-vda.s2" ic domblklist $S vm3
for d in vda vdb vdc; do hmp_write vm3 $d 0x33 131072 64k; done

expect_out "an internal snapshot of the running VM goes through snapshot-save" \
    "Domain snapshot i1 created" ic snapshot-create-as $S vm3 i1
expect_out "the internal snapshot is recorded with its state" "i1 .*running|i1 .*paused" \
    ic snapshot-list $S vm3

expect_out "an internal snapshot without metadata is taken in the images only" \
    "Domain snapshot i2 created" ic snapshot-create-as $S vm3 i2 --no-metadata
expect_out "a snapshot-save job qemu fails is reported with qemu's reason" \
    "snapshot-save: qemu says: .*i2" ic snapshot-create-as $S vm3 i2
expect_out "and nothing is recorded for it" "^ s2 .*\$|^ i1 " ic snapshot-list $S vm3
if ic snapshot-list $S vm3 --name | grep -qx i2; then fail "i2 was recorded"; else pass "i2 is not in the metadata"; fi
expect_out "--halt stops the VM with quit after the snapshot" \
    "Domain snapshot s3 created" ic snapshot-create-as $S vm3 s3 --disk-only --halt
eval "qp=\$QPID_vm3"
for _i in $(seq 1 100); do kill -0 "$qp" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$qp" 2>/dev/null; then fail "qemu still runs after --halt"; else pass "qemu exited after --halt"; fi
expect_out "the halted domain is offline: dumpxml shows the recorded overlays" \
    "<source file=.$T/vm3-vdc.s3./>" ic dumpxml $S vm3

# data: 0x11 before s1 in the base, 0x22 after s1 in s1's overlay, 0x33 in s2's
for d in vda vdb vdc; do
    expect "$d: the base holds what was written before the snapshot" \
        qio -f qcow2 -r -c "read -P 0x11 0 64k" -c "read -P 0 64k 64k" "$T/vm3-$d.qcow2"
    expect "$d: the first overlay holds what was written after it" \
        qio -f qcow2 -r -c "read -P 0x11 0 64k" -c "read -P 0x22 64k 64k" -c "read -P 0 128k 64k" "$T/vm3-$d.s1"
    expect "$d: the last chain reads all three writes" \
        qio -f qcow2 -r -c "read -P 0x11 0 64k" -c "read -P 0x22 64k 64k" -c "read -P 0x33 128k 64k" "$T/vm3-$d.s3"
    expect "$d: every layer passes qemu-img check" sh -c \
        "qemu-img check -q '$T/vm3-$d.qcow2' && qemu-img check -q '$T/vm3-$d.s1' && qemu-img check -q '$T/vm3-$d.s2' && qemu-img check -q '$T/vm3-$d.s3'"
done
expect_out "the internal snapshot is in the active layer of every disk" "i1" \
    qimg snapshot -l "$T/vm3-vdb.s2"
expect_out "the overlay carries the persistent bitmap" "inc0" qimg info "$T/vm3-vda.s1"

# ---- recovery when the VM is gone too ---------------------------------------------
# Killed after the transaction, the guest writes, qemu quits: the grown
# overlay says the switch happened, so the next command finishes it.
define_vm vmx vda
start_vm vmx vda
ic define $S "$T/vmx.xml" --qmp "$T/vmx.qmp" >/dev/null
icf kill-after-transaction snapshot-create-as $S vmx x1 --disk-only >/dev/null 2>&1
hmp_write vmx vda 0x66 0 1M
qmp vmx quit >/dev/null
eval "qp=\$QPID_vmx"
for _i in $(seq 1 100); do kill -0 "$qp" 2>/dev/null || break; sleep 0.05; done
expect_out "qemu gone, overlay grown: the next command finishes the snapshot" \
    "finished interrupted snapshot-create-live of 'x1'" ic snapshot-create-as $S vmx o1 --disk-only
expect "and the guest's writes are in the finished snapshot's overlay, under the new one" \
    qio -f qcow2 -r -c "read -P 0x66 0 1M" "$T/vmx-vda.o1"
# Killed after adding nodes, qemu quits: nothing took writes, so the files go.
define_vm vmy vda
start_vm vmy vda
ic define $S "$T/vmy.xml" --qmp "$T/vmy.qmp" >/dev/null
icf kill-after-add snapshot-create-as $S vmy y1 --disk-only >/dev/null 2>&1
qmp vmy quit >/dev/null
eval "qp=\$QPID_vmy"
for _i in $(seq 1 100); do kill -0 "$qp" 2>/dev/null || break; sleep 0.05; done
expect_out "qemu gone, overlay untouched: the next command rolls back and removes the file" \
    "rolled back interrupted snapshot-create-live of 'y1': removed file $T/vmy-vda.y1" \
    ic snapshot-create-as $S vmy o1 --disk-only
expect_out "the offline snapshot then sits on the old image" "backing file: $T/vmy-vda.qcow2\$" \
    qimg info "$T/vmy-vda.o1"

# ---- a two-disk domain quiesced through the guest agent ------------------------
if ! command -v qemu-ga >/dev/null; then
    echo "SKIP: quiesce cases: qemu-ga is not installed (scripts/install-deps.sh installs qemu-guest-agent)"
    finish
fi
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: quiesce cases: a loop-mounted ext4 needs root"
    finish
fi
mkdir -p "$T/fsmnt" "$T/ga"
dd if=/dev/zero of="$T/fs.img" bs=1M count=16 status=none
if ! mkfs.ext4 -q -F "$T/fs.img" >/dev/null 2>&1 || ! mount -o loop "$T/fs.img" "$T/fsmnt" 2>/dev/null; then
    echo "SKIP: quiesce cases: cannot make and mount a loop device here"
    finish
fi
MNT=$T/fsmnt
blocked=$(qemu-ga --block-rpcs=help 2>&1 | grep -v -x -E 'guest-sync|guest-sync-delimited|guest-ping|guest-fsfreeze-status|guest-fsfreeze-freeze-list|guest-fsfreeze-thaw' | paste -sd, -)
case ",$blocked," in
    *,guest-fsfreeze-freeze,*) pass "the test's agent blocks guest-fsfreeze-freeze" ;;
    *) fail "guest-fsfreeze-freeze is not in the agent's block list: not running the agent"; finish ;;
esac
qemu-ga -m unix-listen -p "$T/ga/agent.sock" -t "$T/ga" -f "$T/ga/qga.pid" -b "$blocked" \
    -l "$T/ga/qga.log" &
PIDS="$PIDS $!"
$PY "$H/qga-proxy.py" "$T/ga/proxy.sock" "$T/ga/agent.sock" "$MNT" "$T/ga" &
PIDS="$PIDS $!"
for _i in $(seq 1 100); do [ -S "$T/ga/agent.sock" ] && [ -e "$T/ga/proxy.ready" ] && break; sleep 0.05; done
frozen() { timeout 10 $PY -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(b"{\"execute\": \"guest-fsfreeze-status\"}\n")
print(json.loads(s.makefile().readline())["return"])' "$T/ga/proxy.sock"; }

define_vm vm2 vda vdb
start_vm vm2 vda vdb
expect "define --qmp --qga records both sockets" \
    ic define $S "$T/vm2.xml" --qmp "$T/vm2.qmp" --qga "$T/ga/proxy.sock"
before_nodes2=$(nodes vm2)
touch "$T/ga/refuse"
expect_out "an agent refusing to freeze fails the snapshot, naming the agent's answer" \
    "guest-fsfreeze-freeze-list: the guest agent says: test: the agent refuses" \
    ic snapshot-create-as $S vm2 q1 --disk-only --quiesce --quiesce-mountpoint "$MNT"
rm -f "$T/ga/refuse"
if [ "$(nodes vm2)" = "$before_nodes2" ] && [ -z "$(strays vm2 'vm2-.*\.q1$')" ] && [ "$(frozen)" = thawed ]; then
    pass "refused freeze: thawed, no stray nodes or files"
else fail "refused freeze left state behind"; fi
touch "$T/ga/short"
expect_out "an agent freezing fewer file systems than asked fails the snapshot" \
    "froze 0 file systems, 1 were asked" \
    ic snapshot-create-as $S vm2 q1 --disk-only --quiesce --quiesce-mountpoint "$MNT"
rm -f "$T/ga/short"
if [ "$(nodes vm2)" = "$before_nodes2" ] && [ -z "$(strays vm2 'vm2-.*\.q1$')" ] && [ "$(frozen)" = thawed ]; then
    pass "short freeze: thawed, no stray nodes or files"
else fail "short freeze left state behind"; fi
hmp_write vm2 vda 0x44 0 64k
expect_out "--quiesce --quiesce-mountpoint freezes exactly that file system and thaws it" \
    "Domain snapshot q1 created" ic snapshot-create-as $S vm2 q1 --disk-only --quiesce --quiesce-mountpoint "$MNT"
expect_out "the guest is thawed afterwards" "^thawed$" frozen
expect_out "the private file records the snapshot as quiesced" '"quiesced": \[ *"q1"' \
    sh -c "tr -d '\n' < '$T/state/vm2.imgchain.json'"
env IMGCHAIN_TEST_LIVE_FAULT=kill-after-freeze "$IMGCHAIN_BIN" snapshot-create-as $S vm2 q2 --disk-only --quiesce --quiesce-mountpoint "$MNT" >/dev/null 2>&1
expect_out "killed while frozen: the file system is frozen" "^frozen$" frozen
expect_rc "check --domain reports the interrupted live snapshot (exit 76) and leaves it" 76 \
    ic check --domain vm2 $S
expect_out "still frozen after check --domain" "^frozen$" frozen
expect_out "the next command, even a read-only one, thaws the guest and removes the stray nodes and files" \
    "rolled back interrupted snapshot-create-live of 'q2': thawed the guest, removed node .*removed file $T/vm2-vda.q2" \
    ic snapshot-list $S vm2
expect_out "thawed after the recovery" "^thawed$" frozen
if [ "$(strays vm2 'vm2-.*\.q2$')" = "" ]; then pass "no q2 file is left"; else fail "q2 files left"; fi
icf kill-after-transaction snapshot-create-as $S vm2 q3 --disk-only --quiesce --quiesce-mountpoint "$MNT" >/dev/null 2>&1
expect_out "killed after the transaction while frozen: still frozen" "^frozen$" frozen
expect_out "the next command thaws the guest and finishes the quiesced snapshot" \
    "finished interrupted snapshot-create-live of 'q3': thawed the guest" ic domblklist $S vm2
expect_out "thawed after finishing" "^thawed$" frozen
expect_out "the finished snapshot is recorded as quiesced" '"quiesced": \[ *"q1", *"q3"' \
    sh -c "tr -d '\n' < '$T/state/vm2.imgchain.json'"
hmp_write vm2 vdb 0x55 0 64k
qmp vm2 quit >/dev/null
eval "qp=\$QPID_vm2"
for _i in $(seq 1 100); do kill -0 "$qp" 2>/dev/null || break; sleep 0.05; done
expect "vm2: data before the quiesced snapshot is in the base, after it in the overlay" sh -c \
    "qemu-io -f qcow2 -r -c 'read -P 0x44 0 64k' '$T/vm2-vda.qcow2' >/dev/null &&
     qemu-io -f qcow2 -r -c 'read -P 0 0 64k' '$T/vm2-vdb.qcow2' | grep -q 'read 65536' &&
     qemu-io -f qcow2 -r -c 'read -P 0 0 64k' '$T/vm2-vdb.q1' | grep -q 'read 65536' &&
     qemu-io -f qcow2 -r -c 'read -P 0x55 0 64k' '$T/vm2-vdb.q3' | grep -q 'read 65536'"
if [ -s "$T/ga/violations" ]; then
    fail "the agent proxy saw forbidden requests:"; sed 's/^/    /' "$T/ga/violations"
else
    pass "the agent was only ever asked to freeze the test's own mount"
fi
finish
