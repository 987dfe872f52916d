#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the Google Benchmark programs of bench/ and prints one table of ratios
# measured in the same run (docs/performance.md records its output):
#   - array rounding in every mode against the (double)(float) loop;
#   - the 784x784 layer (batch 64) on each kernel this processor has (forced
#     with MPACC_KERNEL) against OpenBLAS sgemm and the plain MPFR emulation,
#     1 and 2 threads; each mode against nearest-even on the same kernel.
# Builds the benchmarks first if needed (Release, in $BUILD_DIR, default
# build/dev, the `dev` preset). Raw CSV output is kept in $OUT (default
# $BUILD_DIR/bench-results). REPS (default 3) repetitions, medians.
#
#   bash scripts/bench.sh                 # everything (about 10 minutes on 2 cores)
#   KERNELS="avx2 avx512" bash scripts/bench.sh
#   LAYER_ONLY=1 KERNELS="avx512 avx512-b32" bash scripts/bench.sh   # layers only, no array rounding
#
# avx512-b32 (the binary32 kernel) runs only the specs and data it covers
# (sim/layer.hpp): the stochastic mode and the "wide" inputs (not binary32
# values) run on avx512 under that name; the label of each benchmark says
# which kernel the spec took.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build/dev}
OUT=${OUT:-$BUILD_DIR/bench-results}
REPS=${REPS:-3}
mkdir -p "$OUT"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  if [ "$BUILD_DIR" = build/dev ]; then
    bash scripts/configure.sh dev
  else
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
  fi
fi
cmake --build "$BUILD_DIR" -j2 --target bench_rounding bench_layer >/dev/null

flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
if [ -z "${KERNELS:-}" ]; then
  KERNELS="scalar portable"
  if has avx2 && has fma; then KERNELS="$KERNELS avx2"; fi
  if has avx512f && has avx512dq; then KERNELS="$KERNELS avx512 avx512-b32"; fi
fi

common=(--benchmark_format=csv --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true
        --benchmark_min_time=0.2)
run() {  # run OUTFILE BINARY FILTER [env...]
  local out=$1 bin=$2 filter=$3
  shift 3
  env "$@" "$BUILD_DIR/bench/$bin" "${common[@]}" --benchmark_filter="$filter" >"$OUT/$out.csv" 2>"$OUT/$out.log"
}

machine="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench.sh: $machine, load $load_before; kernels: $KERNELS" >&2
if [ -z "${LAYER_ONLY:-}" ]; then
  echo "rounding ..." >&2
  run rounding bench_rounding 'BM_round_array|BM_double_float_double|BM_copy'
else
  : >"$OUT/rounding.csv"
fi
echo "references (sgemm, MPFR emulation) ..." >&2
run reference bench_layer 'BM_sgemm|BM_mpfr_layer|BM_plain_float'
for k in $KERNELS; do
  echo "layer, kernel $k ..." >&2
  run "layer-$k" bench_layer 'BM_sim_layer/|BM_sim_layer_values/|BM_sim_layer_mode' MPACC_KERNEL="$k"
done

# name,iterations,real_time,cpu_time,time_unit,bytes_per_second,items_per_second,label,...
# -> "name items_per_second label" of the medians
medians() { cat "$@" | awk -F',' '/_median"/ { n=$1; gsub(/"/, "", n); sub(/\/real_time_median$/, "", n); sub(/_median$/, "", n);
                                 l=$8; gsub(/"/, "", l); print n "\t" $7 "\t" l }'; }

echo "# scripts/bench.sh, $(date -u +%Y-%m-%d), $machine; load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg); medians of $REPS"
medians "$OUT/rounding.csv" >"$OUT/rounding.tsv"
medians "$OUT/reference.csv" >"$OUT/reference.tsv"
for k in $KERNELS; do medians "$OUT/layer-$k.csv" | sed "s/^/$k\t/"; done >"$OUT/layer.tsv"

awk -F'\t' '
  BEGIN { split("binary16 bfloat16 e4m3 e5m2", F, " "); split("nearest-even nearest-away toward-zero upward downward odd stochastic", MODE, " ") }
  FILENAME ~ /rounding.tsv$/ { rate[$1] = $2; next }
  FILENAME ~ /reference.tsv$/ { rate[$1] = $2; next }
  { krate[$1 "|" $2] = $3; kernels[$1] = 1; if (!($1 in korder)) { korder[$1] = ++nk; kname[nk] = $1 } }
  END {
    loop = rate["BM_double_float_double"]
    if (loop != "") {
    printf "\n## Array rounding, 10^7 values: ns per value (x the (double)(float) loop, %.2f ns)\n\n", 1e9 / loop
    printf "| format | mode | 1 thread | x loop | 2 threads | x loop |\n|---|---|---|---|---|---|\n"
    for (f = 1; f <= 4; ++f) for (m = 1; m <= 7; ++m) {
      r1 = rate["BM_round_array/" (f-1) "/" (m-1) "/1"]; r2 = rate["BM_round_array/" (f-1) "/" (m-1) "/2"]
      if (r1 == "") continue
      printf "| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", F[f], MODE[m], 1e9/r1, loop/r1, 1e9/r2, loop/r2
    }
    printf "\n(memcpy of the same array: %.2f ns per value)\n", 1e9 / rate["BM_copy"]
    }

    sg1 = rate["BM_sgemm/1"]; sg2 = rate["BM_sgemm/2"]
    mp[0] = rate["BM_mpfr_layer/0"]; mp[1] = rate["BM_mpfr_layer/1"]; mp[2] = rate["BM_mpfr_layer/2"]
    items = 64 * 784 * 784
    printf "\n## 784x784 layer, batch 64, exact products, nearest-even: ms (x OpenBLAS sgemm at the same thread count; speed-up over the MPFR emulation)\n\n"
    printf "sgemm: %.2f ms (1 thread), %.2f ms (2 threads); MPFR emulation: e4m3-ieee %.2f M/s, binary16 %.2f M/s, binary32 %.2f M/s (per multiply-add, 1 thread)\n\n", 1e3*items/sg1, 1e3*items/sg2, mp[0]/1e6, mp[1]/1e6, mp[2]/1e6
    split("e4m3-ieee binary16 binary32", AF, " "); split("recursive blocked:8", OR, " ")
    printf "| kernel | accumulator | order | 1 thread | x sgemm | / MPFR | 2 threads | x sgemm | / MPFR | 2 thr. speed-up |\n|---|---|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= nk; ++i) for (a = 0; a <= 2; ++a) for (o = 1; o >= 0; --o) {
      k = kname[i]; r1 = krate[k "|BM_sim_layer/" a "/" o "/1"]; r2 = krate[k "|BM_sim_layer/" a "/" o "/2"]
      if (r1 == "") continue
      printf "| %s | %s | %s | %.2f ms | %.1f | %.0f | %.2f ms | %.1f | %.0f | %.2f |\n", k, AF[a+1], OR[o+1], 1e3*items/r1, sg1/r1, r1/mp[a], 1e3*items/r2, sg2/r2, r2/mp[a], r2/r1
    }
    printf "\n## The same layer, values only (prepared_dense::run_values, what Algorithm 1 calls): ms (x sgemm)\n\n"
    printf "| kernel | accumulator | order | 1 thread | x sgemm | 2 threads | x sgemm | with flags / values only (1 thread) |\n|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= nk; ++i) for (a = 0; a <= 2; ++a) for (o = 1; o >= 0; --o) {
      k = kname[i]; v1 = krate[k "|BM_sim_layer_values/" a "/" o "/1"]; v2 = krate[k "|BM_sim_layer_values/" a "/" o "/2"]
      r1 = krate[k "|BM_sim_layer/" a "/" o "/1"]
      if (v1 == "" || r1 == "") continue
      printf "| %s | %s | %s | %.2f ms | %.1f | %.2f ms | %.1f | %.2f |\n", k, AF[a+1], OR[o+1], 1e3*items/v1, sg1/v1, 1e3*items/v2, sg2/v2, v1/r1
    }
    printf "\n## Each mode, e4m3-ieee blocked:8, 1 thread: ms (speed relative to nearest-even on the same kernel and data)\n\n"
    printf "| kernel | data |"; for (m = 1; m <= 7; ++m) printf " %s |", MODE[m]; printf "\n|---|---|"; for (m = 1; m <= 7; ++m) printf "---|"; printf "\n"
    split("exact-span|wide", DATA, "|")
    for (i = 1; i <= nk; ++i) for (w = 0; w <= 1; ++w) {
      k = kname[i]; ne = krate[k "|BM_sim_layer_mode/0/" w "/1"]
      if (ne == "") continue
      printf "| %s | %s |", k, DATA[w+1]
      for (m = 1; m <= 7; ++m) { r = krate[k "|BM_sim_layer_mode/" (m-1) "/" w "/1"]; printf " %.1f (%.2f) |", 1e3*items/r, r/ne }
      printf "\n"
    }
    if (("avx2" in kernels) && ("avx512" in kernels)) {
      printf "\nAVX2 over AVX-512 time, e4m3-ieee blocked:8 nearest-even, 1 thread: %.2f (exact-span), %.2f (wide)\n",
        krate["avx512|BM_sim_layer_mode/0/0/1"] / krate["avx2|BM_sim_layer_mode/0/0/1"],
        krate["avx512|BM_sim_layer_mode/0/1/1"] / krate["avx2|BM_sim_layer_mode/0/1/1"]
    }
    if (("avx512" in kernels) && ("avx512-b32" in kernels)) {
      printf "\navx512-b32 speed-up over avx512 (same run, nearest-even, exact products; binary32 accumulators run on avx512 when flags are wanted):\n\n| accumulator | order | with flags, 1 thread | 2 threads | values only, 1 thread | 2 threads |\n|---|---|---|---|---|---|\n"
      for (a = 0; a <= 2; ++a) for (o = 1; o >= 0; --o)
        printf "| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", AF[a+1], OR[o+1],
          krate["avx512-b32|BM_sim_layer/" a "/" o "/1"] / krate["avx512|BM_sim_layer/" a "/" o "/1"],
          krate["avx512-b32|BM_sim_layer/" a "/" o "/2"] / krate["avx512|BM_sim_layer/" a "/" o "/2"],
          krate["avx512-b32|BM_sim_layer_values/" a "/" o "/1"] / krate["avx512|BM_sim_layer_values/" a "/" o "/1"],
          krate["avx512-b32|BM_sim_layer_values/" a "/" o "/2"] / krate["avx512|BM_sim_layer_values/" a "/" o "/2"]
    }
  }' "$OUT/rounding.tsv" "$OUT/reference.tsv" "$OUT/layer.tsv"
