#!/bin/sh
# qcow2-extl2.sh - extended L2 subcluster writes against qemu 7.2.
#
# The same write sequence is run by qemu-io on one copy of an image and by
# `imgchain io` on another copy (both copies made by qemu-img, so they start
# byte-identical).  Then:
#   1. `imgchain map --output=json` equals `qemu-img map --output=json`
#      (parsed as JSON, entry by entry, offsets included: the host layout
#      must match qemu's, not just the guest view);
#   2. `qemu-img compare` finds the two copies identical;
#   3. `qemu-img check` finds no errors and no leaks in imgchain's copy.
# Cluster sizes 16K, 64K and 2M (subclusters of 512 B, 2 KiB and 64 KiB),
# without a backing file, over a qcow2 backing file with data, zero
# clusters and holes, and over a shorter raw backing file.  Sequences: one
# written by hand for each rule (partial subcluster writes and their COW,
# writes into allocated clusters with unallocated or zero subclusters,
# zero writes aligned and not, with and without unmap, whole-cluster
# discards, compressed clusters, clusters shared with an internal
# snapshot), and seeded random ones.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1

cat >mapcmp.py <<'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
if a == b:
    sys.exit(0)
n = 0
for i, (x, y) in enumerate(zip(a, b)):
    if x != y and n < 4:
        print("    [%d] qemu     %s" % (i, json.dumps(x, sort_keys=True)))
        print("    [%d] imgchain %s" % (i, json.dumps(y, sort_keys=True)))
        n += 1
if len(a) != len(b):
    print("    %d entries (qemu) vs %d (imgchain)" % (len(a), len(b)))
sys.exit(1)
EOF

# same NAME BASEIMG CMDFILE: runs the commands of CMDFILE (one qemu-io
# command a line) on two copies of BASEIMG and compares.
same() {
    name=$1 img=$2 cmds=$3
    cp "$img" "q-$name.qcow2"
    cp "$img" "i-$name.qcow2"
    set --
    while IFS= read -r c; do set -- "$@" -c "$c"; done <"$cmds"
    if ! qio "$@" "q-$name.qcow2" >qio.out 2>&1; then
        fail "$name: qemu-io failed"; head -n 5 qio.out | sed 's/^/    /'; return
    fi
    # qemu-io's default cache mode is writethrough (a flush after every
    # request); imgchain io flushes at the end only.  The guest view and
    # the metadata do not care, but which host ranges ext4 reports as holes
    # after a zero range (the COW shortcut) depends on what is still dirty,
    # and qemu's block status shows that on 2M-cluster images: flush alike.
    set --
    while IFS= read -r c; do set -- "$@" -c "$c" -c flush; done <"$cmds"
    if ! ic io -q "i-$name.qcow2" "$@" >ic.out 2>&1; then
        fail "$name: imgchain io failed"; head -n 5 ic.out | sed 's/^/    /'; return
    fi
    # maps first: reading a zeroed range brings pages into the page cache,
    # after which ext4 reports it as data (for qemu and imgchain alike)
    qimg map --output=json "q-$name.qcow2" >q.json 2>&1
    ic map --output=json "i-$name.qcow2" >i.json 2>&1
    ic map --output=json "q-$name.qcow2" >iq.json 2>&1
    if python3 mapcmp.py q.json i.json >cmp.out 2>&1; then
        pass "$name: imgchain map equals qemu-img map ($(grep -c start q.json) entries)"
    else
        fail "$name: map differs"; cat cmp.out
    fi
    expect "$name: imgchain maps qemu's copy as qemu does" python3 mapcmp.py q.json iq.json
    expect "$name: qemu-img compare finds both copies identical" \
        qimg compare -q "q-$name.qcow2" "i-$name.qcow2"
    expect "$name: qemu-img check is clean on imgchain's copy" qimg check -q "i-$name.qcow2"
}

# The hand-written sequence, in units of the subcluster size S and the
# cluster size C (offsets past 6 clusters stay clear of the random tests).
fixed_cmds() { # C
    awk -v C="$1" 'BEGIN { S = C / 32;
        # partial subcluster writes in an unallocated cluster: COW of the
        # rest of the first and last subcluster only
        printf "write -P 0x11 %d %d\n", S + 100, S
        printf "write -P 0x12 %d %d\n", 5 * S, 2 * S
        # writes into the allocated cluster: in place, some subclusters new
        printf "write -P 0x13 %d %d\n", S / 2, 7 * S
        printf "write -P 0x14 %d %d\n", 20 * S + 1, 3
        # a write across three clusters, partial at both ends
        printf "write -P 0x15 %d %d\n", C + 30 * S + 7, C + 4 * S
        # zero writes: whole subclusters, a partial one over zeroes, a
        # partial one over data, whole clusters with and without unmap
        printf "write -z %d %d\n", 3 * C + 2 * S, 3 * S
        printf "write -z %d %d\n", 3 * C + 10 * S + 5, 17
        printf "write -z %d %d\n", 21 * S - 7, 20
        printf "write -z %d %d\n", 4 * C, C
        printf "write -z -u %d %d\n", C, C
        printf "write -z -u %d %d\n", 4 * C + 3 * S, 2 * C
        # data into zero subclusters of an allocated cluster and of a
        # zero cluster
        printf "write -P 0x16 %d %d\n", 3 * C + 3 * S + 9, S
        printf "write -P 0x17 %d %d\n", 4 * C + S, 100
        # discards: partial (ignored by qemu 7.2) and whole clusters
        printf "discard %d %d\n", 2 * C + S, 2 * S
        printf "discard %d %d\n", 2 * C, C
        printf "discard %d %d\n", 8 * C, 2 * C
        printf "write -P 0x18 %d %d\n", 2 * C + 31 * S, S + 1
        # a compressed cluster, then a partial write into it
        printf "write -c -P 0x19 %d %d\n", 6 * C, C
        printf "write -P 0x1a %d %d\n", 6 * C + 4 * S, 8
        printf "write -z %d %d\n", 6 * C + 8 * S, 2 * S
    }'
}

# Random commands: offsets anywhere (half of them subcluster aligned),
# lengths up to three clusters.
rand_cmds() { # SEED SIZE C N
    awk -v seed="$1" -v size="$2" -v C="$3" -v n="$4" 'BEGIN { srand(seed); S = C / 32;
        for (i = 0; i < n; i++) {
            len = 1 + int(rand() * 3 * C);
            if (rand() < 0.5) len = S * (1 + int(rand() * 40));
            off = int(rand() * (size - len));
            if (rand() < 0.5) off -= off % S;
            k = int(rand() * 10);
            if (k < 6) printf "write -P %d %d %d\n", (i % 250) + 1, off, len;
            else if (k < 8) printf "write -z %d %d\n", off, len;
            else if (k < 9) printf "write -z -u %d %d\n", off, len;
            else printf "discard %d %d\n", off - off % C, C * (1 + int(rand() * 2)) } }'
}

# Backing files: qcow2 with data, zero clusters and holes; raw, shorter,
# with a real hole (never written: stable for SEEK_DATA).
qimg create -q -f qcow2 -o cluster_size=65536 bq.qcow2 64M
qio -c 'write -P 0xb1 0 5M' -c 'write -z 1M 128k' -c 'write -P 0xb2 20M 12M' \
    -c 'write -z 24M 2M' -c 'discard 3M 64k' bq.qcow2 >/dev/null
qimg create -q -f raw br.raw 40M
qio -f raw -c 'write -P 0xc1 0 2M' -c 'write -P 0xc1 2348k 38612k' br.raw >/dev/null

seed=1
for cs in 16384 65536 2097152; do
    size=$((cs * 32)); [ $size -lt 8388608 ] && size=8388608
    for b in none qcow2 raw; do
        base="e-$cs-$b.qcow2"
        case $b in
        none) qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs "$base" $size ;;
        qcow2) qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs -b bq.qcow2 -F qcow2 \
                   "$base" $size ;;
        raw) qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs -b br.raw -F raw \
                 "$base" $((size + 2 * cs)) ;;
        esac
        fixed_cmds $cs >fixed.cmds
        same "fixed-$cs-$b" "$base" fixed.cmds
        rand_cmds $seed $size $cs 40 >rand.cmds
        same "rand$seed-$cs-$b" "$base" rand.cmds
        seed=$((seed + 1))
    done
done

# Clusters shared with an internal snapshot: writes must move the shared
# cluster's allocated subclusters (COW from its first to its last one).
for cs in 16384 65536; do
    n="snap-$cs.qcow2"
    qimg create -q -f qcow2 -o extended_l2=on,cluster_size=$cs -b bq.qcow2 -F qcow2 "$n" 8M
    S=$((cs / 32))
    qio -c "write -P 0x21 $((3 * S)) $((2 * S))" -c "write -P 0x22 $((20 * S)) $S" \
        -c "write -z $((24 * S)) $S" -c "write -P 0x23 $cs $((cs * 3))" "$n" >/dev/null
    qimg snapshot -c s1 "$n"
    printf 'write -P 0x31 %d %d\nwrite -P 0x32 %d %d\nwrite -z %d %d\nwrite -z -u %d %d\n' \
        $((10 * S + 3)) 40 $((cs + 5 * S)) $((cs * 2)) $((cs * 3 + S)) $S $((cs * 3)) $cs >snap.cmds
    same "snapshot-$cs" "$n" snap.cmds
done
finish
