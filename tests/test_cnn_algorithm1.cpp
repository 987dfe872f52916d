// SPDX-License-Identifier: MIT
// Algorithm 1 over convolutional networks (analysis/cnn_algorithm1.hpp):
// tau = +inf is the uniform low simulated pass and forcing every component
// the uniform high one, bit for bit; matched baselines recompute exactly the
// threshold run's counts; on a dense-only network the CNN runner is the MLP
// runner; runs do not depend on the thread count; costs per term.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "mpacc/analysis/cnn_algorithm1.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/sim/rounding.hpp"
#include "support.hpp"

using namespace mpacc;
using K = analysis::selection::kind;

namespace {

std::vector<double> uniform(std::mt19937_64& rng, std::size_t n, double lo, double hi) {
  std::vector<double> v(n);
  for (auto& x : v) x = std::uniform_real_distribution<double>(lo, hi)(rng);
  return v;
}

// 1x8x8 -> conv 1->4 3x3 pad 1 (act) -> pool 2 (4x4x4) -> conv 4->3 3x3 stride 1 (act, 3x2x2)
// -> flatten 12 -> dense 12x7 (act) -> dense 7x5; `avg`: the first pooling averages
nn::cnn small_cnn(sim::activation act, bool avg, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  nn::cnn net;
  net.c = 1;
  net.h = net.w = 8;
  nn::conv_layer c1;
  c1.shape.c_in = 1;
  c1.shape.h = c1.shape.w = 8;
  c1.shape.c_out = 4;
  c1.shape.kh = c1.shape.kw = 3;
  c1.shape.pad_h = c1.shape.pad_w = 1;
  c1.act = {act};
  c1.W = uniform(rng, c1.shape.weights(), -0.7, 0.7);
  c1.b = uniform(rng, 4, -0.2, 0.2);
  nn::pool_layer p1;
  p1.type = avg ? nn::pool_layer::kind::avg : nn::pool_layer::kind::max;
  p1.shape.c = 4;
  p1.shape.h = p1.shape.w = 8;
  nn::conv_layer c2;
  c2.shape.c_in = 4;
  c2.shape.h = c2.shape.w = 4;
  c2.shape.c_out = 3;
  c2.shape.kh = c2.shape.kw = 3;
  c2.act = {act};
  c2.W = uniform(rng, c2.shape.weights(), -0.5, 0.5);
  c2.b = uniform(rng, 3, -0.2, 0.2);
  nn::dense_layer d1, d2;
  d1.n_in = 12;
  d1.n_out = 7;
  d1.act = {act};
  d1.W = uniform(rng, 84, -0.8, 0.8);
  d1.b = uniform(rng, 7, -0.2, 0.2);
  d2.n_in = 7;
  d2.n_out = 5;
  d2.W = uniform(rng, 35, -0.8, 0.8);
  d2.b = uniform(rng, 5, -0.2, 0.2);
  net.layers = {c1, p1, c2, nn::flatten_layer{3, 2, 2}, d1, d2};
  net.validate();
  return net;
}

io::dataset images(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  io::dataset d;
  d.rows = rows;
  d.cols = cols;
  d.x = uniform(rng, rows * cols, 0, 1);
  for (std::size_t s = 0; s < rows; ++s) d.y.push_back(static_cast<std::uint8_t>(rng() % 5));
  return d;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (!test::same(a[k], b[k])) return false;
  return true;
}

analysis::mixed_config blocked8() {
  analysis::mixed_config cfg;  // e4m3-ieee accumulators and weights, binary16 high
  cfg.precision.order = {sim::order::kind::blocked, 8};
  cfg.precision.saturate = true;
  return cfg;
}

}  // namespace

TEST_CASE("cnn runner: tau = +inf is the uniform low simulated pass, forcing every component the uniform high one",
          "[analysis][cnn][algorithm1]") {
  for (auto act : {sim::activation::relu, sim::activation::tanh})
    for (bool avg : {false, true}) {
      INFO("act " << static_cast<int>(act) << " avg " << avg);
      const auto net = small_cnn(act, avg, 7);
      const auto data = images(30, 64, 8);
      const auto cfg = blocked8();
      const analysis::cnn_mixed_runner R(net, data, 0, cfg, 2);
      analysis::selection low, high;
      low.type = K::uniform_low;
      high.type = K::uniform_high;
      const auto rl = R.run(low), rh = R.run(high);
      // the simulated passes: uniform low; uniform high in every convolution and
      // dense layer, the pooling layer keeping its low accumulator
      const auto sl = nn::simulate(net, {data.x.data(), data.rows, data.cols}, cfg.precision);
      auto ph = cfg.precision;
      ph.acc.assign(net.layers.size(), cfg.high);
      ph.acc[1] = cfg.low(1);
      const auto sh = nn::simulate(net, {data.x.data(), data.rows, data.cols}, ph);
      CHECK(same_bits(rl.logits, sl.back().y));
      CHECK(same_bits(rh.logits, sh.back().y));
      CHECK(rl.fraction == 0);
      CHECK(rh.fraction == 1);
      CHECK(rl.weighted_cost == 0.5);  // 8-bit terms against 16-bit ones, no estimate
      CHECK(rh.weighted_cost == 1);
      CHECK(!same_bits(rl.logits, rh.logits));  // the test can fail
      for (const auto& ind : analysis::indicator_names()) {
        INFO(ind);
        analysis::selection s;
        s.indicator = ind;
        s.tau = HUGE_VAL;
        const auto a = R.run(s);
        CHECK(same_bits(a.logits, sl.back().y));
        CHECK(a.fraction == 0);
        s.tau = -HUGE_VAL;
        const auto b = R.run(s);
        CHECK(same_bits(b.logits, sh.back().y));
        CHECK(b.fraction == 1);
      }
    }
}

TEST_CASE("cnn runner: a threshold run recomputes exactly the components scoring above tau, with the pass's values",
          "[analysis][cnn][algorithm1]") {
  const auto net = small_cnn(sim::activation::relu, false, 3);
  const auto data = images(20, 64, 4);
  const auto cfg = blocked8();
  const analysis::cnn_mixed_runner R(net, data, 0, cfg, 1);
  analysis::selection s;
  s.indicator = "kprime";
  s.tau = 1;
  s.keep_trace = true;
  const auto a = R.run(s);
  CHECK(a.fraction > 0);
  CHECK(a.fraction < 1);
  // layer 0's inputs are the same in every run: its low and high values are the simulated passes'
  const auto sl = nn::simulate(net, {data.x.data(), data.rows, data.cols}, cfg.precision);
  auto ph = cfg.precision;
  ph.acc = {cfg.high};
  const auto sh = nn::simulate(net, {data.x.data(), data.rows, data.cols}, ph);
  CHECK(same_bits(a.trace[0].v_low, sl[0].v));
  CHECK(same_bits(a.trace[0].v_high, sh[0].v));
  double expected_cost = 0, all_high = 0;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& tr = a.trace[k];
    if (tr.level.empty()) {
      CHECK(a.fraction_per_layer[k] == 0);
      continue;
    }
    std::size_t n = tr.level.size() / data.rows, per_sample_count = 0;
    for (std::size_t t = 0; t < tr.level.size(); ++t) {
      // kprime: |kappa_act / v|, +inf at a ReLU's v = 0, 0 where inactive
      const double v = tr.v_low[t];
      const double want = v < 0 ? 0 : v == 0 ? HUGE_VAL : 1 / v;
      const bool relu = k + 1 < net.layers.size();
      CHECK(tr.score[t] == (relu ? want : 1 / std::fabs(v)));
      CHECK(tr.recomputed[t] == (tr.score[t] > 1));
      if (t % n == n - 1) {
        per_sample_count = 0;
        for (std::size_t i = t + 1 - n; i <= t; ++i) per_sample_count += tr.recomputed[i];
        CHECK(a.counts[k][t / n] == per_sample_count);
      }
    }
    // cost per term: a convolution output is c_in kh kw terms, a dense one n_in
    double terms = 0;
    if (const auto* c = std::get_if<nn::conv_layer>(&net.layers[k])) terms = static_cast<double>(c->shape.patch());
    if (const auto* d = std::get_if<nn::dense_layer>(&net.layers[k])) terms = static_cast<double>(d->n_in);
    double cnt = 0;
    for (auto c : a.counts[k]) cnt += static_cast<double>(c);
    const double N = static_cast<double>(tr.level.size());
    expected_cost += N * terms * 8 + N * 8 + cnt * terms * 16;  // low pass, kprime's n_out per row, recomputation
    all_high += N * terms * 16;
  }
  CHECK(a.weighted_cost == Approx(expected_cost / all_high).epsilon(1e-12));
}

TEST_CASE("cnn runner: matched baselines recompute exactly the threshold run's counts per layer and sample",
          "[analysis][cnn][algorithm1]") {
  const auto net = small_cnn(sim::activation::relu, true, 5);
  const auto data = images(24, 64, 6);
  const analysis::cnn_mixed_runner R(net, data, 0, blocked8(), 2);
  for (const char* ind : {"kappa", "kprime-companion"})
    for (double tau : {0.01, 1.0}) {
      analysis::selection s;
      s.indicator = ind;
      s.tau = tau;
      const auto a = R.run(s);
      for (auto kind : {K::random, K::random_active, K::smallest, K::oracle_pre, K::oracle_local, K::oracle_gain}) {
        INFO(ind << " " << analysis::to_string(kind) << " tau " << tau);
        analysis::selection m;
        m.type = kind;
        m.counts = &a.counts;
        m.keep_trace = true;
        const auto b = R.run(m);
        if (kind != K::random_active) CHECK(b.counts == a.counts);
        CHECK(b.weighted_cost <= 1);
        for (std::size_t k = 0; k < b.trace.size(); ++k) {
          const auto& tr = b.trace[k];
          if (tr.level.empty()) continue;
          const std::size_t n = tr.level.size() / data.rows;
          for (std::size_t smp = 0; smp < data.rows; ++smp) {
            std::size_t active = 0;
            for (std::size_t i = 0; i < n; ++i) active += tr.v_low[smp * n + i] >= 0;
            // random-active: as many as asked among the candidates (ReLU: v_low >= 0), never another
            if (kind == K::random_active && k + 1 < net.layers.size()) {
              CHECK(b.counts[k][smp] == std::min(a.counts[k][smp], active));
              for (std::size_t i = 0; i < n; ++i)
                if (tr.recomputed[smp * n + i]) CHECK(tr.v_low[smp * n + i] >= 0);
            }
            if (kind == K::oracle_local) {
              // every recomputed component's local error is at least every kept one's
              double lo = HUGE_VAL, hi = -HUGE_VAL;
              for (std::size_t i = 0; i < n; ++i) {
                const std::size_t t = smp * n + i;
                const auto& act = k + 1 < net.layers.size() ? sim::activation_fn{sim::activation::relu}
                                                            : sim::activation_fn{sim::activation::identity};
                const double key = std::fabs(sim::apply(act, tr.v_low[t]) - sim::apply(act, tr.v_true[t]));
                if (tr.recomputed[t])
                  lo = std::min(lo, key);
                else
                  hi = std::max(hi, key);
              }
              CHECK(lo >= hi);
            }
          }
        }
      }
    }
}

TEST_CASE("cnn runner on a dense-only network is the MLP runner, bit for bit", "[analysis][cnn][algorithm1]") {
  std::mt19937_64 rng(9);
  auto m = nn::make_mlp({16, 24, 12, 10}, {sim::activation::relu});
  for (auto& l : m.layers) {
    l.W = uniform(rng, l.W.size(), -0.6, 0.6);
    l.b = uniform(rng, l.b.size(), -0.2, 0.2);
  }
  nn::cnn net;
  net.c = 16;
  net.h = net.w = 1;
  for (const auto& l : m.layers) net.layers.emplace_back(l);
  auto data = images(60, 16, 10);
  for (auto& y : data.y) y = static_cast<std::uint8_t>(y * 2);
  const auto cfg = blocked8();
  const analysis::mixed_runner A(m, data, 0, cfg, 2);
  const analysis::cnn_mixed_runner C(net, data, 0, cfg, 2);
  CHECK(same_bits(A.reference_outputs().back(), C.reference_outputs().back()));
  auto same_run = [](const analysis::mixed_result& a, const analysis::mixed_result& b) {
    CHECK(same_bits(a.logits, b.logits));
    CHECK(a.counts == b.counts);
    CHECK(test::same(a.weighted_cost, b.weighted_cost));
    CHECK(test::same(a.tile_cost, b.tile_cost));
    CHECK(test::same(a.fraction, b.fraction));
    CHECK(a.fraction_per_layer == b.fraction_per_layer);
    CHECK(test::same(a.kl_mean, b.kl_mean));
    CHECK(a.correct == b.correct);
    CHECK(a.disagreements == b.disagreements);
    CHECK(test::same(a.rel_hidden.q99, b.rel_hidden.q99));
    CHECK(test::same(a.rel_logits.max, b.rel_logits.max));
  };
  analysis::selection low, high;
  low.type = K::uniform_low;
  high.type = K::uniform_high;
  same_run(A.run(low), C.run(low));
  same_run(A.run(high), C.run(high));
  for (const auto& ind : analysis::indicator_names())
    for (double tau : {0.05, 1.0}) {
      INFO(ind << " tau " << tau);
      analysis::selection s;
      s.indicator = ind;
      s.tau = tau;
      const auto a = A.run(s), c = C.run(s);
      same_run(a, c);
      CHECK(a.fraction > 0);
      for (auto kind : {K::random_active, K::oracle_local, K::oracle_gain}) {
        analysis::selection mm;
        mm.type = kind;
        mm.counts = &a.counts;
        same_run(A.run(mm), C.run(mm));
      }
    }
}

TEST_CASE("cnn runner: runs do not depend on the thread count; unsupported selections throw",
          "[analysis][cnn][algorithm1]") {
  const auto net = small_cnn(sim::activation::relu, true, 11);
  const auto data = images(40, 64, 12);
  auto cfg = blocked8();
  cfg.tile_rows = 4;
  cfg.tile_samples = 3;
  const analysis::cnn_mixed_runner R(net, data, 0, cfg, 1);
  analysis::selection s;
  s.indicator = "kappa-norm";
  s.tau = 0.3;
  const auto a = R.run(s, 1), b = R.run(s, 2);
  CHECK(same_bits(a.logits, b.logits));
  CHECK(a.counts == b.counts);
  CHECK(test::same(a.weighted_cost, b.weighted_cost));
  CHECK(test::same(a.tile_cost, b.tile_cost));
  CHECK(a.tile_cost >= a.weighted_cost - 1e-12);
  analysis::selection r;
  r.type = K::random;
  r.counts = &a.counts;
  const auto ra = R.run(r, 1), rb = R.run(r, 2);
  CHECK(same_bits(ra.logits, rb.logits));
  CHECK(ra.counts == a.counts);
  analysis::selection st;
  st.type = K::static_map;
  CHECK_THROWS_WITH(R.run(st), Catch::Contains("not supported for CNNs"));
  analysis::selection lad = s;
  lad.ladder = true;
  CHECK_THROWS_WITH(R.run(lad), Catch::Contains("not supported for CNNs"));
  analysis::selection bad;
  bad.type = K::oracle_local;
  CHECK_THROWS_WITH(R.run(bad), Catch::Contains("needs the recomputation counts"));
}
