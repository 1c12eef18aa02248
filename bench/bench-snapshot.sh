#!/bin/sh
# bench/bench-snapshot.sh - qcow2 check and internal snapshots beside
# qemu-img.  Prints only Markdown table rows in bench/bench.sh's format on
# stdout (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Each operation runs $BENCH_RUNS times (default 5) per tool, alternating;
# operations that modify the image run on a fresh sparse copy each time
# (the copy is not timed).  Median wall time, peak RSS (/usr/bin/time %M).
#
# Images (built once, cached in $BENCH_DIR/snapshot):
#   snap4.qcow2   256 GiB, preallocation=metadata, four snapshots (qemu-img)
#   snap1000.qcow2  64 MiB with data and 1000 snapshots (imgchain-made)
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_SNAPSHOT_OPS ("check create apply delete
# create-1000").
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
OPS=${BENCH_SNAPSHOT_OPS:-"check create apply delete create-1000"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/snapshot
[ -x "$IC" ] || { echo "bench-snapshot: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-snapshot: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-snapshot: qemu-img missing" >&2; exit 1; }
mkdir -p "$D" && cd "$D" || exit 1

STAMP=images-v1
if [ ! -e "$STAMP" ]; then
    echo "bench-snapshot: building images in $D (once)" >&2
    rm -f ./*.qcow2 ./images-*
    qemu-img create -q -f qcow2 -o preallocation=metadata snap4.qcow2 256G || exit 1
    for s in s1 s2 s3 s4; do qemu-img snapshot -c $s snap4.qcow2 || exit 1; done
    qemu-img create -q -f qcow2 snap1000.qcow2 64M || exit 1
    qemu-io -c 'write -P 1 0 16M' snap1000.qcow2 >/dev/null || exit 1
    i=0
    while [ $i -lt 1000 ]; do "$IC" snapshot -c "n$i" snap1000.qcow2 || exit 1; i=$((i + 1)); done
    touch "$STAMP"
fi

# one timed run: "seconds kib" or "fail"
run() {
    if /usr/bin/time -f '%e %M' -o .m "$@" >/dev/null 2>.err; then
        python3 - <<'PY'
print(open(".m").read().split()[-2], open(".m").read().split()[-1])
PY
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
fresh() { rm -f work.qcow2; cp --sparse=always "$1" work.qcow2; sync; }

# bench IMAGE OP COPY(yes|no) IC_ARGS -- QEMU_ARGS   (work.qcow2 = the copy)
bench() {
    img=$1; op=$2; copy=$3; shift 3
    icargs=""; qargs=""; side=ic
    for a in "$@"; do
        if [ "$a" = -- ]; then side=q; continue; fi
        if [ $side = ic ]; then icargs="$icargs $a"; else qargs="$qargs $a"; fi
    done
    : >.ic; : >.q
    i=0
    while [ $i -lt "$RUNS" ]; do
        [ "$copy" = yes ] && fresh "$img"
        # shellcheck disable=SC2086
        run "$IC" $icargs >>.ic
        [ "$copy" = yes ] && fresh "$img"
        # shellcheck disable=SC2086
        run qemu-img $qargs >>.q
        i=$((i + 1))
    done
    rm -f work.qcow2
    if grep -q fail .ic .q; then
        echo "| $img | $op | failed | | | | |"
        return
    fi
    ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
    icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "bench-snapshot: $img $op: imgchain ${ict}s qemu-img ${qt}s ratio $ratio" >&2
    echo "| $img | $op | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
}

for op in $OPS; do
    case $op in
    check) bench snap4.qcow2 check no check snap4.qcow2 -- check snap4.qcow2 ;;
    create) bench snap4.qcow2 "snapshot -c" yes snapshot -c new work.qcow2 -- snapshot -c new work.qcow2 ;;
    apply) bench snap4.qcow2 "snapshot -a" yes snapshot -a s2 work.qcow2 -- snapshot -a s2 work.qcow2 ;;
    delete) bench snap4.qcow2 "snapshot -d" yes snapshot -d s2 work.qcow2 -- snapshot -d s2 work.qcow2 ;;
    create-1000) bench snap1000.qcow2 "snapshot -c (1000 exist)" yes snapshot -c new work.qcow2 -- snapshot -c new work.qcow2 ;;
    *) echo "bench-snapshot: unknown op $op" >&2 ;;
    esac
done
