#!/usr/bin/env python3
"""qcow2-bitmap-poke.py IMAGE EDIT [ARG] - edits the persistent dirty bitmaps
of a qcow2 image made by qemu-img, in place, for the bitmap tests.

  in-use NAME      sets the in_use flag of bitmap NAME (what a qemu process
                   killed while it had the image open leaves behind)
  drop-autoclear   clears autoclear bit 0 and keeps the extension (what a
                   program lacking bitmap support leaves behind)
  break-dir        makes the first directory entry's type 2 (qemu refuses
                   the directory)
  count N          rewrites nb_bitmaps in the extension to N
  table-reserved NAME  sets a reserved bit in entry 0 of NAME's bitmap table
  table-unaligned NAME moves NAME's bitmap table offset by 512 bytes
  data-unaligned NAME  moves the first data cluster of NAME's table by 512
  data-over-l1 NAME    points the first data entry of NAME's table at the
                   active L1 table (an overlap: the cluster is referenced twice)
  data-past-eof NAME   points the first data entry of NAME's table 1 TiB
                   past the end of the file
  rename NAME NEW  renames bitmap NAME to NEW (same length: a duplicate
                   name when NEW exists)
  all-ones NAME    turns the last table entry of NAME without a data
                   cluster into an all-ones entry (value 1)
  leak-data NAME   clears the first data entry of NAME's table (that cluster
                   keeps refcount 1 with no reference: a leak)
  list             prints "name flags granularity table_offset table_size"
                   per bitmap
  digest           prints "name flags granularity sha256" per bitmap, the
                   hash over its bitmap data as a reader sees it (zero and
                   all-ones entries expanded): equal digests, equal bitmaps
                   wherever their clusters live
"""
import hashlib
import struct
import sys

BITMAPS_MAGIC = 0x23852875


class Img:
    def __init__(self, path):
        self.f = open(path, "r+b")
        h = self.read(0, 112)
        self.version = struct.unpack(">I", h[4:8])[0]
        self.backing_off = struct.unpack(">Q", h[8:16])[0]
        self.cbits = struct.unpack(">I", h[20:24])[0]
        self.cs = 1 << self.cbits
        self.l1_off = struct.unpack(">Q", h[40:48])[0]
        self.hlen = struct.unpack(">I", h[100:104])[0] if self.version >= 3 else 72
        self.ext_pos = None
        pos = self.hlen
        end = self.backing_off or self.cs
        while pos + 8 <= end:
            magic, ln = struct.unpack(">II", self.read(pos, 8))
            if magic == 0:
                break
            if magic == BITMAPS_MAGIC:
                self.ext_pos = pos + 8
            pos += 8 + ((ln + 7) & ~7)
        if self.ext_pos is None:
            sys.exit("no bitmaps extension")
        self.nb, _, self.dir_size, self.dir_off = struct.unpack(
            ">IIQQ", self.read(self.ext_pos, 24))

    def read(self, off, n):
        self.f.seek(off)
        return self.f.read(n)

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def entries(self):
        """(entry file offset, name, table_offset, table_size, flags, gran)"""
        out, pos = [], 0
        d = self.read(self.dir_off, self.dir_size)
        while pos + 24 <= len(d):
            toff, tsize, flags, typ, gran, nsize, extra = struct.unpack(
                ">QIIBBHI", d[pos:pos + 24])
            name = d[pos + 24 + extra:pos + 24 + extra + nsize].decode()
            out.append((self.dir_off + pos, name, toff, tsize, flags, gran))
            pos += (24 + extra + nsize + 7) & ~7
        return out

    def entry(self, name):
        for e in self.entries():
            if e[1] == name:
                return e
        sys.exit("no bitmap " + name)

    def first_data(self, name):
        e = self.entry(name)
        for i in range(e[3]):
            pos = e[2] + 8 * i
            v = struct.unpack(">Q", self.read(pos, 8))[0]
            if v & 0x00fffffffffffe00:
                return pos, v
        sys.exit("bitmap %s has no data cluster" % name)


def main():
    img = Img(sys.argv[1])
    edit = sys.argv[2]
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    if edit == "in-use":
        pos = img.entry(arg)[0]
        flags = struct.unpack(">I", img.read(pos + 12, 4))[0]
        img.write(pos + 12, struct.pack(">I", flags | 1))
    elif edit == "drop-autoclear":
        ac = struct.unpack(">Q", img.read(88, 8))[0]
        img.write(88, struct.pack(">Q", ac & ~1))
    elif edit == "break-dir":
        img.write(img.dir_off + 16, b"\x02")
    elif edit == "count":
        img.write(img.ext_pos, struct.pack(">I", int(arg)))
    elif edit == "table-reserved":
        e = img.entry(arg)
        v = struct.unpack(">Q", img.read(e[2], 8))[0]
        img.write(e[2], struct.pack(">Q", v | 2))
    elif edit == "table-unaligned":
        pos = img.entry(arg)[0]
        img.write(pos, struct.pack(">Q", img.entry(arg)[2] + 512))
    elif edit == "data-unaligned":
        pos, v = img.first_data(arg)
        img.write(pos, struct.pack(">Q", v + 512))
    elif edit == "data-over-l1":
        pos, v = img.first_data(arg)
        img.write(pos, struct.pack(">Q", img.l1_off))
    elif edit == "data-past-eof":
        pos, v = img.first_data(arg)
        img.f.seek(0, 2)
        img.write(pos, struct.pack(">Q", (img.f.tell() + (1 << 40)) & ~(img.cs - 1)))
    elif edit == "rename":
        new = sys.argv[4].encode()
        e = img.entry(arg)
        assert len(new) == len(arg.encode())
        img.write(e[0] + 24, new)
    elif edit == "all-ones":
        e = img.entry(arg)
        for i in reversed(range(e[3])):
            pos = e[2] + 8 * i
            if struct.unpack(">Q", img.read(pos, 8))[0] == 0:
                img.write(pos, struct.pack(">Q", 1))
                break
        else:
            sys.exit("bitmap %s has no empty entry" % arg)
    elif edit == "leak-data":
        pos, v = img.first_data(arg)
        img.write(pos, struct.pack(">Q", 0))
    elif edit == "digest":
        for e in img.entries():
            h = hashlib.sha256()
            for i in range(e[3]):
                v = struct.unpack(">Q", img.read(e[2] + 8 * i, 8))[0]
                off = v & 0x00fffffffffffe00
                if off:
                    h.update(img.read(off, img.cs).ljust(img.cs, b"\0"))
                else:
                    h.update((b"\xff" if v & 1 else b"\0") * img.cs)
            print("%s %d %d %s" % (e[1], e[4], 1 << e[5], h.hexdigest()))
    elif edit == "list":
        for e in img.entries():
            print("%s %d %d %d %d" % (e[1], e[4], 1 << e[5], e[2], e[3]))
    else:
        sys.exit("unknown edit " + edit)


main()
