#!/bin/sh
# bench/bench-bitmaps.sh - a 1 GiB write into a qcow2 image holding four
# enabled persistent dirty bitmaps (granularity 512 B, 4 KiB, 64 KiB and
# 2 MiB), imgchain io beside qemu-io.  Prints only Markdown table rows in
# bench/bench.sh's format on stdout (progress on stderr):
#   | image | operation | imgchain (s) | qemu-io (s) | qemu-io/imgchain | imgchain RSS (MiB) | qemu-io RSS (MiB) |
# Each tool runs $BENCH_RUNS times (default 5), alternating, each time on a
# fresh sparse copy of the image (the copy is not timed); the run includes
# loading, marking and storing the bitmaps.  Median wall time, peak RSS.
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/bitmaps
[ -x "$IC" ] || { echo "bench-bitmaps: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-bitmaps: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-io >/dev/null || { echo "bench-bitmaps: qemu-io missing" >&2; exit 1; }
mkdir -p "$D" && cd "$D" || exit 1
if [ ! -e bitmaps4.qcow2 ]; then
    qemu-img create -q -f qcow2 bitmaps4.qcow2 2G || exit 1
    for g in 512 4k 64k 2M; do qemu-img bitmap --add -g $g bitmaps4.qcow2 "b$g" || exit 1; done
fi

run() { # one timed run: "seconds kib" or "fail"
    if /usr/bin/time -f '%e %M' -o .m "$@" >/dev/null 2>.err; then tail -n 1 .m
    else echo fail; sed 's/^/    /' .err >&2; fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
fresh() { rm -f work.qcow2; cp --sparse=always bitmaps4.qcow2 work.qcow2; sync; }

: >.ic; : >.q
i=0
while [ $i -lt "$RUNS" ]; do
    fresh; run "$IC" io -q -c 'write -P 1 0 1G' work.qcow2 >>.ic
    fresh; run qemu-io -c 'write -P 1 0 1G' work.qcow2 >>.q
    i=$((i + 1))
done
rm -f work.qcow2
if grep -q fail .ic .q; then
    echo "| bitmaps4.qcow2 | 1 GiB write, 4 enabled bitmaps | failed | | | | |"
    exit 0
fi
ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
echo "bench-bitmaps: imgchain ${ict}s qemu-io ${qt}s ratio $ratio" >&2
echo "| bitmaps4.qcow2 | 1 GiB write, 4 enabled bitmaps (vs qemu-io) | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
