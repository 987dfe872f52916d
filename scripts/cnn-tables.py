#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The tables of docs/cnn.md ("Algorithm 1 on convolutional networks") from the
results.csv files `mpacc cnn-sweep` writes.

    python3 scripts/cnn-tables.py results/cnn10k/mnist-relu/results.csv ...

One Markdown table per file: the uniform runs, then per (indicator, tau)
Algorithm 1, each baseline (random ones as the mean over their seeds, with the
McNemar triple (b, c, p) of every seed against Algorithm 1), and the recomputed
share of each layer with inner products. Standard library only.
"""
import csv
import math
import sys
from collections import OrderedDict


def wilson(k, n, z=1.959963984540054):
    """Wilson's 95 % interval of the proportion k/n (k may be a mean over seeds)."""
    p = k / n
    z2 = z * z
    c = (p + z2 / (2 * n)) / (1 + z2 / n)
    h = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, c - h), min(1.0, c + h)


def table(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    n = int(rows[0]["samples"])
    exact = [r for r in rows if r["strategy"] == "exact"]
    groups = OrderedDict()
    for r in rows:
        if r["strategy"] != "exact":
            groups.setdefault((r["strategy"], r["indicator"], r["tau"]), []).append(r)
    out = [f"{rows[0]['network']}: {n} test images"]
    if exact:
        out[0] += f"; reference (binary64) accuracy {100 * int(exact[0]['correct']) / n:.2f} %"
    out += [
        "",
        "| strategy | indicator | τ | accuracy [95 % Wilson] | disagreement with the reference [95 % Wilson] "
        "| KL mean | recomputed | cost per term | tile cost | McNemar vs Algorithm 1 (b, c, p) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (strategy, indicator, tau), g in groups.items():
        correct = sum(int(r["correct"]) for r in g) / len(g)
        dis = sum(int(r["disagreements"]) for r in g) / len(g)
        lo, hi = wilson(correct, n)
        dlo, dhi = wilson(dis, n)
        kl = sum(float(r["kl_mean"]) for r in g) / len(g)
        seeds = f" (mean of {len(g)} seeds)" if len(g) > 1 else ""
        mc = ""
        if g[0]["paired_with"] == "algorithm1":
            mc = "; ".join(f"{r['mcnemar_b']}, {r['mcnemar_c']}, {float(r['mcnemar_p']):.2g}" for r in g)
        t = "–" if strategy.startswith("uniform") else tau
        out.append(
            f"| {strategy}{seeds} | {indicator or '–'} | {t} | {100 * correct / n:.2f} % [{100 * lo:.2f}, "
            f"{100 * hi:.2f}] | {100 * dis / n:.2f} % [{100 * dlo:.2f}, {100 * dhi:.2f}] | {kl:.2e} | "
            f"{float(g[0]['fraction']):.3f} | {float(g[0]['weighted_cost']):.3f} | {float(g[0]['tile_cost']):.3f} "
            f"| {mc} |"
        )
    # per layer (layers with inner products: a share > 0 under uniform high)
    high = [r for r in rows if r["strategy"] == "uniform-high"]
    if high:
        active = [i for i, v in enumerate(high[0]["fraction_per_layer"].split(";")) if float(v) > 0]
        out += ["", "Recomputed share per layer with inner products (network layers " +
                ", ".join(str(i + 1) for i in active) + "):", ""]
        for (strategy, indicator, tau), g in groups.items():
            if strategy == "algorithm1":
                f = g[0]["fraction_per_layer"].split(";")
                out.append(f"- {indicator}, τ = {tau}: " + ", ".join(f"{100 * float(f[i]):.1f} %" for i in active))
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n\n".join(table(p) for p in sys.argv[1:]))
