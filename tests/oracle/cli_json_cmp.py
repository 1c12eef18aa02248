#!/usr/bin/env python3
"""cli_json_cmp.py QEMU.json IMGCHAIN.json - oracle JSON comparison for
tests/oracle/cli-*.sh: exits 0 when both files hold equal JSON values,
else prints the differences (at most 12 lines) and exits 1.

Map normalisation (applied to both sides).  When qemu 7.2's qcow2 driver
decides an image looks metadata-preallocated (qcow2_detect_metadata_
preallocation: more refcounted clusters than the file has blocks, which
compressed or partially written clusters also trigger), its block status
also asks the host file (BDRV_BLOCK_RECURSE) and marks data clusters whose
host bytes are a hole "zero": true while keeping "data": true.  imgchain's
block status reports such a cluster as plain data (convert still skips the
hole), so these entries are compared as plain data and re-merged as
qemu-img merges.

Likewise qemu reports the host offset of an unallocated subcluster inside
an allocated extended-L2 cluster of the bottom image ("present": false
with an "offset"); imgchain's block status has no offset for ranges no
layer allocates.  The offset of "present": false entries is dropped before
comparing.  Nothing else is normalised.
"""
import json
import sys


def norm(v):
    if not isinstance(v, list):
        return v
    out = []
    for e in v:
        if not isinstance(e, dict) or "start" not in e:
            return v  # not a map (info --backing-chain array)
        e = dict(e)
        if e.get("present") and e.get("data") and e.get("zero") and "offset" in e:
            e["zero"] = False
        if not e.get("present"):
            e.pop("offset", None)
        if out:
            p = out[-1]
            same = all(p.get(k) == e.get(k) for k in ("depth", "present", "zero", "data")) \
                and ("offset" in p) == ("offset" in e) \
                and ("offset" not in p or p["offset"] + p["length"] == e["offset"])
            if same:
                p["length"] += e["length"]
                continue
        out.append(e)
    return out


def walk(x, y, path, out):
    if type(x) != type(y):
        out.append("%s: qemu %r / imgchain %r" % (path, x, y))
    elif isinstance(x, dict):
        for k in sorted(set(x) | set(y)):
            if k not in x:
                out.append("%s.%s: only imgchain has it (%r)" % (path, k, y[k]))
            elif k not in y:
                out.append("%s.%s: only qemu has it (%r)" % (path, k, x[k]))
            else:
                walk(x[k], y[k], path + "." + k, out)
    elif isinstance(x, list):
        if len(x) != len(y):
            out.append("%s: %d entries (qemu) vs %d (imgchain)" % (path, len(x), len(y)))
        for i, (p, q) in enumerate(zip(x, y)):
            walk(p, q, "%s[%d]" % (path, i), out)
    elif x != y:
        out.append("%s: qemu %r / imgchain %r" % (path, x, y))


def main():
    try:
        a = norm(json.load(open(sys.argv[1])))
        b = norm(json.load(open(sys.argv[2])))
    except (OSError, ValueError) as e:
        print("    cannot parse: %s" % e)
        return 1
    if a == b:
        return 0
    out = []
    walk(a, b, "", out)
    for line in out[:12]:
        print("    " + line)
    return 1


if __name__ == "__main__":
    sys.exit(main())
