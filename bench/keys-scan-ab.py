#!/usr/bin/env python3
"""Time two or more `align` binaries on `align keys scan TREE`, interleaved (the order flips every
round, so load from other processes falls on each alike), and report wall and CPU time.

Usage: bench/keys-scan-ab.py TREE ROUNDS BEFORE AFTER [MORE…]
(the figures in align-cli/README.md: a copy of the cargo registry sources, 100 rounds).
"""
import os
import statistics
import subprocess
import sys
import time

tree, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runs = {b: [] for b in bins}


def once(b):
    start = time.perf_counter()
    p = subprocess.Popen([b, "keys", "scan", tree], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, _, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - start, ru.ru_utime + ru.ru_stime


for b in bins:  # warm the page cache
    once(b)
for r in range(rounds):
    for b in bins if r % 2 == 0 else bins[::-1]:
        runs[b].append(once(b))
for b in bins:
    wall = sorted(w for w, _ in runs[b])
    cpu = sorted(c for _, c in runs[b])
    print(f"{b}: wall min {wall[0]:.3f} median {statistics.median(wall):.3f} max {wall[-1]:.3f} s,"
          f" cpu median {statistics.median(cpu):.3f} s ({rounds} runs)")
first = runs[bins[0]]
for b in bins[1:]:
    d = [a[0] - f[0] for a, f in zip(runs[b], first)]
    print(f"{b} - {bins[0]}: paired wall median {statistics.median(d) * 1e3:+.1f} ms,"
          f" faster in {sum(x < 0 for x in d)}/{len(d)} rounds")
