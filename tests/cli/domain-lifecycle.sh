#!/bin/sh
# domain-lifecycle.sh - revert and delete over a tree mixing internal and
# external snapshots, with a branch: after every step, every remaining
# snapshot reads back (qemu-img convert, from the image its <domain> names)
# exactly what was written before it was taken, the active layers read what
# they should, every image passes qemu-img check, every metadata file
# passes virt-xml-validate, and every refusal changes no file.
. "$(dirname "$0")/../lib.sh"

I="$T/img"
mkdir -p "$I"
SD="--state-dir $T/state"
ic create -f qcow2 "$I/a.qcow2" 8M >/dev/null
ic create -f qcow2 "$I/b.qcow2" 8M >/dev/null
ic create -f raw "$I/c.raw" 1M >/dev/null
cat >"$T/vm.xml" <<EOF
<domain type='kvm'>
  <name>vm</name>
  <memory unit='KiB'>524288</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/b.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk' snapshot='no'>
      <driver name='qemu' type='raw'/>
      <source file='$I/c.raw'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
ic define $SD "$T/vm.xml" >/dev/null

# The source of DISK in the domain now, and in snapshot SNAP's <domain>.
active() { ic domblklist $SD vm | awk -v d="$1" '$1 == d { print $2 }'; }
snapinfo() { # SNAP DISK -> "MODE IMAGE"
    ic snapshot-dumpxml $SD vm "$1" | python3 -c '
import sys, xml.etree.ElementTree as E
r = E.fromstring(sys.stdin.read()); d = sys.argv[1]
mode = [x.get("snapshot") for x in r.find("disks") if x.get("name") == d][0]
for x in r.find("domain").find("devices").findall("disk"):
    if x.find("target").get("dev") == d:
        print(mode, x.find("source").get("file"))' "$2"
}
writes() { # PATTERN: different data on both disks' active layers
    ic io -c "write -P $1 $(( $1 * 64 ))k 192k" "$(active vda)" >/dev/null
    ic io -c "write -P $(( $1 + 100 )) $(( $1 * 128 ))k 64k" "$(active vdb)" >/dev/null
}
save_active() { # NAME: remember what both disks read now
    for d in vda vdb; do qimg convert -U -O raw "$(active $d)" "$T/want.$1.$d"; done
}
SNAPS=""
take() { # NAME ARGS...: save the state, then snapshot it
    n=$1; shift
    save_active "$n"
    expect "snapshot-create-as $n $*" ic snapshot-create-as $SD vm "$n" "$@"
    SNAPS="$SNAPS $n"
}
check_all() { # WHEN
    when=$1
    bad=""
    for s in $(ic snapshot-list $SD vm --name); do
        for d in vda vdb; do
            set -- $(snapinfo "$s" "$d")
            if [ "$1" = internal ]; then
                qimg convert -U -l "$s" -O raw "$2" "$T/got" 2>/dev/null
            else
                qimg convert -U -O raw "$2" "$T/got" 2>/dev/null
            fi
            cmp -s "$T/got" "$T/want.$s.$d" || bad="$bad $s/$d"
        done
    done
    expect "$when: every snapshot reads back what it captured" test -z "$bad"
    [ -n "$bad" ] && echo "    wrong:$bad"
    bad=""
    for f in "$I"/*; do
        case "$f" in *.raw) continue ;; esac
        qimg check -U -q "$f" >/dev/null 2>&1 || bad="$bad $f"
    done
    expect "$when: qemu-img check passes on every image" test -z "$bad"
    for d in vda vdb; do
        qimg info -U --backing-chain "$(active $d)" >/dev/null 2>&1 || bad="$bad $d"
    done
    expect "$when: qemu-img info --backing-chain reads every active chain" test -z "$bad"
    bad=""
    for f in "$T"/state/vm/*.xml; do
        [ -f "$f" ] || continue
        validate_snapshot "$f" || bad="$bad $f"
    done
    expect "$when: every metadata file is valid" test -z "$bad"
    expect_rc "$when: check --domain is clean" 0 ic check --domain vm $SD
}
expect_active() { # NAME WHEN: the disks read what NAME saved (qemu-img compare)
    for d in vda vdb; do
        expect "$2: $d reads as $1" qimg compare -U -F raw "$(active $d)" "$T/want.$1.$d"
    done
}
# Debian 12's schema predates <revertDisks>: with IC_LIBVIRT_RNG (a newer
# libvirt's schemas, 9.9 or later) such files are validated against it,
# else with the element removed.
validate_snapshot() {
    if grep -q '<revertDisks>' "$1"; then
        if [ -n "${IC_LIBVIRT_RNG:-}" ] && [ -f "$IC_LIBVIRT_RNG/domainsnapshot.rng" ]; then
            xmllint --noout --relaxng "$IC_LIBVIRT_RNG/domainsnapshot.rng" "$1" >/dev/null 2>&1
            return
        fi
        python3 -c '
import re, sys
t = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(re.sub(r"\s*<revertDisks>.*?</revertDisks>", "", t, flags=re.S))' "$1" "$T/strip.xml"
        virt-xml-validate "$T/strip.xml" domainsnapshot >/dev/null 2>&1
        return
    fi
    virt-xml-validate "$1" domainsnapshot >/dev/null 2>&1
}
sums() { find "$I" "$T/state" -type f ! -name '*.lock' | sort | xargs md5sum; }
refuse() { # DESC PATTERN CMD...
    _d=$1; _pat=$2; shift 2
    sums >"$T/before"
    "$@" >"$T/.out" 2>&1; _rc=$?
    sums >"$T/after"
    if [ "$_rc" != 1 ] || ! grep -Eq -- "$_pat" "$T/.out" || ! cmp -s "$T/before" "$T/after"; then
        fail "$_d (rc $_rc)"; sed 's/^/    /' "$T/.out"; diff "$T/before" "$T/after" | sed 's/^/    /'
    else
        pass "$_d"
    fi
}

writes 1; take s1                          # internal
check_all "after s1"
writes 2; take s2 --disk-only              # external: freezes a.qcow2
check_all "after s2"
writes 3; take s3 --disk-only              # external: freezes a.s2
check_all "after s3"
writes 4; save_active lost                 # captured by nothing

refuse "revert over uncaptured writes needs --force" \
    "revert requires force: disk 'vda': $I/a.s3 holds [0-9]+ bytes written since its last snapshot" \
    ic snapshot-revert $SD vm s2
refuse "revert to an internal snapshot in an image frozen since" \
    "internal snapshot 's1' lives in $I/a.qcow2, which external snapshot 's2' froze since" \
    ic snapshot-revert $SD vm s1 --force
refuse "--running is refused offline" "never starts qemu" ic snapshot-revert $SD vm s2 --running
refuse "an unknown snapshot" "no domain snapshot with matching name 'zz'" ic snapshot-revert $SD vm zz
refuse "--children with --children-only" "mutually exclusive" \
    ic snapshot-delete $SD vm s2 --children --children-only

expect_out "revert --force to s2 (external, non-leaf)" '^Domain snapshot s2 reverted$' \
    ic snapshot-revert $SD vm s2 --force
expect_active s2 "after revert to s2"
expect_out "the new overlay is named by libvirt's rule" "$I/a\\.[0-9]+\$" active vda
expect_out "s2 is current" '^s2$' ic snapshot-current $SD vm --name
expect_out "s2 records the overlay in <revertDisks>" "<revertDisks>" ic snapshot-dumpxml $SD vm s2
expect "the uncaptured writes are still in a.s3 (no --discard)" test -f "$I/a.s3"
check_all "after revert to s2"

writes 5; take s4 --disk-only              # a branch: s2 -> {s3, s4}
expect_out "s4 branches from s2" '^s2$' ic snapshot-parent $SD vm s4
check_all "after s4"
writes 6
expect "revert --force --discard to s3" ic snapshot-revert $SD vm s3 --force --discard
expect_active s3 "after revert to s3"
expect "--discard removed s4's abandoned overlay" test ! -e "$I/a.s4"
expect "--discard kept s4's point" test -f "$(snapinfo s4 vda | cut -d' ' -f2)"
check_all "after revert to s3"

# delete a middle node with two children: nothing merges (its overlay is
# s3's point, its frozen image is shared with s4's branch), every
# snapshot still reads the same
expect_out "delete s2 (middle node, branch)" '^Domain snapshot s2 deleted$' ic snapshot-delete $SD vm s2
expect_out "s3 re-parented to s1" '^s1$' ic snapshot-parent $SD vm s3
expect_out "s4 re-parented to s1" '^s1$' ic snapshot-parent $SD vm s4
check_all "after delete s2"
expect_active s3 "after delete s2"

# a linear tail on s3's branch: s5 freezes the revert overlay, s6 freezes
# s5's overlay; deleting s5 commits its overlay down into the image it
# froze (nothing else reads that one), s6 then names that image
writes 7; take s5 --disk-only
writes 8; take s6 --disk-only
f5=$(snapinfo s5 vda | cut -d' ' -f2)
o5=$(snapinfo s6 vda | cut -d' ' -f2)
expect "delete s5 (commit down)" ic snapshot-delete $SD vm s5
expect_out "s6 now names the image s5 froze" "^external $f5\$" snapinfo s6 vda
expect "s5's overlay is gone" test ! -e "$o5"
expect_out "s6's overlay sits on it" "^backing file: $f5\$" qimg info -U "$(active vda)"
check_all "after delete s5"
# internal root: deleted from the image
expect "delete s1 (internal root)" ic snapshot-delete $SD vm s1
expect "s1 is gone from a.qcow2" sh -c "! qemu-img snapshot -U -l '$I/a.qcow2' | grep -q ' s1 '"
check_all "after delete s1"

# --children-only from the current's parent, then everything
expect_out "current is s6" '^s6$' ic snapshot-current $SD vm --name
expect "revert --force to s4" ic snapshot-revert $SD vm s4 --force
expect_active s4 "after revert to s4"
check_all "after revert to s4"
save_active final
expect_out "delete s4 --children" 'Domain snapshot s4 deleted' ic snapshot-delete $SD vm s4 --children
expect_active final "after delete s4"
check_all "after delete s4"
expect_out "s3 and s6 left" '^s6$' ic snapshot-list $SD vm --name
expect "delete s3 then s6" sh -c "$IMGCHAIN_BIN snapshot-delete $SD vm s3 && $IMGCHAIN_BIN snapshot-delete $SD vm s6"
expect_active final "after deleting everything"
expect_out "no snapshot left" '^$' ic snapshot-list $SD vm --name
# --overlay names the new overlay; --delete-children drops s7's children
writes 9; take s7 --disk-only
writes 10; take s8 --disk-only
writes 11
expect "revert --force --overlay vda=... --delete-children to s7" \
    ic snapshot-revert $SD vm s7 --force --overlay "vda=$I/mine.vda" --delete-children
expect_out "vda is on the named overlay" "^$I/mine.vda\$" active vda
expect_active s7 "after revert to s7"
expect_out "s8 went with --delete-children" '^s7$' ic snapshot-list $SD vm --name
refuse "--overlay for a disk the snapshot does not have" "names no external disk" \
    ic snapshot-revert $SD vm s7 --overlay "vdz=$I/x" --force
refuse "--overlay onto an existing file" "already exists" \
    ic snapshot-revert $SD vm s7 --overlay "vda=$I/a.qcow2" --force
check_all "after revert to s7"
# --metadata: the images stay exactly as they are
find "$I" -type f | sort | xargs md5sum >"$T/img.before"
expect_out "delete --metadata" '^Domain snapshot s7 deleted$' ic snapshot-delete $SD vm s7 --metadata
find "$I" -type f | sort | xargs md5sum >"$T/img.after"
expect "delete --metadata touched no image" cmp "$T/img.before" "$T/img.after"
expect_active s7 "after delete --metadata"

expect "c.raw (snapshot='no') was never touched" test "$(md5sum <"$I/c.raw")" = "$(head -c 1M /dev/zero | md5sum)"
expect "undefine" ic undefine $SD vm
finish
