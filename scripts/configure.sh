#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cmake --preset NAME, after removing build/NAME when an earlier version of the
# presets configured it with another generator (they use Ninja now; CMake refuses
# to switch the generator of an existing build folder).
# Usage: bash scripts/configure.sh dev|ci|asan|fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:?usage: bash scripts/configure.sh dev|ci|asan|fuzz}
cache=build/$preset/CMakeCache.txt
if [[ -f $cache ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$cache"; then
  echo "configure: build/$preset was made with $(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$cache"); starting it afresh with Ninja" >&2
  rm -rf "build/$preset"
fi
cmake --preset "$preset"
