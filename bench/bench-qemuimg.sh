#!/bin/sh
# bench/bench-qemuimg.sh - resize and measure, imgchain beside qemu-img.
# Prints only Markdown table rows in bench/bench.sh's format on stdout
# (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Rows:
#   resize --preallocation=metadata of a 1 GiB qcow2 image to 256 GiB: every
#     L2 table and data cluster of the new 255 GiB laid out (each run on a
#     fresh copy of the small image; the copy is not timed);
#   measure -O qcow2 of bench.sh's 3-layer chain (top.qcow2, ~1 GiB of
#     data) and of its 256 GiB preallocated image (prealloc.qcow2): the
#     block-status walk of the whole chain; each run is the median of
#     $BENCH_REPEAT (21) executions less the cost of starting /bin/true,
#     as bench.sh times info and map.
# Each tool runs $BENCH_RUNS times (default 5), alternating; median wall
# time, peak RSS.  The measure rows need bench.sh's images in $BENCH_DIR.
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}
[ -x "$IC" ] || { echo "bench-qemuimg: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-qemuimg: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-qemuimg: qemu-img missing" >&2; exit 1; }
mkdir -p "$D/qemuimg" && cd "$D/qemuimg" || exit 1
[ -e small.qcow2 ] || qemu-img create -q -f qcow2 small.qcow2 1G || exit 1

run() { # one timed run: "seconds kib" or "fail"
    if /usr/bin/time -f '%e %M' -o .m "$@" >/dev/null 2>.err; then tail -n 1 .m
    else echo fail; sed 's/^/    /' .err >&2; fi
}
# run_quick CMD...: a short operation: the median of $REPEAT executions
# (fork+exec+wait timed in one process, bench/timeit.py) less the same
# measure of /bin/true, then the peak RSS of one more run
REPEAT=${BENCH_REPEAT:-21}
run_quick() {
    if python3 "$top/bench/timeit.py" "$REPEAT" "$@" >.t &&
        /usr/bin/time -f %M -o .m "$@" >/dev/null 2>.err; then
        echo "$(awk -v b="$BASE" '{ v = $1 - b; printf "%.5f", (v > 0.00001 ? v : 0.00001) }' .t) $(tail -n 1 .m)"
    else
        echo fail; sed 's/^/    /' .err >&2
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# row IMAGE OPERATION: prints the row from .ic and .q
row() {
    if grep -q fail .ic .q; then
        echo "| $1 | $2 | failed | | | | |"
        return
    fi
    ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
    icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "bench-qemuimg: $1 $2: imgchain ${ict}s qemu-img ${qt}s ratio $ratio" >&2
    echo "| $1 | $2 | $ict | $qt | $ratio | $(mib "$icm") | $(mib "$qm") |"
}

fresh() { rm -f work.qcow2; cp --sparse=always small.qcow2 work.qcow2; sync; }
: >.ic; : >.q
i=0
while [ $i -lt "$RUNS" ]; do
    fresh; run "$IC" resize -q --preallocation=metadata work.qcow2 256G >>.ic
    fresh; run qemu-img resize -q --preallocation=metadata work.qcow2 256G >>.q
    i=$((i + 1))
done
rm -f work.qcow2
row small.qcow2 "resize --preallocation=metadata 1G -> 256G"

BASE=0
BASE=$(run_quick /bin/true | cut -d' ' -f1)
for img in top.qcow2 prealloc.qcow2; do
    if [ ! -e "$D/$img" ]; then
        echo "bench-qemuimg: $D/$img missing (run bench/bench.sh first)" >&2
        echo "| $img | measure -O qcow2 | failed | | | | |"
        continue
    fi
    : >.ic; : >.q
    i=0
    while [ $i -lt "$RUNS" ]; do
        run_quick "$IC" measure -O qcow2 --output=json "$D/$img" >>.ic
        run_quick qemu-img measure -O qcow2 --output=json "$D/$img" >>.q
        i=$((i + 1))
    done
    row "$img" "measure -O qcow2"
done
