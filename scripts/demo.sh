#!/usr/bin/env bash
# The main job, for now: build mpacc and show what it does today — the formats
# table and correctly rounded values in every format and mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
cmake --preset dev >/dev/null
cmake --build --preset dev -j2 >/dev/null
mpacc=build/dev/apps/mpacc
echo "== mpacc formats"
$mpacc formats
values="0.1 1.00048828125 -2.7182818284590452353602874713527 464 1e-7 70000"
echo
echo "== mpacc round, input: $values"
printf '%-10s' format
for mode in nearest-even nearest-away toward-zero upward downward odd stochastic; do printf ' %-13s' "$mode"; done
echo
for f in binary16 bfloat16 e5m2 e4m3 e4m3-ieee e2m1; do
  for v in $values; do
    printf '%-10s' "$f"
    for mode in nearest-even nearest-away toward-zero upward downward odd stochastic; do
      printf ' %-13s' "$(echo "$v" | $mpacc round --format "$f" --rounding "$mode" --seed 1)"
    done
    printf '  <- %s\n' "$v"
  done
done
echo
echo "== saturation and subnormals off (e4m3, 1e9 and 0.004):"
echo "1e9 0.004" | $mpacc round --format e4m3 --saturate on --subnormals off
