#!/bin/sh
# check-defects.sh - imgchain check against qemu-img check on images damaged
# one defect at a time (tests/helpers/qcow2-poke.py): same counters (parsed
# JSON) and exit code; after `imgchain check -r all` qemu-img check finds
# the image clean and its guest data equals qemu-img's own repair of a copy
# (for the defects qemu-img repairs).
. "$(dirname "$0")/../lib.sh"
POKE="python3 $IC_TOP/tests/helpers/qcow2-poke.py"

# jsonkeys FILE: the counters, sorted, without the file name
jsonkeys() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("filename",None); print(json.dumps(d, sort_keys=True))' "$1"
}

mkbase() { # mkbase NAME [create options] [snapshot]
    _n=$1; _o=$2
    qimg create -q -f qcow2 -o "$_o" "$T/$_n.base" 16M
    qio -c 'write -P 0x11 0 192k' -c 'write -P 0x22 4M 64k' -c 'write -c -P 0x33 8M 64k' "$T/$_n.base" >/dev/null
    if [ "${3:-}" = snap ]; then
        qimg snapshot -c s1 "$T/$_n.base"
        qio -c 'write -P 0x44 0 64k' "$T/$_n.base" >/dev/null
    fi
}

# case DEFECT CREATE_OPTS SNAP REPAIRABLE
run_case() {
    d=$1; o=$2; sn=$3; rep=$4
    mkbase "$d" "$o" "$sn"
    cp "$T/$d.base" "$T/$d.img"
    $POKE "$T/$d.img" "$d" || { fail "$d: poke"; return; }
    qimg check --output=json "$T/$d.img" >"$T/q.json" 2>/dev/null; qrc=$?
    ic check --output=json "$T/$d.img" >"$T/i.json" 2>"$T/i.err"; irc=$?
    if [ "$qrc" = "$irc" ]; then pass "$d ($o): exit code $irc as qemu-img"; else fail "$d ($o): exit $irc, qemu-img $qrc"; fi
    if [ "$qrc" != 1 ] || [ -s "$T/q.json" ]; then
        if [ "$(jsonkeys "$T/q.json")" = "$(jsonkeys "$T/i.json")" ]; then
            pass "$d ($o): counters as qemu-img"
        else
            fail "$d ($o): counters differ"; echo "    qemu:     $(jsonkeys "$T/q.json")"; echo "    imgchain: $(jsonkeys "$T/i.json")"
        fi
    fi
    cp "$T/$d.img" "$T/$d.dry"
    ic check -r all --dry-run "$T/$d.dry" >/dev/null 2>&1
    expect "$d ($o): --dry-run writes nothing" cmp "$T/$d.img" "$T/$d.dry"
    [ "$rep" = yes ] || return
    cp "$T/$d.img" "$T/$d.q"
    qimg check -r all "$T/$d.q" >/dev/null 2>&1
    ic check -r all "$T/$d.img" >"$T/r.out" 2>&1
    expect_rc "$d ($o): qemu-img check is clean after imgchain -r all" 0 qimg check "$T/$d.img"
    expect "$d ($o): guest data equals qemu-img's repair" qimg compare -q "$T/$d.img" "$T/$d.q"
}

for o in "cluster_size=65536" "cluster_size=4096,refcount_bits=8" "compat=0.10"; do
    run_case leak "$o" no yes
    run_case refcount-zero "$o" no yes
    run_case copied "$o" no yes
    run_case l1-reserved "$o" no no
    run_case l2-reserved "$o" no no
    run_case data-unaligned "$o" no no
    run_case past-eof "$o" no no
    run_case data-over-refblock "$o" no no
    run_case l2-unaligned "$o" no no
    run_case reftable-reserved "$o" no yes
    run_case refcount-low "$o" snap yes
    run_case snapshot-l1-unaligned "$o" snap no
    run_case compressed-copied "$o" no no
done
run_case zero-unaligned "cluster_size=65536" no yes
run_case dirty "cluster_size=65536,lazy_refcounts=on" no yes
finish
