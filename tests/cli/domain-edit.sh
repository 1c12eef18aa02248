#!/bin/sh
# domain-edit.sh - snapshot-edit through $EDITOR (validated before it is
# stored; unchanged, rename, clone, invalid), and snapshot-export /
# snapshot-import moving a tree's metadata to another state folder (the
# same tree, parents and current after the move, images untouched).
. "$(dirname "$0")/../lib.sh"

I="$T/img"
mkdir -p "$I"
SD="--state-dir $T/state"
ic create -f qcow2 "$I/a.qcow2" 4M >/dev/null
cat >"$T/vm.xml" <<EOF
<domain type='kvm'>
  <name>vm</name>
  <memory unit='KiB'>65536</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$I/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
ic define $SD "$T/vm.xml" >/dev/null
ic snapshot-create-as $SD vm s1 >/dev/null
ic snapshot-create-as $SD vm s2 --disk-only >/dev/null
ic snapshot-create-as $SD vm s3 --disk-only >/dev/null
sums() { find "$I" "$T/state" -type f ! -name '*.lock' | sort | xargs md5sum; }

EDITOR="sed -i 's#<name>s2</name>#<name>s2</name><description>after the upgrade</description>#'" \
    expect_out "snapshot-edit stores the edit" '^Snapshot s2 edited\.$' ic snapshot-edit $SD vm s2
expect_out "the description is stored" '<description>after the upgrade</description>' \
    ic snapshot-dumpxml $SD vm s2
expect "the edited file is valid" virt-xml-validate "$T/state/vm/s2.xml" domainsnapshot
EDITOR=true expect_out "an unchanged edit says so" '^Snapshot s2 XML configuration not changed\.$' \
    ic snapshot-edit $SD vm s2
sums >"$T/before"
EDITOR="sed -i 's#<name>s2</name>#<name>s9</name>#'" \
    expect_rc "a new name without --rename or --clone is refused" 1 ic snapshot-edit $SD vm s2
EDITOR="sed -i 's#<state>shutoff</state>#<state>flying</state>#'" \
    expect_out "an invalid edit is refused" "Failed to update s2" ic snapshot-edit $SD vm s2
EDITOR="sed -i 's#<name>s2</name>#<name>s2</name><bogus/>#'" \
    expect_out "an edit the schema rejects is refused" "Failed to update s2" ic snapshot-edit $SD vm s2
sums >"$T/after"
expect "refused edits changed nothing" cmp "$T/before" "$T/after"
EDITOR="sed -i 's#<name>s3</name>#<name>s3b</name>#'" \
    expect_out "--clone" '^Snapshot s3 cloned to s3b\.$' ic snapshot-edit $SD vm s3 --clone
EDITOR="sed -i 's#<name>s3b</name>#<name>s4</name>#'" \
    expect_out "--rename" '^Snapshot s4 edited\.$' ic snapshot-edit $SD vm s3b --rename
expect_out "the renamed one replaced the old name" '^s4$' ic snapshot-list $SD vm --name
expect "s3b is gone" sh -c "! $IMGCHAIN_BIN snapshot-list $SD vm --name | grep -qx s3b"

ic snapshot-list $SD vm --parent >"$T/tree.before"
ic snapshot-current $SD vm --name >"$T/cur.before"
mkdir "$T/export"
expect_out "snapshot-export --move" "^Exported 4 snapshots of domain 'vm'" \
    ic snapshot-export $SD vm "$T/export" --move
expect_out "the source forgot them" '^$' ic snapshot-list $SD vm --name
expect "the images stayed" test -f "$I/a.s2" -a -f "$I/a.s3"
# the destination host: another state folder, the same domain
SD2="--state-dir $T/state2"
ic define $SD2 "$T/state/vm.xml" >/dev/null
expect_out "snapshot-import" "^Imported 4 snapshots into domain 'vm'" ic snapshot-import $SD2 vm "$T/export"
ic snapshot-list $SD2 vm --parent >"$T/tree.after"
ic snapshot-current $SD2 vm --name >"$T/cur.after"
expect "the same tree after the move" cmp "$T/tree.before" "$T/tree.after"
expect "the same current after the move" cmp "$T/cur.before" "$T/cur.after"
bad=0
for f in "$T"/state2/vm/*.xml; do virt-xml-validate "$f" domainsnapshot >/dev/null 2>&1 || bad=1; done
expect "the imported metadata files are valid" test "$bad" = 0
expect "imported snapshots' files are not imgchain's" test ! -f "$T/state2/vm.imgchain.json"

# snapshot-list --output=json: one object per snapshot, libvirt's facts
ic snapshot-list $SD2 vm --output=json >"$T/list.json"
expect "snapshot-list --output=json: the tree as JSON" python3 - "$T/list.json" <<'PY'
import json, sys
v = {o["name"]: o for o in json.load(open(sys.argv[1]))}
assert sorted(v) == ["s1", "s2", "s3", "s4"], sorted(v)
assert v["s1"]["parent"] is None and v["s1"]["location"] == "internal", v["s1"]
assert v["s2"]["parent"] == "s1" and v["s2"]["location"] == "external", v["s2"]
assert v["s1"]["descendants"] == len(v) - 1, v["s1"]
assert sum(o["current"] for o in v.values()) == 1
assert all(o["state"] == "shutoff" for o in v.values())
PY
finish
