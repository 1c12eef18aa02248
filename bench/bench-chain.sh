#!/bin/sh
# bench/bench-chain.sh - chain editing beside qemu-img: commit of ~512 MiB
# of overlay data, safe rebase onto nothing (flatten in place), and convert
# of the chain.  Called by bench/bench.sh; prints only Markdown table rows
# in its format on stdout (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Each operation runs $BENCH_RUNS times (default 5) per tool, alternating,
# every run on a fresh copy of the chain (the copy is not timed); the time
# is the median wall time, RSS the peak (/usr/bin/time %M).
#
# Images (built once, cached in $BENCH_DIR/chain-edit):
#   base.FMT  1 GiB virtual, 256 MiB of data
#   top.FMT   over base, 512 MiB of data (half overlapping the base's)
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_CHAIN_FMT (qcow2; or qed),
# BENCH_CHAIN_OPS ("commit rebase convert").
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
FMT=${BENCH_CHAIN_FMT:-qcow2}
OPS=${BENCH_CHAIN_OPS:-"commit rebase convert"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/chain-edit-$FMT
[ -x "$IC" ] || { echo "bench-chain: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-chain: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-chain: qemu-img missing" >&2; exit 1; }
mkdir -p "$D" && cd "$D" || exit 1

STAMP=images-v1
if [ ! -e "$STAMP" ]; then
    echo "bench-chain: building the $FMT chain in $D (once)" >&2
    rm -rf tmpl run; mkdir tmpl
    # incompressible-looking but cheap data: a 1 MiB random block, shifted per MiB
    head -c 1048576 /dev/urandom >blk
    i=0; : >data.raw
    while [ $i -lt 512 ]; do
        tail -c $((1048576 - i * 2048 % 1048576)) blk >>data.raw
        head -c $((i * 2048 % 1048576)) blk >>data.raw
        i=$((i + 1))
    done
    qemu-img create -q -f "$FMT" tmpl/base.$FMT 1G || exit 1
    qemu-io -f "$FMT" -c 'write -s data.raw 0 256M' tmpl/base.$FMT >/dev/null || exit 1
    qemu-img create -q -f "$FMT" -b base.$FMT -F "$FMT" tmpl/top.$FMT 1G || exit 1
    qemu-io -f "$FMT" -c 'write -s data.raw 128M 512M' tmpl/top.$FMT >/dev/null || exit 1
    rm -f blk data.raw
    touch "$STAMP"
fi

fresh() { rm -rf run out.*; cp -a tmpl run; sync; sleep 1; }

# run CMD...: one timed run on a fresh copy (an argument EMPTY stands for
# ""); prints "seconds kib" or "fail".
run() {
    fresh
    for a; do shift; [ "$a" = EMPTY ] && a=""; set -- "$@" "$a"; done
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
    img="chain ($FMT, 512 MiB over 256 MiB)"
    if grep -q fail .ic .q; then
        echo "| $img | $op | failed | | | | |"
        echo "bench-chain: $op failed" >&2
        return
    fi
    ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
    icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "| $img | $op | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
    echo "bench-chain: $op: imgchain ${ict}s qemu-img ${qt}s ratio $ratio" >&2
}

for op in $OPS; do
    case $op in
    commit) bench "commit" commit -q run/top.$FMT -- commit -q run/top.$FMT ;;
    rebase) bench "rebase -b '' (safe)" rebase -b EMPTY run/top.$FMT -- rebase -b EMPTY run/top.$FMT ;;
    convert) bench "convert chain -O $FMT" convert -O "$FMT" run/top.$FMT out.$FMT -- convert -O "$FMT" run/top.$FMT out.$FMT ;;
    *) echo "bench-chain: unknown op $op" >&2 ;;
    esac
done
rm -rf run out.*
