#!/bin/sh
# bench/bench-deep.sh - a 100-level qcow2 chain beside qemu-img: map of the
# whole chain and convert of it to qcow2 and raw.  Called by bench/bench.sh;
# prints only Markdown table rows in its format on stdout (progress on
# stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Each operation runs $BENCH_RUNS times (default 5) per tool, alternating;
# the time is the median wall time of the whole process, RSS the peak
# (/usr/bin/time %M).  Both convert with a writeback cache (flush before
# exit), imgchain's default and qemu-img's -t writeback.
#
# Images (built once, cached in $BENCH_DIR/deep): l000.qcow2 (the base) to
# l099.qcow2 (the top), 1 GiB virtual, each layer over the one before it,
# each writing six pieces of 64 KiB to 1 MiB at offsets that depend on the
# layer, so every layer holds data no other layer hides and map has many
# extents.
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_DEEP_LEVELS (100), BENCH_DEEP_OPS
# ("map convert-qcow2 convert-raw"; also: map-human, the human map, and
# convert-qcow2-unsafe / convert-raw-unsafe, imgchain -t unsafe beside
# qemu-img's default, both without the final flush).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
LEVELS=${BENCH_DEEP_LEVELS:-100}
OPS=${BENCH_DEEP_OPS:-"map convert-qcow2 convert-raw"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/deep
NAME=bench-deep
. "$top/bench/bench-lib.sh"
bench_need
mkdir -p "$D" && cd "$D" || exit 1

name() { printf 'l%03d.qcow2' "$1"; }
TOP=$(name $((LEVELS - 1)))
STAMP=images-v1-$LEVELS
if [ ! -e "$STAMP" ]; then
    echo "bench-deep: building the $LEVELS-level chain in $D (once)" >&2
    rm -f l*.qcow2 images-v1-*
    i=0
    while [ $i -lt "$LEVELS" ]; do
        if [ $i -eq 0 ]; then
            qemu-img create -q -f qcow2 "$(name 0)" 1G || exit 1
        else
            qemu-img create -q -f qcow2 -b "$(name $((i - 1)))" -F qcow2 "$(name $i)" || exit 1
        fi
        # six pieces: 64 KiB to 1 MiB long, 64 KiB aligned, spread over the
        # disk by two primes so layers overlap some neighbours' pieces
        set --
        k=0
        while [ $k -lt 6 ]; do
            len=$(( (1 + (i * 5 + k * 3) % 16) * 65536 ))
            off=$(( ((i * 7919 + k * 104729) % 16368) * 65536 ))
            set -- "$@" -c "write -P $(( (i + k) % 255 + 1 )) $off $len"
            k=$((k + 1))
        done
        qemu-io -f qcow2 "$@" "$(name $i)" >/dev/null || exit 1
        i=$((i + 1))
    done
    touch "$STAMP"
fi

# run CMD...: one timed run; prints "seconds kib" or "fail".
run() {
    rm -f out.*
    bench_time "$@"
}

# bench OP IC_ARGS -- QEMU_ARGS
bench() {
    op=$1; shift
    bench_pairs run "$@"
    rm -f out.*
    bench_row "chain (qcow2, $LEVELS levels)" "$op"
}

for op in $OPS; do
    case $op in
    map) bench "map --output=json" map --output=json "$TOP" -- map --output=json "$TOP" ;;
    map-human) bench "map" map "$TOP" -- map "$TOP" ;;
    convert-qcow2) bench "convert -O qcow2" convert -O qcow2 "$TOP" out.qcow2 -- convert -t writeback -O qcow2 "$TOP" out.qcow2 ;;
    convert-raw) bench "convert -O raw" convert -O raw "$TOP" out.raw -- convert -t writeback -O raw "$TOP" out.raw ;;
    convert-qcow2-unsafe) bench "convert -O qcow2 -t unsafe (qemu-img: default)" convert -t unsafe -O qcow2 "$TOP" out.qcow2 -- convert -O qcow2 "$TOP" out.qcow2 ;;
    convert-raw-unsafe) bench "convert -O raw -t unsafe (qemu-img: default)" convert -t unsafe -O raw "$TOP" out.raw -- convert -O raw "$TOP" out.raw ;;
    *) echo "bench-deep: unknown op $op" >&2 ;;
    esac
done
rm -f out.* .m .err .ic .q
