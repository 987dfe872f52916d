#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The condensed tables of docs/experiments.md from a sweep's results.csv:
#   python3 scripts/experiments-tables.py results/reproduce-full/results.csv
import csv
import sys
from collections import defaultdict


def main(path):
    rows = list(csv.DictReader(open(path)))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["network"], r["order"])].append(r)
    for (net, order), rs in groups.items():
        def find(strategy, ind="", tau=None):
            return [r for r in rs if r["strategy"] == strategy and r["indicator"] == ind
                    and (tau is None or float(r["tau"]) == tau)]
        lo, hi, b32, ex = (find(s)[0] for s in ("uniform-low", "uniform-high", "uniform-binary32", "exact"))
        pct = lambda r, k: 100 * float(r[k])
        print(f"\n#### {net}, {order}\n")
        print(f"Reference accuracy {pct(ex, 'accuracy'):.2f} %. Uniform low: KL {float(lo['kl_mean']):.2e}, "
              f"disagreement {pct(lo, 'disagreement'):.2f} % [{pct(lo, 'disagreement_lo'):.2f}, {pct(lo, 'disagreement_hi'):.2f}], "
              f"accuracy {pct(lo, 'accuracy'):.2f} %; uniform high: KL {float(hi['kl_mean']):.2e}, "
              f"disagreement {pct(hi, 'disagreement'):.2f} %, accuracy {pct(hi, 'accuracy'):.2f} %; "
              f"binary32: KL {float(b32['kl_mean']):.1e}.\n")
        inds = []
        for r in rs:
            if r["strategy"] == "algorithm1" and r["indicator"] not in inds:
                inds.append(r["indicator"])
        if not inds:
            continue
        has_ol = any(r["strategy"] == "oracle-local" for r in rs)
        print("| indicator | τ | recomputed % | cost | KL | random-active KL (range) | verdict |"
              + (" oracle-local KL |" if has_ol else "") + " disagreement % [95 %] |")
        print("|---|---|---|---|---|---|---|" + ("---|" if has_ol else "") + "---|")
        for ind in inds:
            taus = sorted({float(r["tau"]) for r in rs if r["strategy"] == "algorithm1" and r["indicator"] == ind},
                          reverse=True)
            for tau in taus:
                a = find("algorithm1", ind, tau)[0]
                ra = [float(r["kl_mean"]) for r in find("random-active", ind, tau)]
                kl = float(a["kl_mean"])
                verdict = "" if not ra else ("better" if kl < min(ra) else "worse" if kl > max(ra) else "tie")
                ras = f"{sum(ra) / len(ra):.2e} ({min(ra):.2e}–{max(ra):.2e})" if ra else ""
                ol = find("oracle-local", ind, tau)
                olt = f" {float(ol[0]['kl_mean']):.2e} |" if has_ol and ol else (" |" if has_ol else "")
                print(f"| {ind} | {tau:g} | {pct(a, 'fraction'):.1f} | {float(a['weighted_cost']):.3f} | {kl:.2e} | "
                      f"{ras} | {verdict} |{olt} {pct(a, 'disagreement'):.2f} [{pct(a, 'disagreement_lo'):.2f}, "
                      f"{pct(a, 'disagreement_hi'):.2f}] |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/reproduce-full/results.csv")
