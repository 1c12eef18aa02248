#!/bin/sh
# bench/bench.sh - imgchain beside qemu-img on the same images (make bench).
#
# Builds its images once (cached in $BENCH_DIR), then runs every operation
# with imgchain and qemu-img alternately, $BENCH_RUNS times each (default
# 5), measuring wall time and peak RSS with /usr/bin/time.  Prints a
# Markdown table: median times, the ratio qemu-img/imgchain (> 1 means
# imgchain is faster) and both peak RSS.
#
# info and map take milliseconds, less than starting the measuring
# harness: each of their runs is itself the median of $BENCH_REPEAT (21)
# back-to-back executions timed around fork+exec+wait in one process,
# less the same measure of an empty statically linked program (the fork
# and exec floor no program goes below; /bin/true where no static libc is
# installed, which the footer says).  What remains is each tool's own
# start-up (dynamic loading included) and work.  The same operations are
# also reported whole, nothing subtracted ("whole process" rows).
#
# Images:
#   prealloc  256 GiB qcow2 with preallocation=metadata (qemu-img-made)
#   chain     three qcow2 layers holding about 1 GiB of data together
#             (512 MiB base + 2 x 256 MiB overlays, compressible content)
#
# imgchain's convert always flushes the target before it exits; qemu-img's
# default cache mode for convert (unsafe) never does, so qemu-img runs with
# -t writeback, the mode with the same guarantee.
#
# Environment: BENCH_DROP_CACHES (1 when root: cold cache per run),
# BUILD (build) or IMGCHAIN_BIN, BENCH_RUNS (5), BENCH_DATAPATH_RUNS (11,
# or BENCH_RUNS when larger), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_OPS (all; e.g. "info map").
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
# bench-datapath's runs take a fraction of a second, and the VM's cost of
# fresh pages puts outliers of that size into both columns: more runs
DPRUNS=${BENCH_DATAPATH_RUNS:-$((RUNS > 11 ? RUNS : 11))}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}
OPS=${BENCH_OPS:-"info map convert-raw convert-qcow2 convert-c"}
# BENCH_DROP_CACHES=0 keeps the page cache warm between runs.
DROP=${BENCH_DROP_CACHES:-1}
[ -w /proc/sys/vm/drop_caches ] || DROP=0
NAME=bench
. "$top/bench/bench-lib.sh"
bench_need
command -v python3 >/dev/null || { echo "bench: python3 missing" >&2; exit 1; }
mkdir -p "$D" && cd "$D" || exit 1

# ---- images (built once; the stamp names the recipe version) -------------
STAMP=images-v1
if [ ! -e "$STAMP" ]; then
    echo "bench: building images in $D (once)" >&2
    rm -f ./*.qcow2 ./*.raw ./images-*
    qemu-img create -q -f qcow2 -o preallocation=metadata prealloc.qcow2 256G || exit 1
    # 64 MiB of compressible data (about 4 bits of entropy per byte),
    # repeated with a per-copy twist so no two clusters are identical.
    python3 - <<'PY' || exit 1
import random
r = random.Random(42)
alphabet = bytes(range(32, 48))
chunk = bytearray(r.choice(alphabet) for _ in range(1 << 20))
with open("data.raw", "wb") as f:
    for i in range(512):
        chunk[i % len(chunk)] = (chunk[i % len(chunk)] + i) & 0xff
        f.write(bytes(chunk[(i * 4099) % 4096:]) + bytes(chunk[:(i * 4099) % 4096]))
PY
    qemu-img create -q -f raw base-src.raw 2G
    qemu-io -f raw -c 'write -s data.raw 0 512M' base-src.raw >/dev/null || exit 1
    qemu-img convert -O qcow2 base-src.raw base.qcow2 || exit 1
    rm -f base-src.raw
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 || exit 1
    qemu-io -c 'write -s data.raw 384M 256M' mid.qcow2 >/dev/null || exit 1
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 || exit 1
    qemu-io -c 'write -s data.raw 1G 128M' -c 'write -s data.raw 1536M 128M' top.qcow2 >/dev/null || exit 1
    rm -f data.raw
    touch "$STAMP"
fi
# QED rows: the chain's guest view as one QED image (qemu-img-made).
if [ ! -e qed-images-v1 ]; then
    rm -f data.qed
    qemu-img convert -O qed top.qcow2 data.qed || exit 1
    touch qed-images-v1
fi

# ---- measuring -------------------------------------------------------------
# run TOOL CMD...: one timed run; prints "seconds kib" or "fail".
run() {
    rm -f out.raw out.qcow2 out.qed
    sync # start from the same state: no writeback left from the last run
    # Converts start with a cold page cache (when allowed): on a VM, page-
    # cache pages the guest never touched before cost a host fault each,
    # and which run gets fresh pages depends on the run before; dropping
    # the cache makes every convert start alike (and read its source from
    # disk, as a real conversion of a big image does).  info and map run
    # warm: they touch little memory, and a cold cache would mostly time
    # loading the programs and their libraries.
    if [ "$DROP" = 1 ] && [ "$cold" = 1 ]; then echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; fi
    if python3 "$top/bench/timeit.py" 1 /usr/bin/time -f %M -o .m "$@" >.t; then
        echo "$(cat .t) $(tail -n 1 .m)"
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
    rm -f out.raw out.qcow2 out.qed
}

# run_quick CMD...: one run of a short operation: the median of REPEAT
# executions (fork+exec+wait, timed in one process), then the peak RSS of
# one more under /usr/bin/time; prints "seconds kib" or "fail".
REPEAT=${BENCH_REPEAT:-21}
run_quick() {
    if python3 "$top/bench/timeit.py" "$REPEAT" "$@" >.t &&
        /usr/bin/time -f %M -o .m "$@" >/dev/null 2>>.err; then
        echo "$(cat .t) $(tail -n 1 .m)"
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
}

# Process creation (fork + exec of a trivial program, for run_quick) is
# measured on /bin/true and subtracted from the info and map medians, so
# they compare the tools, not the harness.  Converts take seconds and are
# reported as measured.
cold=0
FLOOR=/bin/true
if printf 'int main(void){return 0;}\n' >empty.c && cc -O2 -static -o empty-static empty.c 2>/dev/null; then
    FLOOR=$D/empty-static
fi
: >.base
i=0
while [ $i -lt 9 ]; do run_quick "$FLOOR" >>.base; i=$((i + 1)); done
BASE=$(cut -d' ' -f1 .base | median)

rows=""
# bench IMAGE OP IC_ARGS -- QEMU_ARGS
bench() {
    img=$1; op=$2; shift 2
    case $op in
    convert*) cold=1; runner=run; base=0 ;;
    *"(whole process)") cold=0; runner=run_quick; base=0 ;;
    *) cold=0; runner=run_quick; base=$BASE ;;
    esac
    bench_pairs $runner "$@"
    rows="$rows$(bench_row "$img" "$op" "$base")
"
}

for img in prealloc.qcow2 top.qcow2; do
    for op in $OPS; do
        case $op in
        info) bench $img info info --backing-chain --output=json $img -- info --backing-chain --output=json $img
              bench $img "info (whole process)" info --backing-chain --output=json $img -- info --backing-chain --output=json $img ;;
        map) bench $img map map --output=json $img -- map --output=json $img
             bench $img "map (whole process)" map --output=json $img -- map --output=json $img ;;
        convert-raw) bench $img "convert -O raw" convert -O raw $img out.raw -- convert -t writeback -O raw $img out.raw ;;
        convert-qcow2) bench $img "convert -O qcow2" convert -O qcow2 $img out.qcow2 -- convert -t writeback -O qcow2 $img out.qcow2 ;;
        convert-c) bench $img "convert -c -O qcow2" convert -c -O qcow2 $img out.qcow2 -- convert -t writeback -c -O qcow2 $img out.qcow2 ;;
        *) echo "bench: unknown op $op" >&2 ;;
        esac
    done
done

# QED (issue 3): info, convert to raw, convert from qcow2.
for op in $OPS; do
    case $op in
    info) bench data.qed info info --output=json data.qed -- info --output=json data.qed ;;
    convert-raw) bench data.qed "convert -O raw" convert -O raw data.qed out.raw -- convert -t writeback -O raw data.qed out.raw ;;
    convert-qcow2) bench top.qcow2 "convert -O qed" convert -O qed top.qcow2 out.qed -- convert -t writeback -O qed top.qcow2 out.qed ;;
    *) ;;
    esac
done

# The cold disk limit beside the cold convert -O raw of the chain:
# bench/disk-limit.c reads the chain's three files and then writes the
# output's data bytes, O_DIRECT through huge-page buffers, with no
# converter in between; the ratio is limit/imgchain (1.00: the convert
# costs what the disk does, and nothing can be much faster).
case " $OPS " in
*" convert-raw "*)
    if cc -O2 -o disk-limit "$top/bench/disk-limit.c" -lpthread 2>/dev/null; then
        cold=1
        "$IC" convert -O raw top.qcow2 out.raw 2>/dev/null
        MiB=$(( ($(du -B1 out.raw | cut -f1) >> 20) / 8 * 8 ))
        rm -f out.raw
        : >.ic; : >.q
        i=0
        while [ $i -lt "$RUNS" ]; do
            run "$IC" convert -O raw top.qcow2 out.raw >>.ic
            run ./disk-limit out.raw "$MiB" base.qcow2 mid.qcow2 top.qcow2 >>.q
            i=$((i + 1))
        done
        rows="$rows$(bench_row top.qcow2 "convert -O raw beside the cold disk limit: O_DIRECT reads of the 3 files, then $MiB MiB of O_DIRECT writes (bench/disk-limit.c; qemu-img column)")
"
    else
        echo "bench: no C compiler: the disk-limit row is left out" >&2
    fi
    ;;
esac

# Snapshot/check (issue 4) and chain editing (issue 5) print rows of their
# own in the same format; BENCH_EXTRA=0 leaves them out.
if [ "${BENCH_EXTRA:-1}" = 1 ]; then
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-snapshot.sh")
"
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-chain.sh")
"
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-domain.sh")
"
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-bitmaps.sh")
"
    # live snapshots of a running VM (milliseconds; skipped without qemu,
    # qemu-ga, root or loop devices)
    live=$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-live.sh")
    [ -n "$live" ] && rows="$rows$live
"
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-qemuimg.sh")
"
    # deep chains: map and convert of a 100-level qcow2 chain
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$RUNS BENCH_DIR=$D sh "$top/bench/bench-deep.sh")
"
    # the data path against dd and qemu-img on a warm cache (DPRUNS runs)
    rows="$rows$(IMGCHAIN_BIN=$IC BENCH_RUNS=$DPRUNS BENCH_DIR=$D sh "$top/bench/bench-datapath.sh")
"
fi

echo
echo "imgchain $("$IC" --version | awk '{print $3}') vs $(qemu-img --version | head -n 1), $RUNS runs each, alternating;"
echo "median wall time; info and map: median of $REPEAT executions per run, minus ${BASE}s for creating a process ($(basename "$FLOOR"); rows marked whole process: nothing subtracted)"
echo "(prealloc.qcow2: 256 GiB, preallocation=metadata; top.qcow2: 3-layer chain holding ~1 GiB of data;"
echo " data.qed: that chain's content as one QED image; snapshot, chain and domain rows: see bench-snapshot.sh, bench-chain.sh, bench-domain.sh;"
echo " snapshot rows (bench-snapshot.sh): whole processes timed by a C launcher; on snap4.qcow2 (256 GiB, preallocation=metadata, 4 snapshots)"
echo " the ratio reads 'R above floor (W whole)': R less the fork/exec floor of an empty static program run beside every operation (last row), W as measured;"
echo " rows marked (ms): milliseconds, bench-live.sh's live snapshot beside the same sequence driven step by step through QMP;"
echo " resize and measure rows: see bench-qemuimg.sh;"
echo " 100-level chain rows: bench-deep.sh (warm cache; converts beside qemu-img -t writeback, RSS is the peak);"
echo " 4 GiB chain rows: bench-datapath.sh, $DPRUNS runs each, warm cache, dd's row is the device's limit (ratio dd/imgchain), -C and XFS reflink rows apart;"
echo " converts flush the target: qemu-img runs them with -t writeback; the cold disk limit row puts bench/disk-limit.c reading the chain's files then writing its data in the qemu-img column (ratio limit/imgchain);"
if [ "$DROP" = 1 ]; then echo " page cache dropped before every convert run; info and map run warm)"; else echo " page cache kept warm)"; fi
echo
echo "| image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$rows"
