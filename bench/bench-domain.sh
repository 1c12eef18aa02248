#!/bin/sh
# bench/bench-domain.sh - domain snapshots of a 4-disk VM beside the
# equivalent sequence of qemu-img commands.  Prints only Markdown table
# rows in bench/bench.sh's format on stdout (progress on stderr):
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
#
# Operations (each on a fresh copy of four 1 GiB qcow2 disks holding 64 MiB
# of data each; the copy and the domain's definition are not timed):
#   create-external  snapshot-create-as --disk-only   vs 4 x qemu-img create -b -F
#   create-internal  snapshot-create-as               vs 4 x qemu-img snapshot -c
#   delete-middle    snapshot-delete of s1 in base <- s1 <- s2, 64 MiB written
#                    above s1 on every disk        vs 4 x (qemu-img commit -d,
#                    qemu-img rebase -u onto the base, rm)
# imgchain's time includes its metadata writes (journal, NAME.xml, domain,
# private file, each fsynced); the qemu-img column writes no metadata.
# Environment: IMGCHAIN_BIN or BUILD, BENCH_RUNS (5), BENCH_DIR
# (/var/tmp/imgchain-bench), BENCH_DOMAIN_OPS.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
IC=${IMGCHAIN_BIN:-$top/${BUILD:-build}/imgchain}
RUNS=${BENCH_RUNS:-5}
OPS=${BENCH_DOMAIN_OPS:-"create-external create-internal delete-middle"}
D=${BENCH_DIR:-/var/tmp/imgchain-bench}/domain
[ -x "$IC" ] || { echo "bench-domain: $IC not built (run make)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-domain: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "bench-domain: qemu-img missing" >&2; exit 1; }
mkdir -p "$D" && cd "$D" || exit 1

STAMP=images-v1
if [ ! -e "$STAMP" ]; then
    echo "bench-domain: building images in $D (once)" >&2
    rm -rf ./*.qcow2 ./images-*
    for d in 1 2 3 4; do
        qemu-img create -q -f qcow2 "disk$d.qcow2" 1G || exit 1
        qemu-io -c "write -P $d 0 64M" "disk$d.qcow2" >/dev/null || exit 1
    done
    touch "$STAMP"
fi

W="$D/work"
fresh() { # a copy of the disks and a domain on them in a fresh state folder
    rm -rf "$W"
    mkdir -p "$W"
    for d in 1 2 3 4; do cp --sparse=always "disk$d.qcow2" "$W/disk$d.qcow2"; done
    {
        echo "<domain type='kvm'><name>vm</name><memory unit='KiB'>1048576</memory><devices>"
        for d in 1 2 3 4; do
            printf "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            printf "<source file='%s/disk%s.qcow2'/><target dev='vd%s' bus='virtio'/></disk>" \
                "$W" "$d" "$(echo "$d" | tr 1234 abcd)"
        done
        echo "</devices></domain>"
    } >"$W/vm.xml"
    "$IC" define --state-dir "$W/state" "$W/vm.xml" >/dev/null || exit 1
    sync
}
# base <- s1 <- s2 with 64 MiB written above s1 on every disk
middle() {
    fresh
    "$IC" snapshot-create-as --state-dir "$W/state" vm s1 --disk-only >/dev/null || exit 1
    for d in 1 2 3 4; do qemu-io -c "write -P 9 0 64M" "$W/disk$d.s1" >/dev/null || exit 1; done
    "$IC" snapshot-create-as --state-dir "$W/state" vm s2 --disk-only >/dev/null || exit 1
    sync
}
q_create_external() {
    for d in 1 2 3 4; do
        qemu-img create -q -f qcow2 -b "$W/disk$d.qcow2" -F qcow2 "$W/disk$d.s1" || return 1
    done
}
q_create_internal() {
    for d in 1 2 3 4; do qemu-img snapshot -c s1 "$W/disk$d.qcow2" || return 1; done
}
q_delete_middle() {
    for d in 1 2 3 4; do
        qemu-img commit -q -d "$W/disk$d.s1" || return 1
        qemu-img rebase -u -F qcow2 -b "$W/disk$d.qcow2" "$W/disk$d.s2" || return 1
        rm -f "$W/disk$d.s1"
    done
}
case "${1:-}" in
q_*) "$1"; exit $? ;;
esac

run() { # one timed run: "seconds kib" or "fail"
    if /usr/bin/time -f '%e %M' -o "$D/.m" "$@" >/dev/null 2>"$D/.err"; then
        awk '{ t = $(NF-1); m = $NF } END { print t, m }' "$D/.m"
    else
        echo fail
        sed 's/^/    /' "$D/.err" >&2
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# bench OP SETUP IC_ARGS -- QEMU_FUNCTION
bench() {
    op=$1; setup=$2; shift 2
    icargs=""
    while [ "$1" != -- ]; do icargs="$icargs $1"; shift; done
    qf=$2
    : >"$D/.ic"; : >"$D/.q"
    i=0
    while [ $i -lt "$RUNS" ]; do
        $setup
        # shellcheck disable=SC2086
        run "$IC" $icargs >>"$D/.ic"
        $setup
        run sh "$top/bench/bench-domain.sh" "$qf" >>"$D/.q"
        i=$((i + 1))
    done
    rm -rf "$W"
    if grep -q fail "$D/.ic" "$D/.q"; then
        echo "| 4 x 1 GiB domain | $op | failed | | | | |"
        return
    fi
    ict=$(cut -d' ' -f1 "$D/.ic" | median); qt=$(cut -d' ' -f1 "$D/.q" | median)
    icm=$(cut -d' ' -f2 "$D/.ic" | sort -n | tail -n 1); qm=$(cut -d' ' -f2 "$D/.q" | sort -n | tail -n 1)
    ratio=$(awk -v q="$qt" -v i="$ict" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "bench-domain: $op: imgchain ${ict}s qemu-img ${qt}s ratio $ratio" >&2
    echo "| 4 x 1 GiB domain | $op | $ict | $qt | $ratio | $(awk -v k="$icm" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$qm" 'BEGIN{printf "%.1f", k/1024}') |"
}

SDW="--state-dir $W/state"
for op in $OPS; do
    case $op in
    create-external)
        bench "snapshot-create --disk-only (4 overlays)" fresh \
            snapshot-create-as $SDW vm s1 --disk-only -- q_create_external ;;
    create-internal)
        bench "snapshot-create (4 internal)" fresh \
            snapshot-create-as $SDW vm s1 -- q_create_internal ;;
    delete-middle)
        bench "snapshot-delete of a middle node (4 x commit 64 MiB)" middle \
            snapshot-delete $SDW vm s1 -- q_delete_middle ;;
    *) echo "bench-domain: unknown op $op" >&2 ;;
    esac
done
