#!/usr/bin/env python3
# bench/timeit.py N CMD...: runs CMD N times one after the other (fork,
# exec, wait; stdout to /dev/null, stderr to ./.err) and prints the median
# wall time in seconds.  Exits 1 as soon as a run fails.  Used by
# bench/bench.sh: N=1 around /usr/bin/time for converts, N=21 for info
# and map, whose milliseconds are smaller than starting this script.
import os
import sys
import time

n = int(sys.argv[1])
argv = sys.argv[2:]
times = []
for _ in range(n):
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        fd = os.open("/dev/null", os.O_WRONLY)
        os.dup2(fd, 1)
        fd = os.open(".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    times.append(time.monotonic() - t0)
    if status != 0:
        sys.exit(1)
times.sort()
print("%.5f" % times[len(times) // 2])
