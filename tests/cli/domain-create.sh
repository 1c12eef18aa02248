#!/bin/sh
# domain-create.sh - the domain commands end to end on a 4-disk domain
# (two qcow2 disks, a raw disk with snapshot='no', a transient disk):
# define, internal and external snapshot-create, data written with
# `imgchain io` between snapshots read back from every snapshot, every
# image checked by qemu-img (check, info --backing-chain), every metadata
# file valid against libvirt's schema, and every refusal with its message
# and nothing changed on disk (checksums of every image and state file).
. "$(dirname "$0")/../lib.sh"

I="$T/img"
mkdir -p "$I"
SD="--state-dir $T/state"
ic create -f qcow2 "$I/a.qcow2" 16M >/dev/null
ic create -f qcow2 "$I/b.qcow2" 16M >/dev/null
ic create -f raw "$I/c.raw" 4M >/dev/null
ic create -f qcow2 "$I/t.qcow2" 4M >/dev/null

disk() { # TYPE FMT PATH TARGET [EXTRA]
    printf "    <disk type='%s' device='disk'%s>\n      <driver name='qemu' type='%s'/>\n" "$1" "${5:-}" "$2"
    if [ "$1" = block ]; then
        printf "      <source dev='%s'/>\n" "$3"
    else
        printf "      <source file='%s'/>\n" "$3"
    fi
    printf "      <target dev='%s' bus='virtio'/>\n" "$4"
    [ "${6:-}" = transient ] && printf "      <transient/>\n"
    printf "    </disk>\n"
}
mkdom() { # NAME then disk lines on stdin
    {
        printf "<domain type='kvm'>\n  <name>%s</name>\n  <memory unit='KiB'>524288</memory>\n" "$1"
        printf "  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n"
        printf "  <devices>\n"
        cat
        printf "  </devices>\n</domain>\n"
    } >"$T/$1.xml"
}
{
    disk file qcow2 "$I/a.qcow2" vda
    disk file qcow2 "$I/b.qcow2" vdb
    disk file raw "$I/c.raw" vdc " snapshot='no'"
    disk file qcow2 "$I/t.qcow2" vdd "" transient
} | mkdom vm

# checksums of every image and every state file but the lock
sums() { find "$I" "$T/state" -type f ! -name '*.lock' | sort | xargs md5sum; }
# refuse DESC RC PATTERN CMD...: the command fails with RC and a message
# matching PATTERN, and no image or state file changed, none appeared.
refuse() {
    _d=$1; _rc=$2; _pat=$3; shift 3
    sums >"$T/sums.before"
    "$@" >"$T/.out" 2>&1; _got=$?
    sums >"$T/sums.after"
    if [ "$_got" != "$_rc" ]; then
        fail "$_d (rc $_got, wanted $_rc)"; sed 's/^/    /' "$T/.out"
    elif ! grep -Eq -- "$_pat" "$T/.out"; then
        fail "$_d (no match for /$_pat/)"; sed 's/^/    /' "$T/.out"
    elif ! cmp -s "$T/sums.before" "$T/sums.after"; then
        fail "$_d (files changed)"; diff "$T/sums.before" "$T/sums.after" | sed 's/^/    /'
    else
        pass "$_d"
    fi
}
qclean() { expect "$1: qemu-img check clean" qimg check -q "$2"; }
validate_all() {
    _bad=0
    for f in "$T"/state/vm/*.xml; do
        virt-xml-validate "$f" domainsnapshot >/dev/null 2>&1 || { _bad=1; echo "    invalid: $f"; }
    done
    expect "$1: every metadata file is valid against libvirt's schema" test "$_bad" = 0
}
raw() { qimg convert -O raw "$@"; }

expect_out "define prints virsh's message" "^Domain 'vm' defined from $T/vm.xml\$" ic define $SD "$T/vm.xml"
expect_out "list shows the domain shut off" '^ -    vm     shut off$' ic list $SD
expect_out "domblklist --details" "^ file   disk     vdc      $I/c.raw\$" ic domblklist $SD vm --details

# ---- s1: internal (the default offline run), vdc (no) and vdd (transient) left alone
ic io -c 'write -P 0x11 0 1M' "$I/a.qcow2" >/dev/null
ic io -c 'write -P 0x21 1M 1M' "$I/b.qcow2" >/dev/null
raw "$I/a.qcow2" "$T/a.s1.raw"; raw "$I/b.qcow2" "$T/b.s1.raw"
md5sum "$I/c.raw" "$I/t.qcow2" >"$T/untouched.sum"
expect_out "snapshot-create-as s1" '^Domain snapshot s1 created$' \
    ic snapshot-create-as $SD vm s1 "first snapshot"
expect_out "s1 is an internal snapshot of vda" ' s1 ' qimg snapshot -l "$I/a.qcow2"
expect_out "s1 is an internal snapshot of vdb" ' s1 ' qimg snapshot -l "$I/b.qcow2"
expect "snapshot='no' and transient disks untouched" md5sum -c --quiet "$T/untouched.sum"
expect_out "s1 records vdc as no, vdd as no" "<disk name='vdd' snapshot='no'/>" \
    ic snapshot-dumpxml $SD vm s1
expect_out "s1 is offline: state shutoff, memory no" "<memory snapshot='no'/>" \
    ic snapshot-dumpxml $SD vm s1
qclean s1 "$I/a.qcow2"; qclean s1 "$I/b.qcow2"
validate_all s1

# ---- s2: external, disk-only, default overlay names
ic io -c 'write -P 0x12 512k 1M' "$I/a.qcow2" >/dev/null
ic io -c 'write -P 0x22 4M 64k' "$I/b.qcow2" >/dev/null
raw "$I/a.qcow2" "$T/a.s2.raw"; raw "$I/b.qcow2" "$T/b.s2.raw"
expect "snapshot-create-as s2 --disk-only" ic snapshot-create-as $SD vm --name s2 --disk-only
expect "overlay a.s2 made by the default name rule" test -f "$I/a.s2"
expect "overlay b.s2 made" test -f "$I/b.s2"
expect_out "overlay is private (0600)" '^600$' stat -c %a "$I/a.s2"
qimg info --backing-chain "$I/a.s2" >"$T/chain.txt"
expect_out "overlay records the absolute backing name" "^backing file: $I/a.qcow2\$" cat "$T/chain.txt"
expect_out "overlay records the backing format" '^backing file format: qcow2$' cat "$T/chain.txt"
expect_out "dumpxml follows the active layer" "<source file='$I/a.s2'/>" ic dumpxml $SD vm
expect_out "domblklist follows the active layer" "^ vdb      $I/b.s2\$" ic domblklist $SD vm
expect_out "the private file lists the overlay" "\"path\": \"$I/a.s2\"" cat "$T/state/vm.imgchain.json"
expect_out "s2's <disks> names the overlay" "<source file='$I/b.s2'/>" ic snapshot-dumpxml $SD vm s2
expect_out "s2's <domain> names the frozen image" "<source file='$I/b.qcow2'/>" ic snapshot-dumpxml $SD vm s2
expect_out "s2's parent is s1" '^s1$' ic snapshot-parent $SD vm s2
expect "frozen a.qcow2 still reads as at s2" sh -c "qemu-img convert -U -O raw '$I/a.qcow2' '$T/x.raw' && cmp '$T/x.raw' '$T/a.s2.raw'"
expect "the overlay reads as at s2" sh -c "qemu-img convert -U -O raw '$I/a.s2' '$T/x.raw' && cmp '$T/x.raw' '$T/a.s2.raw'"
qclean s2 "$I/a.s2"; qclean s2 "$I/b.s2"
expect "snapshot='no' and transient disks still untouched" md5sum -c --quiet "$T/untouched.sum"
validate_all s2

# ---- s3: internal again, now in the overlays
ic io -c 'write -P 0x13 2M 512k' "$I/a.s2" >/dev/null
raw "$I/a.s2" "$T/a.s3.raw"
expect "snapshot-create s3 from a file" ic snapshot-create $SD vm --xmlfile /dev/stdin <<EOF
<domainsnapshot><name>s3</name><description>third</description></domainsnapshot>
EOF
expect_out "s3 lives in the active layer a.s2" ' s3 ' qimg snapshot -l "$I/a.s2"
ic io -c 'write -P 0x14 0 4M' "$I/a.s2" >/dev/null
expect "s1 reads back from a.qcow2" sh -c "qemu-img convert -U -l s1 -O raw '$I/a.qcow2' '$T/x.raw' && cmp '$T/x.raw' '$T/a.s1.raw'"
expect "s1 reads back from b.qcow2" sh -c "qemu-img convert -U -l s1 -O raw '$I/b.qcow2' '$T/x.raw' && cmp '$T/x.raw' '$T/b.s1.raw'"
expect "s3 reads back from a.s2" sh -c "qemu-img convert -U -l s3 -O raw '$I/a.s2' '$T/x.raw' && cmp '$T/x.raw' '$T/a.s3.raw'"
expect "b.qcow2 (frozen by s2) reads as at s2" sh -c "qemu-img convert -U -O raw '$I/b.qcow2' '$T/x.raw' && cmp '$T/x.raw' '$T/b.s2.raw'"
expect_out "snapshot-current is s3" '^s3$' ic snapshot-current $SD vm --name
expect_out "the tree" '^  \+- s2$' ic snapshot-list $SD vm --tree
qclean s3 "$I/a.s2"
validate_all s3
expect_out "check --domain: clean" '^vda: .*a.s2: 2 images, 0 errors$' ic check --domain vm $SD
expect_out "check --domain: every snapshot's point in place" '^3 snapshots: every point is in place$' \
    ic check --domain vm $SD

# ---- --reuse-external: the user's overlay on the current image
qimg create -q -f qcow2 -b "$I/a.s2" -F qcow2 "$I/a.mine" 16M
qimg create -q -f qcow2 -b "$I/b.s2" -F qcow2 "$I/b.mine" 16M
expect "snapshot-create-as --reuse-external s4" ic snapshot-create-as $SD vm s4 --reuse-external \
    --diskspec "vda,file=$I/a.mine" --diskspec "vdb,file=$I/b.mine"
expect_out "s4: the domain writes the reused files" "<source file='$I/a.mine'/>" ic dumpxml $SD vm
expect "s4: a reused file is not listed as imgchain's" sh -c "! grep -q a.mine '$T/state/vm.imgchain.json'"
validate_all s4

# ---- a QED overlay, and --no-metadata (done on disk, not recorded)
expect "snapshot-create-as q1 with a QED overlay for vda" ic snapshot-create-as $SD vm q1 \
    --diskspec "vda,driver=qed,file=$I/a.q1" --diskspec "vdb,file=$I/b.q1"
expect_out "the vda overlay is QED" '^file format: qed$' qimg info -U "$I/a.q1"
expect_out "q1 records the driver" "<driver type='qed'/>" ic snapshot-dumpxml $SD vm q1
expect "snapshot-create-as --no-metadata" ic snapshot-create-as $SD vm q2 --no-metadata --disk-only
expect "--no-metadata: the overlays exist" test -f "$I/a.q2" -a -f "$I/b.q2"
expect "--no-metadata: no snapshot file" test ! -e "$T/state/vm/q2.xml"
expect_out "--no-metadata: the domain writes the new overlays" "<source file='$I/a.q2'/>" ic dumpxml $SD vm
expect_out "--no-metadata: q1 stays current" '^q1$' ic snapshot-current $SD vm --name
expect_out "--no-metadata: imgchain still knows it made them" "\"path\": \"$I/a.q2\"" \
    cat "$T/state/vm.imgchain.json"
validate_all q1

# ---- refusals: each with libvirt's (or imgchain's) message, nothing changed
refuse "a name in use" 1 'domain moment s2 already exists' ic snapshot-create-as $SD vm s2
refuse "mixing internal and external in one snapshot" 1 \
    'mixing internal and external targets for a snapshot is not yet supported' \
    ic snapshot-create-as $SD vm m1 --diskspec vda,snapshot=internal --diskspec vdb,snapshot=external
refuse "an existing non-empty overlay file" 1 \
    "disk 'vda': external snapshot file for disk vda already exists and is not a block device: $I/a.qcow2" \
    ic snapshot-create-as $SD vm m2 --diskspec "vda,file=$I/a.qcow2" --diskspec vdb,snapshot=no
refuse "--reuse-external of a missing file" 1 "missing existing file for disk vda: $I/nothere" \
    ic snapshot-create-as $SD vm m3 --reuse-external --diskspec "vda,file=$I/nothere" --diskspec vdb,snapshot=no
qimg create -q -f qcow2 "$I/stranger" 16M
refuse "--reuse-external of a file not on the disk's current image" 1 \
    "reused file $I/stranger for disk vda does not have the disk's current image" \
    ic snapshot-create-as $SD vm m4 --reuse-external --diskspec "vda,file=$I/stranger" --diskspec vdb,snapshot=no
refuse "memory state offline" 1 'memory state cannot be saved with offline or disk-only snapshot' \
    ic snapshot-create-as $SD vm m5 --memspec "file=$I/mem,snapshot=external"
refuse "internal snapshot of a raw disk" 1 'internal snapshot for disk vdc unsupported for storage type raw' \
    ic snapshot-create-as $SD vm m6 --diskspec vdc,snapshot=internal
refuse "an internal run leaving out a disk the domain does not exclude" 1 \
    "disk 'vda' must use snapshot mode 'internal'" \
    ic snapshot-create-as $SD vm m6 --diskspec vda,snapshot=no --diskspec vdb,snapshot=internal
refuse "a relative overlay path" 1 "must be absolute" \
    ic snapshot-create-as $SD vm m7 --diskspec vda,file=rel.qcow2 --diskspec vdb,snapshot=no
refuse "a raw overlay format" 1 'unknown disk snapshot driver|unsupported: raw|must use' \
    ic snapshot-create-as $SD vm m8 --diskspec vda,snapshot=external,driver=raw --diskspec vdb,snapshot=no
refuse "a name with a slash" 1 "invalid snapshot name 'a/b'" ic snapshot-create-as $SD vm a/b
refuse "--current without --redefine" 1 "Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' is required" \
    ic snapshot-create $SD vm --current
refuse "--redefine with --no-metadata" 1 'mutually exclusive' ic snapshot-create $SD vm --redefine --no-metadata
refuse "--quiesce offline" 1 "VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY' is required" ic snapshot-create-as $SD vm m9 --quiesce
refuse "two disks, one target" 1 "is also the target of disk 'vda'" \
    ic snapshot-create-as $SD vm m10 --diskspec "vda,file=$I/same" --diskspec "vdb,file=$I/same"
refuse "--validate: an unknown element" 1 'extra content|did not expect|Invalid' \
    ic snapshot-create $SD vm --validate --xmlfile /dev/stdin <<EOF
<domainsnapshot><name>m11</name><bogus/></domainsnapshot>
EOF
refuse "undefine with snapshots" 1 'cannot delete inactive domain with 5 snapshots' ic undefine $SD vm
refuse "an unknown domain" 1 "failed to get domain 'nope'" ic snapshot-list $SD nope

# atomic: vdb's overlay cannot be made (no such folder) after vda's was:
# vda's is removed again and the refusal names vdb
refuse "atomic: a failure on vdb undoes vda" 1 "disk 'vdb'" \
    ic snapshot-create-as $SD vm m12 --diskspec "vda,file=$I/m12.a" --diskspec "vdb,file=$I/nodir/m12.b"
expect "atomic: vda's overlay is gone" test ! -e "$I/m12.a"
expect "atomic: no journal left" test ! -e "$T/state/vm.journal"

# ---- block devices and non-regular sources need an explicit file=
{
    disk block raw /dev/zero vda
} | mkdom blk
ic define $SD "$T/blk.xml" >/dev/null
refuse "a block device source without file=" 1 "source for disk 'vda' is not a regular file; refusing to generate external snapshot name" \
    ic snapshot-create-as $SD blk b1 --disk-only
{
    disk file raw /dev/zero vda
} | mkdom chr
ic define $SD "$T/chr.xml" >/dev/null
refuse "a source that is not a regular file, without file=" 1 "source for disk 'vda' is not a regular file" \
    ic snapshot-create-as $SD chr c1 --disk-only
cat >"$T/net.xml" <<EOF
<domain type='kvm'>
  <name>net</name>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='x'><host name='example.org' port='10809'/></source>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
ic define $SD "$T/net.xml" >/dev/null
refuse "a network disk without file=" 1 "source for disk 'vda' is not a regular file" \
    ic snapshot-create-as $SD net n1 --disk-only
refuse "a network disk even with file=" 1 "network" \
    ic snapshot-create-as $SD net n2 --disk-only --diskspec "vda,file=$I/n2"

# a read-only disk (an installation CD) is left out by default (the XML
# layer aligns it to 'no'), and refused when asked for in external mode,
# as libvirt refuses it
ic create -f raw "$I/cd.iso" 1M >/dev/null
cat >"$T/cd.xml" <<EOF
<domain type='kvm'>
  <name>cd</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/t.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='$I/cd.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
  </devices>
</domain>
EOF
ic define $SD "$T/cd.xml" >/dev/null
refuse "a read-only disk asked for in external mode" 1 'external snapshot for readonly disk hdc is not supported' \
    ic snapshot-create-as $SD cd r1 --disk-only --diskspec vda --diskspec hdc,snapshot=external
expect "by default the CD is left alone" ic snapshot-create-as $SD cd r2 --disk-only
expect_out "r2 records the CD as 'no'" "<disk name='hdc' snapshot='no'/>" ic snapshot-dumpxml $SD cd r2
expect "the CD image was never written" test "$(md5sum <"$I/cd.iso")" = "$(head -c 1M /dev/zero | md5sum)"

# ---- the per-domain lock: a second writer gets exit 75 at once
qemu-io -f raw -c 'sleep 20000' "$T/state/vm.lock" >/dev/null 2>&1 &
holder=$!
# wait until the holder has its lock: /proc/locks lists the file's inode
# (asking imgchain would take a lock and could make qemu-io fail instead)
ino=$(stat -c %i "$T/state/vm.lock")
n=0
while [ $n -lt 200 ] && ! grep -q ":$ino " /proc/locks; do
    sleep 0.05; n=$((n + 1))
done
refuse "a locked domain" 75 "vm: domain is locked by another process" ic snapshot-create-as $SD vm m13
expect_rc "a reader is refused too while a writer holds the lock" 75 ic snapshot-list $SD vm
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# ---- an interrupted create: prepare-phase journal with an overlay made
qimg create -q -f qcow2 -b "$I/a.mine" -F qcow2 "$I/half.a"
cat >"$T/state/vm.journal" <<EOF
{ "version": 1, "op": "snapshot-create", "snapshot": "half", "phase": "prepare",
  "steps": [ { "disk": "vda", "kind": "external", "image": "$I/a.mine", "file": "$I/half.a",
               "format": "qcow2", "created": true, "emptied": false, "reuse": false } ] }
EOF
expect_rc "check --domain reports the interrupted create (exit 76)" 76 ic check --domain vm $SD
expect_out "check --domain names it" "interrupted snapshot-create of 'half' \\(phase prepare\\)" \
    ic check --domain vm $SD
expect_out "the next change rolls it back" "rolled back interrupted snapshot-create of 'half'" \
    ic snapshot-create-as $SD vm s5 --diskspec vda,snapshot=no --diskspec "vdb,snapshot=external,file=$I/b.s5"
expect "the half-made overlay is gone" test ! -e "$I/half.a"
expect "and the journal" test ! -e "$T/state/vm.journal"
expect_rc "check --domain is clean again" 0 ic check --domain vm $SD
validate_all s5

# a commit-phase journal is finished: its metadata is written
ic snapshot-dumpxml --security-info $SD vm s5 >"$T/s5.xml"
rm "$T/state/vm/s5.xml"
python3 - "$T/s5.xml" "$T/state/vm.journal" "$I" <<'EOF'
import json, sys
xml = open(sys.argv[1]).read().rstrip("\n") + "\n"
j = {"version": 1, "op": "snapshot-create", "snapshot": "s5", "phase": "commit",
     "no_metadata": False, "xml": xml,
     "steps": [{"disk": "vdb", "kind": "external", "image": sys.argv[3] + "/b.mine",
                "file": sys.argv[3] + "/b.s5", "format": "qcow2", "created": True,
                "emptied": False, "reuse": False}]}
open(sys.argv[2], "w").write(json.dumps(j))
EOF
expect_out "a commit-phase journal is finished by the next change" "finished interrupted snapshot-create of 's5'" \
    ic snapshot-current $SD vm s5
expect "s5's metadata is back" test -f "$T/state/vm/s5.xml"
validate_all "after roll-forward"

# metadata naming an internal snapshot the image does not hold: reported
ic io -c 'write -P 0x77 0 4k' "$I/a.mine" >/dev/null
qimg snapshot -d s3 "$I/a.s2"
expect_rc "check --domain: an internal snapshot gone from its image is an error (exit 2)" 2 \
    ic check --domain vm $SD
expect_out "check --domain names it" "snapshot 's3': disk 'vda': .*a.s2 holds no internal snapshot 's3'" \
    ic check --domain vm $SD

# ---- every image passes qemu-img check at the end
for f in "$I"/*.qcow2 "$I"/*.s2 "$I"/*.mine "$I"/b.s5; do
    qclean "end" "$f"
done
expect_out "undefine --snapshots-metadata" "^Domain 'vm' has been undefined\$" \
    ic undefine $SD vm --snapshots-metadata
expect "undefine kept every image" test -f "$I/a.s2" -a -f "$I/b.s5" -a -f "$I/a.qcow2"
expect "undefine removed the snapshot files" test -z "$(ls "$T/state/vm" 2>/dev/null)"
finish
