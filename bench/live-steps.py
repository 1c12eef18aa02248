#!/usr/bin/env python3
"""bench/live-steps.py QMP AGENT MOUNT SUFFIX - the live disk-only snapshot
bench/bench-live.sh compares imgchain with, driven step by step as an
administrator would script it without imgchain: query-block, one
`qemu-img create -u` per disk, blockdev-add of each overlay's file and
format nodes, guest-sync-delimited and guest-fsfreeze-freeze-list of
exactly MOUNT, one transaction of blockdev-snapshot actions, thaw.  No
metadata, no journal, no recovery.  Exits non-zero on any failure.
"""
import json
import os
import random
import socket
import subprocess
import sys

QMP, AGENT, MOUNT, SUFFIX = sys.argv[1:5]


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def send(self, cmd, args=None):
        m = {"execute": cmd}
        if args is not None:
            m["arguments"] = args
        self.f.write(json.dumps(m).encode() + b"\n")
        self.f.flush()

    def reply(self):
        while True:
            line = self.f.readline()
            if not line:
                sys.exit("live-steps: connection closed")
            line = line.lstrip(b"\xff")
            if not line.strip():
                continue
            r = json.loads(line)
            if "event" in r:
                continue
            if "error" in r:
                sys.exit("live-steps: %s" % r["error"]["desc"])
            return r

    def run(self, cmd, args=None):
        self.send(cmd, args)
        return self.reply()["return"]


q = Conn(QMP)
q.reply()
q.run("qmp_capabilities")
disks = []
for b in q.run("query-block"):
    ins = b.get("inserted")
    if not ins:
        continue
    img = ins["image"]
    disks.append((ins["node-name"], img["filename"], img["format"], img["virtual-size"]))
plan = []
for i, (node, path, fmt, size) in enumerate(disks):
    ov = os.path.splitext(path)[0] + "." + SUFFIX
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", path, "-F", fmt,
                    ov, str(size)], check=True)
    os.chmod(ov, 0o600)
    fn, on = "st%s%df" % (SUFFIX, i), "st%s%do" % (SUFFIX, i)
    q.run("blockdev-add", {"driver": "file", "node-name": fn, "filename": ov})
    q.run("blockdev-add", {"driver": "qcow2", "node-name": on, "file": fn, "backing": None})
    plan.append((node, on))
g = Conn(AGENT)
sync = random.randint(1, 1 << 40)
g.send("guest-sync-delimited", {"id": sync})
while g.reply()["return"] != sync:
    pass
n = g.run("guest-fsfreeze-freeze-list", {"mountpoints": [MOUNT]})
try:
    if n != 1:
        sys.exit("live-steps: froze %d file systems" % n)
    q.run("transaction", {"actions": [
        {"type": "blockdev-snapshot", "data": {"node": node, "overlay": on}} for node, on in plan]})
finally:
    g.run("guest-fsfreeze-thaw")
