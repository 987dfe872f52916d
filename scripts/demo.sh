#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A short tour of the individual commands (the main job is scripts/reproduce.sh):
# build mpacc, show the formats and correctly rounded values, fetch MNIST, train
# a small quantization-aware MLP (quick: 2 epochs on 20,000 images) and evaluate it
# in binary32/binary64 and with simulated e4m3-ieee and binary16 accumulation.
# Usage: bash scripts/demo.sh [--full]   (--full: the paper's network, 10 epochs, all images)
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
[[ ${1:-} == --full ]] && full=1
bash scripts/install-deps.sh >/dev/null
bash scripts/configure.sh dev >/dev/null
cmake --build --preset dev -j2 >/dev/null
mpacc=build/dev/apps/mpacc
echo "== mpacc formats"
$mpacc formats
values="0.1 1.00048828125 464 1e-7 70000"
echo
echo "== mpacc round, input: $values"
printf '%-10s' format
modes="nearest-even nearest-away toward-zero upward downward odd stochastic"
for mode in $modes; do printf ' %-13s' "$mode"; done
echo
for f in binary16 bfloat16 e4m3 e4m3-ieee; do
  for v in $values; do
    printf '%-10s' "$f"
    for mode in $modes; do
      printf ' %-13s' "$(echo "$v" | $mpacc round --format "$f" --rounding "$mode" --seed 1)"
    done
    printf '  <- %s\n' "$v"
  done
done
echo
echo "== an inner product in e4m3-ieee, blocked:8 (mpacc dot)"
printf '0.5 1.25\n-0.375 2\n0.875 0.75\n0.0625 -3\n1.5 0.5\n' | $mpacc dot --acc e4m3-ieee --order blocked:8 --bias 0.125
echo
echo "== data"
bash scripts/fetch-data.sh mnist
mkdir -p results
if ((full)); then
  args=(--epochs 10)
else
  args=(--epochs 2 --limit 20000)
fi
echo
echo "== mpacc train ${args[*]} (784-784-128-10 ReLU, e4m3-ieee weights)"
$mpacc train --dataset mnist --act relu "${args[@]}" --out results/demo-mnist-relu.mpnn
for acc in e4m3-ieee binary16; do
  echo
  echo "== mpacc eval --acc $acc --order blocked:8"
  $mpacc eval --model results/demo-mnist-relu.mpnn --dataset mnist --acc "$acc" --order blocked:8
done
