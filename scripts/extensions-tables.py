#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The tables of docs/extensions.md from the results of apps/configs/extensions.json
# and apps/configs/overflow*.json (results/<name>/results.csv).
# Usage: python3 scripts/extensions-tables.py [results-dir]   (default: results)
import csv
import sys

base = sys.argv[1] if len(sys.argv) > 1 else "results"


def rows(name):
    with open(f"{base}/{name}/results.csv") as f:
        return list(csv.DictReader(f))


def g(x, n=3):
    v = float(x)
    return f"{v:.{n}g}" if v == v else "nan"


def dis(r):
    return f"{100*float(r['disagreement']):.2f} [{100*float(r['disagreement_lo']):.2f}, {100*float(r['disagreement_hi']):.2f}]"


def pval(r):
    p = float(r["mcnemar_p"])
    return "< 1e-300" if p == 0 else g(p, 2)


def find(rs, net, strat, tau=None):
    for r in rs:
        if r["network"] == net and r["strategy"] == strat and (tau is None or float(r["tau"]) == tau):
            return r
    return None


def extensions():
    rs = rows("extensions")
    nets = list(dict.fromkeys(r["network"] for r in rs))
    taus = sorted({float(r["tau"]) for r in rs if r["strategy"] == "algorithm1"}, reverse=True)
    out = []
    out.append("### Uniform strategies\n")
    out.append("| network | strategy | cost | KL | disagreement % [95 %] | accuracy % |")
    out.append("|---|---|---|---|---|---|")
    for n in nets:
        for s in ("uniform-low", "uniform-binary16", "uniform-high"):
            r = find(rs, n, s)
            if r:
                out.append(f"| {n} | {s} | {float(r['weighted_cost']):.3f} | {g(r['kl_mean'])} | {dis(r)} | {100*float(r['accuracy']):.2f} |")
    out.append("\n### Ladder against two levels (same indicator and tau)\n")
    out.append("| network | tau | recomputed % | Algorithm 1 cost / tile cost / KL | ladder cost / tile cost / KL | disagreement % A1 / ladder | McNemar b/c, p |")
    out.append("|---|---|---|---|---|---|---|")
    for n in nets:
        for t in taus:
            a, l = find(rs, n, "algorithm1", t), find(rs, n, "ladder", t)
            if not (a and l):
                continue
            out.append(f"| {n} | {g(t)} | {100*float(a['fraction']):.1f} | {float(a['weighted_cost']):.3f} / {float(a['tile_cost']):.3f} / {g(a['kl_mean'])} | "
                       f"{float(l['weighted_cost']):.3f} / {float(l['tile_cost']):.3f} / {g(l['kl_mean'])} | "
                       f"{100*float(a['disagreement']):.2f} / {100*float(l['disagreement']):.2f} | {l['mcnemar_b']}/{l['mcnemar_c']}, {pval(l)} |")
    out.append("\n### Static configurations (calibrated on 2,000 training images, with the ladder) against dynamic ones\n")
    out.append("| network | tau | strategy | recomputed % | cost | tile cost | KL | disagreement % [95 %] | McNemar vs Algorithm 1 b/c, p |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for n in nets:
        for t in taus:
            for s in ("algorithm1", "ladder", "static-q0.5", "static-q0.9", "static-q0.99"):
                r = find(rs, n, s, t)
                if r:
                    mc = "" if s == "algorithm1" else f"{r['mcnemar_b']}/{r['mcnemar_c']}, {pval(r)}"
                    out.append(f"| {n} | {g(t)} | {s} | {100*float(r['fraction']):.1f} | {float(r['weighted_cost']):.3f} | {float(r['tile_cost']):.3f} | {g(r['kl_mean'])} | {dis(r)} | {mc} |")
    return "\n".join(out) + "\n"


def overflow():
    out = []
    for name, label in (("overflow", "saturation on"), ("overflow-nosat", "saturation off (overflow gives inf, then NaN)")):
        rs = rows(name)
        out.append(f"\n### Inputs x32, {label}\n")
        out.append("| network | strategy | tau | recomputed % | cost | KL | disagreement % [95 %] | accuracy % | McNemar b/c, p (against) |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in rs:
            if r["strategy"] == "exact":
                continue
            t = float(r["tau"])
            tau = "" if r["strategy"].startswith("uniform") else ("overflow only (1e300)" if t > 1e100 else g(t))
            out.append(f"| {r['network']} | {r['strategy']} | {tau} | {100*float(r['fraction']):.2f} | {float(r['weighted_cost']):.3f} | "
                       f"{g(r['kl_mean'])} | {dis(r)} | {100*float(r['accuracy']):.2f} | {r['mcnemar_b']}/{r['mcnemar_c']}, {pval(r)} ({r['paired_with']}) |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(extensions())
    print(overflow())
