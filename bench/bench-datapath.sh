#!/bin/sh
# bench/bench-datapath.sh - the convert data path against the device's
# limit and against qemu-img, on a warm page cache.  Called by
# bench/bench.sh; prints only Markdown table rows in its format on stdout
# (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
#
# The image: a 4 GiB qcow2 chain of three layers holding 640 MiB of
# incompressible data (384 MiB in the base, 128 MiB in each overlay, at
# distinct guest offsets), so every convert writes 640 MiB.
#
# The limit: `dd if=/dev/zero bs=8M oflag=direct conv=fsync` writing the
# same 640 MiB into a new file on the same file system: one writer, no
# reads, nothing to compute.  Its row puts the durable raw convert in the
# imgchain column and dd in the qemu-img column, so its ratio is
# dd/imgchain (1.00 = at the limit; the target is at least 1/1.1 = 0.91).
#
# Rows, each run alternating imgchain, qemu-img (and dd) $BENCH_RUNS times
# (default 7), medians:
#   convert -O raw|qcow2 (durable)  imgchain's default (flushes the target)
#                                   beside qemu-img -t writeback, the mode
#                                   with the same guarantee
#   convert -O raw|qcow2 -t unsafe  beside qemu-img's default (unsafe: no
#                                   flush)
#   convert -C -O raw               copy offloading (copy_file_range) beside
#                                   imgchain's own default convert in the
#                                   qemu-img column (ratio > 1: -C helps),
#                                   then beside qemu-img -C -t writeback
#   reflink rows                    on a reflink-capable file system (a
#                                   loop-mounted XFS, root and mkfs.xfs
#                                   only): -C beside qemu-img -C, where
#                                   copy_file_range shares extents instead
#                                   of writing, and the default durable
#                                   convert beside qemu-img -t writeback
#                                   there; reported apart, since sharing
#                                   extents is not writing the data
# Before every run the chain is read once (warm cache), the last run's
# output removed and everything synced; the runs are timed as whole
# processes (bench/timeit.py), so they include start-up.
#
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (7), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_DATAPATH_OPS ("dd durable unsafe range
# reflink").  The file system is named on stderr and in the rows' image.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-7}
OPS=${BENCH_DATAPATH_OPS:-"dd durable unsafe range reflink"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/datapath
NAME=bench-datapath
. "$top/bench/bench-lib.sh"
bench_need
mkdir -p "$D" && cd "$D" || exit 1

STAMP=images-v1
if [ ! -e "$STAMP" ]; then
    echo "bench-datapath: building the 4 GiB chain in $D (once)" >&2
    rm -f ./*.qcow2 ./images-*
    head -c $((640 << 20)) /dev/urandom >data.bin || exit 1
    qemu-img create -q -f qcow2 base.qcow2 4G || exit 1
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 || exit 1
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 || exit 1
    # qemu-io's write -s reads its pattern file from offset 0: three
    # slices of data.bin become three files
    dd if=data.bin of=d1 bs=1M count=384 status=none &&
        dd if=data.bin of=d2 bs=1M skip=384 count=128 status=none &&
        dd if=data.bin of=d3 bs=1M skip=512 count=128 status=none || exit 1
    qemu-io -c 'write -s d1 0 384M' base.qcow2 >/dev/null &&
        qemu-io -c 'write -s d2 1G 128M' mid.qcow2 >/dev/null &&
        qemu-io -c 'write -s d3 3G 128M' top.qcow2 >/dev/null || exit 1
    rm -f data.bin d1 d2 d3
    touch "$STAMP"
fi
BYTES=$((640 << 20))

# run DIR CMD...: one timed run in DIR (output names out.*), warm source;
# prints "seconds kib" or "fail".
run() {
    dir=$1; shift
    rm -f "$dir"/out.raw "$dir"/out.qcow2
    cat "$dir"/base.qcow2 "$dir"/mid.qcow2 "$dir"/top.qcow2 >/dev/null
    sync
    if (cd "$dir" && python3 "$top/bench/timeit.py" 1 /usr/bin/time -f %M -o "$D/.m" "$@" >"$D/.t"); then
        echo "$(cat "$D/.t") $(tail -n 1 "$D/.m")"
    else
        echo fail
        sed 's/^/    /' "$dir/.err" >&2
    fi
    rm -f "$dir"/out.raw "$dir"/out.qcow2
}

# pair DIR OP "A_CMD" "B_CMD": RUNS alternating runs, then the row
pair() {
    dir=$1; op=$2; a=$3; b=$4
    : >"$D/.ic"; : >"$D/.q"
    i=0
    while [ $i -lt "$RUNS" ]; do
        # shellcheck disable=SC2086
        run "$dir" $a >>"$D/.ic"
        # shellcheck disable=SC2086
        run "$dir" $b >>"$D/.q"
        i=$((i + 1))
    done
    fs=$(findmnt -n -o FSTYPE -T "$dir" 2>/dev/null || echo "?")
    bench_row "4 GiB chain, 640 MiB data ($fs)" "$op"
}

CHAIN=$D/top.qcow2
DD="dd if=/dev/zero of=out.raw bs=8M count=$((BYTES / (8 << 20))) oflag=direct conv=fsync status=none"
for op in $OPS; do
    case $op in
    dd)
        pair "$D" "convert -O raw beside the limit: dd oflag=direct conv=fsync (qemu-img column)" \
            "$IC convert -O raw $CHAIN out.raw" "$DD"
        pair "$D" "convert -O qcow2 beside the limit: dd oflag=direct conv=fsync (qemu-img column)" \
            "$IC convert -O qcow2 $CHAIN out.qcow2" "$DD"
        ;;
    durable)
        pair "$D" "convert -O raw (durable; qemu-img -t writeback)" \
            "$IC convert -O raw $CHAIN out.raw" "qemu-img convert -t writeback -O raw $CHAIN out.raw"
        pair "$D" "convert -O qcow2 (durable; qemu-img -t writeback)" \
            "$IC convert -O qcow2 $CHAIN out.qcow2" "qemu-img convert -t writeback -O qcow2 $CHAIN out.qcow2"
        ;;
    unsafe)
        pair "$D" "convert -O raw -t unsafe (qemu-img default)" \
            "$IC convert -t unsafe -O raw $CHAIN out.raw" "qemu-img convert -O raw $CHAIN out.raw"
        pair "$D" "convert -O qcow2 -t unsafe (qemu-img default)" \
            "$IC convert -t unsafe -O qcow2 $CHAIN out.qcow2" "qemu-img convert -O qcow2 $CHAIN out.qcow2"
        ;;
    range)
        pair "$D" "convert -C -O raw (copy_file_range) / imgchain's default (qemu-img column)" \
            "$IC convert -C -O raw $CHAIN out.raw" "$IC convert -O raw $CHAIN out.raw"
        pair "$D" "convert -C -O raw (qemu-img -C -t writeback)" \
            "$IC convert -C -O raw $CHAIN out.raw" "qemu-img convert -C -t writeback -O raw $CHAIN out.raw"
        ;;
    reflink)
        if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs >/dev/null; then
            echo "bench-datapath: reflink rows skipped (need root and mkfs.xfs)" >&2
            continue
        fi
        X=$D/xfs
        mkdir -p "$X"
        mountpoint -q "$X" || {
            rm -f "$D/xfs.img"
            truncate -s 4G "$D/xfs.img" &&
                mkfs.xfs -q -m reflink=1 "$D/xfs.img" && mount -o loop "$D/xfs.img" "$X"
        } || { echo "bench-datapath: reflink rows skipped (cannot mount an XFS loop file)" >&2; continue; }
        cp "$D"/base.qcow2 "$D"/mid.qcow2 "$D"/top.qcow2 "$X"/
        pair "$X" "XFS reflink: convert -C -O raw (qemu-img -C -t writeback)" \
            "$IC convert -C -O raw top.qcow2 out.raw" "qemu-img convert -C -t writeback -O raw top.qcow2 out.raw"
        pair "$X" "XFS: convert -O raw (durable; qemu-img -t writeback)" \
            "$IC convert -O raw top.qcow2 out.raw" "qemu-img convert -t writeback -O raw top.qcow2 out.raw"
        umount "$X" && rm -f "$D/xfs.img"
        ;;
    *) echo "bench-datapath: unknown op $op" >&2 ;;
    esac
done
