#!/bin/sh
# chain-rebase.sh - imgchain rebase against qemu-img on mixed raw/qcow2/qed
# chains built at test time: FILE's guest content must be unchanged (qemu-img
# compare with a raw dump taken before), the header must name the new
# backing file, and qemu-img check must find nothing.
. "$(dirname "$0")/../lib.sh"

mk() { # DIR BASEFMT MIDFMT TOPFMT
    d=$1; bf=$2; mf=$3; tf=$4
    rm -rf "$d"; mkdir -p "$d"
    qimg create -q -f "$bf" "$d/base.$bf" 8M
    qio -f "$bf" -c 'write -P 1 0 2M' -c 'write -P 2 4M 1M' -c 'write -P 7 7M 1M' "$d/base.$bf" >/dev/null
    qimg create -q -f "$mf" -b "base.$bf" -F "$bf" "$d/mid.$mf" 6M
    qio -f "$mf" -c 'write -P 3 1M 2M' -c 'write -z 4352k 256k' "$d/mid.$mf" >/dev/null
    qimg create -q -f "$tf" -b "mid.$mf" -F "$mf" "$d/top.$tf" 10M
    qio -f "$tf" -c 'write -P 4 1536k 1M' -c 'write -P 5 9M 512k' -c 'write -P 6 64k 4k' \
        "$d/top.$tf" >/dev/null
    qimg convert -O raw "$d/top.$tf" "$d/orig-top.raw"
}

backing_of() { qimg info --output=json "$1" | sed -n 's/.*"backing-filename": "\([^"]*\)".*/\1/p'; }

# can_rebase FMT: the format's driver can rewrite its backing name
can_rebase() {
    qimg create -q -f raw "$T/probe-base.raw" 1M
    qimg create -q -f "$1" -b probe-base.raw -F raw "$T/probe.$1"
    ! ic rebase -u -b probe-base.raw -F raw "$T/probe.$1" 2>&1 | grep -q 'does not record a backing file'
}

for combo in "raw qcow2 qed" "qed qed qcow2" "qcow2 qcow2 qcow2" "raw qed qed"; do
    set -- $combo; bf=$1; mf=$2; tf=$3
    tag="$bf<-$mf<-$tf"
    D=$T/r
    if ! can_rebase "$tf"; then
        echo "SKIP: $tag: the $tf driver cannot change a backing file yet"
        continue
    fi

    # safe rebase onto a lower image of the chain
    mk "$D" "$bf" "$mf" "$tf"
    expect "$tag: rebase onto base succeeds" ic rebase -b "base.$bf" -F "$bf" "$D/top.$tf"
    expect "$tag: onto base: guest content unchanged" qimg compare -q "$D/top.$tf" "$D/orig-top.raw"
    expect "$tag: onto base: header names the new backing" test "$(backing_of "$D/top.$tf")" = "base.$bf"
    expect "$tag: onto base: qemu-img check finds nothing" qimg check -q "$D/top.$tf"

    # onto nothing: flatten in place
    mk "$D" "$bf" "$mf" "$tf"
    expect "$tag: rebase -b '' succeeds" ic rebase -b "" "$D/top.$tf"
    expect "$tag: onto nothing: guest content unchanged" qimg compare -q "$D/top.$tf" "$D/orig-top.raw"
    expect "$tag: onto nothing: no backing file left" test -z "$(backing_of "$D/top.$tf")"
    expect "$tag: onto nothing: qemu-img check finds nothing" qimg check -q "$D/top.$tf"

    # onto an unrelated image (not in the old chain)
    mk "$D" "$bf" "$mf" "$tf"
    qimg create -q -f qcow2 "$D/other.qcow2" 9M
    qio -f qcow2 -c 'write -P 9 0 3M' -c 'write -P 1 7M 1M' "$D/other.qcow2" >/dev/null
    expect "$tag: rebase onto an unrelated image succeeds" ic rebase -b other.qcow2 -F qcow2 "$D/top.$tf"
    expect "$tag: unrelated: guest content unchanged" qimg compare -q "$D/top.$tf" "$D/orig-top.raw"
    expect "$tag: unrelated: qemu-img check finds nothing" qimg check -q "$D/top.$tf"

    # -u: header only
    mk "$D" "$bf" "$mf" "$tf"
    qio -r -f "$tf" -c map "$D/top.$tf" >"$T/map-before"
    expect "$tag: rebase -u succeeds" ic rebase -u -b "base.$bf" -F "$bf" "$D/top.$tf"
    expect "$tag: -u: header names the new backing" test "$(backing_of "$D/top.$tf")" = "base.$bf"
    qio -r -f "$tf" -c map "$D/top.$tf" >"$T/map-after"
    expect "$tag: -u: no data was copied" cmp -s "$T/map-before" "$T/map-after"
    expect "$tag: -u: qemu-img check finds nothing" qimg check -q "$D/top.$tf"
done

# refusals write nothing
D=$T/e; mk "$D" raw qcow2 qcow2
sum() { md5sum "$D"/*.raw "$D"/*.qcow2 | md5sum; }
before=$(sum)
expect_out "-F is required with a backing file (as qemu-img 7.2)" 'backing format must be specified' \
    ic rebase -b base.raw "$D/top.qcow2"
expect_out "-u also requires -F" 'backing format must be specified' ic rebase -u -b base.raw "$D/top.qcow2"
expect_out "a missing new backing file is refused" 'could not open new backing file' \
    ic rebase -b nothere.qcow2 -F qcow2 "$D/top.qcow2"
expect_out "FILE as its own backing file is refused" 'its own backing file' \
    ic rebase -b top.qcow2 -F qcow2 "$D/top.qcow2"
qimg create -q -f qcow2 -b top.qcow2 -F qcow2 "$D/over.qcow2"
expect_out "a new backing chain that contains FILE is refused" 'loop' \
    ic rebase -b over.qcow2 -F qcow2 "$D/top.qcow2"
rm -f "$D/over.qcow2"
expect_out "a raw FILE records no backing file" 'does not record a backing file' \
    ic rebase -b "" "$D/base.raw"
expect "refusals wrote nothing" test "$before" = "$(sum)"
expect_rc "rebase without -b is a usage error" 64 ic rebase "$D/top.qcow2"
(qemu-io -f qcow2 -c 'sleep 4000' "$D/top.qcow2" >/dev/null 2>&1 &)
sleep 1
expect_rc "a locked FILE is refused with exit 75" 75 ic rebase -b "" "$D/top.qcow2"
sleep 3
expect "the locked refusal wrote nothing" test "$before" = "$(sum)"
finish
