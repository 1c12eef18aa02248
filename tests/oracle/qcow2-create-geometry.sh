#!/bin/sh
# create -f qcow2 accepts the geometries qemu-img 7.2 accepts, small
# clusters with wide refcounts and metadata preallocation included: the
# images check clean with qemu-img, qemu-img info reports what it reports
# for its own image of the same options, and the file is laid out as
# compactly.  A create that fails late (here: the file-size limit) leaves an
# existing file byte for byte as it was.
. "$(dirname "$0")/../lib.sh"
cd "$T" || exit 1
mkdir q i

# info_same A B: qemu-img info's JSON of both images agrees on everything but
# the names and the sizes on the host.
info_same() {
    python3 - "$1" "$2" <<'PY'
import json, subprocess, sys
def info(p):
    j = json.loads(subprocess.check_output(["qemu-img", "info", "-U", "--output=json", p]))
    for k in ("filename", "actual-size", "dirty-flag"):
        j.pop(k, None)
    return j
a, b = info(sys.argv[1]), info(sys.argv[2])
if a != b:
    print(json.dumps(a, indent=1, sort_keys=True)); print(json.dumps(b, indent=1, sort_keys=True))
    sys.exit(1)
PY
}

n=0
for spec in "refcount_bits=64,cluster_size=512 256M" \
            "preallocation=metadata,cluster_size=512 1G" \
            "refcount_bits=64,cluster_size=1k 4G" \
            "refcount_bits=1,cluster_size=512 64M" \
            "refcount_bits=64,cluster_size=512,preallocation=metadata 128M" \
            "preallocation=metadata,cluster_size=4k 1G" \
            "preallocation=metadata 8G" \
            "refcount_bits=8,cluster_size=2M,preallocation=metadata 3G" \
            "compat=0.10,cluster_size=512 512M"; do
    set -- $spec
    n=$((n + 1))
    qimg create -q -f qcow2 -o "$1" "q/$n.qcow2" "$2"
    expect_rc "create -o $1 $2" 0 ic create -q -f qcow2 -o "$1" "i/$n.qcow2" "$2"
    expect "qemu-img check is clean for -o $1 $2" qemu-img check -q "i/$n.qcow2"
    expect "qemu-img info matches its own image for -o $1 $2" info_same "q/$n.qcow2" "i/$n.qcow2"
    qs=$(stat -c %s "q/$n.qcow2"); is=$(stat -c %s "i/$n.qcow2")
    expect "the file is as compact as qemu-img's (within 0.1%: $is vs $qs) for -o $1 $2" \
        test $((is * 1000)) -le $((qs * 1001))
    expect "imgchain writes and reads it back (-o $1 $2)" \
        ic io -q "i/$n.qcow2" -c 'write -P 5 100k 300k' -c 'read -P 5 100k 300k'
    expect "qemu-io reads what it wrote (-o $1 $2)" \
        qio -c 'read -P 5 100k 300k' "i/$n.qcow2"
    expect "qemu-img check is clean after the write (-o $1 $2)" qemu-img check -q "i/$n.qcow2"
    rm -f "q/$n.qcow2" "i/$n.qcow2"
done

# limited FILE: runs the rest under a 2 MiB file-size limit (writes past it
# fail with EFBIG instead of killing the process)
limited() {
    python3 -c 'import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}
head -c 3000000 /dev/urandom > keep.img
chmod 640 keep.img
sum=$(sha256sum < keep.img)
expect_rc "a create that fails late (file-size limit) exits 1" 1 \
    limited "$IMGCHAIN_BIN" create -q -f qcow2 -o preallocation=metadata,cluster_size=4k keep.img 1G
expect "the existing file is byte for byte unchanged" test "$sum" = "$(sha256sum < keep.img)"
expect "no temporary file is left next to it" \
    sh -c "! ls -a | grep -q imgchain-create"
expect_rc "the same create without the limit replaces the file" 0 \
    ic create -q -f qcow2 -o preallocation=metadata,cluster_size=4k keep.img 1G
expect "... keeping its permission bits" test "$(stat -c %a keep.img)" = 640
expect "... with an image qemu-img checks clean" qemu-img check -q keep.img
ln -s keep.img link.img
expect_rc "create through a symlink" 0 ic create -q -f raw link.img 1M
expect "... replaces the file and keeps the link" sh -c "test -L link.img && test \$(stat -c %s keep.img) = 1048576"
finish
