#!/usr/bin/env bash
# Installs the dependencies, builds mpacc and runs the default test tier.
# Usage: bash scripts/test.sh            (the slow tier: ctest --preset ci -L exhaustive)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset ci
cmake --build --preset ci -j2
ctest --preset ci -L default
