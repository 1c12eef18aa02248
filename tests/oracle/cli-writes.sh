#!/bin/sh
# Oracle: images that imgchain creates and writes.  Random writes, zero
# writes and discards go through `imgchain io`; the same operations go to a
# raw model file through `qemu-io -f raw`.  Every image must pass
# `qemu-img check` with no errors and no leaks, and `qemu-img compare`
# must find it equal to its model.  Covers fresh images of several
# configurations, overlays on a backing file, and `convert -c` results.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

SIZE=16777216
# ops SEED CLUSTER [FMT]: prints "imgchain-op|model-op" lines.  Discards
# are cluster aligned (unaligned edges stay as they are, which a raw model
# cannot express); in the model a discard is a zero write.  QED has no
# discard (advisory, a no-op as in qemu), so for QED they become zero
# writes on both sides.
ops() {
    python3 - "$1" "$2" "$SIZE" "${3:-}" <<'PY'
import random, sys
seed, cluster, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
qed = sys.argv[4] == "qed"
r = random.Random(seed)
for i in range(40):
    kind = r.random()
    if kind < 0.70:
        ln = r.choice([1, 512, 4096, 65536, 100000, 300000, r.randint(1, 1 << 20)])
        off = r.randint(0, size - ln)
        print("write -P %d %d %d|write -P %d %d %d" % (i + 1, off, ln, i + 1, off, ln))
    elif kind < 0.85:
        ln = r.randint(1, 1 << 20)
        off = r.randint(0, size - ln)
        print("write -z %d %d|write -z %d %d" % (off, ln, off, ln))
    else:
        n = r.randint(1, 8)
        off = r.randint(0, size // cluster - n) * cluster
        print("%s %d %d|write -z %d %d" % ("write -z" if qed else "discard", off, n * cluster, off, n * cluster))
PY
}

# apply IMG MODEL SEED CLUSTER FMT
apply() {
    ops "$3" "$4" "$5" >"$T/ops"
    while IFS='|' read -r a b; do
        ic io -q "$1" -c "$a" || { fail "imgchain io '$a' on $1"; return 1; }
        qio -f raw -c "$b" "$2" >/dev/null || { fail "qemu-io '$b' on $2"; return 1; }
    done <"$T/ops"
}

# verify IMG MODEL: check clean (exit 0 = no errors, no leaks) and equal.
verify() {
    if qimg check "$1" >"$T/check.out" 2>&1; then
        pass "$1: qemu-img check finds no errors and no leaks"
    else
        fail "$1: qemu-img check"; sed 's/^/    /' "$T/check.out" | head -n 8
    fi
    if qimg compare -F raw "$1" "$2" >"$T/cmp.out" 2>&1; then
        pass "$1: equals its raw model"
    else
        fail "$1: differs from its raw model"; sed 's/^/    /' "$T/cmp.out" | head -n 4
    fi
}

seed=1
for spec in "qcow2 -" "qcow2 compat=0.10" "qcow2 cluster_size=4096" "qcow2 cluster_size=512" \
            "qcow2 cluster_size=2M" "qcow2 extended_l2=on" "qcow2 refcount_bits=1" \
            "qcow2 refcount_bits=64" "qcow2 lazy_refcounts=on" "qcow2 preallocation=metadata" \
            "qed -" "qed cluster_size=4096,table_size=2"; do
    set -- $spec
    fmt=$1; o=$2
    n="w$seed.$fmt"
    cl=65536
    case "$o" in *cluster_size=4096*) cl=4096 ;; *cluster_size=512*) cl=512 ;; *cluster_size=2M*) cl=2097152 ;; esac
    if [ "$o" = - ]; then ic create -q -f "$fmt" "$n" $SIZE; else ic create -q -f "$fmt" -o "$o" "$n" $SIZE; fi \
        || { fail "create $n ($o)"; seed=$((seed + 1)); continue; }
    qimg create -q -f raw "m$seed.raw" $SIZE
    apply "$n" "m$seed.raw" $seed $cl $fmt && verify "$n" "m$seed.raw"
    seed=$((seed + 1))
done

# Overlays: a raw base with data under a qcow2 (v3 and v2) and a qed overlay.
qimg create -q -f raw base.raw $SIZE
qio -f raw -c 'write -P 0xaa 0 16M' -c 'write -z 5M 1M' base.raw >/dev/null
for spec in "qcow2 -" "qcow2 compat=0.10" "qcow2 cluster_size=4096" "qed -"; do
    set -- $spec
    fmt=$1; o=$2
    n="ov$seed.$fmt"
    cl=65536; [ "$o" = cluster_size=4096 ] && cl=4096
    if [ "$o" = - ]; then ic create -q -f "$fmt" -b base.raw -F raw "$n"; else ic create -q -f "$fmt" -o "$o" -b base.raw -F raw "$n"; fi \
        || { fail "create overlay $n"; seed=$((seed + 1)); continue; }
    cp base.raw "m$seed.raw"
    # v2 qcow2 cannot store zero clusters: a discard there shows the backing
    # file again, which the model cannot follow; skip discards (seed parity)
    if [ "$o" = compat=0.10 ]; then
        ops $seed $cl | grep -v '^discard' >"$T/ops.v2"
        while IFS='|' read -r a b; do
            ic io -q "$n" -c "$a" && qio -f raw -c "$b" "m$seed.raw" >/dev/null || fail "op $a"
        done <"$T/ops.v2"
    else
        apply "$n" "m$seed.raw" $seed $cl $fmt
    fi
    verify "$n" "m$seed.raw"
    expect "$n: the backing file is untouched" qio -f raw -r -c 'read -P 0xaa 0 5M' base.raw
    seed=$((seed + 1))
done

# convert -c of a written image, and of an overlay chain.
for src in w1.qcow2 ov13.qcow2 w11.qed; do
    [ -e "$src" ] || continue
    m=$(echo "$src" | sed 's/^w\([0-9]*\)\..*/m\1.raw/; s/^ov\([0-9]*\)\..*/m\1.raw/')
    expect "convert -c $src" ic convert -c -O qcow2 "$src" "c-$src.qcow2"
    verify "c-$src.qcow2" "$m"
    expect "convert -O qcow2 $src" ic convert -O qcow2 "$src" "p-$src.qcow2"
    verify "p-$src.qcow2" "$m"
    expect "convert -O qed $src" ic convert -O qed "$src" "q-$src.qed"
    verify "q-$src.qed" "$m"
done
finish
