#!/bin/sh
# bench/bench-live.sh - a live disk-only snapshot, quiesced, of a running
# 3-disk domain: imgchain beside the same sequence driven step by step
# through QMP and the guest agent (bench/live-steps.py: query-block,
# qemu-img create -u, blockdev-add, freeze-list, transaction, thaw).
# Prints only Markdown table rows in bench/bench.sh's format on stdout
# (progress on stderr); the time columns of these rows are milliseconds:
#   whole          wall time of the command (process start to exit)
#   freeze window  from the freeze-list request to the thaw request, as
#                  the agent's fence (tests/live/qga-proxy.py) sees them
# imgchain's whole time includes its journal and metadata writes (fsynced);
# the step-by-step driver writes none.  RSS is not measured ("-").
#
# The guest agent is the host's qemu-ga, fenced exactly as in
# tests/live/live.sh: temporary state folder and pid file, every RPC but
# sync/ping/fsfreeze-status/freeze-list/thaw blocked, behind the proxy that
# passes only a freeze-list of this script's loop-mounted ext4; the trap
# thaws and unmounts it and kills every process started here.  Needs root,
# loop devices, qemu-system-x86_64 and qemu-ga; otherwise prints nothing
# and says why on stderr.
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/live
H=$top/tests/live
skip() { echo "bench-live: skipped: $*" >&2; exit 0; }
[ -x "$IC" ] || { echo "bench-live: $IC not built (run make)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing"
command -v qemu-ga >/dev/null || skip "qemu-ga missing"
[ "$(id -u)" = 0 ] || skip "a loop-mounted ext4 needs root"
rm -rf "$D"; mkdir -p "$D/ga" "$D/mnt" && cd "$D" || exit 1
MNT=""; PIDS=""
cleanup() {
    if [ -n "$MNT" ]; then fsfreeze -u "$MNT" 2>/dev/null; umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 1' INT TERM
dd if=/dev/zero of=fs.img bs=1M count=16 status=none
mkfs.ext4 -q -F fs.img >/dev/null 2>&1 && mount -o loop fs.img "$D/mnt" 2>/dev/null || skip "cannot mount a loop device"
MNT=$D/mnt
blocked=$(qemu-ga --block-rpcs=help 2>&1 | grep -v -x -E 'guest-sync|guest-sync-delimited|guest-ping|guest-fsfreeze-status|guest-fsfreeze-freeze-list|guest-fsfreeze-thaw' | paste -sd, -)
case ",$blocked," in *,guest-fsfreeze-freeze,*) ;; *) echo "bench-live: cannot fence qemu-ga" >&2; exit 1 ;; esac
qemu-ga -m unix-listen -p "$D/ga/agent.sock" -t "$D/ga" -f "$D/ga/qga.pid" -b "$blocked" -l "$D/ga/qga.log" &
PIDS="$PIDS $!"
python3 "$H/qga-proxy.py" "$D/ga/proxy.sock" "$D/ga/agent.sock" "$MNT" "$D/ga" &
PIDS="$PIDS $!"
for _i in $(seq 1 100); do [ -S "$D/ga/agent.sock" ] && [ -e "$D/ga/proxy.ready" ] && break; sleep 0.05; done

start_vm() { # NAME: 3 x 1 GiB qcow2 disks on virtio-blk, two QMP sockets
    _a=""; _x=""
    for d in vda vdb vdc; do
        qemu-img create -q -f qcow2 "$D/$1-$d.qcow2" 1G
        _a="$_a -blockdev driver=file,filename=$D/$1-$d.qcow2,node-name=f$d -blockdev driver=qcow2,file=f$d,node-name=n$d -device virtio-blk-pci,drive=n$d,id=$d"
        _x="$_x<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$D/$1-$d.qcow2'/><target dev='$d' bus='virtio'/></disk>"
    done
    echo "<domain type='kvm'><name>$1</name><memory>65536</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>$_x</devices></domain>" >"$D/$1.xml"
    # shellcheck disable=SC2086
    qemu-system-x86_64 -machine q35,accel=tcg -S -nodefaults -display none -m 64 $_a \
        -qmp "unix:$D/$1.qmp,server=on,wait=off" >"$D/$1.out" 2>&1 &
    PIDS="$PIDS $!"
    for _i in $(seq 1 100); do [ -S "$D/$1.qmp" ] && break; sleep 0.05; done
}
start_vm vmi
start_vm vms
"$IC" define --state-dir "$D/state" "$D/vmi.xml" --qmp "$D/vmi.qmp" --qga "$D/ga/proxy.sock" >/dev/null || exit 1

window() { awk '$1 == "freeze" { f = $2 } $1 == "thaw" && f { printf "%.3f\n", ($2 - f) * 1000; exit }' "$D/ga/timings"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
: >.icw; : >.icf; : >.sw; : >.sf
i=1
while [ $i -le "$RUNS" ]; do
    : >"$D/ga/timings"
    t=$(python3 "$top/bench/timeit.py" 1 "$IC" snapshot-create-as --state-dir "$D/state" vmi "b$i" \
          --disk-only --quiesce --quiesce-mountpoint "$MNT") || { echo "bench-live: imgchain failed:" >&2; cat .err >&2; exit 1; }
    awk -v t="$t" 'BEGIN { printf "%.3f\n", t * 1000 }' >>.icw
    window >>.icf
    : >"$D/ga/timings"
    t=$(python3 "$top/bench/timeit.py" 1 python3 "$top/bench/live-steps.py" "$D/vms.qmp" "$D/ga/proxy.sock" "$MNT" "s$i") ||
        { echo "bench-live: step driver failed:" >&2; cat .err >&2; exit 1; }
    awk -v t="$t" 'BEGIN { printf "%.3f\n", t * 1000 }' >>.sw
    window >>.sf
    i=$((i + 1))
done
[ -s "$D/ga/violations" ] && { echo "bench-live: the agent fence saw forbidden requests" >&2; cat "$D/ga/violations" >&2; exit 1; }
row() { # OP ICFILE STEPFILE
    a=$(median <"$2"); b=$(median <"$3")
    r=$(awk -v q="$b" -v i="$a" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "bench-live: $1: imgchain ${a} ms, step by step ${b} ms" >&2
    echo "| 3-disk running domain (ms) | $1 | $a | $b | $r | - | - |"
}
row "live snapshot --disk-only --quiesce, whole (vs QMP step by step)" .icw .sw
row "freeze window, freeze to thaw (vs QMP step by step)" .icf .sf
