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
[ -x "$IC" ] || { echo "bench-deep: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-deep: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-deep: qemu-img missing" >&2; exit 1; }
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
    s=$(date +%s.%N)
    if /usr/bin/time -f %M -o .m "$@" >/dev/null 2>.err; then
        e=$(date +%s.%N)
        echo "$(awk -v s="$s" -v e="$e" 'BEGIN{printf "%.4f", e - s}') $(tail -n 1 .m)"
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# bench OP IC_ARGS -- QEMU_ARGS
bench() {
    op=$1; shift
    icargs=""; qargs=""; side=ic
    for a in "$@"; do
        if [ "$a" = -- ]; then side=q; continue; fi
        if [ $side = ic ]; then icargs="$icargs $a"; else qargs="$qargs $a"; fi
    done
    : >.ic; : >.q
    i=0
    while [ $i -lt "$RUNS" ]; do
        # shellcheck disable=SC2086
        run "$IC" $icargs >>.ic
        # shellcheck disable=SC2086
        run qemu-img $qargs >>.q
        i=$((i + 1))
    done
    rm -f out.*
    img="chain (qcow2, $LEVELS levels)"
    if grep -q fail .ic .q; then
        echo "| $img | $op | failed | | | | |"
        echo "bench-deep: $op failed" >&2
        return
    fi
    ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
    icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "| $img | $op | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
    echo "bench-deep: $op: imgchain ${ict}s qemu-img ${qt}s ratio $ratio, RSS $icm KiB / $qm KiB" >&2
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
