// SPDX-License-Identifier: MIT
// A simulated 784x784 dense layer on a batch of 64 (exact products, blocked:8
// and recursive, e4m3-ieee and binary16 accumulators) against the same layer
// in native binary32 (OpenBLAS sgemm and a plain loop) and a straightforward
// MPFR emulation (one mpfr_fma per multiply-add in the format's exponent range).
// The layer kernel is the automatic choice unless MPACC_KERNEL forces one
// (scripts/bench.sh runs each); the label says which ran.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <mpfr.h>

#include <vector>

#include "mpacc/sim/layer.hpp"

using namespace mpacc;

namespace {

constexpr std::size_t B = 64, N = 784, M = 784;

struct data_t {
  std::vector<double> X, W, b;
  std::vector<float> Xf, Wf, bf;
};

const data_t& data() {
  static const data_t d = [] {
    data_t r;
    sim::random_stream rng(7);
    auto val = [&](const sim::format& f, double mag) { return sim::round((rng.uniform() * 2 - 1) * mag, f); };
    for (std::size_t i = 0; i < B * N; ++i) r.X.push_back(val(sim::formats::binary16, 2.0));
    for (std::size_t i = 0; i < M * N; ++i) r.W.push_back(val(sim::formats::e4m3_ieee, 0.1));
    for (std::size_t i = 0; i < M; ++i) r.b.push_back(val(sim::formats::e4m3_ieee, 0.1));
    r.Xf.assign(r.X.begin(), r.X.end());
    r.Wf.assign(r.W.begin(), r.W.end());
    r.bf.assign(r.b.begin(), r.b.end());
    return r;
  }();
  return d;
}

// the accumulators: e4m3-ieee, binary16, binary32 (the binary32 kernel's native path
// in values-only calls)
sim::format fmt(int i) {
  return i == 0 ? sim::formats::e4m3_ieee : i == 1 ? sim::formats::binary16 : sim::formats::binary32;
}

// The layer through run() (values, flags and counts) or, values_only, through
// run_values() (what Algorithm 1's passes call; the binary32 kernel then skips
// its flag bookkeeping).
void layer_bench(benchmark::State& state, bool values_only) {
  const auto& d = data();
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(fmt(static_cast<int>(state.range(0))));
  spec.base.ord =
      state.range(1) ? sim::order{sim::order::kind::blocked, 8} : sim::order{sim::order::kind::recursive, 8};
  const int threads = static_cast<int>(state.range(2));
  std::vector<double> Y;
  // weights prepared once (as for a network layer run on many batches)
  const sim::prepared_dense layer({d.W.data(), M, N}, d.b, spec);
  for (auto _ : state) {
    if (values_only)
      layer.run_values({d.X.data(), B, N}, Y, threads);
    else
      layer.run({d.X.data(), B, N}, Y, threads);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel(sim::to_string(spec.acc.formats[0]) + " " + sim::to_string(spec.base.ord) +
                 (values_only ? " values only" : "") + " threads=" + std::to_string(threads) +
                 " kernel=" + std::string(sim::to_string(sim::dense_kernel_for(spec))));
}
void BM_sim_layer(benchmark::State& state) { layer_bench(state, false); }
void BM_sim_layer_values(benchmark::State& state) { layer_bench(state, true); }

// e4m3-ieee blocked:8 in each rounding mode (sim::all_roundings order), on
// the same data (range 1 = 1: inputs with full 53-bit significands, where no
// task is exact in binary64 and every step takes the round-to-odd path).
void BM_sim_layer_mode(benchmark::State& state) {
  const auto& d = data();
  static const std::vector<double> wide = [] {
    std::vector<double> v = data().X;
    sim::random_stream rng(11);
    for (auto& x : v) x = (rng.uniform() * 2 - 1) * 2.0;
    return v;
  }();
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
  spec.base.ord = {sim::order::kind::blocked, 8};
  spec.base.mode = sim::all_roundings[state.range(0)];
  spec.base.seed = 5;
  const int threads = static_cast<int>(state.range(2));
  const double* X = state.range(1) ? wide.data() : d.X.data();
  std::vector<double> Y;
  const sim::prepared_dense layer({d.W.data(), M, N}, d.b, spec);
  for (auto _ : state) {
    layer.run({X, B, N}, Y, threads);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel(std::string(sim::to_string(spec.base.mode)) + (state.range(1) ? " wide inputs" : "") + " threads=" +
                 std::to_string(threads) + " kernel=" + std::string(sim::to_string(sim::dense_kernel_for(spec))));
}

void BM_sgemm(benchmark::State& state) {
  const auto& d = data();
  std::vector<float> Y(B * M);
  openblas_set_num_threads(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    for (std::size_t s = 0; s < B; ++s) std::copy(d.bf.begin(), d.bf.end(), Y.begin() + static_cast<long>(s * M));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, N, 1.0f, d.Xf.data(), N, d.Wf.data(), N, 1.0f, Y.data(),
                M);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel("OpenBLAS sgemm threads=" + std::to_string(state.range(0)));
}

void BM_plain_float(benchmark::State& state) {
  const auto& d = data();
  std::vector<float> Y(B * M);
  for (auto _ : state) {
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t i = 0; i < M; ++i) {
        float acc = 0;
        const float* w = d.Wf.data() + i * N;
        const float* x = d.Xf.data() + s * N;
        for (std::size_t j = 0; j < N; ++j) acc += w[j] * x[j];
        Y[s * M + i] = acc + d.bf[i];
      }
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel("plain binary32 loop, 1 thread");
}

// One MPFR operation per multiply-add, in the accumulator's exponent range
// (recursive order); a subset of 4 samples, rate per multiply-add.
void BM_mpfr_layer(benchmark::State& state) {
  const auto& d = data();
  const sim::format f = fmt(static_cast<int>(state.range(0)));
  const std::size_t samples = 4;
  std::vector<double> Y(samples * M);
  const mpfr_exp_t old_emin = mpfr_get_emin(), old_emax = mpfr_get_emax();
  mpfr_set_emin(f.emin - f.p + 2);
  mpfr_set_emax(f.emax + 1);
  mpfr_t s, w, x;
  mpfr_init2(s, f.p);
  mpfr_init2(w, 53);
  mpfr_init2(x, 53);
  for (auto _ : state) {
    for (std::size_t k = 0; k < samples; ++k)
      for (std::size_t i = 0; i < M; ++i) {
        mpfr_set_zero(s, 1);
        for (std::size_t j = 0; j < N; ++j) {
          mpfr_set_d(w, d.W[i * N + j], MPFR_RNDN);
          mpfr_set_d(x, d.X[k * N + j], MPFR_RNDN);
          int t = mpfr_fma(s, w, x, s, MPFR_RNDN);
          mpfr_subnormalize(s, t, MPFR_RNDN);
        }
        int t = mpfr_add_d(s, s, d.b[i], MPFR_RNDN);
        mpfr_subnormalize(s, t, MPFR_RNDN);
        Y[k * M + i] = mpfr_get_d(s, MPFR_RNDN);
      }
    benchmark::DoNotOptimize(Y.data());
  }
  mpfr_clears(s, w, x, static_cast<mpfr_ptr>(nullptr));
  mpfr_set_emin(old_emin);
  mpfr_set_emax(old_emax);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * samples * N * M));
  state.SetLabel(sim::to_string(f) + " MPFR emulation, 1 thread");
}

}  // namespace

BENCHMARK(BM_sim_layer)->ArgsProduct({{0, 1, 2}, {1, 0}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sim_layer_values)->ArgsProduct({{0, 1, 2}, {1, 0}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sim_layer_mode)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {0, 1}, {1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The one-shot sim::dense(), preparation included (e4m3-ieee, blocked:8).
void BM_sim_dense_oneshot(benchmark::State& state) {
  const auto& d = data();
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
  spec.base.ord = {sim::order::kind::blocked, 8};
  std::vector<double> Y;
  for (auto _ : state) {
    sim::dense({d.X.data(), B, N}, {d.W.data(), M, N}, d.b, spec, Y, static_cast<int>(state.range(0)));
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel("e4m3-ieee blocked:8, preparation included, threads=" + std::to_string(state.range(0)));
}
BENCHMARK(BM_sim_dense_oneshot)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sgemm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_plain_float)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mpfr_layer)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
