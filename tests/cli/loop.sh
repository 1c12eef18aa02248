#!/bin/sh
# A backing loop is reported as a loop by every command, however the
# backing name spells the file: the image's own name, "./NAME", an
# absolute path through "..", a symlink, and a two-image loop whose second
# link is spelled differently.  Each command exits with its documented
# failure code (1; compare 2 and check --chain 2, their qemu-img codes for
# an image that cannot be opened / a broken chain), never 75 (locked), and
# no image is changed.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

# mkloop SPELLING: l.qcow2 whose backing file is l.qcow2 spelled SPELLING
# (for "two:" a second image m.qcow2 between them).
mkloop() {
    rm -f l.qcow2 m.qcow2 sl.qcow2 out.raw
    qimg create -q -f qcow2 l.qcow2 8M
    ln -s l.qcow2 sl.qcow2
    case "$1" in
    two:*)
        qimg create -q -f qcow2 m.qcow2 8M
        qimg rebase -q -u -f qcow2 -b m.qcow2 -F qcow2 l.qcow2
        qimg rebase -q -u -f qcow2 -b "${1#two:}" -F qcow2 m.qcow2 ;;
    *)
        qimg rebase -q -u -f qcow2 -b "$1" -F qcow2 l.qcow2 ;;
    esac
    cp l.qcow2 l.before
}

for spelling in l.qcow2 ./l.qcow2 "$T/../$(basename "$T")/l.qcow2" sl.qcow2 two:./l.qcow2 two:sl.qcow2; do
    for cmd in "info --backing-chain l.qcow2:1" "map l.qcow2:1" "check --chain l.qcow2:2" \
               "commit l.qcow2:1" "rebase -b m2.qcow2 -F qcow2 l.qcow2:1" "convert l.qcow2 out.raw:1" \
               "compare l.qcow2 l.qcow2:2" "io l.qcow2 -c flush:1" "io -r l.qcow2 -c flush:1"; do
        rc=${cmd##*:}; cmd=${cmd%:*}
        mkloop "$spelling"
        qimg create -q -f qcow2 m2.qcow2 8M
        name="${cmd%% *} ($spelling)"
        expect_rc "$name: a backing loop exits $rc" "$rc" sh -c "'$IMGCHAIN_BIN' $cmd"
        if grep -q "infinite loop" "$T/.out"; then pass "$name: the message names the loop"
        else fail "$name: the message names the loop"; sed 's/^/    /' "$T/.out"; fi
        expect "$name: the image is unchanged" cmp l.qcow2 l.before
        expect "$name: no journal is left" test ! -e l.qcow2.imgchain-journal
        expect "$name: no target is left" test ! -e out.raw
    done
done

# The dependents scan walks the same way: a loop ends the walk at once.
mkloop two:./l.qcow2
qimg create -q -f qcow2 other.qcow2 8M
expect_rc "dependents: a looping chain does not make m.qcow2 a user of other.qcow2" 0 \
    ic dependents --fail-if-used . -- other.qcow2
expect "dependents: the images of a loop are unchanged" cmp l.qcow2 l.before
finish
