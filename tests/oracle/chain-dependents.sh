#!/bin/sh
# chain-dependents.sh - imgchain dependents: overlays found under folders,
# matched by real path whatever the spelling of the target.
. "$(dirname "$0")/../lib.sh"

mkdir -p "$T/vm/a/deep" "$T/vm/b" "$T/elsewhere"
qimg create -q -f raw "$T/vm/base.raw" 4M
qimg create -q -f qcow2 -b ../base.raw -F raw "$T/vm/a/mid.qcow2"
qimg create -q -f qed -b mid.qcow2 -F qcow2 "$T/vm/a/top.qed"
qimg create -q -f qcow2 -b ../../base.raw -F raw "$T/vm/a/deep/other.qcow2"
qimg create -q -f qcow2 "$T/vm/b/alone.qcow2" 4M
qimg create -q -f qcow2 -b ../vm/base.raw -F raw "$T/elsewhere/far.qcow2"
echo "not an image" >"$T/vm/b/notes.txt"

ic dependents "$T/vm" -- "$T/vm/base.raw" >"$T/out"
expect "the direct overlay is listed" grep -qx "$T/vm/a/mid.qcow2" "$T/out"
expect "an overlay two levels down the chain is listed with its depth" \
    grep -qx "$T/vm/a/top.qed (through 1 image)" "$T/out"
expect "an overlay in a subfolder with a ../ name is listed" grep -qx "$T/vm/a/deep/other.qcow2" "$T/out"
expect "an unrelated image is not listed" sh -c "! grep -q alone '$T/out'"
expect "folders not given are not scanned" sh -c "! grep -q far '$T/out'"
expect "exactly three dependents" test "$(wc -l <"$T/out")" = 3
expect_out "another spelling of the target matches" 'far.qcow2' \
    ic dependents "$T/vm" "$T/elsewhere" -- "$T/vm/a/../base.raw"
expect_out "JSON output names depth" '"depth": 2' ic dependents --output=json "$T/vm" -- "$T/vm/base.raw"
expect_rc "--fail-if-used exits 2 when something depends on FILE" 2 \
    ic dependents --fail-if-used -q "$T/vm" -- "$T/vm/base.raw"
expect_rc "--fail-if-used exits 0 when nothing does" 0 \
    ic dependents --fail-if-used -q "$T/vm" -- "$T/vm/b/alone.qcow2"
expect_out "a missing target is an error naming it" 'nothere.raw' ic dependents "$T/vm" -- "$T/nothere.raw"
expect_rc "a missing folder fails with exit 1" 1 ic dependents "$T/nofolder" -- "$T/vm/base.raw"
expect_rc "no folder is a usage error" 64 ic dependents -- "$T/vm/base.raw"
finish
