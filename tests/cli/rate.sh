#!/bin/sh
# rate.sh - commit -r and convert -r: qemu-img's RATE syntax (bytes per
# second, k/M/G/T/P/E suffixes, fractions, at most INT64_MAX) and its
# refusals.  Parsing only: the limiter's timing is unit-tested against a
# fake clock (tests/unit/test-chain-ratelimit.c), never here.
. "$(dirname "$0")/../lib.sh"

mkchain() {
    rm -f "$T/b.qcow2" "$T/o.qcow2"
    ic create -q -f qcow2 "$T/b.qcow2" 1M
    ic create -q -f qcow2 -b b.qcow2 -F qcow2 "$T/o.qcow2"
    ic io "$T/o.qcow2" -c 'write -P 0x5a 0 64k' >/dev/null
}

for r in 0 1E 1P 100M 1.5G 1073741824 65536k 1073741824b; do
    mkchain
    expect_rc "commit -r $r is accepted" 0 ic commit -q -r "$r" "$T/o.qcow2"
    expect "... and commits the data" ic io -f qcow2 "$T/b.qcow2" -c 'read -P 0x5a 0 64k'
    rm -f "$T/x.raw"
    expect_rc "convert -r $r is accepted" 0 ic convert -r "$r" -O raw "$T/b.qcow2" "$T/x.raw"
    expect "... and converts the data" qemu-img compare -q -f qcow2 -F raw "$T/b.qcow2" "$T/x.raw"
done
for r in x -1 12kB 1.5 '' 1Z; do
    mkchain
    expect_rc "commit -r '$r' is a usage error" 64 ic commit -r "$r" "$T/o.qcow2"
    expect_out "... with qemu-img's message" 'Invalid rate limit specified. You may use k, M, G, T, P or E suffixes' \
        ic commit -r "$r" "$T/o.qcow2"
    expect "... and nothing is committed" ic io -f qcow2 "$T/b.qcow2" -c 'read -P 0 0 64k'
    rm -f "$T/x.raw"
    expect_rc "convert -r '$r' is a usage error" 64 ic convert -r "$r" -O raw "$T/b.qcow2" "$T/x.raw"
    expect "... and creates no target" test ! -e "$T/x.raw"
done
for r in 16E 9223372036854775808 8E; do
    expect_out "-r $r (past INT64_MAX) is refused as qemu-img refuses it" \
        'Must be between 0 and 9223372036854775807' ic convert -r "$r" -O raw "$T/b.qcow2" "$T/x.raw"
    expect_rc "... with exit 64" 64 ic commit -r "$r" "$T/o.qcow2"
done
expect_rc "-r 9223372036854775807 (INT64_MAX) is accepted" 0 \
    ic convert -r 9223372036854775807 -O raw "$T/b.qcow2" "$T/y.raw"
expect_rc "commit -r without a value is a usage error" 64 ic commit "$T/o.qcow2" -r
expect_out "commit -h lists -r RATE" '\[-r RATE\]' ic commit -h
expect_out "convert -h lists -r RATE" '\[-r RATE\]' ic convert -h
finish
