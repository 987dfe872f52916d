#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mpacc.round from Python against the C++ call sim::round_array on the same 10^7
values (docs/performance.md, "Python round against the C++ call").

    PYTHONPATH=build/ci/python python3 bench/python_round.py build/ci/bench/round_timer [N] [REPS]

For each format, mode and thread count, the best (and median) time of REPS calls of
  C++ out:   round_array into a preallocated vector
  py out=:   mpacc.round(x, ..., out=y), the same work through the bindings
  C++ new:   a fresh std::vector for the result, then round_array
  py:        mpacc.round(x, ...), which returns a new array
and the ratios py out= / C++ out and py / C++ new."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import mpacc

timer = sys.argv[1]
n = int(float(sys.argv[2])) if len(sys.argv) > 2 else 10**7
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 7
x = np.random.default_rng(1).standard_normal(n)
y = np.empty_like(x)
with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
    x.tofile(f)
    path = f.name
try:
    print("n = %d, %d repetitions, os.cpu_count() = %d, load average %s" % (n, reps, os.cpu_count(),
                                                                            os.getloadavg()))
    print("%-10s %-13s %7s %10s %10s %10s %10s %8s %8s" % ("format", "mode", "threads", "C++ out", "py out=",
                                                           "C++ new", "py", "ratio", "ratio"))
    for fmt, mode in [("bfloat16", "nearest-even"), ("e4m3", "nearest-even"), ("binary16", "stochastic")]:
        for threads in (1, 2):
            c = subprocess.run([timer, path, fmt, mode, str(threads), str(reps)], capture_output=True, check=True,
                               text=True).stdout.split()
            c_best, c_med, n_best, n_med = (float(v) for v in c[:4])
            t_out, t_new = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                mpacc.round(x, fmt, mode=mode, seed=1, out=y, threads=threads)
                t_out.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                mpacc.round(x, fmt, mode=mode, seed=1, threads=threads)
                t_new.append(time.perf_counter() - t0)
            print("%-10s %-13s %7d %10.4f %10.4f %10.4f %10.4f %8.3f %8.3f   best" % (
                fmt, mode, threads, c_best, min(t_out), n_best, min(t_new), min(t_out) / c_best,
                min(t_new) / n_best))
            print("%-10s %-13s %7s %10.4f %10.4f %10.4f %10.4f %8.3f %8.3f   median" % (
                "", "", "", c_med, statistics.median(t_out), n_med, statistics.median(t_new),
                statistics.median(t_out) / c_med, statistics.median(t_new) / n_med))
finally:
    os.unlink(path)
