#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target for a bounded time, one job, from the committed seeds.
# Usage: run.sh FUZZER SECONDS SEED_DIR WORK_DIR [DICT]
# New inputs go to WORK_DIR/corpus (the seeds are only read), a crash to
# WORK_DIR/crash-*; the exit status is the fuzzer's (non-zero on a finding).
set -euo pipefail
fuzzer=$1 seconds=$2 seeds=$3 work=$4 dict=${5:-}
mkdir -p "$work/corpus"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536
      -print_final_stats=1 -artifact_prefix="$work/")
[[ -n "$dict" && -f "$dict" ]] && args+=(-dict="$dict")
exec "$fuzzer" "${args[@]}" "$work/corpus" "$seeds"
