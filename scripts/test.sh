#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the dependencies, checks the code style (clang-format) and runs the
# static checks (clang-tidy over lib/, analysis/ and apps/), builds mpacc and runs
# the default test tier, then
# builds the libFuzzer targets of the file and text parsers (clang, the fuzz
# preset: the parser sources and six targets) and runs each for a few seconds.
# Usage: bash scripts/test.sh            (the slow tier: ctest --preset ci -L exhaustive;
#                                         the long fuzz tier: ctest --preset fuzz -L fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-data.sh mnist  # the Python tests' real MNIST images (sha256-checked)
bash scripts/format.sh --check
bash scripts/tidy.sh --check
bash scripts/configure.sh ci
cmake --build --preset ci -j2
ctest --preset ci -L default
bash scripts/configure.sh fuzz
cmake --build --preset fuzz
ctest --preset fuzz -L fuzz-smoke
