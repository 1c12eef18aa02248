#!/bin/sh
# check-defects.sh - imgchain check against qemu-img check on images damaged
# one defect at a time (tests/helpers/qcow2-poke.py): same counters (parsed
# JSON) and exit code; after `imgchain check -r all` qemu-img check finds
# the image clean and its guest data equals qemu-img's own repair of a copy
# (for the defects qemu-img repairs), or what was readable before (for the
# defects only imgchain repairs).  For every defect:
#  - every problem line of the human output names an offset and the
#    structure it lives in;
#  - `check -r all --dry-run` (and -r leaks) leaves the file byte-identical
#    and announces every change the real repair then makes ("Would repair: X" for each
#    "Repairing X", "Would discard" for "Discarding", "Would drop:" for
#    "Dropping", "Would rebuild" for "Rebuilding", "Would repair: grow"
#    for "Repairing: growing").
. "$(dirname "$0")/../lib.sh"
POKE="python3 $IC_TOP/tests/helpers/qcow2-poke.py"

# jsonkeys FILE: the counters, sorted, without the file name
jsonkeys() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("filename",None); print(json.dumps(d, sort_keys=True))' "$1"
}

# changes FILE: one normalized key per change a repair announces (real run:
# the lines before "Double checking"; dry run: the "Would" lines), up to the
# first " (" so the location notes may differ between the two runs
changes() {
    python3 - "$1" <<'EOF'
import re, sys
out = set()
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("Double checking"):
        break
    m = re.match(r"(?:Repairing: growing the file|Would repair: grow the file) from (\d+) to (\d+)", line)
    if m:
        out.add("grow %s %s" % m.groups()); continue
    if line.startswith(("Rebuilding refcount structure", "Would rebuild the refcount structure")):
        out.add("rebuild"); continue
    for pre, key in (("Repairing: ", "fix "), ("Repairing ", "fix "), ("Would repair: ", "fix "),
                     ("Discarding ", "discard "), ("Would discard ", "discard "),
                     ("Dropping ", "drop "), ("Would drop: ", "drop ")):
        if line.startswith(pre):
            out.add(key + line[len(pre):].split(" (")[0]); break
for k in sorted(out):
    print(k)
EOF
}

# located FILE: every problem line names an offset (0x...) and a structure
located() {
    grep -E '^(ERROR|Leaked|Warning|imgchain: Check failed)' "$1" |
        grep -vE '0x[0-9a-f]+' | head -n 3
    grep -E '^(ERROR|Leaked|Warning|imgchain: Check failed)' "$1" |
        grep -vE 'L1 table|L2 table|refcount table|refcount block|snapshot table|image header|bitmap' |
        head -n 3
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

# run_case DEFECT CREATE_OPTS SNAP REPAIRABLE
# REPAIRABLE: yes (as qemu-img's repair), ours (only imgchain repairs), no,
# or before (both repair it; the guest data is compared with what was
# readable before, because qemu-img's repair of a copy takes seconds)
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
    ic check "$T/$d.img" >/dev/null 2>"$T/h.err"
    if [ -s "$T/h.err" ] && [ -z "$(located "$T/h.err")" ]; then
        pass "$d ($o): every problem line names its offset and structure"
    else
        fail "$d ($o): problem lines without offset or structure"; located "$T/h.err" | sed 's/^/    /'
    fi
    cp "$T/$d.img" "$T/$d.dry"
    ic check -r all --dry-run "$T/$d.dry" >/dev/null 2>"$T/dry.err"
    expect "$d ($o): --dry-run writes nothing" cmp "$T/$d.img" "$T/$d.dry"
    # -r leaks: the dry run writes nothing and announces what -r leaks does
    ic check -r leaks --dry-run "$T/$d.dry" >/dev/null 2>"$T/dryl.err"
    expect "$d ($o): --dry-run -r leaks writes nothing" cmp "$T/$d.img" "$T/$d.dry"
    ic check -r leaks "$T/$d.dry" >"$T/rl.out" 2>&1
    changes "$T/rl.out" >"$T/rl.keys"
    changes "$T/dryl.err" >"$T/dryl.keys"
    missing=$(comm -23 "$T/rl.keys" "$T/dryl.keys")
    if [ -z "$missing" ]; then
        pass "$d ($o): --dry-run -r leaks announced each of the $(wc -l <"$T/rl.keys") changes"
    else
        fail "$d ($o): --dry-run -r leaks did not announce every change"; echo "$missing" | sed 's/^/    missing: /'
    fi
    [ "$rep" = no ] && return
    # what a reader sees before the repair (qemu reads zeroes past the end)
    if [ "$rep" = yes ]; then
        cp "$T/$d.img" "$T/$d.q"
        qimg check -r all "$T/$d.q" >/dev/null 2>&1
    elif [ "$rep" = ours ]; then
        qimg convert -O raw "$T/$d.img" "$T/$d.before.raw"
    else
        qimg convert -O raw "$T/$d.base" "$T/$d.before.raw" # qemu-img cannot open the damage
    fi
    if [ "$rep" = ours ]; then
        cp "$T/$d.img" "$T/$d.q"
        qimg check -r all "$T/$d.q" >/dev/null 2>&1
        expect_rc "$d ($o): qemu-img's own repair leaves it corrupt" 2 qimg check "$T/$d.q"
    fi
    ic check -r all "$T/$d.img" >"$T/r.out" 2>&1
    changes "$T/r.out" >"$T/r.keys"
    changes "$T/dry.err" >"$T/dry.keys"
    missing=$(comm -23 "$T/r.keys" "$T/dry.keys")
    if [ -s "$T/r.keys" ] && [ -z "$missing" ]; then
        pass "$d ($o): --dry-run announced each of the $(wc -l <"$T/r.keys") changes"
    else
        fail "$d ($o): --dry-run did not announce every change"; echo "$missing" | sed 's/^/    missing: /'
    fi
    expect_rc "$d ($o): qemu-img check is clean after imgchain -r all" 0 qimg check "$T/$d.img"
    if [ "$rep" = ours ]; then
        expect "$d ($o): guest data equals what was readable before" \
            qimg compare -q -f qcow2 -F raw "$T/$d.img" "$T/$d.before.raw"
    elif [ "$rep" = before ]; then
        # qemu-img needs seconds to open 65536 snapshots: its check above is enough
        expect "$d ($o): guest data equals what was readable before" \
            ic compare -q -f qcow2 -F raw "$T/$d.img" "$T/$d.before.raw"
    else
        expect "$d ($o): guest data equals qemu-img's repair" qimg compare -q "$T/$d.img" "$T/$d.q"
    fi
    if [ "$sn" = snap ]; then
        qimg snapshot -l "$T/$d.img" | awk 'NR > 2 { print $1, $2 }' >"$T/i.snaps"
        qimg snapshot -l "$T/$d.q" | awk 'NR > 2 { print $1, $2 }' >"$T/q.snaps"
        expect "$d ($o): snapshots kept as in qemu-img's repair" cmp "$T/i.snaps" "$T/q.snaps"
        qimg convert -l s1 -O raw "$T/$d.img" "$T/i.s1"
        qimg convert -l s1 -O raw "$T/$d.q" "$T/q.s1"
        expect "$d ($o): snapshot s1 reads as in qemu-img's repair" cmp "$T/i.s1" "$T/q.s1"
    fi
}

for o in "cluster_size=65536" "cluster_size=4096,refcount_bits=8" "compat=0.10"; do
    run_case leak "$o" no yes
    run_case refcount-zero "$o" no yes
    run_case copied "$o" no yes
    run_case l1-reserved "$o" no no
    run_case l2-reserved "$o" no no
    run_case data-unaligned "$o" no no
    run_case past-eof "$o" no no
    run_case past-eof-near "$o" no ours
    run_case data-over-refblock "$o" no no
    run_case l2-unaligned "$o" no no
    run_case reftable-reserved "$o" no yes
    run_case refcount-low "$o" snap yes
    run_case snapshot-l1-unaligned "$o" snap no
    run_case compressed-copied "$o" no no
    run_case snapshot-extra-big "$o" snap yes
done
run_case zero-unaligned "cluster_size=65536" no yes
run_case dirty "cluster_size=65536,lazy_refcounts=on" no yes
run_case snapshot-incomplete "cluster_size=65536" snap yes
run_case snapshot-incomplete "cluster_size=4096,refcount_bits=8" snap yes
# large tables: one geometry each (qemu-img needs seconds for 65536 snapshots)
run_case snapshot-too-many "cluster_size=65536" no before
run_case snapshot-table-big "cluster_size=65536" no yes
finish
