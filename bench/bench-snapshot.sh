#!/bin/sh
# bench/bench-snapshot.sh - qcow2 metadata operations (info, map, check,
# internal snapshots) beside qemu-img.  Prints only Markdown table rows in
# bench/bench.sh's format on stdout (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Each operation runs $BENCH_RUNS times (default 5; info and map, which
# take milliseconds, five times as often) per tool, alternating with one
# run of an empty static program (the floor, below); operations that
# modify the image run on a fresh sparse copy each time (the copy is not
# timed).  A run is timed whole, as a user or an orchestrator waits for
# it: process creation, exec, dynamic loading, the work, exit (wall clock
# around fork, exec and wait4 in a small C launcher built here; peak RSS
# from wait4).  The time columns are medians of those whole-process times.
#
# The floor: `int main(void){return 0;}` built with cc -O2 -static into
# $BENCH_DIR/snapshot, timed the same way beside every operation: no
# program can finish faster.  For the rows on snap4.qcow2 the ratio reads
# "R above floor (W whole)": R = (qemu-img - floor) / (imgchain - floor)
# with the floor measured beside that operation, W the plain ratio of the
# whole-process medians.  Without a static libc the floor is skipped
# (noted on stderr) and the column holds the plain ratio.  A last row
# gives the floor itself (median of every floor run).
#
# Images (built once, cached in $BENCH_DIR/snapshot):
#   snap4.qcow2   256 GiB, preallocation=metadata, four snapshots (qemu-img)
#   snap1000.qcow2  64 MiB with data and 1000 snapshots (imgchain-made)
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_SNAPSHOT_OPS ("info map check create
# apply delete create-1000").
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
OPS=${BENCH_SNAPSHOT_OPS:-"info map check create apply delete create-1000"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/snapshot
[ -x "$IC" ] || { echo "bench-snapshot: $IC not built (run make)" >&2; exit 1; }
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

# The launcher (launch CMD...: one whole-process run, prints "seconds kib",
# exit 1 when CMD fails) and the floor program, built on every run of this
# script.  The launcher is a small C program: forking it copies little, and
# the peak RSS wait4 reports (which includes the parent's memory at the
# time of the exec) is the measured program's.
cat >launch.c <<'EOF'
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    struct timespec a, b;
    struct rusage ru;
    int st;
    if (argc < 2)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t p = fork();
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        fd = open(".err", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (p < 0 || wait4(p, &st, 0, &ru) < 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        return 1;
    printf("%.6f %ld\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9,
           ru.ru_maxrss);
    return 0;
}
EOF
printf 'int main(void){return 0;}\n' >floor.c
CC=${CC:-cc}
$CC -O2 -static -o launch launch.c 2>/dev/null || $CC -O2 -o launch launch.c ||
    { echo "bench-snapshot: cannot build the launcher with $CC" >&2; exit 1; }
FLOOR=""
if $CC -O2 -static -o floor floor.c 2>/dev/null && ./floor; then
    FLOOR=./floor
else
    echo "bench-snapshot: no static libc ($CC -static failed): ratios are not corrected for" \
         "the fork/exec floor" >&2
fi
rm -f floor.c launch.c

# one timed run: "seconds kib" or "fail"
run() {
    if ./launch "$@"; then
        :
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) printf "%.4f\n", a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
fresh() { rm -f work.qcow2; cp --sparse=always "$1" work.qcow2; sync; }

: >.floor_all
# bench IMAGE OP COPY(yes|no) IC_ARGS -- QEMU_ARGS   (work.qcow2 = the copy)
bench() {
    img=$1; op=$2; copy=$3; shift 3
    icargs=""; qargs=""; side=ic
    for a in "$@"; do
        if [ "$a" = -- ]; then side=q; continue; fi
        if [ $side = ic ]; then icargs="$icargs $a"; else qargs="$qargs $a"; fi
    done
    : >.ic; : >.q; : >.fl
    # operations of a few milliseconds get five times the runs
    n=$RUNS
    case $op in info|map*) n=$((RUNS * 5)) ;; esac
    i=0
    while [ $i -lt "$n" ]; do
        [ -n "$FLOOR" ] && run "$FLOOR" >>.fl
        [ "$copy" = yes ] && fresh "$img"
        # shellcheck disable=SC2086
        run "$IC" $icargs >>.ic
        [ "$copy" = yes ] && fresh "$img"
        # shellcheck disable=SC2086
        run qemu-img $qargs >>.q
        i=$((i + 1))
    done
    rm -f work.qcow2
    if grep -q fail .ic .q .fl; then
        echo "| $img | $op | failed | | | | |"
        return
    fi
    cat .fl >>.floor_all
    ict=$(cut -d' ' -f1 .ic | median); qt=$(cut -d' ' -f1 .q | median)
    icm=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    whole=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    ratio=$whole
    if [ -n "$FLOOR" ] && [ "$img" = snap4.qcow2 ]; then
        fl=$(cut -d' ' -f1 .fl | median)
        above=$(awk -v q="$qt" -v i="$ict" -v f="$fl" 'BEGIN { if (i > f) printf "%.2f", (q - f) / (i - f); else printf "inf" }')
        ratio="$above above floor ($whole whole)"
        echo "bench-snapshot: $img $op: imgchain ${ict}s qemu-img ${qt}s floor ${fl}s ratio $above above the floor, $whole whole" >&2
    else
        echo "bench-snapshot: $img $op: imgchain ${ict}s qemu-img ${qt}s ratio $whole" >&2
    fi
    echo "| $img | $op | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
}

for op in $OPS; do
    case $op in
    info) bench snap4.qcow2 info no info snap4.qcow2 -- info snap4.qcow2 ;;
    map) bench snap4.qcow2 "map --output=json" no map --output=json snap4.qcow2 -- map --output=json snap4.qcow2 ;;
    check) bench snap4.qcow2 check no check snap4.qcow2 -- check snap4.qcow2 ;;
    create) bench snap4.qcow2 "snapshot -c" yes snapshot -c new work.qcow2 -- snapshot -c new work.qcow2 ;;
    apply) bench snap4.qcow2 "snapshot -a" yes snapshot -a s2 work.qcow2 -- snapshot -a s2 work.qcow2 ;;
    delete) bench snap4.qcow2 "snapshot -d" yes snapshot -d s2 work.qcow2 -- snapshot -d s2 work.qcow2 ;;
    create-1000) bench snap1000.qcow2 "snapshot -c (1000 exist)" yes snapshot -c new work.qcow2 -- snapshot -c new work.qcow2 ;;
    *) echo "bench-snapshot: unknown op $op" >&2 ;;
    esac
done

if [ -n "$FLOOR" ] && [ -s .floor_all ]; then
    fl=$(cut -d' ' -f1 .floor_all | median)
    echo "| (none) | empty static program, fork+exec floor ($(wc -l <.floor_all) runs) | $fl | $fl | | | |"
fi
rm -f .floor_all .fl .ic .q .err
