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
NAME=bench-chain
. "$top/bench/bench-lib.sh"
bench_need
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
    bench_time "$@"
}

# bench OP IC_ARGS -- QEMU_ARGS
bench() {
    op=$1; shift
    bench_pairs run "$@"
    bench_row "chain ($FMT, 512 MiB over 256 MiB)" "$op"
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
