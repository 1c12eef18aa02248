#!/bin/sh
# domain-delete-virsh.sh - libvirt's test driver (virsh -c test:///default)
# as the oracle for what snapshot-delete does to the tree: the same
# snapshots, given to both by snapshot-create --redefine, then the same
# snapshot-delete (a leaf, a middle node, a root, --children,
# --children-only, with and without the current snapshot inside), must
# leave the same snapshot-list --parent and the same current snapshot.
# imgchain runs with --metadata, as the snapshots have no images (the test
# driver refuses that flag and has no images to touch either); the image
# side of delete is tests/cli/domain-revert.sh.
. "$(dirname "$0")/../lib.sh"

if ! command -v virsh >/dev/null 2>&1; then
    echo "SKIP: virsh (libvirt-clients) is not installed"
    finish
fi
TZ=UTC
export TZ

virsh -c test:///default dumpxml test >"$T/test.xml"
dom_body=$(grep -v '^<?xml' "$T/test.xml")

# snap NAME PARENT TIME
snap() {
    {
        echo "<domainsnapshot><name>$1</name><state>shutoff</state>"
        [ "$2" != - ] && echo "<parent><name>$2</name></parent>"
        echo "<creationTime>$3</creationTime><memory snapshot='no'/>"
        echo "<disks><disk name='vda' snapshot='internal'/></disks>"
        echo "$dom_body"
        echo "</domainsnapshot>"
    } >"$T/$1.xml"
    order="$order $1"
}
order=""
snap Alpha - 1700000000
snap beta Alpha 1700000100
snap Charlie beta 1700000200
snap delta Alpha 1700000300
snap echo delta 1700000400
snap Foxtrot delta 1700000500
snap golf Charlie 1700000600
snap hotel - 1700000700
snap india hotel 1700000800

n=0
# scenario CURRENT SNAPSHOT DELETE-OPTIONS...
scenario() {
    n=$((n + 1))
    cur=$1; target=$2; shift 2
    sd="--state-dir $T/state$n"
    ic define $sd "$T/test.xml" >/dev/null
    v=""
    for s in $order; do
        ic snapshot-create $sd test --xmlfile "$T/$s.xml" --redefine >/dev/null
        v="$v snapshot-create test --xmlfile $T/$s.xml --redefine;"
    done
    ic snapshot-current $sd test "$cur" >/dev/null
    v="$v snapshot-current test $cur; snapshot-delete test $target $*;"
    v="$v echo @@list; snapshot-list test --parent; echo @@current; snapshot-current test --name;"
    # shellcheck disable=SC2086
    ic snapshot-delete $sd test "$target" "$@" --metadata >/dev/null 2>"$T/ic.err"
    ic snapshot-list $sd test --parent >"$T/ic.list"
    ic snapshot-current $sd test --name >"$T/ic.cur" 2>/dev/null
    virsh -c test:///default "$v" >"$T/v.out" 2>/dev/null
    sed -n '/^@@list$/,/^@@current$/p' "$T/v.out" | sed '1d;$d' >"$T/v.list"
    sed -n '/^@@current$/,$p' "$T/v.out" | sed '1d' >"$T/v.cur"
    label="delete $target $* (current $cur)"
    if [ "$(sed '/^ *$/d' "$T/ic.list")" = "$(sed '/^ *$/d' "$T/v.list")" ]; then
        pass "$label: same tree as virsh"
    else
        fail "$label: tree differs from virsh"
        sed 's/^/    ic |/' "$T/ic.list"; sed 's/^/    v  |/' "$T/v.list"
    fi
    if [ "$(sed '/^ *$/d' "$T/ic.cur")" = "$(sed '/^ *$/d' "$T/v.cur")" ]; then
        pass "$label: same current snapshot as virsh"
    else
        fail "$label: current differs: imgchain '$(cat "$T/ic.cur")', virsh '$(cat "$T/v.cur")'"
    fi
}

scenario echo delta
scenario echo delta --children
scenario echo delta --children-only
scenario echo echo
scenario echo Alpha --children
scenario echo Alpha --children-only
scenario golf beta --children-only
scenario golf beta
scenario india hotel
scenario india hotel --children
scenario Foxtrot Alpha
scenario beta golf
finish
