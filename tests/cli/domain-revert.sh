#!/bin/sh
# tests/cli/domain-revert.sh - snapshot-revert and snapshot-delete of whole
# domains (docs/domain-lifecycle.md section 8).
#
# Every scenario runs in a temporary --state-dir.  Data is written with
# `imgchain io` between snapshots and read back after each revert; every
# image is checked with qemu-img check; every refusal is checked for its
# message, its exit code and for leaving every file unchanged (checksums
# of the images and of the state folder before and after).  Set
# IC_LIBVIRT_RNG to a folder of libvirt >= 9.9 schemas to validate the
# metadata files holding <revertDisks> whole.
. "$(dirname "$0")/../lib.sh"

if ! command -v qemu-img >/dev/null 2>&1; then
    echo "qemu-img missing: skipped"
    finish
fi

D=$T/vm
mkdir -p "$D"
ST="--state-dir $T/state"

# domain NAME VCPUS DISKS...: a domain document; each disk is TARGET:FILE[:no]
domain() {
    _n=$1; _v=$2; shift 2
    echo "<domain type='kvm'><name>$_n</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db18${_n#vm}0</uuid>"
    echo "<memory unit='KiB'>1048576</memory><vcpu placement='static'>$_v</vcpu>"
    echo "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os><devices>"
    for _d in "$@"; do
        _t=${_d%%:*}; _rest=${_d#*:}; _f=${_rest%%:*}; _m=
        [ "$_rest" != "$_f" ] && _m=" snapshot='${_rest#*:}'"
        echo "<disk type='file' device='disk'$_m><driver name='qemu' type='qcow2'/>"
        echo "<source file='$_f'/><target dev='$_t' bus='virtio'/></disk>"
    done
    echo "</devices></domain>"
}
# sums: checksums of every image and state file, for "nothing changed"
sums() { find "$D" "$T/state" -type f ! -name '*.lock' | sort | xargs md5sum; }
unchanged() { # DESC
    sums > "$T/after"
    if cmp -s "$T/before" "$T/after"; then pass "$1: nothing changed on disk"
    else fail "$1: files changed"; diff "$T/before" "$T/after" | head -n 10 | sed 's/^/    /'; fi
}
refused() { # DESC PATTERN CMD...: exit 1, message, nothing changed
    _desc=$1; _pat=$2; shift 2
    sums > "$T/before"
    "$@" >"$T/.out" 2>&1; _rc=$?
    if [ "$_rc" = 1 ] && grep -Eq -- "$_pat" "$T/.out"; then pass "$_desc (exit 1, message)"
    else fail "$_desc (rc $_rc)"; sed 's/^/    /' "$T/.out" | head -n 5; fi
    unchanged "$_desc"
}
reads() { # DESC FILE PATTERN OFFSET
    expect "$1" ic io -q "$2" -c "read -P $3 $4 64k"
}
active() { ic domblklist $ST "$1" | awk -v t="$2" '$1==t {print $2}'; }
checked() { # DESC FILES...
    _ok=1
    _desc=$1; shift
    for _f in "$@"; do qimg check -q "$_f" >/dev/null 2>&1 || { _ok=0; echo "    $_f"; }; done
    if [ $_ok = 1 ]; then pass "$_desc: qemu-img check"; else fail "$_desc: qemu-img check"; fi
}

# ---- internal snapshots on a 2-disk domain ----------------------------------
ic create -q -f qcow2 "$D/a.qcow2" 16M
ic create -q -f qcow2 "$D/b.qcow2" 16M
domain vm1 2 "vda:$D/a.qcow2" "vdb:$D/b.qcow2" > "$T/vm1.xml"
ic define $ST "$T/vm1.xml" >/dev/null
ic io -q "$D/a.qcow2" -c 'write -P 1 0 64k'
ic io -q "$D/b.qcow2" -c 'write -P 11 0 64k'
expect "internal snapshot s1" ic snapshot-create-as $ST vm1 --name s1
ic io -q "$D/a.qcow2" -c 'write -P 2 0 64k'
ic io -q "$D/b.qcow2" -c 'write -P 12 0 64k'
refused "revert over uncaptured internal state" \
    "revert requires force: disk 'vda': $D/a.qcow2 .*would be lost" \
    ic snapshot-revert $ST vm1 s1
expect "internal snapshot s2 captures the state" ic snapshot-create-as $ST vm1 --name s2
expect "revert to s1 once s2 captured the state" ic snapshot-revert $ST vm1 s1
reads "vda reads s1's data after the revert" "$D/a.qcow2" 1 0
reads "vdb reads s1's data after the revert" "$D/b.qcow2" 11 0
expect_out "s1 is current" '^s1$' ic snapshot-current $ST vm1 --name
checked "after internal revert" "$D/a.qcow2" "$D/b.qcow2"
expect "revert back to s2" ic snapshot-revert $ST vm1 s2
reads "vda reads s2's data" "$D/a.qcow2" 2 0
reads "vdb reads s2's data" "$D/b.qcow2" 12 0
expect "--current reverts to the current snapshot" ic snapshot-revert $ST vm1 --current
ic io -q "$D/a.qcow2" -c 'write -P 3 0 64k'
expect "--force drops uncaptured state" ic snapshot-revert $ST vm1 s1 --force
reads "vda reads s1's data after a forced revert" "$D/a.qcow2" 1 0
refused "--running on an offline domain" "never starts" ic snapshot-revert $ST vm1 s1 --running
refused "--paused on an offline domain" "never starts" ic snapshot-revert $ST vm1 s1 --paused
refused "revert to a missing snapshot" \
    "no domain snapshot with matching name 'nope'" ic snapshot-revert $ST vm1 nope
refused "--running with --paused" "mutually exclusive" \
    ic snapshot-revert $ST vm1 s1 --running --paused

# ABI: the domain now has 4 vCPUs, the snapshots were taken with 2
domain vm1 4 "vda:$D/a.qcow2" "vdb:$D/b.qcow2" > "$T/vm1-4.xml"
ic define $ST "$T/vm1-4.xml" >/dev/null
refused "revert to an ABI-incompatible domain" \
    "revert requires force: Target domain vCPU max 2 does not match source 4" \
    ic snapshot-revert $ST vm1 s2
expect "--force reverts across the ABI change" ic snapshot-revert $ST vm1 s2 --force
expect_out "the domain document is the snapshot's again" "<vcpu placement='static'>2</vcpu>" \
    ic dumpxml $ST vm1

# delete: internal, --metadata, children
expect "internal snapshot s3 (child of s2)" ic snapshot-create-as $ST vm1 --name s3
expect_out "delete of an internal snapshot" "^Domain snapshot s1 deleted$" \
    ic snapshot-delete $ST vm1 s1
expect "s1 left the images" sh -c "! qemu-img snapshot -l '$D/a.qcow2' | grep -qw s1 && ! qemu-img snapshot -l '$D/b.qcow2' | grep -qw s1"
expect "s2 stays in the images" sh -c "qemu-img snapshot -l '$D/a.qcow2' | grep -qw s2"
sums > "$T/before"
expect_out "delete --metadata" "^Domain snapshot s2 deleted$" ic snapshot-delete $ST vm1 s2 --metadata
expect "--metadata leaves the images' snapshot tables" sh -c "qemu-img snapshot -l '$D/a.qcow2' | grep -qw s2"
expect_out "s3 is re-parented to the root" '^s3 *$' ic snapshot-list $ST vm1 --roots --name
refused "--children with --children-only" "mutually exclusive" \
    ic snapshot-delete $ST vm1 s3 --children --children-only
refused "delete of a missing snapshot" "no domain snapshot with matching name 's2'" \
    ic snapshot-delete $ST vm1 s2
expect "s4 under s3" ic snapshot-create-as $ST vm1 --name s4
expect "s5 under s4" ic snapshot-create-as $ST vm1 --name s5
expect_out "delete --children-only" "^Domain snapshot s3 children deleted$" \
    ic snapshot-delete $ST vm1 s3 --children-only
expect_out "s3 is current after its children went" '^s3$' ic snapshot-current $ST vm1 --name
expect "s4 and s5 left the images" sh -c "! qemu-img snapshot -l '$D/a.qcow2' | grep -qwE 's4|s5'"
checked "after internal deletes" "$D/a.qcow2" "$D/b.qcow2"

# an internal snapshot whose image an external snapshot froze since
expect "external snapshot e1 freezes the internal images" \
    ic snapshot-create-as $ST vm1 --name e1 --disk-only
refused "revert to an internal snapshot in a frozen image" \
    "internal snapshot 's3' lives in $D/a.qcow2, which .*external snapshot.* froze since" \
    ic snapshot-revert $ST vm1 s3 --force

# ---- external snapshots on a 3-disk domain with a snapshot='no' disk ---------
ic create -q -f qcow2 "$D/x.qcow2" 16M
ic create -q -f qcow2 "$D/y.qcow2" 16M
ic create -q -f qcow2 "$D/z.qcow2" 16M
domain vm2 1 "vda:$D/x.qcow2" "vdb:$D/y.qcow2" "vdc:$D/z.qcow2:no" > "$T/vm2.xml"
ic define $ST "$T/vm2.xml" >/dev/null
ic io -q "$D/x.qcow2" -c 'write -P 21 0 64k'
ic io -q "$D/y.qcow2" -c 'write -P 31 0 64k'
expect "external snapshot e1" ic snapshot-create-as $ST vm2 --name e1 --disk-only
ic io -q "$D/x.e1" -c 'write -P 22 0 64k'
ic io -q "$D/z.qcow2" -c 'write -P 41 0 64k'
expect "external snapshot e2" ic snapshot-create-as $ST vm2 --name e2 --disk-only
ic io -q "$D/x.e2" -c 'write -P 23 0 64k'
refused "revert over data in the active overlay" \
    "revert requires force: disk 'vda': $D/x.e2 .*would be lost" \
    ic snapshot-revert $ST vm2 e1
expect "forced external revert to e1" ic snapshot-revert $ST vm2 e1 --force
R1=$(active vm2 vda)
case "$R1" in "$D"/x.[0-9]*) pass "the revert overlay is named after the frozen image and the time" ;;
    *) fail "revert overlay name: $R1" ;; esac
reads "vda reads e1's point in time" "$R1" 21 0
reads "vdb reads e1's point in time" "$(active vm2 vdb)" 31 0
expect_out "the snapshot='no' disk keeps its source" "$D/z.qcow2" ic domblklist $ST vm2
reads "the snapshot='no' disk keeps its data" "$D/z.qcow2" 41 0
expect_out "the revert overlay records its frozen image" "backing file: $D/x.qcow2" qimg info "$R1"
expect "the revert overlay is mode 0600" sh -c "[ \"\$(stat -c %a '$R1')\" = 600 ]"
expect_out "e1 has children: the overlay goes to <revertDisks>" "<revertDisks>" \
    ic snapshot-dumpxml $ST vm2 e1
sed '/<revertDisks>/,/<\/revertDisks>/d' "$T/state/vm2/e1.xml" > "$T/e1.nrd.xml"
if command -v virt-xml-validate >/dev/null 2>&1; then
    expect "e1.xml (less <revertDisks>) is valid for virt-xml-validate" \
        virt-xml-validate "$T/e1.nrd.xml" domainsnapshot
fi
# the whole file against a schema that knows <revertDisks> (libvirt >= 9.9),
# when IC_LIBVIRT_RNG names a folder of libvirt's schemas
if [ -n "${IC_LIBVIRT_RNG:-}" ] && [ -f "$IC_LIBVIRT_RNG/domainsnapshot.rng" ] &&
    command -v xmllint >/dev/null 2>&1; then
    expect "e1.xml with <revertDisks> is valid for libvirt's newer schema" \
        xmllint --noout --relaxng "$IC_LIBVIRT_RNG/domainsnapshot.rng" "$T/state/vm2/e1.xml"
fi
reads "e2's overlay still holds its data" "$D/x.e2" 23 0
checked "after external revert" "$R1" "$(active vm2 vdb)" "$D/x.e1" "$D/x.e2" "$D/x.qcow2"

# --discard: an abandoned revert overlay nobody uses goes away
ic io -q "$R1" -c 'write -P 24 0 64k'
expect "revert again with --discard" ic snapshot-revert $ST vm2 e1 --force --discard
R2=$(active vm2 vda)
expect "the abandoned revert overlay was discarded" sh -c "[ ! -e '$R1' ] && [ '$R1' != '$R2' ]"
expect "e2's overlay is kept (a snapshot names it)" test -e "$D/x.e2"
expect "the user's images are kept" sh -c "[ -e '$D/x.qcow2' ] && [ -e '$D/z.qcow2' ]"
reads "vda reads e1's point in time again" "$R2" 21 0
: > "$D/taken.qcow2"
echo data > "$D/taken.qcow2"
refused "a revert overlay named after an existing file" "$D/taken.qcow2" \
    ic snapshot-revert $ST vm2 e2 --overlay "vda=$D/taken.qcow2"
refused "a relative revert overlay name" "absolute" \
    ic snapshot-revert $ST vm2 e2 --overlay "vda=rel.qcow2"
expect "revert to e2 with a named overlay for vda" \
    ic snapshot-revert $ST vm2 e2 --overlay "vda=$D/x.named"
expect_out "vda writes to the named overlay" "vda +$D/x.named" ic domblklist $ST vm2
expect "the named overlay is mode 0600" sh -c "[ \"\$(stat -c %a '$D/x.named')\" = 600 ]"
reads "the named overlay reads e2's point in time" "$D/x.named" 22 0
expect "revert to e2" ic snapshot-revert $ST vm2 e2
reads "vda reads e2's point in time" "$(active vm2 vda)" 22 0

# delete of an external leaf: commit down
expect "external snapshot e3 under e2" ic snapshot-create-as $ST vm2 --name e3 --disk-only
A3=$(active vm2 vda)
ic io -q "$A3" -c 'write -P 25 64k 64k'
F3=$(qimg info "$A3" | sed -n 's/^backing file: //p')
expect_out "delete of the current external snapshot" "^Domain snapshot e3 deleted$" \
    ic snapshot-delete $ST vm2 e3
expect "its overlay is gone" test ! -e "$A3"
expect_out "the domain writes to the frozen image again" "$F3" ic domblklist $ST vm2
reads "the overlay's data was committed down" "$F3" 25 64k
reads "what was below stays" "$F3" 22 0
expect_out "e2 is current again" '^e2$' ic snapshot-current $ST vm2 --name
checked "after commit-down" "$F3"

# a branch point: e2's frozen image x.e1 is also read by x.e2; e2's
# <disks> name F3 since "revert to e2" (no children then: libvirt 9.9).
# Whatever the merge (stream up or keep), every image reads what it read.
expect_out "delete of a branch point" "^Domain snapshot e2 deleted$" ic snapshot-delete $ST vm2 e2
reads "the revert overlay still reads e2's point in time" "$F3" 22 0
reads "the revert overlay keeps its own data" "$F3" 25 64k
if [ -e "$D/x.e2" ]; then
    reads "e2's abandoned overlay keeps its data" "$D/x.e2" 23 0
    checked "the abandoned overlay" "$D/x.e2"
fi
expect_out "e1 is current after e2" '^e1$' ic snapshot-current $ST vm2 --name
checked "after deleting the branch point" "$F3" "$D/x.qcow2"

# vm1's e1 froze the user's a.qcow2 (which also holds s3): whatever the
# merge, the domain reads what it read and every image stays sound
ic io -q "$(active vm1 vda)" -c 'write -P 7 1M 64k'
expect_out "delete of e1 (vm1)" "^Domain snapshot e1 deleted$" ic snapshot-delete $ST vm1 e1
reads "vm1 still reads the data written after e1" "$(active vm1 vda)" 7 1M
reads "vm1 still reads the data below e1" "$(active vm1 vda)" 2 0
expect "s3 is still in the user's base" sh -c "qemu-img snapshot -l '$D/a.qcow2' | grep -qw s3"
checked "vm1 after deleting e1" "$(active vm1 vda)" "$(active vm1 vdb)" "$D/a.qcow2" "$D/b.qcow2"
# an overlay imported with --redefine is the user's: never deleted
qimg create -q -f qcow2 -b "$(active vm1 vda)" -F qcow2 "$D/user.qcow2"
{
    echo "<domainsnapshot><name>u1</name><state>disk-snapshot</state>"
    echo "<creationTime>1700000000</creationTime><memory snapshot='no'/><disks>"
    echo "<disk name='vda' snapshot='external' type='file'><source file='$D/user.qcow2'/></disk>"
    echo "<disk name='vdb' snapshot='no'/></disks>"
    ic dumpxml $ST vm1
    echo "</domainsnapshot>"
} > "$T/u1.xml"
expect "an imported snapshot u1 on a user's overlay" \
    ic snapshot-create $ST vm1 --redefine --xmlfile "$T/u1.xml"
md5sum "$D/user.qcow2" > "$T/user.md5"
ic snapshot-delete $ST vm1 u1 >/dev/null 2>&1
expect "deleting u1 leaves the user's overlay as it was" md5sum -c --quiet "$T/user.md5"

# --delete-children after a revert
expect "external snapshot e4 under e1" ic snapshot-create-as $ST vm2 --name e4 --disk-only
ic io -q "$(active vm2 vda)" -c 'write -P 26 0 64k'
refused "revert over the domain's uncaptured data" "revert requires force" \
    ic snapshot-revert $ST vm2 e1 --delete-children
expect "forced revert to e1 deleting its children" \
    ic snapshot-revert $ST vm2 e1 --force --delete-children
expect_out "e1 is the only snapshot left" '^e1 *$' ic snapshot-list $ST vm2 --name
expect_out "e1's revert overlay is recorded in <revertDisks>" "$(active vm2 vda)" \
    ic snapshot-dumpxml $ST vm2 e1
reads "vda reads e1's point in time" "$(active vm2 vda)" 21 0
checked "at the end" "$(active vm2 vda)" "$(active vm2 vdb)" "$D/x.qcow2" "$D/y.qcow2" "$F3"

# every metadata file left passes libvirt's validator (<revertDisks> removed:
# the installed schema predates it)
if command -v virt-xml-validate >/dev/null 2>&1; then
    bad=0
    for f in "$T"/state/*/*.xml; do
        sed '/<revertDisks>/,/<\/revertDisks>/d' "$f" > "$T/v.xml"
        virt-xml-validate "$T/v.xml" domainsnapshot >/dev/null 2>&1 || { bad=1; echo "    $f"; }
    done
    expect "every snapshot file left is valid for virt-xml-validate" test "$bad" = 0
fi

finish
