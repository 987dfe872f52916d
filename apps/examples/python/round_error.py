#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Round an array to a few low-precision formats in every rounding mode and plot
the relative error (docs/python.md, "Examples").

    PYTHONPATH=build/dev/python python3 apps/examples/python/round_error.py [OUT_DIR]

Writes OUT_DIR/round_error.dat (columns: x, then the relative error of each
format and mode) and round_error.gp, and renders round_error.png with gnuplot when
it is installed (Debian's gnuplot-nox, from scripts/install-deps.sh). Checks on the
way that every error is within the unit roundoff of its mode (nearest: 2^-p,
directed: 2^(1-p)) for values in the normal range, and exits 1 otherwise."""
import os
import shutil
import subprocess
import sys

import numpy as np

import mpacc

out = sys.argv[1] if len(sys.argv) > 1 else "results/python-examples"
os.makedirs(out, exist_ok=True)

x = np.geomspace(1.0, 16.0, 2001)  # four binades
columns, names, worst = [x], [], []
for fmt in ["e4m3", "bfloat16"]:
    f = mpacc.Format(fmt)
    for mode in ["nearest_even", "toward_zero", "stochastic"]:
        y = mpacc.round(x, f, mode=mode, seed=1)
        rel = np.abs(y - x) / x
        u = mpacc.unit_roundoff(f, mode)
        worst.append((fmt, mode, rel.max() / u))
        columns.append(rel)
        names.append("%s %s" % (fmt, mode.replace("_", "-")))

data = os.path.join(out, "round_error.dat")
np.savetxt(data, np.column_stack(columns), header="x " + " ".join(n.replace(" ", ":") for n in names))
gp = os.path.join(out, "round_error.gp")
with open(gp, "w") as f:
    f.write("set terminal pngcairo size 900,500 noenhanced\nset output '%s'\n" % os.path.join(out, "round_error.png"))
    f.write("set logscale xy\nset xlabel 'x'\nset ylabel '|round(x) - x| / x'\nset key outside right\n")
    f.write("plot " + ", ".join("'%s' using 1:%d with lines title '%s'" % (data, i + 2, n)
                                for i, n in enumerate(names)) + "\n")
for fmt, mode, ratio in worst:
    print("%-9s %-13s max relative error = %.3f u" % (fmt, mode, ratio))
if shutil.which("gnuplot"):
    subprocess.run(["gnuplot", gp], check=True)
    print("plot:", os.path.join(out, "round_error.png"))
else:
    print("gnuplot not found: data in", data)
bad = [w for w in worst if not w[2] <= 1.0]
sys.exit(1 if bad else 0)
