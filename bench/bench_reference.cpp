// SPDX-License-Identifier: MIT
// The reference forward pass of a 784-784-128-10 MLP per sample, at P = 113
// and P = 256, against a naive per-operation MPFR pass at the same P; the
// binary64 (Dot2) tier's throughput. One inner product of 784 terms through the
// thin ref::mpfr_float wrapper against Boost.Multiprecision's mpfr_float with
// ordinary operators (docs/performance.md, "Boost.Multiprecision").
#include <benchmark/benchmark.h>
#include <mpfr.h>

#include <cmath>
#include <vector>

#include "mpacc/nn/reference.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/ref/multiprecision.hpp"
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
    d.net = nn::make_mlp({784, 784, 128, 10}, {act ? sim::activation::tanh : sim::activation::relu},
                         {sim::activation::identity});
    for (auto& l : d.net.layers) {
      const double sc = 2 / std::sqrt(static_cast<double>(l.n_in));
      unsigned fl = 0;
      for (auto& w : l.W)
        w = sim::round((rng.uniform() * 2 - 1) * sc, sim::formats::e4m3_ieee, sim::rounding::nearest_even, true, fl);
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
          if (mpfr_sgn(acc) > 0)
            mpfr_set(out[i], acc, MPFR_RNDN);
          else
            mpfr_set_zero(out[i], 1);
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
  state.SetLabel(std::string(state.range(0) ? "tanh" : "relu") +
                 " binary64 Dot2 tier, samples/s, threads=" + std::to_string(threads));
}

// --- one inner product, n = 784: thin MPFR wrapper against Boost.Multiprecision ---
// w: e4m3 weights as doubles; x: the previous layer's outputs at P bits (the
// continuation case) or as doubles (first layer). Per-operation variants round
// every product and sum at P bits (the naive model); the engine's own paths
// (dot_round_to, dot_exact) are exact before their one rounding.
struct dot_data {
  std::vector<double> w, x;
};
const dot_data& dot_inputs() {
  static const dot_data d = [] {
    dot_data r;
    const auto& s = data(0);
    r.w.assign(s.net.layers[0].W.begin(), s.net.layers[0].W.begin() + 784);
    r.x.assign(s.X.begin(), s.X.begin() + 784);
    return r;
  }();
  return d;
}

// the inputs at P bits as Boost numbers, divided by 3 (no longer binary64 values)
std::vector<ref::boost_float> boost_inputs(const dot_data& d, mpfr_prec_t P) {
  std::vector<ref::boost_float> x;
  for (double v : d.x) {
    x.push_back(ref::make_boost_float(P, v));
    x.back() /= 3;
  }
  return x;
}

void dot_label(benchmark::State& state, const std::string& what) {
  state.SetItemsProcessed(state.iterations() * 784);
  state.SetLabel(what + " terms/s");
}

// wrapper, per operation: mpfr_mul_d + mpfr_add at P bits on ref::mpfr_float
void BM_dot_ops_wrapper(benchmark::State& state) {
  const auto& d = dot_inputs();
  const mpfr_prec_t P = state.range(0);
  std::vector<ref::mpfr_float> x;
  for (double v : d.x) {
    x.emplace_back(P, v);
    mpfr_div_ui(x.back().get(), x.back().get(), 3, MPFR_RNDN);  // P significant bits
  }
  ref::mpfr_float acc(P), t(P);
  for (auto _ : state) {
    mpfr_set_zero(acc.get(), 1);
    for (std::size_t j = 0; j < 784; ++j) {
      mpfr_mul_d(t.get(), x[j].get(), d.w[j], MPFR_RNDN);
      mpfr_add(acc.get(), acc.get(), t.get(), MPFR_RNDN);
    }
    benchmark::DoNotOptimize(acc.get());
  }
  dot_label(state, "ref::mpfr_float per-op P=" + std::to_string(P));
}

// Boost mpfr_float (variable precision), per operation: acc += x[j] * w[j]
void BM_dot_ops_boost(benchmark::State& state) {
  const auto& d = dot_inputs();
  const mpfr_prec_t P = state.range(0);
  const std::vector<ref::boost_float> x = boost_inputs(d, P);
  ref::boost_float acc = ref::make_boost_float(P);
  for (auto _ : state) {
    acc = 0;
    for (std::size_t j = 0; j < 784; ++j) acc += x[j] * d.w[j];
    benchmark::DoNotOptimize(acc.backend().data());
  }
  dot_label(state, "boost mpfr_float per-op P=" + std::to_string(P) + " (result " +
                       std::to_string(ref::precision_bits(acc)) + " bits)");
}

// Boost fixed precision (digits10 = D: 34 -> 114 bits, 60 -> 201 bits), per operation
template <unsigned D>
void BM_dot_ops_boost_fixed(benchmark::State& state) {
  const auto& d = dot_inputs();
  std::vector<ref::boost_fixed<D>> x;
  for (double v : d.x) x.push_back(ref::boost_fixed<D>(v) / 3);
  ref::boost_fixed<D> acc;
  for (auto _ : state) {
    acc = 0;
    for (std::size_t j = 0; j < 784; ++j) acc += x[j] * d.w[j];
    benchmark::DoNotOptimize(acc.backend().data());
  }
  dot_label(state, "boost mpfr_float_backend<" + std::to_string(D) + "> per-op (" +
                       std::to_string(ref::boost_fixed_bits<D>) + " bits)");
}

// the engine, inputs doubles: long accumulator (exact), one rounding to P bits,
// into a ref::mpfr_float or returned as a Boost number
void BM_dot_engine_wrapper(benchmark::State& state) {
  const auto& d = dot_inputs();
  const mpfr_prec_t P = state.range(0);
  ref::mpfr_float out(P);
  for (auto _ : state) {
    ref::dot_round_to(out.get(), d.w, d.x, 0.0);
    benchmark::DoNotOptimize(out.get());
  }
  dot_label(state, "engine exact+1 rounding into ref::mpfr_float P=" + std::to_string(P));
}
void BM_dot_engine_boost(benchmark::State& state) {
  const auto& d = dot_inputs();
  const mpfr_prec_t P = state.range(0);
  for (auto _ : state) {
    auto r = ref::dot_rounded(d.w, d.x, 0.0, P);
    benchmark::DoNotOptimize(r.backend().data());
  }
  dot_label(state, "engine exact+1 rounding returned as boost mpfr_float P=" + std::to_string(P));
}

// exact at 4400 bits: the same loop on the wrapper and with Boost operators, and
// ref::dot_exact (which also sums |w_j x_j|)
void BM_dot_exact_wrapper(benchmark::State& state) {
  const auto& d = dot_inputs();
  ref::mpfr_float acc(4400), t(4400);
  for (auto _ : state) {
    mpfr_set_zero(acc.get(), 1);
    for (std::size_t j = 0; j < 784; ++j) {
      mpfr_set_d(t.get(), d.w[j], MPFR_RNDN);
      mpfr_mul_d(t.get(), t.get(), d.x[j], MPFR_RNDN);     // exact
      mpfr_add(acc.get(), acc.get(), t.get(), MPFR_RNDN);  // exact
    }
    benchmark::DoNotOptimize(acc.get());
  }
  dot_label(state, "ref::mpfr_float at 4400 bits, exact");
}
void BM_dot_exact_ref(benchmark::State& state) {
  const auto& d = dot_inputs();
  for (auto _ : state) {
    auto r = ref::dot_exact(d.w, d.x, 0.0);
    benchmark::DoNotOptimize(r.value.get());
  }
  dot_label(state, "ref::dot_exact (value and abs_sum, 4400 bits)");
}
void BM_dot_exact_boost(benchmark::State& state) {
  const auto& d = dot_inputs();
  ref::boost_float acc = ref::make_boost_float(4400), t = ref::make_boost_float(4400);
  for (auto _ : state) {
    acc = 0;
    for (std::size_t j = 0; j < 784; ++j) {
      t = d.w[j];
      t *= d.x[j];  // exact at 4400 bits
      acc += t;     // exact
    }
    benchmark::DoNotOptimize(acc.backend().data());
  }
  dot_label(state, "boost mpfr_float at 4400 bits, exact");
}

// continuation: x at P bits, exact products and one mpfr_sum (the engine's path 3)
void BM_dot_mixed_boost(benchmark::State& state) {
  const auto& d = dot_inputs();
  const mpfr_prec_t P = state.range(0);
  const std::vector<ref::boost_float> x = boost_inputs(d, P);
  const ref::boost_float bias = ref::make_boost_float(53, 0.0);
  for (auto _ : state) {
    auto r = ref::dot_rounded(d.w, x, bias, P);
    benchmark::DoNotOptimize(r.backend().data());
  }
  dot_label(state, "dot_rounded(boost x) exact products + mpfr_sum P=" + std::to_string(P));
}
}  // namespace

BENCHMARK(BM_reference_sample)->ArgsProduct({{113, 256}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_reference_exact)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_naive_mpfr_sample)->ArgsProduct({{113, 256}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_reference_batch)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fast_tier)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK(BM_dot_ops_wrapper)->Arg(113)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_ops_boost)->Arg(113)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_ops_boost_fixed<34>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_ops_boost_fixed<60>)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_engine_wrapper)->Arg(113)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_engine_boost)->Arg(113)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_mixed_boost)->Arg(113)->Arg(200)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_exact_wrapper)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_exact_ref)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dot_exact_boost)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
