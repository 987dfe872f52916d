#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs clang-tidy (the checks of .clang-tidy, with apps/.clang-tidy and tests/.clang-tidy;
# clang-tidy 14) over the sources of what mpacc ships, lib/, analysis/ and apps/, and the
# project headers they include, two files at a time: ≈ 250 s of CPU, 4.3 min measured on
# the 2-core machine shared with other jobs (load ≈ 3.5). tests/ and bench/ would add 78 s
# and 21 s of CPU for code that does not ship: they are checked when named
# (bash scripts/tidy.sh --check tests/test_*.cpp bench/*.cpp; clean when the checks came in). tests/main.cpp is Catch2's main only; the
# libFuzzer targets of tests/fuzz are built only by the clang fuzz preset (the parsers they
# drive are in lib/ and analysis/).
# It first configures build/tidy (nothing is compiled): compile_commands.json, and the
# generated <mpacc/version.hpp> the sources include.
# Usage: bash scripts/tidy.sh [--check] [FILE...]
#   --check   only report: every finding is printed once, exit status 1 if there is any
#             (scripts/test.sh); without it the fixes clang-tidy offers are also applied
#             (review them with git diff) and the findings are reported
#   FILE...   these sources instead (.cpp files of the build: lib/, analysis/, apps/,
#             bench/, tests/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
check=0
if [[ ${1:-} == --check ]]; then
  check=1
  shift
fi
jobs=2
build=build/tidy
command -v clang-tidy >/dev/null || { echo "tidy: clang-tidy not found (bash scripts/install-deps.sh)" >&2; exit 1; }

mkdir -p "$build"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DMPACC_BUILD_TESTS=ON -DMPACC_BUILD_BENCHMARKS=ON >"$build/tidy-configure.log" 2>&1; then
  cat "$build/tidy-configure.log" >&2
  echo "tidy: configuring $build failed" >&2
  exit 1
fi

if (($#)); then
  files=()
  for f in "$@"; do
    f=$(realpath "$f")
    grep -qF "\"file\": \"$f\"" "$build/compile_commands.json" ||
      { echo "tidy: ${f#"$root/"} is not a source of the build ($build/compile_commands.json)" >&2; exit 1; }
    files+=("$f")
  done
else
  # the compilation database's sources in the three folders, largest first (so that the two
  # workers end together)
  mapfile -t files < <(grep -o '"file": "[^"]*"' "$build/compile_commands.json" | sed 's/^"file": "//; s/"$//' |
    grep -E "^$root/(lib|analysis|apps)/" | sort -u)
  ((${#files[@]})) || { echo "tidy: no sources in $build/compile_commands.json" >&2; exit 1; }
  mapfile -t files < <(ls -S "${files[@]}")
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%s\n' "${files[@]}" >"$out/files"
args=(-p "$build" --quiet)  # the compiler arguments clang-tidy adds are in .clang-tidy (ExtraArgs)
start=$SECONDS
# One log and one exit status per file. The fixes, without --check, go to one YAML file per
# source, merged by clang-apply-replacements (two sources may fix the same header).
export out check
# shellcheck disable=SC2016  # the inner script's variables are its own
seq "${#files[@]}" | xargs -P "$jobs" -I{} bash -c '
  n=$1; shift
  f=$(sed -n "${n}p" "$out/files")
  fix=(); ((check)) || fix=("--export-fixes=$out/$n.yaml")
  rc=0; clang-tidy "$@" "${fix[@]}" "$f" >"$out/$n.log" 2>&1 || rc=$?
  echo $rc >"$out/$n.rc"
' tidy {} "${args[@]}"

failed=0
for ((n = 1; n <= ${#files[@]}; n++)); do
  if [[ $(cat "$out/$n.rc") != 0 ]]; then
    failed=$((failed + 1))
    # a failure without a finding (a crash, a bad option): show all it said
    grep -qE '^[^ ]+:[0-9]+:[0-9]+: (error|warning): ' "$out/$n.log" ||
      { echo "tidy: clang-tidy failed on ${files[n - 1]#"$root/"}:"; cat "$out/$n.log"; }
  fi
done
# Every finding once (a header's come from each source that includes it): a finding is its
# "file:line:col: error: message [check]" line and the lines under it, up to the next one.
for ((n = 1; n <= ${#files[@]}; n++)); do cat "$out/$n.log"; echo "@@ end of log"; done |
  grep -vE '^[0-9]+ (warning|error)s? (generated|treated as errors?)\.$' |
  awk -v root="$root/" -v countfile="$out/count" '
    /^@@ end of log$/ { keep = 0; next }
    /^[^ ]+:[0-9]+:[0-9]+: (error|warning): / { keep = !seen[$0]++; if (keep) count++ }
    keep { if (index($0, root) == 1) $0 = substr($0, length(root) + 1); print }
    END { print count + 0 > countfile }'
count=$(cat "$out/count")
if ((!check)) && compgen -G "$out/*.yaml" >/dev/null && grep -q ReplacementText "$out"/*.yaml; then
  # in clang-tools-14, which clang-tidy-14 depends on; the unversioned name is clang-tools'
  "$(command -v clang-apply-replacements || echo clang-apply-replacements-14)" -format -style=file "$out"
  echo "tidy: applied the fixes clang-tidy offers (see git diff); run again for what is left"
fi
echo "tidy: ${#files[@]} files, $count findings, $((SECONDS - start)) s ($(clang-tidy --version | grep -o 'version [0-9.]*'))"
if ((count || failed)); then exit 1; fi
