// SPDX-License-Identifier: MIT
// Rounding throughput (values per second): sim::round_array against an MPFR
// rounding of the same values and against a plain copy and a double->float->
// double loop over the same array. Run: bench_rounding --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <mpfr.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "mpacc/sim/rounding.hpp"

using namespace mpacc;

namespace {

constexpr std::size_t N = 10'000'000;

// 10^7 values spread over [2^-16, 2^16) in magnitude, both signs: the
// magnitudes of activations and partial sums, reaching the subnormals of fp8.
const std::vector<double>& data() {
  static const std::vector<double> v = [] {
    std::vector<double> d(N);
    sim::random_stream rng(2024);
    for (auto& x : d) {
      const std::uint64_t r = rng();
      const double m = 1.0 + static_cast<double>(r >> 12) * 0x1p-52;
      const int e = static_cast<int>((r & 31)) - 16;
      x = std::ldexp((r & 32) ? -m : m, e);
    }
    return d;
  }();
  return v;
}

sim::format fmt_of(int i) {
  switch (i) {
    case 0:
      return sim::formats::binary16;
    case 1:
      return sim::formats::bfloat16;
    case 2:
      return sim::formats::e4m3;
    default:
      return sim::formats::e5m2;
  }
}
const char* name_of(int i) {
  static const char* names[] = {"binary16", "bfloat16", "e4m3", "e5m2"};
  return names[i];
}

void BM_round_array(benchmark::State& state) {
  const auto& in = data();
  std::vector<double> out(N);
  const auto mode = sim::all_roundings[state.range(1)];
  const sim::round_spec spec{fmt_of(static_cast<int>(state.range(0))), mode, false, 1};
  const int threads = static_cast<int>(state.range(2));
  for (auto _ : state) {
    benchmark::DoNotOptimize(sim::round_array(in, out, spec, 0, threads));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * N));
  state.SetLabel(std::string(name_of(static_cast<int>(state.range(0)))) + " " + std::string(sim::to_string(mode)) +
                 " threads=" + std::to_string(threads));
}

// MPFR rounding of the same values: mpfr_set_d in the format's exponent range,
// mpfr_subnormalize, mpfr_get_d (one thread; a 10^6 prefix, rate per value).
void BM_mpfr_round(benchmark::State& state) {
  const auto& in = data();
  const std::size_t n = 1'000'000;
  std::vector<double> out(n);
  const sim::format f = fmt_of(static_cast<int>(state.range(0)));
  const mpfr_exp_t old_emin = mpfr_get_emin(), old_emax = mpfr_get_emax();
  mpfr_set_emin(f.emin - f.p + 2);
  mpfr_set_emax(f.emax + 1);
  mpfr_t y;
  mpfr_init2(y, f.p);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n; ++i) {
      int t = mpfr_set_d(y, in[i], MPFR_RNDN);
      t = mpfr_subnormalize(y, t, MPFR_RNDN);
      out[i] = mpfr_get_d(y, MPFR_RNDN);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  mpfr_clear(y);
  mpfr_set_emin(old_emin);
  mpfr_set_emax(old_emax);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
  state.SetLabel(std::string(name_of(static_cast<int>(state.range(0)))) + " mpfr");
}

void BM_copy(benchmark::State& state) {
  const auto& in = data();
  std::vector<double> out(N);
  for (auto _ : state) {
    std::memcpy(out.data(), in.data(), N * sizeof(double));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * N));
}

void BM_double_float_double(benchmark::State& state) {
  const auto& in = data();
  std::vector<double> out(N);
  for (auto _ : state) {
    for (std::size_t i = 0; i < N; ++i) out[i] = static_cast<double>(static_cast<float>(in[i]));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * N));
}

}  // namespace

// formats (binary16, bfloat16, e4m3, e5m2) x modes (sim::all_roundings order) x threads
BENCHMARK(BM_round_array)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1, 2, 3, 4, 5, 6}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_mpfr_round)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_copy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_double_float_double)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
