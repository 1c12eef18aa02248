#!/bin/sh
# Runs every test program and test script and prints one closing line:
#   N passed, N failed
# Test programs are cmocka binaries (build/tests/**/test-*); their own
# "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)" lines are summed.
# Test scripts (tests/*/*.sh: cli, oracle, lint) source tests/lib.sh
# and print "PASS: ..." / "FAIL: ..." per check and a "N passed, N failed"
# line of their own, which is summed too.
#
# Environment: BUILD (default build), VALGRIND=1 to run under valgrind,
# TESTS=pattern to run only matching tests.
BUILD=${BUILD:-build}
export BUILD
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
export IC_TOP="$top"
export IMGCHAIN_BIN="$top/$BUILD/imgchain"
if [ -n "$VALGRIND" ]; then
    VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --suppressions=$top/tests/valgrind.supp"
    export IC_WRAP="$VG"
else
    VG=""
fi
logdir="$top/$BUILD/test-logs"
rm -rf "$logdir"; mkdir -p "$logdir"
passed=0; failed=0; failed_names=""

account() { # name rc logfile
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p; s/^\([0-9]*\) passed, [0-9]* failed.*/\1/p' "$3" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p; s/^[0-9]* passed, \([0-9]*\) failed.*/\1/p' "$3" | tail -n 1)
    p=${p:-0}; f=${f:-0}
    if [ "$2" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" != 0 ]; then
        failed_names="$failed_names $1"
        echo "FAIL $1 (rc=$2, $p passed, $f failed; log: $3)"
        tail -n 30 "$3" | sed 's/^/    /'
    else
        echo "ok   $1 ($p passed)"
    fi
}

for t in $(find "$BUILD/tests" -type f -name 'test-*' -perm -u+x 2>/dev/null | sort); do
    name=${t#"$BUILD"/tests/}
    case "$name" in *${TESTS:-}*) ;; *) continue ;; esac
    log="$logdir/$(echo "$name" | tr / _).log"
    (cd "$top" && $VG "$t") >"$log" 2>&1
    account "$name" $? "$log"
done
# Every tests/*/*.sh is a test script, except the helpers that tests call.
for s in $(ls tests/*/*.sh 2>/dev/null | grep -v '^tests/helpers/' | sort); do
    name=${s#tests/}
    case "$name" in *${TESTS:-}*) ;; *) continue ;; esac
    log="$logdir/$(echo "$name" | tr / _).log"
    sh "$s" >"$log" 2>&1
    account "$name" $? "$log"
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
