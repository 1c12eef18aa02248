#!/bin/sh
# domain-virsh.sh - libvirt's test driver (virsh -c test:///default) as the
# oracle for snapshot tree semantics: the same snapshots, given to both by
# snapshot-create --redefine, must give the same snapshot-list (every
# filter, --tree, --from, --current, --descendants, --parent, --name), the
# same snapshot-parent, snapshot-current and snapshot-info, byte for byte.
# The tree has two roots, branches, mixed-case names (virsh sorts them
# case-insensitively), internal and external, running, shutoff and
# disk-snapshot snapshots.
. "$(dirname "$0")/../lib.sh"

if ! command -v virsh >/dev/null 2>&1; then
    echo "SKIP: virsh (libvirt-clients) is not installed"
    finish
fi
VIRSH="virsh -c test:///default"
# the table prints local times: one zone for both
TZ=UTC
export TZ
SD="--state-dir $T/state"

virsh -c test:///default dumpxml test >"$T/test.xml"
expect "imgchain defines the test driver's domain" ic define $SD "$T/test.xml"
# the snapshot documents embed the domain as the test driver stores it
dom_body=$(grep -v '^<?xml' "$T/test.xml")

# snap NAME PARENT STATE LOCATION TIME
snap() {
    f="$T/$1.xml"
    {
        echo "<domainsnapshot>"
        echo "  <name>$1</name>"
        echo "  <state>$3</state>"
        [ "$2" != - ] && printf '  <parent>\n    <name>%s</name>\n  </parent>\n' "$2"
        echo "  <creationTime>$5</creationTime>"
        case "$3" in
            running) echo "  <memory snapshot='internal'/>" ;;
            *) echo "  <memory snapshot='no'/>" ;;
        esac
        echo "  <disks>"
        if [ "$4" = external ]; then
            echo "    <disk name='vda' snapshot='external' type='file'>"
            echo "      <driver type='qcow2'/>"
            echo "      <source file='/guest/diskimage1.$1'/>"
            echo "    </disk>"
        else
            echo "    <disk name='vda' snapshot='internal'/>"
        fi
        echo "  </disks>"
        echo "$dom_body"
        echo "</domainsnapshot>"
    } >"$f"
    order="$order $1"
}

# Two roots, branches under Alpha and under delta, a chain under beta.
order=""
snap Alpha - running internal 1700000000
snap beta Alpha shutoff internal 1700000100
snap Charlie beta disk-snapshot external 1700000200
snap delta Alpha shutoff external 1700000300
snap echo delta running internal 1700000400
snap Foxtrot delta disk-snapshot external 1700000500
snap golf Charlie shutoff internal 1700000600
snap hotel - shutoff internal 1700000700
snap india hotel disk-snapshot external 1700000800

vcmds=""
for n in $order; do
    vcmds="$vcmds snapshot-create test --xmlfile $T/$n.xml --redefine;"
    expect "imgchain redefines $n" ic snapshot-create $SD test --xmlfile "$T/$n.xml" --redefine
done
vcmds="$vcmds snapshot-current test echo;"
expect "imgchain makes echo current" ic snapshot-current $SD test echo

# One virsh process (the test driver's state lives in it): commands are
# separated by echo markers and the output is cut back into pieces.
i=0
run_both() { # label, then the snapshot command's arguments after the domain
    i=$((i + 1))
    label=$1; shift
    vcmds="$vcmds echo @@$i; $* ;"
    # shellcheck disable=SC2086
    ic "$1" $SD test $(echo "$*" | cut -d' ' -f3-) >"$T/ic.$i" 2>/dev/null
    echo "$label" >"$T/label.$i"
}

LISTS="
--parent
--name
--roots
--leaves
--no-leaves
--internal
--external
--inactive
--active
--disk-only
--internal --inactive
--external --leaves
--inactive --active
--leaves --no-leaves
--internal --external
--metadata --no-metadata
--metadata
--no-metadata
--tree
--from Alpha
--from Alpha --descendants
--from Alpha --tree
--from Alpha --descendants --tree
--from delta --descendants --leaves --name
--from beta --parent
--current
--current --descendants --name
--current --tree
--roots --name
--parent --external --no-leaves
--from hotel --descendants --disk-only --name
"
IFS_SAVE=$IFS
IFS='
'
for opts in $LISTS; do
    IFS=$IFS_SAVE
    # shellcheck disable=SC2086
    run_both "snapshot-list $opts" snapshot-list test $opts
    IFS='
'
done
IFS=$IFS_SAVE
run_both "snapshot-list (table)" snapshot-list test
for n in $order; do
    run_both "snapshot-parent $n" snapshot-parent test $n
    run_both "snapshot-info $n" snapshot-info test $n
done
run_both "snapshot-current --name" snapshot-current test --name
run_both "snapshot-info --current" snapshot-info test --current
run_both "snapshot-parent --current" snapshot-parent test --current

# --topological: parents before children (virsh orders siblings by its
# own insertion order, so compare the sets and the order property)
ic snapshot-list $SD test --topological --name | sed '/^$/d' >"$T/topo"
expect "snapshot-list --topological lists every snapshot" \
    test "$(sort "$T/topo" | tr '\n' ' ')" = "$(echo $order | tr ' ' '\n' | sort | tr '\n' ' ')"
bad=0
for n in $order; do
    p=$(ic snapshot-parent $SD test "$n" 2>/dev/null | sed '/^$/d')
    [ -z "$p" ] && continue
    pl=$(grep -n -x "$p" "$T/topo" | cut -d: -f1)
    nl=$(grep -n -x "$n" "$T/topo" | cut -d: -f1)
    [ "$pl" -lt "$nl" ] || bad=1
done
expect "snapshot-list --topological puts every parent before its children" test "$bad" = 0

# Deletes: the test driver only ever deletes metadata, so imgchain's
# --metadata form is its counterpart; tree, parents and current must agree
# after each (CHILDREN_ONLY over the current, CHILDREN, a plain non-leaf,
# the current leaf).
del_both() { # label, then the arguments after the domain
    i=$((i + 1))
    label=$1; shift
    vcmds="$vcmds echo @@$i; snapshot-delete test $* ;"
    ic snapshot-delete $SD test "$@" --metadata >"$T/ic.$i" 2>&1
    echo "$label" >"$T/label.$i"
}
after_delete() {
    run_both "$1: snapshot-list --tree" snapshot-list test --tree
    run_both "$1: snapshot-list --parent" snapshot-list test --parent
    run_both "$1: snapshot-current --name" snapshot-current test --name
}
del_both "delete delta --children-only (the current is below it)" delta --children-only
after_delete "after delete delta --children-only"
del_both "delete beta --children" beta --children
after_delete "after delete beta --children"
del_both "delete Alpha (non-leaf)" Alpha
after_delete "after delete Alpha"
del_both "delete delta (the current, a leaf and a root)" delta
after_delete "after delete delta"

# The full layouts, byte for byte: header, dividing line, tree, and the
# empty line virsh prints after each command.
vcmds="$vcmds echo @@full; snapshot-list test --parent; snapshot-list test --tree;"
{ ic snapshot-list $SD test --parent; ic snapshot-list $SD test --tree; } >"$T/ic-full.out"

$VIRSH "$vcmds" >"$T/virsh.out" 2>"$T/virsh.err"
# the only errors: the roots' snapshot-parent, the current after its delete
expect "virsh ran every command" test -z "$(grep -v -e "has no parent" -e "has no current snapshot" "$T/virsh.err")"
awk -v dir="$T" '/^@@[0-9a-z]+$/ { f = dir "/v." substr($0, 3); printf "" > f; next }
                 f { print >> f }' "$T/virsh.out"
strip() { sed -e '/^ *$/d' "$1"; }
k=1
while [ "$k" -le "$i" ]; do
    label=$(cat "$T/label.$k")
    [ -f "$T/v.$k" ] || : >"$T/v.$k"
    if [ "$(strip "$T/ic.$k")" = "$(strip "$T/v.$k")" ]; then
        pass "$label: same output as virsh"
    else
        fail "$label: differs from virsh"
        echo "    imgchain:"; sed 's/^/      |/' "$T/ic.$k"
        echo "    virsh:"; sed 's/^/      |/' "$T/v.$k"
    fi
    k=$((k + 1))
done
expect "snapshot-list --parent then --tree: byte for byte virsh's output" \
    cmp "$T/ic-full.out" "$T/v.full"

# The option refusals are virsh's.
expect_out "--leaves with --tree refused as virsh refuses it" \
    '^imgchain: --leaves and --tree are mutually exclusive$' ic snapshot-list $SD test --tree --leaves
expect_rc "--descendants without --from is a usage error" 64 ic snapshot-list $SD test --descendants
expect_out "--roots with --from refused" 'Options --roots and --from are mutually exclusive' \
    ic snapshot-list $SD test --roots --from Alpha
expect_out "snapshot-parent of a root: virsh's message" "snapshot 'hotel' has no parent" \
    ic snapshot-parent $SD test hotel
expect_out "unknown snapshot: libvirt's message" \
    "no domain snapshot with matching name 'nope'" ic snapshot-info $SD test nope
finish
