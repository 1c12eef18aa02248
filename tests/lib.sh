# tests/lib.sh - helpers for shell tests (sourced).
#
#   . "$(dirname "$0")/../lib.sh"
#   ic create -f qcow2 "$T/a.qcow2" 64M
#   expect "convert equals qemu-img" cmp "$T/x.raw" "$T/y.raw"
#   finish
#
# Each check prints "PASS: what" or "FAIL: what"; finish prints
# "N passed, N failed" and exits non-zero if anything failed.  $T is a fresh
# temporary directory removed at exit.  qemu-img and qemu-io run under a
# timeout and a memory limit (they recurse without bound on backing loops).
set -u
IC_TOP=${IC_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
IMGCHAIN_BIN=${IMGCHAIN_BIN:-$IC_TOP/$BUILD/imgchain}
IC_WRAP=${IC_WRAP:-}
T=$(mktemp -d /tmp/ic-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
_pass=0; _fail=0

ic() { $IC_WRAP "$IMGCHAIN_BIN" "$@"; }
qimg() { (ulimit -v 4000000; timeout 120 qemu-img "$@"); }
qio() { (ulimit -v 4000000; timeout 120 qemu-io "$@"); }

pass() { _pass=$((_pass + 1)); echo "PASS: $*"; }
fail() { _fail=$((_fail + 1)); echo "FAIL: $*"; }

# expect DESC CMD...: passes when CMD exits 0.
expect() {
    _d=$1; shift
    if "$@" >"$T/.out" 2>&1; then pass "$_d"; else fail "$_d"; sed 's/^/    /' "$T/.out" | head -n 20; fi
}
# expect_rc DESC RC CMD...: passes when CMD exits with RC.
expect_rc() {
    _d=$1; _want=$2; shift 2
    "$@" >"$T/.out" 2>&1; _rc=$?
    if [ "$_rc" = "$_want" ]; then pass "$_d"; else fail "$_d (rc $_rc, wanted $_want)"; sed 's/^/    /' "$T/.out" | head -n 20; fi
}
# expect_out DESC PATTERN CMD...: CMD output (stdout+stderr) matches grep -E PATTERN.
expect_out() {
    _d=$1; _pat=$2; shift 2
    "$@" >"$T/.out" 2>&1
    if grep -Eq -- "$_pat" "$T/.out"; then pass "$_d"; else fail "$_d (no match for /$_pat/)"; sed 's/^/    /' "$T/.out" | head -n 20; fi
}
finish() {
    echo "$_pass passed, $_fail failed"
    [ "$_fail" = 0 ]
    exit $?
}
