#!/bin/sh
# chain-check.sh - imgchain check-chain (ic_chain_check) on chains that
# qemu-img builds and breaks: findings and exit codes.
. "$(dirname "$0")/../lib.sh"

D=$T/c; mkdir -p "$D"
qimg create -q -f raw "$D/base.raw" 4M
qimg create -q -f qcow2 -b base.raw -F raw "$D/mid.qcow2"
qimg create -q -f qed -b mid.qcow2 -F qcow2 "$D/top.qed"
qio -f qed -c 'write -P 1 0 64k' "$D/top.qed" >/dev/null
expect_rc "a sound chain exits 0" 0 ic check-chain "$D/top.qed"
expect_out "a sound chain lists its three images" '^3 images, 0 errors' ic check-chain "$D/top.qed"

mv "$D/base.raw" "$D/gone.raw"
expect_rc "a missing backing file exits 2" 2 ic check-chain "$D/top.qed"
expect_out "the missing file is named with the image recording it" \
    "^error: .*mid.qcow2: backing file 'base.raw' .* does not exist" ic check-chain "$D/top.qed"
expect_out "the images above a broken link are still checked" 'top.qed \(qed\): 0 corruptions' \
    ic check-chain "$D/top.qed"
mv "$D/gone.raw" "$D/base.raw"

qimg rebase -u -f qcow2 -b top.qed -F qed "$D/mid.qcow2"
expect_out "a loop is reported (qemu-img recurses on it)" 'creates an infinite loop' \
    ic check-chain "$D/top.qed"
expect_rc "a loop exits 2" 2 ic check-chain "$D/top.qed"
qimg rebase -u -f qcow2 -b base.raw -F qcow2 "$D/mid.qcow2"
expect_out "a recorded format the file does not have is an error" 'recorded as qcow2 but is raw' \
    ic check-chain "$D/top.qed"
qimg rebase -u -f qcow2 -b base.raw -F raw "$D/mid.qcow2"

qimg create -q -f qcow2 -b top.qed -F qed "$D/small.qcow2" 1M
expect_out "a backing file larger than its overlay is a warning" '^warning: .*larger than its overlay' \
    ic check-chain "$D/small.qcow2"
expect_rc "warnings alone exit 0" 0 ic check-chain "$D/small.qcow2"
(cd / && ic check-chain "$D/top.qed" >"$T/rel.out" 2>&1)
expect "a relative name that resolves only from the image's folder is noted" \
    grep -q "^note: .*relative backing name 'mid.qcow2' resolves only from the image's folder" "$T/rel.out"
expect_out "JSON output has findings and images" '"images"' ic check-chain --output=json "$D/small.qcow2"
expect_rc "a missing FILE exits 1" 1 ic check-chain "$D/nothere.qcow2"
expect_rc "no FILE is a usage error" 64 ic check-chain
finish
