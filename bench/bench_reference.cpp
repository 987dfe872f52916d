// SPDX-License-Identifier: MIT
// The reference forward pass of a 784-784-128-10 MLP per sample, at P = 113
// and P = 256, against a naive per-operation MPFR pass at the same P; the
// binary64 (Dot2) tier's throughput.
#include <benchmark/benchmark.h>
#include <mpfr.h>

#include <cmath>
#include <vector>

#include "mpacc/nn/reference.hpp"
#include "mpacc/sim/rounding.hpp"

using namespace mpacc;

namespace {

// weights e4m3-ieee values (as in the paper's setting), inputs normalized
// MNIST-like pixels (k/255 - 0.1307) / 0.3081 as binary64 values
struct setup {
  nn::mlp net;
  std::vector<double> X;  // 64 x 784
};

const setup& data(int act) {
  static setup s[2];
  static bool init[2] = {false, false};
  if (!init[act]) {
    sim::random_stream rng(3);
    auto& d = s[act];
    d.net = nn::make_mlp({784, 784, 128, 10},
                         {act ? sim::activation::tanh : sim::activation::relu}, {sim::activation::identity});
    for (auto& l : d.net.layers) {
      const double sc = 2 / std::sqrt(static_cast<double>(l.n_in));
      unsigned fl = 0;
      for (auto& w : l.W) w = sim::round((rng.uniform() * 2 - 1) * sc, sim::formats::e4m3_ieee, sim::rounding::nearest_even, true, fl);
      for (auto& b : l.b) b = sim::round((rng.uniform() * 2 - 1) * 0.1, sim::formats::e4m3_ieee);
    }
    d.X.resize(64 * 784);
    for (auto& x : d.X) {
      const double pix = (rng() % 3 == 0) ? static_cast<double>(rng() % 256) : 0.0;
      x = (pix / 255 - 0.1307) / 0.3081;
    }
    init[act] = true;
  }
  return s[act];
}

void BM_reference_sample(benchmark::State& state) {
  const auto& d = data(static_cast<int>(state.range(1)));
  const nn::reference_options opt{.precision = state.range(0)};
  const nn::reference_engine engine(d.net);
  std::size_t s = 0;
  for (auto _ : state) {
    auto r = engine.sample({d.X.data() + (s % 64) * 784, 784}, opt);
    benchmark::DoNotOptimize(r.y.back().data());
    ++s;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(state.range(1) ? "tanh" : "relu") + " P=" + std::to_string(state.range(0)) +
                 " samples/s, 1 thread");
}

void BM_reference_exact(benchmark::State& state) {
  const auto& d = data(0);
  const nn::reference_engine engine(d.net);
  std::size_t s = 0;
  for (auto _ : state) {
    auto r = engine.sample({d.X.data() + (s % 64) * 784, 784}, {.exact = true});
    benchmark::DoNotOptimize(r.y.back().data());
    ++s;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("relu exact samples/s, 1 thread");
}

// Naive: every multiply and add one MPFR operation at P bits, activations by MPFR.
void BM_naive_mpfr_sample(benchmark::State& state) {
  const auto& d = data(static_cast<int>(state.range(1)));
  const mpfr_prec_t P = state.range(0);
  std::size_t s = 0;
  for (auto _ : state) {
    std::vector<mpfr_t> in(784);
    for (std::size_t j = 0; j < 784; ++j) {
      mpfr_init2(in[j], P);
      mpfr_set_d(in[j], d.X[(s % 64) * 784 + j], MPFR_RNDN);
    }
    mpfr_t acc, t;
    mpfr_init2(acc, P);
    mpfr_init2(t, P);
    for (const auto& l : d.net.layers) {
      std::vector<mpfr_t> out(l.n_out);
      for (std::size_t i = 0; i < l.n_out; ++i) {
        mpfr_set_d(acc, l.b[i], MPFR_RNDN);
        for (std::size_t j = 0; j < l.n_in; ++j) {
          mpfr_mul_d(t, in[j], l.row(i)[j], MPFR_RNDN);
          mpfr_add(acc, acc, t, MPFR_RNDN);
        }
        mpfr_init2(out[i], P);
        if (l.act.kind == sim::activation::relu) {
          if (mpfr_sgn(acc) > 0) mpfr_set(out[i], acc, MPFR_RNDN); else mpfr_set_zero(out[i], 1);
        } else if (l.act.kind == sim::activation::tanh) {
          mpfr_tanh(out[i], acc, MPFR_RNDN);
        } else {
          mpfr_set(out[i], acc, MPFR_RNDN);
        }
      }
      for (auto& v : in) mpfr_clear(v);
      in.swap(out);
    }
    benchmark::DoNotOptimize(in.data());
    for (auto& v : in) mpfr_clear(v);
    mpfr_clear(acc);
    mpfr_clear(t);
    ++s;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(std::string(state.range(1) ? "tanh" : "relu") + " naive MPFR P=" + std::to_string(P) +
                 " samples/s, 1 thread");
}

void BM_reference_batch(benchmark::State& state) {
  const auto& d = data(0);
  for (auto _ : state) {
    auto r = nn::reference_forward(d.net, {d.X.data(), 64, 784}, {.precision = 200, .threads = 2});
    benchmark::DoNotOptimize(r.layers.back().y_hi.data());
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.SetLabel("relu P=200 batch of 64, samples/s, 2 threads");
}

void BM_fast_tier(benchmark::State& state) {
  const auto& d = data(static_cast<int>(state.range(0)));
  const int threads = static_cast<int>(state.range(1));
  for (auto _ : state) {
    auto r = nn::fast_forward(d.net, {d.X.data(), 64, 784}, threads);
    benchmark::DoNotOptimize(r.layers.back().y_hi.data());
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.SetLabel(std::string(state.range(0) ? "tanh" : "relu") + " binary64 Dot2 tier, samples/s, threads=" +
                 std::to_string(threads));
}

}  // namespace

BENCHMARK(BM_reference_sample)->ArgsProduct({{113, 256}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_reference_exact)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_naive_mpfr_sample)->ArgsProduct({{113, 256}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_reference_batch)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fast_tier)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
