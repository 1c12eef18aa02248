#!/usr/bin/env python3
"""qga-proxy.py LISTEN AGENT MOUNT STATEDIR - the guard in front of the
test's qemu-ga, which runs on the host.

Passes on only guest-sync, guest-sync-delimited, guest-ping,
guest-fsfreeze-status, guest-fsfreeze-thaw, and guest-fsfreeze-freeze-list
whose mountpoints are exactly [MOUNT] (the test's loop-mounted ext4).
Anything else (guest-fsfreeze-freeze above all, or a freeze-list naming any
other file system or none) is answered with an error, never forwarded, and
recorded in STATEDIR/violations, which the test requires to stay empty.
While STATEDIR/refuse exists, a freeze-list is answered with an error
instead (the test's "agent refuses to freeze"); while STATEDIR/short
exists, with a count of 0 (an agent freezing fewer file systems than
asked), and nothing is frozen.  Agent replies are passed
back verbatim (the 0xff sentinel included).
"""
import json
import os
import socket
import sys
import threading
import time

LISTEN, AGENT, MOUNT, STATE = sys.argv[1:5]
ALLOWED = {"guest-sync", "guest-sync-delimited", "guest-ping",
           "guest-fsfreeze-status", "guest-fsfreeze-thaw"}


def record(what):
    with open(os.path.join(STATE, "violations"), "a") as f:
        f.write(what + "\n")


def error(cli, desc):
    cli.sendall(json.dumps({"error": {"class": "GenericError", "desc": desc}}).encode() + b"\n")


def verdict(msg):
    """None to forward, else the error to answer with."""
    cmd = msg.get("execute") if isinstance(msg, dict) else None
    if cmd in ALLOWED:
        return None
    if cmd == "guest-fsfreeze-freeze-list":
        mps = (msg.get("arguments") or {}).get("mountpoints")
        if mps != [MOUNT]:
            record("freeze-list with mountpoints %r" % (mps,))
            return "qga-proxy: refused freeze-list of %r" % (mps,)
        if os.path.exists(os.path.join(STATE, "refuse")):
            return "test: the agent refuses to freeze"
        if os.path.exists(os.path.join(STATE, "short")):
            return 0
        return None
    record("command %r" % (cmd,))
    return "qga-proxy: command %r is not allowed" % (cmd,)


def stamp(msg):
    """Appends "freeze T" / "thaw T" (monotonic seconds) to STATEDIR/timings
    as a freeze-list or thaw is passed on: bench/bench-live.sh measures the
    freeze window of any client there."""
    cmd = msg.get("execute")
    if cmd in ("guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw"):
        with open(os.path.join(STATE, "timings"), "a") as f:
            f.write("%s %.6f\n" % ("freeze" if cmd.endswith("list") else "thaw", time.monotonic()))


def pump_back(agent, cli):
    try:
        while True:
            data = agent.recv(65536)
            if not data:
                break
            cli.sendall(data)
    except OSError:
        pass
    try:
        cli.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve(cli):
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.connect(AGENT)
    threading.Thread(target=pump_back, args=(agent, cli), daemon=True).start()
    buf = b""
    dec = json.JSONDecoder()
    try:
        while True:
            data = cli.recv(65536)
            if not data:
                break
            buf += data
            while True:
                text = buf.lstrip(b" \t\r\n\xff")
                if not text:
                    buf = b""
                    break
                try:
                    msg, end = dec.raw_decode(text.decode("utf-8", "replace"))
                except ValueError:
                    buf = text
                    break
                raw = text[:len(text.decode("utf-8", "replace")[:end].encode())]
                buf = text[len(raw):]
                why = verdict(msg)
                if why is None:
                    stamp(msg)
                    agent.sendall(raw + b"\n")
                elif why == 0:
                    # "short": claims nothing was frozen, freezes nothing
                    cli.sendall(b'{"return": 0}\n')
                else:
                    error(cli, why)
    except OSError:
        pass
    # the agent serves one client at a time: it must see this one leave
    for s in (agent, cli):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def main():
    try:
        os.unlink(LISTEN)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(LISTEN)
    srv.listen(4)
    open(os.path.join(STATE, "proxy.ready"), "w").close()
    while True:
        cli, _ = srv.accept()
        threading.Thread(target=serve, args=(cli,), daemon=True).start()


if __name__ == "__main__":
    main()
