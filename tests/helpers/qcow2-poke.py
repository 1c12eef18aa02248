#!/usr/bin/env python3
"""qcow2-poke.py IMAGE DEFECT - damages one qcow2 metadata item for check tests.

Each DEFECT edits the image in place the way qemu-iotests' poke_file does,
reading the header to find the structure:
  leak               one more cluster at EOF with refcount 1, unreferenced
  refcount-zero      refcount of the first data cluster set to 0 (rebuild)
  refcount-low       refcount of a shared data cluster lowered by one (needs a snapshot)
  copied             COPIED cleared in the first allocated L2 entry
  l1-reserved        a reserved bit set in the first L1 entry
  l2-reserved        a reserved bit set in the first allocated L2 entry
  data-unaligned     first allocated L2 entry's offset moved by 512 bytes
  zero-unaligned     first allocated L2 entry made a preallocated zero cluster at +512
  past-eof           first allocated L2 entry points 1 TiB past the end of the file
  data-over-refblock first allocated L2 entry points at refcount block 0
  l2-unaligned       first L1 entry's L2 offset moved by 512 bytes
  reftable-reserved  a reserved bit set in reftable entry 0
  snapshot-l1-unaligned  first snapshot's L1 offset moved by 512 bytes
  compressed-copied  COPIED set on the first compressed L2 entry
  dirty              dirty bit set and the first data cluster's refcount raised (v3)
  past-eof-near      first allocated L2 entry points 2 clusters past the end of the file
                     (the cluster reads as zeroes; imgchain -r all grows the file)
  snapshot-extra-big first snapshot entry rewritten with 1100 bytes of extra data (> 1024)
  snapshot-incomplete first snapshot entry rewritten with 8 bytes of extra data (v3: < 16)
  snapshot-too-many  a table of 65537 disk-only snapshots without L1 (> 65536)
  size-plus=N        the header's virtual size grows by N bytes
  header-length=N    header_length (v3) set to N
  snapshot-table-big a table of 512 entries with 64 KiB ids and names: 64 MiB + 32 KiB
                     (> 64 MiB; the last entry overhangs)
New snapshot tables are written at the end of the file with refcount 1 per
cluster and the old table's clusters get refcount 0, so the only defect is
the one named.
"""
import os
import struct
import sys

COPIED = 1 << 63
COMPRESSED = 1 << 62
OFF_MASK = 0x00fffffffffffe00


class Img:
    def __init__(self, path):
        self.f = open(path, "r+b")
        h = self.read(0, 112)
        (self.version,) = struct.unpack(">I", h[4:8])
        (self.cbits,) = struct.unpack(">I", h[20:24])
        self.cs = 1 << self.cbits
        self.l1_size, self.l1_off = struct.unpack(">IQ", h[36:48])
        self.rt_off, self.rt_clusters = struct.unpack(">QI", h[48:60])
        self.nb_snap, self.snap_off = struct.unpack(">IQ", h[60:72])
        self.incompat = struct.unpack(">Q", h[72:80])[0] if self.version >= 3 else 0
        self.rorder = struct.unpack(">I", h[96:100])[0] if self.version >= 3 else 4
        self.ext_l2 = bool(self.incompat & 16)
        self.esz = 16 if self.ext_l2 else 8

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n).ljust(n, b"\0")

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def u64(self, off):
        return struct.unpack(">Q", self.read(off, 8))[0]

    def put64(self, off, v):
        self.write(off, struct.pack(">Q", v))

    def first_l2_entry(self, compressed=False):
        """(entry offset in file, entry) of the first allocated L2 entry."""
        for i in range(self.l1_size):
            l2 = self.u64(self.l1_off + 8 * i) & OFF_MASK
            if not l2:
                continue
            for j in range(self.cs // self.esz):
                pos = l2 + j * self.esz
                e = self.u64(pos)
                if compressed and e & COMPRESSED:
                    return pos, e
                if not compressed and not e & COMPRESSED and e & OFF_MASK:
                    return pos, e
        sys.exit("no suitable L2 entry")

    def refblock(self, cluster):
        per = self.cs * 8 >> self.rorder
        rb = self.u64(self.rt_off + 8 * (cluster // per)) & ~0x1ff
        return rb, cluster % per

    def get_rc(self, cluster):
        rb, i = self.refblock(cluster)
        bits = 1 << self.rorder
        assert bits >= 8, "poke supports refcount widths >= 8"
        n = bits // 8
        return int.from_bytes(self.read(rb + i * n, n), "big")

    def set_rc(self, cluster, v):
        rb, i = self.refblock(cluster)
        assert rb, "cluster %d has no refcount block" % cluster
        n = (1 << self.rorder) // 8
        self.write(rb + i * n, v.to_bytes(n, "big"))

    def size(self):
        return os.fstat(self.f.fileno()).st_size

    def snapshot_entries(self):
        """The raw entries of the current table: list of (header, extra, id, name)."""
        out, pos = [], self.snap_off
        for _ in range(self.nb_snap):
            h = self.read(pos, 40)
            idl, nl = struct.unpack(">HH", h[12:16])
            (ex,) = struct.unpack(">I", h[36:40])
            extra = self.read(pos + 40, ex)
            ident = self.read(pos + 40 + ex, idl)
            name = self.read(pos + 40 + ex + idl, nl)
            out.append((h, extra, ident, name))
            pos += (40 + ex + idl + nl + 7) & ~7
        return out, pos - self.snap_off

    def replace_snapshot_table(self, parts, count, sparse_len=0):
        """Writes a new table from byte strings [(offset in table, bytes)] of
        sparse_len bytes (or the joined parts) at the end of the file,
        refcounted; frees the old table; switches the header (60..71)."""
        _, old_len = self.snapshot_entries()
        for c in range(self.snap_off // self.cs,
                       (self.snap_off + old_len + self.cs - 1) // self.cs if old_len else 0):
            self.set_rc(c, 0)
        off = (self.size() + self.cs - 1) // self.cs * self.cs
        length = sparse_len or sum(len(b) for _, b in parts)
        self.f.truncate(off + (length + self.cs - 1) // self.cs * self.cs)
        for rel, b in parts:
            self.write(off + rel, b)
        for c in range(off // self.cs, (off + length + self.cs - 1) // self.cs):
            self.set_rc(c, 1)
        self.write(60, struct.pack(">IQ", count, off))


def snapshot_entry(h, extra, ident, name, extra_size=None):
    """Serializes one table entry with its extra data size field set."""
    ex = len(extra) if extra_size is None else extra_size
    h = h[:12] + struct.pack(">HH", len(ident), len(name)) + h[16:36] + struct.pack(">I", ex)
    e = h + extra + ident + name
    return e + b"\0" * (-len(e) % 8)


def main():
    img = Img(sys.argv[1])
    d = sys.argv[2]
    if d == "leak":
        size = os.fstat(img.f.fileno()).st_size
        c = (size + img.cs - 1) // img.cs
        img.f.truncate((c + 1) * img.cs)
        img.set_rc(c, 1)
    elif d in ("refcount-zero", "refcount-low", "dirty"):
        _, e = img.first_l2_entry()
        c = (e & OFF_MASK) >> img.cbits
        rc = img.get_rc(c)
        img.set_rc(c, 0 if d == "refcount-zero" else rc + 1 if d == "dirty" else rc - 1)
        if d == "dirty":
            img.put64(72, img.incompat | 1)
    elif d == "copied":
        pos, e = img.first_l2_entry()
        img.put64(pos, e & ~COPIED)
    elif d == "l1-reserved":
        for i in range(img.l1_size):
            e = img.u64(img.l1_off + 8 * i)
            if e:
                img.put64(img.l1_off + 8 * i, e | 2)
                break
    elif d == "l2-reserved":
        pos, e = img.first_l2_entry()
        img.put64(pos, e | 2)
    elif d == "data-unaligned":
        pos, e = img.first_l2_entry()
        img.put64(pos, e + 512)
    elif d == "zero-unaligned":
        pos, e = img.first_l2_entry()
        img.put64(pos, (e + 512) | 1)
    elif d == "past-eof":
        pos, e = img.first_l2_entry()
        size = os.fstat(img.f.fileno()).st_size
        img.put64(pos, (e & COPIED) | ((size + (1 << 40)) & OFF_MASK))
    elif d == "data-over-refblock":
        pos, e = img.first_l2_entry()
        img.put64(pos, (e & COPIED) | img.refblock(0)[0])
    elif d == "l2-unaligned":
        for i in range(img.l1_size):
            e = img.u64(img.l1_off + 8 * i)
            if e:
                img.put64(img.l1_off + 8 * i, e + 512)
                break
    elif d == "reftable-reserved":
        img.put64(img.rt_off, img.u64(img.rt_off) | 1)
    elif d == "snapshot-l1-unaligned":
        assert img.nb_snap, "needs a snapshot"
        img.put64(img.snap_off, img.u64(img.snap_off) + 512)
    elif d == "compressed-copied":
        pos, e = img.first_l2_entry(compressed=True)
        img.put64(pos, e | COPIED)
    elif d == "past-eof-near":
        pos, e = img.first_l2_entry()
        end = (img.size() + img.cs - 1) // img.cs * img.cs
        img.put64(pos, (e & COPIED) | ((end + 2 * img.cs) & OFF_MASK))
    elif d in ("snapshot-extra-big", "snapshot-incomplete"):
        ents, _ = img.snapshot_entries()
        assert ents, "needs a snapshot"
        h, extra, ident, name = ents[0]
        if d == "snapshot-extra-big":
            extra = extra[:24].ljust(24, b"\0") + bytes(range(256)) * 4 + b"\x5a" * 52
        else:
            extra = extra[:8].ljust(8, b"\0")
        body = b"".join([snapshot_entry(h, extra, ident, name)] +
                        [snapshot_entry(*x) for x in ents[1:]])
        img.replace_snapshot_table([(0, body)], len(ents))
    elif d == "snapshot-too-many":
        n = 65537
        hdr = bytes(40)
        extra = struct.pack(">QQQ", 0, 16 << 20, 0)
        body = b"".join(snapshot_entry(hdr, extra, str(i + 1).encode(), b"s%d" % (i + 1))
                        for i in range(n))
        img.replace_snapshot_table([(0, body)], n)
    elif d == "snapshot-table-big":
        n, big = 512, 65535
        extra = struct.pack(">QQQ", 0, 16 << 20, 0)
        elen = (40 + 24 + 2 * big + 7) & ~7
        parts = []
        for i in range(n):
            h = bytes(12) + struct.pack(">HH", big, big) + bytes(20) + struct.pack(">I", 24)
            parts.append((i * elen, h + extra + str(i + 1).encode()))
        img.replace_snapshot_table(parts, n, n * elen)
    elif d.startswith("size-plus="):
        # the header's virtual size grows by N bytes (not a multiple of 512)
        img.put64(24, img.u64(24) + int(d.split("=", 1)[1]))
    elif d.startswith("header-length="):
        img.write(100, struct.pack(">I", int(d.split("=", 1)[1])))
    else:
        sys.exit("unknown defect " + d)
    img.f.close()


if __name__ == "__main__":
    main()
