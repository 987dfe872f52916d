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
styles = {"nearest_even": "pt 7 ps 0.25 lc rgb '#1b9e77'", "toward_zero": "pt 7 ps 0.25 lc rgb '#d95f02'",
          "stochastic": "pt 7 ps 0.25 lc rgb '#7570b3'"}
with open(gp, "w") as f:
    f.write("set terminal pngcairo size 1100,450 noenhanced\nset output '%s'\n" % os.path.join(out, "round_error.png"))
    f.write("set datafile missing 'nan'\nset logscale xy\nset xrange [1:16]\nset xtics (1, 2, 4, 8, 16)\n")
    f.write("set format y '2^{%L}'\nset xlabel 'x'\nset ylabel '|round(x) - x| / x  (exact results not drawn)'\n")
    f.write("set key bottom right box opaque\nset multiplot layout 1,2\n")
    for k, fmt in enumerate(["e4m3", "bfloat16"]):
        fm = mpacc.Format(fmt)
        u_n, u_d = mpacc.unit_roundoff(fm, "nearest_even"), mpacc.unit_roundoff(fm, "toward_zero")
        f.write("set title '%s: 2,001 values in [1, 16]'\nset yrange [%g:%g]\nset format y '%%g'\n"
                % (fmt, u_n / 1e3, u_d * 2))
        plots = ["%g with lines dt 2 lc rgb 'black' title 'u, nearest-even'" % u_n,
                 "%g with lines dt 3 lc rgb 'black' title 'u, directed and stochastic'" % u_d]
        for j, mode in enumerate(["nearest_even", "toward_zero", "stochastic"]):
            col = 2 + 3 * k + j
            plots.append("'%s' using 1:(column(%d) > 0 ? column(%d) : 1/0) with points %s title '%s'"
                         % (data, col, col, styles[mode], mode.replace("_", "-")))
        f.write("plot " + ", ".join(plots) + "\n")
    f.write("unset multiplot\n")
for fmt, mode, ratio in worst:
    print("%-9s %-13s max relative error = %.3f u" % (fmt, mode, ratio))
if shutil.which("gnuplot"):
    subprocess.run(["gnuplot", gp], check=True)
    print("plot:", os.path.join(out, "round_error.png"))
else:
    print("gnuplot not found: data in", data)
bad = [w for w in worst if not w[2] <= 1.0]
sys.exit(1 if bad else 0)
