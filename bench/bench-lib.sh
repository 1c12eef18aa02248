# bench/bench-lib.sh - what the bench scripts share (sourced, after they
# set NAME, IC and RUNS): the tool checks, the median, one timed run, the
# alternating loop and the Markdown row of bench/bench.sh's table:
#   | image | operation | imgchain (s) | qemu-img (s) | qemu-img/imgchain | imgchain RSS (MiB) | qemu-img RSS (MiB) |
# Timings go to .ic and .q in the current folder, one "seconds kib" (or
# "fail") line per run.

# bench_need: the built imgchain, /usr/bin/time and qemu-img, or exit 1.
bench_need() {
    [ -x "$IC" ] || { echo "$NAME: $IC not built (run make)" >&2; exit 1; }
    [ -x /usr/bin/time ] || { echo "$NAME: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }
    command -v qemu-img >/dev/null || { echo "$NAME: qemu-img missing" >&2; exit 1; }
}

# median: of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# bench_time CMD...: one run of CMD, wall time and peak RSS; prints
# "seconds kib", or "fail" with CMD's stderr indented on stderr.
bench_time() {
    _s=$(date +%s.%N)
    if /usr/bin/time -f %M -o .m "$@" >/dev/null 2>.err; then
        _e=$(date +%s.%N)
        echo "$(awk -v s="$_s" -v e="$_e" 'BEGIN{printf "%.4f", e - s}') $(tail -n 1 .m)"
    else
        echo fail
        sed 's/^/    /' .err >&2
    fi
}

# bench_pairs RUNNER IC_ARGS -- QEMU_ARGS: RUNS alternating runs, RUNNER
# "$IC" IC_ARGS into .ic, then RUNNER qemu-img QEMU_ARGS into .q (the
# arguments are split on blanks).
bench_pairs() {
    _runner=$1; shift
    _ica=""; _qa=""; _side=ic
    for _a in "$@"; do
        if [ "$_a" = -- ]; then _side=q; continue; fi
        if [ $_side = ic ]; then _ica="$_ica $_a"; else _qa="$_qa $_a"; fi
    done
    : >.ic; : >.q
    _i=0
    while [ $_i -lt "$RUNS" ]; do
        # shellcheck disable=SC2086
        $_runner "$IC" $_ica >>.ic
        # shellcheck disable=SC2086
        $_runner qemu-img $_qa >>.q
        _i=$((_i + 1))
    done
}

# bench_row IMAGE OP [BASE]: the row from .ic and .q (medians less BASE
# seconds, peak RSS), and a progress line on stderr.
bench_row() {
    if grep -q fail .ic .q; then
        echo "| $1 | $2 | failed | | | | |"
        echo "$NAME: $1 $2 failed" >&2
        return
    fi
    _b=${3:-0}
    _it=$(cut -d' ' -f1 .ic | median | awk -v b="$_b" '{ v = $1 - b; printf "%.5f", (v > 0.00001 ? v : 0.00001) }')
    _qt=$(cut -d' ' -f1 .q | median | awk -v b="$_b" '{ v = $1 - b; printf "%.5f", (v > 0.00001 ? v : 0.00001) }')
    _im=$(cut -d' ' -f2 .ic | sort -n | tail -n 1); _qm=$(cut -d' ' -f2 .q | sort -n | tail -n 1)
    _r=$(awk -v q="$_qt" -v i="$_it" 'BEGIN { if (i > 0) printf "%.2f", q / i; else printf "inf" }')
    echo "| $1 | $2 | $_it | $_qt | $_r | $(awk -v k="$_im" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$_qm" 'BEGIN{printf "%.1f", k/1024}') |"
    echo "$NAME: $1 $2: imgchain ${_it}s qemu-img ${_qt}s ratio $_r ($RUNS paired runs), RSS $_im / $_qm KiB" >&2
}
