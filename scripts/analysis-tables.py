#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Markdown tables of `mpacc validate` results (the summary.json of each
configuration folder), as docs/analysis.md shows them.

Usage: scripts/analysis-tables.py RESULTS_DIR [RESULTS_DIR ...]
Each RESULTS_DIR is an --out folder of mpacc validate (one sub-folder per
configuration). Standard library only."""
import json
import sys
from pathlib import Path


def g(x, digits=3):
    if x is None:
        return "none"
    if isinstance(x, int):
        return f"{x:,}".replace(",", "\u2009") if x >= 10000 else str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def pct(a, b):
    return f"{100.0 * a / b:.1f} %" if b else "—"


def tables(folder):
    out = []
    configs = sorted(p for p in Path(folder).iterdir() if (p / "summary.json").is_file())
    summaries = [(c.name, json.loads((c / "summary.json").read_text())) for c in configs]
    if not summaries:
        return ""
    man = summaries[0][1].get("manifest", {})
    out.append(f"#### {Path(man.get('model', folder)).name}: {man.get('samples')} images, "
               f"reference inputs {summaries[0][1].get('reference_inputs')}\n")
    out.append("Coverage and deterministic checks, all layers (violations must be 0); share of vacuous "
               "per-inner-product deterministic bounds per layer:\n")
    out.append("| configuration | components | uncovered | violations, propagated (v / y) | violations, per inner product "
               "| vacuous per inner product (layer 1 / 2 / 3) |")
    out.append("|---|---|---|---|---|---|")
    for name, s in summaries:
        layers = [l for l in s["layers"] if l["layer"] != "all"]
        a = s["layers"][-1]
        vac = " / ".join(pct(l["per_inner_product"]["vacuous_deterministic"], l["per_inner_product"]["checked"])
                         for l in layers)
        out.append(f"| {name} | {g(a['components'])} | {g(a['uncovered'])} | {a['violations_deterministic_v']} / "
                   f"{a['violations_deterministic_y']} | {a['per_inner_product']['violations_deterministic']} | {vac} |")
    out.append("")
    out.append("Tightness of the propagated deterministic bound, covered components, quantiles q50 / q99 / max "
               "(bound/|exact| over non-zero exact values; the κ·u estimate over non-zero errors):\n")
    out.append("| configuration | layer | error/bound, y | bound/\\|exact\\|, v | bound/\\|exact\\|, y "
               "| κ·u estimate / error, y | zero error, y | y bounds dominated by φ's rounding |")
    out.append("|---|---|---|---|---|---|---|---|")

    def q3(q):
        return " / ".join(g(q[k]) for k in ("q50", "q99", "max"))

    for name, s in summaries:
        for l in s["layers"]:
            if l["layer"] == "all":
                continue
            t = l["tightness"]
            cov = l["components"] - l["uncovered"]
            out.append(f"| {name} | {l['layer']} | {q3(t['error_over_bound_y'])} | {q3(t['bound_over_exact_v'])} | "
                       f"{q3(t['bound_over_exact_y'])} | {q3(t['kappa_u_estimate_over_error_y'])} | "
                       f"{pct(t['zero_error_y'], cov)} | {pct(t['output_bound_dominated_by_activation'], cov)} |")
    out.append("")
    out.append("Probabilistic bound (Higham–Mary) per inner product, on each layer's own inputs: measured violation "
               "frequency [95 % Clopper–Pearson interval] against the stated failure probability; share of vacuous "
               "bounds (≥ \\|w\\|ᵀ\\|x\\| + \\|b\\|) in parentheses:\n")
    lambdas = [c["lambda"] for c in summaries[0][1]["layers"][0]["per_inner_product"]["probabilistic"]]
    out.append("| configuration | layer | " + " | ".join(f"λ = {g(x)}" for x in lambdas) + " | propagated, λ = "
               f"{g(man.get('lambda'))}: stated failure |")
    out.append("|---|---|" + "---|" * len(lambdas) + "---|")
    for name, s in summaries:
        for l in s["layers"]:
            if l["layer"] == "all":
                continue
            cells = []
            for c in l["per_inner_product"]["probabilistic"]:
                lo, hi = c["frequency_ci95"]
                cell = f"{g(c['frequency'])} [{g(lo, 2)}, {g(hi, 2)}] vs {g(c['stated_failure_probability'])}"
                if c["vacuous"]:
                    cell += f" ({pct(c['vacuous'], c['checked'])})"
                cells.append(cell)
            prop = l["propagated_probabilistic"]["stated_failure_probability"]
            out.append(f"| {name} | {l['layer']} | " + " | ".join(cells) + f" | {g(prop)} |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(tables(f) for f in sys.argv[1:]))
