#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Formats every C++ source of the repository with clang-format (.clang-format),
# or with --check only reports the files that are not formatted (exit 1).
# Usage: bash scripts/format.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.inc' ':!:tests/data/*')
if [[ ${1:-} == --check ]]; then
  clang-format --dry-run -Werror --style=file "${files[@]}"
  echo "format: ${#files[@]} files formatted"
else
  clang-format -i --style=file "${files[@]}"
fi
