// SPDX-License-Identifier: MIT
// Simulated convolutions (im2col onto the exact dense kernel) against the
// dense kernel itself: cost per multiply-add. LeNet-like shapes on a batch of
// 64 (conv1: 1->6 5x5 on 28x28 pad 2; conv2: 6->16 5x5 on 14x14), e4m3-ieee
// and binary16 accumulators, blocked:8, exact products; the reference is the
// 784x784 dense layer of bench_layer (e4m3-ieee, blocked:8, batch 64).
// Inputs binary16 in [-2, 2], weights and biases e4m3-ieee in [-0.1, 0.1].
// items_per_second = multiply-adds per second (padded terms counted: they are
// computed). The kernel is the automatic choice unless MPACC_KERNEL forces one.
#include <benchmark/benchmark.h>

#include <vector>

#include "mpacc/sim/conv.hpp"
#include "mpacc/sim/layer.hpp"

using namespace mpacc;

namespace {

constexpr std::size_t B = 64;

sim::conv2d_shape lenet(int which) {
  sim::conv2d_shape s;
  if (which == 0) {
    s.c_in = 1, s.h = s.w = 28, s.c_out = 6, s.kh = s.kw = 5, s.pad_h = s.pad_w = 2;
  } else {
    s.c_in = 6, s.h = s.w = 14, s.c_out = 16, s.kh = s.kw = 5;
  }
  return s;
}

std::vector<double> values(std::size_t n, const sim::format& f, double mag, std::uint64_t seed) {
  sim::random_stream rng(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = sim::round((rng.uniform() * 2 - 1) * mag, f);
  return v;
}

sim::layer_spec spec_of(int fmt) {
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(fmt == 0 ? sim::formats::e4m3_ieee : sim::formats::binary16);
  spec.base.ord = {sim::order::kind::blocked, 8};
  return spec;
}

std::string label(const sim::layer_spec& spec, int threads) {
  return sim::to_string(spec.acc.formats[0]) + " " + sim::to_string(spec.base.ord) +
         " threads=" + std::to_string(threads) + " kernel=" + std::string(sim::to_string(sim::dense_kernel_for(spec)));
}

// range: shape (0 conv1, 1 conv2), accumulator (0 e4m3-ieee, 1 binary16), threads
void BM_sim_conv(benchmark::State& state) {
  const auto s = lenet(static_cast<int>(state.range(0)));
  const auto spec = spec_of(static_cast<int>(state.range(1)));
  const int threads = static_cast<int>(state.range(2));
  const auto X = values(B * s.in_size(), sim::formats::binary16, 2.0, 7);
  const auto W = values(s.weights(), sim::formats::e4m3_ieee, 0.1, 8);
  const auto b = values(s.c_out, sim::formats::e4m3_ieee, 0.1, 9);
  const sim::prepared_conv2d conv(s, W, b, spec);
  std::vector<double> Y;
  for (auto _ : state) {
    conv.run(X.data(), B, Y, threads);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * s.out_size() * s.patch()));
  state.SetLabel((state.range(0) ? "conv2 6->16 5x5 14x14 " : "conv1 1->6 5x5 28x28 pad2 ") + label(spec, threads));
}

// the lowering alone: im2col of the batch
void BM_im2col(benchmark::State& state) {
  const auto s = lenet(static_cast<int>(state.range(0)));
  const auto X = values(B * s.in_size(), sim::formats::binary16, 2.0, 7);
  std::vector<double> cols;
  for (auto _ : state) {
    sim::im2col(s, X.data(), B, cols);
    benchmark::DoNotOptimize(cols.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * s.out_size() * s.patch()));
  state.SetLabel(state.range(0) ? "conv2" : "conv1");
}

// the dense kernel on the 784x784 layer (bench_layer's BM_sim_layer)
void BM_sim_dense(benchmark::State& state) {
  constexpr std::size_t N = 784, M = 784;
  const auto spec = spec_of(static_cast<int>(state.range(0)));
  const int threads = static_cast<int>(state.range(1));
  const auto X = values(B * N, sim::formats::binary16, 2.0, 7);
  const auto W = values(M * N, sim::formats::e4m3_ieee, 0.1, 8);
  const auto b = values(M, sim::formats::e4m3_ieee, 0.1, 9);
  const sim::prepared_dense layer({W.data(), M, N}, b, spec);
  std::vector<double> Y;
  for (auto _ : state) {
    layer.run({X.data(), B, N}, Y, threads);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B * N * M));
  state.SetLabel("dense 784x784 " + label(spec, threads));
}

}  // namespace

BENCHMARK(BM_sim_conv)->ArgsProduct({{0, 1}, {0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_im2col)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_sim_dense)->ArgsProduct({{0, 1}, {1, 2}})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
