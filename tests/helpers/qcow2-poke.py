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
        n = (1 << self.rorder) // 8
        self.write(rb + i * n, v.to_bytes(n, "big"))


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
    else:
        sys.exit("unknown defect " + d)
    img.f.close()


if __name__ == "__main__":
    main()
