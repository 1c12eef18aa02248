#!/usr/bin/env python3
"""qmpc.py SOCK COMMAND [JSON-ARGUMENTS] - one QMP command from a test.

Prints the "return" value as JSON on stdout; exits 1 with qemu's error
description on stderr when qemu refuses the command.  The live tests use it
on a second QMP socket of their qemu to look at it independently of
imgchain (query-block, query-named-block-nodes, human-monitor-command).
"""
import json
import socket
import sys


def main():
    sock, cmd = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock)
    f = s.makefile("rwb")

    def recv():
        while True:
            line = f.readline()
            if not line:
                sys.exit("qmpc: connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    recv()  # greeting
    for c, a in (("qmp_capabilities", None), (cmd, args)):
        m = {"execute": c}
        if a is not None:
            m["arguments"] = a
        f.write(json.dumps(m).encode() + b"\n")
        f.flush()
        r = recv()
        if "error" in r:
            sys.stderr.write("qmpc: %s: %s\n" % (c, r["error"].get("desc")))
            sys.exit(1)
    print(json.dumps(r["return"]))


if __name__ == "__main__":
    main()
