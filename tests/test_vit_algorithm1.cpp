// SPDX-License-Identifier: MIT
// Algorithm 1 on the vision transformer (analysis/vit_algorithm1.hpp): the
// runner is nn::simulate bit for bit when it recomputes nothing or everything
// (in one piece or several), every recomputed component is sim::dot in the
// high format on the mixed pass's operands, the matched baselines recompute
// the threshold run's counts per (layer, row), the indicators against
// hand-computed values, and the metrics and costs against hand-computed ones.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "mpacc/analysis/vit_algorithm1.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/row_ops.hpp"
#include "mpacc/train/vit.hpp"
#include "support.hpp"
#include "vit_support.hpp"

using namespace mpacc;

namespace {

// A tiny vit (8x8 images, 4x4 patches: 5 tokens, d 8, 2 heads, MLP 6, 10
// classes) with every parameter uniform in +-mag (layer-norm gains around 1).
nn::vit tiny(std::uint64_t seed, double mag = 0.6) { return test::random_vit(seed, 2, mag, 8, 2, 6, 10); }

io::dataset images(std::size_t n, std::uint64_t seed) {
  io::dataset d;
  d.name = "random";
  d.rows = n;
  d.cols = 64;
  sim::random_stream rng(seed);
  d.x.resize(n * 64);
  for (auto& x : d.x) x = rng.uniform() * 3 - 0.5;
  for (std::size_t i = 0; i < n; ++i) d.y.push_back(static_cast<std::uint8_t>(i % 10));
  return d;
}

analysis::mixed_config config(const char* low, const char* high = "binary16") {
  analysis::mixed_config c;
  c.precision = nn::parse_precision(low);
  c.high = sim::parse_format(high);
  c.tile_rows = 4;
  c.tile_samples = 4;
  return c;
}

nn::precision_config with_acc(nn::precision_config p, const sim::format& f) {
  p.acc = {f};
  return p;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t t = 0; t < a.size(); ++t)
    if (!test::same(a[t], b[t])) return false;
  return true;
}

// the test's own operands of component (row, col) of layer k of pass r (as
// nn/vit_passes.hpp documents them), with its rows per sample
struct operands {
  std::vector<double> w, x;
  double b = 0;
  std::size_t per = 1;
};
operands operands_of(const nn::vit& net, const nn::simulated_vit& r, std::size_t k, std::size_t row, std::size_t col) {
  const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
  const auto& L = r.layers[k];
  operands o;
  const nn::dense_layer* l = nullptr;
  const std::size_t K = net.product_layers();
  if (k == 0) {
    l = &net.embed;
    o.per = net.patches();
  } else if (k + 1 == K) {
    l = &net.head;
    o.per = 1;
  } else {
    const auto& B = net.blocks[(k - 1) / 8];
    const nn::dense_layer* maps[8] = {&B.q, &B.k, &B.v, nullptr, nullptr, &B.proj, &B.fc1, &B.fc2};
    l = maps[(k - 1) % 8];
    o.per = (k - 1) % 8 == 3 ? H * T : T;
  }
  if (l) {
    o.w.assign(l->row(col), l->row(col) + l->n_in);
    o.x.assign(L.in.begin() + static_cast<std::ptrdiff_t>(row * l->n_in),
               L.in.begin() + static_cast<std::ptrdiff_t>((row + 1) * l->n_in));
    o.b = l->b[col];
  } else if ((k - 1) % 8 == 3) {
    const std::size_t s = row / (H * T), h = (row / T) % H, i = row % T;
    for (std::size_t c = 0; c < dh; ++c) {
      o.w.push_back(r.layers[k - 2].y[(s * T + col) * d + h * dh + c]);
      o.x.push_back(r.layers[k - 3].y[(s * T + i) * d + h * dh + c]);
    }
  } else {
    const std::size_t s = row / T, i = row % T, h = col / dh;
    for (std::size_t j = 0; j < T; ++j) {
      o.w.push_back(r.layers[k - 2].y[(s * T + j) * d + col]);
      o.x.push_back(r.layers[k - 1].y[((s * H + h) * T + i) * T + j]);
    }
  }
  return o;
}

// The mixed pass of a traced run, replayed through nn::simulate: at every
// layer the hook checks that the pass's low values are the trace's v_low, then
// puts the trace's mixed values in. Returns the replayed pass.
nn::simulated_vit replay(const analysis::vit_mixed_runner& R, const io::dataset& data,
                         const analysis::mixed_result& r) {
  const auto& net = R.network();
  nn::vit_layer_hook hook = [&](std::size_t k, nn::simulated_vit& pass) {
    auto& L = pass.layers[k];
    INFO("layer " << k);
    REQUIRE(same_bits(L.v, r.trace[k].v_low));
    L.v = r.trace[k].v_high;
    L.flags.assign(L.v.size(), 0);  // the flags do not enter y
  };
  (void)data;
  return nn::simulate(net, {R.inputs().data(), R.samples(), net.inputs()}, R.config().precision, 1, 0, hook);
}

}  // namespace

TEST_CASE("vit Algorithm 1: uniform low and high, tau = +inf and -inf are nn::simulate bit for bit",
          "[vit][algorithm1]") {
  const auto net = tiny(5);
  const auto data = images(7, 6);
  for (const char* low : {"acc=e4m3-ieee;order=blocked:2;saturate=on;act=binary16",
                          "acc=bfloat16;order=recursive;rounding=stochastic;seed=9;weights=e4m3-ieee;act=bfloat16;"
                          "act_rounding=stochastic"}) {
    INFO(low);
    const auto cfg = config(low);
    const auto p_low = cfg.precision;
    const auto p_high = with_acc(p_low, cfg.high);
    const sim::matrix_view X{data.x.data(), data.rows, data.cols};
    const auto sim_low = nn::simulate(net, X, p_low, 1);
    const auto sim_high = nn::simulate(net, X, p_high, 1);
    REQUIRE(!same_bits(sim_low.logits(), sim_high.logits()));
    for (const std::size_t chunk : {std::size_t{7}, std::size_t{3}}) {
      INFO("chunk " << chunk);
      const analysis::vit_mixed_runner R(net, data, 0, cfg, 2, chunk);
      analysis::selection s;
      s.type = analysis::selection::kind::uniform_low;
      const auto lo = R.run(s);
      CHECK(same_bits(lo.logits, sim_low.logits()));
      CHECK(lo.fraction == 0);
      CHECK(lo.weighted_cost == Approx(8.0 / 16.0 * (std::string(low).find("bfloat16") != std::string::npos ? 2 : 1)));
      s.type = analysis::selection::kind::uniform_high;
      const auto hi = R.run(s);
      CHECK(same_bits(hi.logits, sim_high.logits()));
      CHECK(hi.fraction == 1);
      CHECK(hi.weighted_cost == 1);
      analysis::selection a;
      a.indicator = "kappa";
      a.tau = std::numeric_limits<double>::infinity();
      const auto none = R.run(a);
      CHECK(none.fraction == 0);
      CHECK(same_bits(none.logits, sim_low.logits()));
      a.tau = -std::numeric_limits<double>::infinity();
      const auto all = R.run(a);
      CHECK(all.fraction == 1);
      CHECK(same_bits(all.logits, sim_high.logits()));
      // every layer kind in high is uniform high too
      const auto kinds = R.run_kinds_high({"embed", "q", "k", "v", "scores", "mix", "proj", "fc1", "fc2", "head"});
      CHECK(same_bits(kinds.logits, sim_high.logits()));
    }
  }
}

TEST_CASE("vit Algorithm 1: every recomputed component is sim::dot in the high format", "[vit][algorithm1]") {
  const auto net = tiny(7);
  const auto data = images(4, 8);
  const auto cfg = config("acc=e4m3-ieee;order=blocked:2;saturate=on;act=binary16");
  const analysis::vit_mixed_runner R(net, data, 0, cfg, 2, 3);
  for (const char* ind : {"kappa", "lamp"}) {
    analysis::selection a;
    a.indicator = ind;
    a.tau = std::string(ind) == "kappa" ? 0.5 : 0.05;
    a.keep_trace = true;
    const auto r = R.run(a);
    INFO(ind << ": fraction " << r.fraction);
    REQUIRE(r.fraction > 0.02);
    REQUIRE(r.fraction < 0.98);
    const auto pass = replay(R, data, r);
    CHECK(same_bits(pass.logits(), r.logits));
    std::size_t checked = 0;
    for (std::size_t k = 0; k < net.product_layers(); ++k) {
      const auto& L = pass.layers[k];
      const auto spec = cfg.precision.layer_spec(k);
      for (std::size_t row = 0; row < L.rows; ++row)
        for (std::size_t col = 0; col < L.cols; ++col) {
          const std::size_t t = row * L.cols + col;
          INFO("layer " << k << " row " << row << " col " << col);
          // recomputed where the score exceeds tau, else the low value
          REQUIRE(r.trace[k].recomputed[t] == !(r.trace[k].score[t] <= a.tau));
          if (!r.trace[k].recomputed[t]) {
            REQUIRE(test::same(r.trace[k].v_high[t], r.trace[k].v_low[t]));
            continue;
          }
          const auto o = operands_of(R.network(), pass, k, row, col);
          sim::accumulation acc = spec.base;
          acc.acc = cfg.high;
          const auto want =
              sim::dot(o.w, o.x, o.b, acc, ((0 * o.per + row) * L.cols + col) * sim::words_per_dot(o.w.size(), acc));
          REQUIRE(test::same(r.trace[k].v_high[t], want.value));
          ++checked;
        }
    }
    CHECK(checked > 50);
  }
}

TEST_CASE("vit Algorithm 1: matched baselines recompute the threshold run's counts per (layer, row)",
          "[vit][algorithm1]") {
  const auto net = tiny(9);
  const auto data = images(5, 10);
  const auto cfg = config("acc=e4m3-ieee;order=blocked:2;saturate=on;act=binary16");
  const analysis::vit_mixed_runner R(net, data, 0, cfg, 2, 2);
  analysis::selection a;
  a.indicator = "kappa";
  a.tau = 0.5;
  const auto a1 = R.run(a);
  REQUIRE(a1.fraction > 0.02);
  using K = analysis::selection::kind;
  for (auto kind : {K::random, K::random_active, K::smallest, K::oracle_pre, K::oracle_local}) {
    analysis::selection m;
    m.type = kind;
    m.counts = &a1.counts;
    m.seed = 77;
    m.keep_trace = true;
    const auto r = R.run(m);
    INFO(analysis::to_string(kind));
    CHECK(r.counts == a1.counts);
    CHECK(r.fraction == a1.fraction);
    if (kind == K::oracle_local) {
      // per row, the chosen components have the largest keys: on a linear map |v_low - v_true|
      const std::size_t k = 1;  // block 1's q
      const auto& tr = r.trace[k];
      const std::size_t cols = net.d;
      for (std::size_t row = 0; row * cols < tr.recomputed.size(); ++row) {
        double lo_chosen = std::numeric_limits<double>::infinity(), hi_other = 0;
        for (std::size_t c = 0; c < cols; ++c) {
          const std::size_t t = row * cols + c;
          const double key = std::fabs(tr.v_low[t] - tr.v_true[t]);
          if (tr.recomputed[t])
            lo_chosen = std::min(lo_chosen, key);
          else
            hi_other = std::max(hi_other, key);
        }
        CHECK(lo_chosen >= hi_other);
      }
    }
  }
  // every ViT component can matter (no activation with kappa_act = 0: GELU's
  // grows like v^2 for v -> -inf): random-active is random
  analysis::selection r1, r2;
  r1.type = K::random;
  r2.type = K::random_active;
  r1.counts = r2.counts = &a1.counts;
  r1.keep_trace = r2.keep_trace = true;
  const auto x1 = R.run(r1), x2 = R.run(r2);
  for (std::size_t k = 0; k < net.product_layers(); ++k) CHECK(x1.trace[k].recomputed == x2.trace[k].recomputed);
  // the counts must fit the runner
  analysis::selection bad;
  bad.type = K::random;
  auto short_counts = a1.counts;
  short_counts[4].pop_back();
  bad.counts = &short_counts;
  CHECK_THROWS_WITH(R.run(bad), Catch::Contains("cover every row"));
  bad.type = K::oracle_gain;
  CHECK_THROWS_WITH(R.run(bad), Catch::Contains("does not support"));
  analysis::selection unknown;
  unknown.indicator = "kprime";
  CHECK_THROWS_WITH(R.run(unknown), Catch::Contains("unknown indicator 'kprime'"));
  CHECK_THROWS_WITH(R.run_kinds_high({"attention"}), Catch::Contains("no inner-product layer of kind 'attention'"));
}

TEST_CASE("vit Algorithm 1: the indicators against hand-computed values", "[vit][algorithm1]") {
  const auto net = tiny(13);
  const auto data = images(2, 14);
  const auto cfg = config("acc=e4m3-ieee;order=blocked:2;saturate=on;act=binary32");
  const analysis::vit_mixed_runner R(net, data, 0, cfg, 1, 2);
  const double u = std::ldexp(1.0, -4);  // e4m3's unit roundoff (nearest)
  auto gelu = [](double x) { return x * 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  for (const char* ind : {"kappa", "kappa-row", "kappa-row-norm", "kappa-scores", "lamp"}) {
    analysis::selection a;
    a.indicator = ind;
    a.tau = 0.3;
    a.keep_trace = true;
    const auto r = R.run(a);
    const auto pass = replay(R, data, r);
    const std::string name = ind;
    std::size_t checked = 0;
    for (std::size_t k = 0; k < net.product_layers(); ++k) {
      const auto kind = analysis::vit_layer_kind(net, k);
      const auto& L = pass.layers[k];
      const std::vector<double>& vl = r.trace[k].v_low;
      for (std::size_t row = 0; row < L.rows; ++row) {
        std::vector<double> s(L.cols), t(L.cols), z(L.cols), phi(L.cols), slope(L.cols);
        const double scale = 1 / std::sqrt(static_cast<double>(net.d_head()));
        if (kind == "scores") {
          for (std::size_t j = 0; j < L.cols; ++j) z[j] = vl[row * L.cols + j] * scale;
          sim::softmax_binary64(z, t, s);
        }
        // the map after the inner product at v_low, and its slope
        double sq = 0;
        for (std::size_t col = 0; col < L.cols; ++col) {
          const std::size_t i = row * L.cols + col;
          const double v = vl[i];
          phi[col] = v;
          slope[col] = 1;
          if (kind == "fc1") {
            // GELU's derivative by central differences
            const double h = 1e-6 * std::max(1.0, std::fabs(v));
            phi[col] = gelu(v);
            slope[col] = std::fabs((gelu(v + h) - gelu(v - h)) / (2 * h));
          } else if (kind == "embed" || kind == "proj" || kind == "fc2") {
            // y = a + v: the position embedding, the residual stream before the addition
            double add = 0;
            if (kind == "embed") {
              add = R.network().pos[(1 + row % net.patches()) * net.d + col];
            } else {
              const std::size_t k0 = k - (kind == "proj" ? 5 : 7);  // the block's q
              if (kind == "fc2") {
                add = pass.layers[k0 + 5].y[i];
              } else if (k0 > 1) {
                add = pass.layers[k0 - 1].y[i];
              } else {
                const std::size_t s0 = row / net.tokens(), tok = row % net.tokens();
                add = tok == 0 ? pass.cls_row[s0 * net.d + col]
                               : pass.layers[0].y[(s0 * net.patches() + tok - 1) * net.d + col];
              }
            }
            phi[col] = add + v;
          }
          sq += phi[col] * phi[col];
        }
        const double rms = std::sqrt(sq / static_cast<double>(L.cols));
        for (std::size_t col = 0; col < L.cols; ++col) {
          const std::size_t i = row * L.cols + col;
          const auto o = operands_of(R.network(), pass, k, row, col);
          double N = std::fabs(o.b);
          for (std::size_t j = 0; j < o.w.size(); ++j) N += std::fabs(o.w[j] * o.x[j]);
          if (name == "kappa-row-norm") {
            double w2 = 0, x2 = 0;
            for (std::size_t j = 0; j < o.w.size(); ++j) {
              w2 += o.w[j] * o.w[j];
              x2 += o.x[j] * o.x[j];
            }
            N = std::sqrt(w2 * x2) + std::fabs(o.b);
          }
          double want = 0;
          if (name == "lamp") {
            if (kind == "scores") want = 2 * s[col] * (1 - s[col]) * std::fabs(z[col]);
          } else if (kind == "scores") {
            want = 2 * s[col] * (1 - s[col]) * N * scale * u;
          } else if (name == "kappa") {
            want = N * u * slope[col] / std::fabs(phi[col]);
          } else if (name == "kappa-row" || name == "kappa-row-norm") {
            want = N * u * slope[col] / rms;
          }
          INFO(name << " layer " << k << " (" << kind << ") row " << row << " col " << col);
          const double got = r.trace[k].score[i];
          if (kind == "fc1" && name != "kappa-scores" && name != "lamp")
            REQUIRE(got == Approx(want).epsilon(1e-5));
          else
            REQUIRE(got == Approx(want).epsilon(1e-12).margin(1e-300));
          ++checked;
        }
      }
    }
    CHECK(checked > 500);
  }
}

TEST_CASE("vit Algorithm 1: metrics and costs against hand-computed values", "[vit][algorithm1]") {
  const auto net = tiny(17, 1.0);
  const auto data = images(9, 18);
  const auto cfg = config("acc=e4m3-ieee;order=blocked:2;saturate=on;act=binary16");
  const analysis::vit_mixed_runner R(net, data, 0, cfg, 2, 4);
  // the reference: the native binary64 pass of the stored network on the stored inputs
  const auto ref = train::vit_forward_native(R.network(), R.inputs().data(), R.samples());
  CHECK(same_bits(ref, R.reference_logits()));
  analysis::selection a;
  a.indicator = "kappa";
  a.tau = 1;
  const auto r = R.run(a);
  const std::size_t C = net.classes;
  std::size_t dis = 0, correct = 0;
  double kl = 0;
  for (std::size_t s = 0; s < R.samples(); ++s) {
    const std::size_t am = nn::argmax({r.logits.data() + s * C, C});
    dis += am != nn::argmax({ref.data() + s * C, C});
    correct += am == data.y[s];
    kl += analysis::kl_softmax(ref.data() + s * C, r.logits.data() + s * C, C);
  }
  CHECK(r.disagreements == dis);
  CHECK(r.correct == correct);
  CHECK(r.kl_mean == Approx(kl / static_cast<double>(R.samples())));
  // fraction and the per-term cost: low pass + kappa's N (one term per term) at 8 bits, recomputed terms at 16
  double comps = 0, rec = 0, all16 = 0, cost = 0;
  const std::size_t T = net.tokens(), B = R.samples();
  for (std::size_t k = 0; k < net.product_layers(); ++k) {
    const auto kind = analysis::vit_layer_kind(net, k);
    double terms = 0, n = 0;
    if (kind == "scores") {
      terms = static_cast<double>(net.d_head());
      n = static_cast<double>(B * net.heads * T * T);
    } else if (kind == "mix") {
      terms = static_cast<double>(T);
      n = static_cast<double>(B * T * net.d);
    } else if (kind == "embed") {
      terms = 16;
      n = static_cast<double>(B * net.patches() * net.d);
    } else if (kind == "head") {
      terms = static_cast<double>(net.d);
      n = static_cast<double>(B * C);
    } else if (kind == "fc1") {
      terms = static_cast<double>(net.d);
      n = static_cast<double>(B * T * net.hidden);
    } else if (kind == "fc2") {
      terms = static_cast<double>(net.hidden);
      n = static_cast<double>(B * T * net.d);
    } else {
      terms = static_cast<double>(net.d);
      n = static_cast<double>(B * T * net.d);
    }
    double c = 0;
    for (auto x : r.counts[k]) c += static_cast<double>(x);
    CHECK(r.fraction_per_layer[k] == Approx(c / n));
    comps += n;
    rec += c;
    all16 += n * terms * 16;
    cost += n * terms * 8 + n * terms * 8 + c * terms * 16;
  }
  CHECK(r.fraction == Approx(rec / comps));
  CHECK(r.weighted_cost == Approx(cost / all16));
  CHECK(r.tile_cost >= r.weighted_cost);
  // a layer kind in high: its fraction 1, the others 0; no low pass paid for it
  const auto sc = R.run_kinds_high({"scores"});
  for (std::size_t k = 0; k < net.product_layers(); ++k)
    CHECK(sc.fraction_per_layer[k] == (analysis::vit_layer_kind(net, k) == "scores" ? 1.0 : 0.0));
}
