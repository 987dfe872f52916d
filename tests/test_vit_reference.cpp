// SPDX-License-Identifier: MIT
// The reference pass of a vision transformer (nn/vit_reference.hpp) and
// validate() on vits (analysis/validate.hpp): the reference against an
// independent high-precision MPFR forward pass written out here, the pass at
// P and 2P agreeing within their stated bounds, and the deterministic bounds
// of the simulated pass never violated on random tiny transformers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>
#include <string>
#include <vector>

#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/nn/vit_reference.hpp"
#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/random.hpp"
#include "vit_support.hpp"
#include "../analysis/src/validate_internal.hpp"  // log_histogram (not installed)

using namespace mpacc;
using ref::mpfr_float;

namespace {

using test::random_vit;

std::vector<double> random_images(std::size_t n, std::size_t pixels, std::uint64_t seed) {
  sim::random_stream rng(seed);
  std::vector<double> X(n * pixels);
  for (auto& x : X) x = rng.uniform() * 3 - 0.5;
  return X;
}

// ---------------------------------------------------------------------------
// An independent forward pass at Q bits: every operation of the textbook
// formulas rounded to Q bits (no bounds; at Q = 1000 its error is far below
// the reference's at P = 200). Values per inner-product layer, laid out as
// the simulated pass's rows.
struct naive_pass {
  mpfr_prec_t Q;
  std::vector<std::vector<mpfr_float>> v, y;

  mpfr_float num(double x) const { return {Q, x}; }
  std::vector<mpfr_float> mat(std::size_t n) const {
    std::vector<mpfr_float> m;
    for (std::size_t i = 0; i < n; ++i) m.emplace_back(Q, 0.0);
    return m;
  }
  // rows of X (n_in each) times W^T + b
  std::vector<mpfr_float> linear(const nn::dense_layer& l, const std::vector<mpfr_float>& X, std::size_t rows) const {
    auto Y = mat(rows * l.n_out);
    mpfr_float t(Q);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t i = 0; i < l.n_out; ++i) {
        mpfr_set_d(Y[r * l.n_out + i].get(), l.b[i], MPFR_RNDN);
        for (std::size_t j = 0; j < l.n_in; ++j) {
          mpfr_mul_d(t.get(), X[r * l.n_in + j].get(), l.W[i * l.n_in + j], MPFR_RNDN);
          mpfr_add(Y[r * l.n_out + i].get(), Y[r * l.n_out + i].get(), t.get(), MPFR_RNDN);
        }
      }
    return Y;
  }
  std::vector<mpfr_float> norm(const std::vector<mpfr_float>& X, std::size_t rows, std::size_t d,
                               const nn::layer_norm& ln, double eps) const {
    auto Y = mat(rows * d);
    mpfr_float mean(Q), var(Q), t(Q);
    for (std::size_t r = 0; r < rows; ++r) {
      mpfr_set_d(mean.get(), 0, MPFR_RNDN);
      for (std::size_t j = 0; j < d; ++j) mpfr_add(mean.get(), mean.get(), X[r * d + j].get(), MPFR_RNDN);
      mpfr_div_ui(mean.get(), mean.get(), static_cast<unsigned long>(d), MPFR_RNDN);
      mpfr_set_d(var.get(), 0, MPFR_RNDN);
      for (std::size_t j = 0; j < d; ++j) {
        mpfr_sub(t.get(), X[r * d + j].get(), mean.get(), MPFR_RNDN);
        mpfr_mul(t.get(), t.get(), t.get(), MPFR_RNDN);
        mpfr_add(var.get(), var.get(), t.get(), MPFR_RNDN);
      }
      mpfr_div_ui(var.get(), var.get(), static_cast<unsigned long>(d), MPFR_RNDN);
      mpfr_add_d(var.get(), var.get(), eps, MPFR_RNDN);
      mpfr_sqrt(var.get(), var.get(), MPFR_RNDN);
      for (std::size_t j = 0; j < d; ++j) {
        auto& o = Y[r * d + j];
        mpfr_sub(o.get(), X[r * d + j].get(), mean.get(), MPFR_RNDN);
        mpfr_div(o.get(), o.get(), var.get(), MPFR_RNDN);
        mpfr_mul_d(o.get(), o.get(), ln.gamma[j], MPFR_RNDN);
        mpfr_add_d(o.get(), o.get(), ln.beta[j], MPFR_RNDN);
      }
    }
    return Y;
  }

  void run(const nn::vit& net, const double* img) {
    const std::size_t T = net.tokens(), NP = net.patches(), d = net.d, H = net.heads, dh = net.d_head();
    const std::size_t ps = net.patch, per = net.image / ps;
    v.clear();
    y.clear();
    std::vector<mpfr_float> patches;
    for (std::size_t p = 0; p < NP; ++p)
      for (std::size_t k = 0; k < ps * ps; ++k)
        patches.push_back(num(img[((p / per) * ps + k / ps) * net.image + (p % per) * ps + k % ps]));
    auto e = linear(net.embed, patches, NP);
    auto x = mat(T * d);
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t j = 0; j < d; ++j) {
        auto& o = x[t * d + j];
        if (t == 0)
          mpfr_set_d(o.get(), net.cls[j], MPFR_RNDN);
        else
          mpfr_set(o.get(), e[(t - 1) * d + j].get(), MPFR_RNDN);
        mpfr_add_d(o.get(), o.get(), net.pos[t * d + j], MPFR_RNDN);
      }
    v.push_back(e);
    y.emplace_back(x.begin() + static_cast<std::ptrdiff_t>(d), x.end());
    mpfr_float t1(Q), sq(Q);
    mpfr_set_ui(sq.get(), static_cast<unsigned long>(dh), MPFR_RNDN);
    mpfr_sqrt(sq.get(), sq.get(), MPFR_RNDN);
    for (const auto& B : net.blocks) {
      const auto h = norm(x, T, d, B.ln1, net.ln_eps);
      const auto q = linear(B.q, h, T), k = linear(B.k, h, T), vv = linear(B.v, h, T);
      for (const auto* m : {&q, &k, &vv}) {
        v.push_back(*m);
        y.push_back(*m);
      }
      auto s = mat(H * T * T), p = mat(H * T * T);
      for (std::size_t hh = 0; hh < H; ++hh)
        for (std::size_t i = 0; i < T; ++i) {
          mpfr_float sum(Q, 0.0);
          for (std::size_t j = 0; j < T; ++j) {
            auto& o = s[(hh * T + i) * T + j];
            for (std::size_t c = 0; c < dh; ++c) {
              mpfr_mul(t1.get(), q[i * d + hh * dh + c].get(), k[j * d + hh * dh + c].get(), MPFR_RNDN);
              mpfr_add(o.get(), o.get(), t1.get(), MPFR_RNDN);
            }
            auto& pe = p[(hh * T + i) * T + j];
            mpfr_div(pe.get(), o.get(), sq.get(), MPFR_RNDN);
            mpfr_exp(pe.get(), pe.get(), MPFR_RNDN);  // no shift: the logits are small
            mpfr_add(sum.get(), sum.get(), pe.get(), MPFR_RNDN);
          }
          for (std::size_t j = 0; j < T; ++j)
            mpfr_div(p[(hh * T + i) * T + j].get(), p[(hh * T + i) * T + j].get(), sum.get(), MPFR_RNDN);
        }
      v.push_back(s);
      y.push_back(p);
      auto m = mat(T * d);
      for (std::size_t i = 0; i < T; ++i)
        for (std::size_t col = 0; col < d; ++col)
          for (std::size_t j = 0; j < T; ++j) {
            mpfr_mul(t1.get(), p[((col / dh) * T + i) * T + j].get(), vv[j * d + col].get(), MPFR_RNDN);
            mpfr_add(m[i * d + col].get(), m[i * d + col].get(), t1.get(), MPFR_RNDN);
          }
      v.push_back(m);
      y.push_back(m);
      const auto pr = linear(B.proj, m, T);
      for (std::size_t t = 0; t < T * d; ++t) mpfr_add(x[t].get(), x[t].get(), pr[t].get(), MPFR_RNDN);
      v.push_back(pr);
      y.push_back(x);
      const auto h2 = norm(x, T, d, B.ln2, net.ln_eps);
      const auto f1 = linear(B.fc1, h2, T);
      auto g = mat(f1.size());
      for (std::size_t t = 0; t < f1.size(); ++t) {  // x/2 (1 + erf(x / sqrt 2))
        mpfr_sqrt_ui(t1.get(), 2, MPFR_RNDN);
        mpfr_div(t1.get(), f1[t].get(), t1.get(), MPFR_RNDN);
        mpfr_erf(t1.get(), t1.get(), MPFR_RNDN);
        mpfr_add_ui(t1.get(), t1.get(), 1, MPFR_RNDN);
        mpfr_mul(g[t].get(), t1.get(), f1[t].get(), MPFR_RNDN);
        mpfr_div_2ui(g[t].get(), g[t].get(), 1, MPFR_RNDN);
      }
      v.push_back(f1);
      y.push_back(g);
      const auto f2 = linear(B.fc2, g, T);
      for (std::size_t t = 0; t < T * d; ++t) mpfr_add(x[t].get(), x[t].get(), f2[t].get(), MPFR_RNDN);
      v.push_back(f2);
      y.push_back(x);
    }
    const std::vector<mpfr_float> c(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(d));
    const auto logits = linear(net.head, norm(c, 1, d, net.ln_f, net.ln_eps), 1);
    v.push_back(logits);
    y.push_back(logits);
  }
};

// |a - b| as a binary64 rounded up
double dist_up(const mpfr_float& a, const mpfr_float& b) {
  mpfr_float t(std::max(a.precision(), b.precision()) + 8);
  mpfr_sub(t.get(), a.get(), b.get(), MPFR_RNDA);
  return std::fabs(mpfr_get_d(t.get(), MPFR_RNDA));
}

}  // namespace

TEST_CASE("vit reference: against an independent 1000-bit forward pass", "[vit-reference]") {
  // a tiny block (d 4, 2 heads of 2, MLP 3) where every nonlinearity is evaluated at
  // 1000 bits, and the small vit of the other tests; two weight magnitudes
  int checked = 0;
  double worst = 0, worst_rel_bound = 0;
  std::vector<double> rel_bounds;
  for (const auto& [net, what] :
       {std::pair{random_vit(11, 1, 0.5, 4, 2, 3, 3), "d4"}, std::pair{random_vit(12, 2, 0.5), "d8"},
        std::pair{random_vit(13, 2, 1.5), "d8 large"}}) {
    INFO(what);
    const auto X = random_images(2, net.inputs(), 99);
    for (std::size_t s = 0; s < 2; ++s) {
      nn::reference_options opt;
      opt.precision = 200;
      const auto r = nn::reference_forward_sample(net, {X.data() + s * net.inputs(), net.inputs()}, opt);
      naive_pass nv{1000, {}, {}};
      nv.run(net, X.data() + s * net.inputs());
      REQUIRE(r.v.size() == net.product_layers());
      REQUIRE(nv.v.size() == net.product_layers());
      for (std::size_t k = 0; k < net.product_layers(); ++k) {
        REQUIRE(r.v[k].size() == nv.v[k].size());
        REQUIRE(r.y[k].size() == nv.y[k].size());
        for (int which = 0; which < 2; ++which) {
          const auto& a = which ? r.y[k] : r.v[k];
          const auto& b = which ? nv.y[k] : nv.v[k];
          const auto& e = which ? r.y_bound[k] : r.v_bound[k];
          for (std::size_t i = 0; i < a.size(); ++i) {
            const double err = dist_up(a[i], b[i]);
            const double mag = std::fabs(a[i].to_double());
            // the naive pass's own error: far below 2^-900 relative to the values
            INFO("layer " << k << (which ? " y " : " v ") << i << " err " << err << " bound " << e[i]);
            CHECK(err <= e[i] + 0x1p-900 * (1 + mag));
            CHECK(e[i] <= 0x1p-100 * std::max(1.0, mag));  // measured: up to 2^-110 (weights of 1.5)
            worst = std::max(worst, err / e[i]);
            if (mag > 0) {
              worst_rel_bound = std::max(worst_rel_bound, e[i] / mag);
              rel_bounds.push_back(e[i] / mag);
            }
            ++checked;
          }
        }
      }
    }
  }
  std::sort(rel_bounds.begin(), rel_bounds.end());
  const double median = rel_bounds.empty() ? 0.0 : rel_bounds[rel_bounds.size() / 2];
  std::printf(
      "vit reference vs 1000-bit pass: %d values, max error/bound %.3g, bound/|value| median 2^%.1f, max 2^%.1f\n",
      checked, worst, std::log2(median), std::log2(worst_rel_bound));
}

TEST_CASE("vit reference: P and 2P agree within their bounds", "[vit-reference]") {
  const auto net = random_vit(21, 2, 1.0);
  const auto X = random_images(3, net.inputs(), 7);
  double worst = 0;
  for (std::size_t s = 0; s < 3; ++s) {
    const std::span<const double> x{X.data() + s * net.inputs(), net.inputs()};
    nn::reference_options o1, o2;
    o1.precision = 160;
    o2.precision = 320;
    const auto a = nn::reference_forward_sample(net, x, o1);
    const auto b = nn::reference_forward_sample(net, x, o2);
    for (std::size_t k = 0; k < net.product_layers(); ++k)
      for (std::size_t i = 0; i < a.y[k].size(); ++i) {
        const double d = dist_up(a.y[k][i], b.y[k][i]);
        CHECK(d <= a.y_bound[k][i] + b.y_bound[k][i]);
        CHECK(b.y_bound[k][i] <= 0x1p-150 * a.y_bound[k][i] + 0x1p-1000);
        worst = std::max(worst, d / a.y_bound[k][i]);
      }
  }
  std::printf("vit reference P = 160 vs 320: max |difference| / bound(160) = %.3g\n", worst);
  // the batch form: double-doubles of the same values
  nn::reference_options o;
  o.threads = 2;
  const auto fr = nn::reference_forward(net, {X.data(), 3, net.inputs()}, o);
  const auto one = nn::reference_forward_sample(net, {X.data() + 2 * net.inputs(), net.inputs()}, o);
  for (std::size_t k = 0; k < net.product_layers(); ++k) {
    REQUIRE(fr.layers[k].n == one.y[k].size());
    for (std::size_t i = 0; i < fr.layers[k].n; ++i) {
      CHECK(fr.layers[k].y_hi[2 * fr.layers[k].n + i] == one.y[k][i].to_double());
      CHECK(fr.layers[k].y_bound[2 * fr.layers[k].n + i] == one.y_bound[k][i]);
    }
  }
  nn::reference_options bad;
  bad.exact = true;
  CHECK_THROWS_WITH(nn::reference_forward(net, {X.data(), 1, net.inputs()}, bad), Catch::Contains("no exact tier"));
  CHECK_THROWS_WITH(nn::reference_forward(net, {X.data(), 1, 10}, o), Catch::Contains("the inputs have 10 values"));
}

// ---------------------------------------------------------------------------
// validate() on random tiny transformers

namespace {

io::dataset as_dataset(const std::vector<double>& X, std::size_t rows, std::size_t cols) {
  io::dataset d;
  d.name = "random";
  d.rows = rows;
  d.cols = cols;
  d.x = X;
  d.y.assign(rows, 0);
  return d;
}

struct run_summary {
  std::size_t components = 0, uncovered = 0, violations = 0, local = 0;
  double max_ratio_y = 0, q50_ratio_y = 0;
};

run_summary validate_once(const nn::vit& net, const std::vector<double>& X, std::size_t rows,
                          const nn::precision_config& p, bool exact_inputs = false) {
  analysis::validate_options opt;
  opt.threads = 2;
  opt.csv_samples = 1;
  opt.lambdas = {3};
  opt.ref_inputs = exact_inputs ? analysis::reference_inputs::exact : analysis::reference_inputs::stored;
  const auto data = as_dataset(X, rows, net.inputs());
  const auto ref = analysis::compute_reference(net, data, opt, p);
  const auto r = analysis::validate(net, ref, p, opt);
  run_summary s;
  s.components = r.total().components;
  s.uncovered = r.total().uncovered;
  s.violations = r.violations();
  s.local = r.total().local_checked;
  s.max_ratio_y = r.total().err_over_bound_y.max;
  s.q50_ratio_y = r.total().err_over_bound_y.q50;
  if (r.violations()) {
    for (const auto& l : r.layers)
      if (l.layer && (l.violations_v || l.violations_y || l.local_violations))
        UNSCOPED_INFO("layer " << r.layer_kinds[l.layer - 1] << ": " << l.violations_v << " v, " << l.violations_y
                               << " y, " << l.local_violations << " local, max ratio y " << l.err_over_bound_y.max);
  }
  return s;
}

}  // namespace

TEST_CASE("vit validate: the deterministic bound holds on random tiny transformers", "[vit-validate]") {
  const std::vector<std::string> configs = {
      "acc=e4m3-ieee;order=recursive;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16",
      "acc=binary16;order=pairwise;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16",
      "acc=bfloat16;order=blocked:2;weights=none;biases=none;act=bfloat16",
      "acc=bfloat16;order=blocked:3;rounding=stochastic;seed=5;weights=e4m3-ieee;act=bfloat16;act_rounding=stochastic",
      "acc=e4m3-ieee;order=pairwise;saturate=on;product=binary16;weights=e4m3-ieee;act=e4m3-ieee;act_saturate=on",
      "acc=binary16;order=recursive;via=bfloat16;inputs=bfloat16;act=binary32",
      "acc=binary32;order=blocked:4;act=binary32;weights=none;biases=none",
  };
  std::size_t total = 0, uncovered = 0, violations = 0, local = 0;
  double worst = 0;
  std::uint64_t seed = 100;
  for (const auto& text : configs)
    for (double mag : {0.3, 1.0})
      for (std::size_t blocks : {1, 2}) {
        INFO(text << " mag " << mag << " blocks " << blocks);
        const auto net = random_vit(++seed, blocks, mag);
        const auto X = random_images(3, net.inputs(), seed + 1000);
        const auto p = nn::parse_precision(text);
        const auto s = validate_once(net, X, 3, p, seed % 2 == 0);
        CHECK(s.violations == 0);
        CHECK(s.components > 0);
        total += s.components;
        uncovered += s.uncovered;
        violations += s.violations;
        local += s.local;
        worst = std::max(worst, s.max_ratio_y);
      }
  // per-layer accumulators with a component map on scores and mix
  {
    const auto net = random_vit(7, 2, 0.6);
    const auto X = random_images(2, net.inputs(), 8);
    auto p = nn::parse_precision("acc=binary16;order=recursive;act=binary16");
    p.acc.assign(net.product_layers(), sim::formats::binary16);
    p.acc[4] = sim::formats::bfloat16;
    p.maps.assign(net.product_layers(), {});
    p.maps[4] = {{sim::formats::e4m3_ieee, sim::formats::binary16}, {0, 1, 0, 1, 1}};
    p.maps[5] = {{sim::formats::bfloat16, sim::formats::binary32}, {0, 1, 1, 0, 0, 1, 1, 0}};
    const auto s = validate_once(net, X, 2, p);
    CHECK(s.violations == 0);
    total += s.components;
    violations += s.violations;
    worst = std::max(worst, s.max_ratio_y);
  }
  // overflow and saturation: large weights in e4m3-ieee (largest value 240) make components
  // uncovered (never violations); a component downstream of one is uncovered too
  for (const auto* text : {"acc=e4m3-ieee;order=recursive;weights=none;biases=none;act=binary16",
                           "acc=binary16;order=recursive;saturate=on;weights=none;biases=none;act=e4m3-ieee;"
                           "act_saturate=on"}) {
    INFO(text);
    const auto net = random_vit(31, 2, 6.0);
    const auto X = random_images(2, net.inputs(), 32);
    const auto s = validate_once(net, X, 2, nn::parse_precision(text));
    CHECK(s.violations == 0);
    CHECK(s.uncovered > 0);
    std::printf("vit validate, overflow (%s): %zu of %zu components uncovered, %zu violations\n", text, s.uncovered,
                s.components, s.violations);
  }
  std::printf(
      "vit validate: %zu components, %zu uncovered, %zu violations, %zu inner products checked locally, "
      "max error/bound of y %.3g\n",
      total, uncovered, violations, local, worst);
  CHECK(uncovered < total / 4);
}

TEST_CASE("vit validate: counts on a tiny network", "[vit-validate]") {
  const auto net = random_vit(3, 1, 0.5);
  const auto X = random_images(4, net.inputs(), 4);
  const auto p = nn::parse_precision("acc=binary16;order=recursive;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16");
  analysis::validate_options opt;
  opt.threads = 1;
  opt.csv_samples = 2;
  const auto data = as_dataset(X, 4, net.inputs());
  const auto ref = analysis::compute_reference(net, data, opt, p);
  const auto r = analysis::validate(net, ref, p, opt);
  // T = 5 tokens, d = 8, 2 heads, MLP 6, 4 classes: per sample
  // embed 4*8, q/k/v 5*8 each, scores 2*5*5, mix 5*8, proj 5*8, fc1 5*6, fc2 5*8, head 4
  const std::vector<std::size_t> per = {32, 40, 40, 40, 50, 40, 40, 30, 40, 4};
  REQUIRE(r.layers.size() == per.size() + 1);
  std::size_t all = 0;
  for (std::size_t k = 0; k < per.size(); ++k) {
    CHECK(r.layers[k].components == 4 * per[k]);
    CHECK(r.layers[k].uncovered == 0);
    CHECK(r.layers[k].violations_v + r.layers[k].violations_y == 0);
    // every inner product checked on its own operands: all but none
    CHECK(r.layers[k].local_checked == 4 * per[k]);
    CHECK(r.layers[k].local_violations == 0);
    all += 4 * per[k];
  }
  CHECK(r.total().components == all);
  CHECK(r.layer_kinds[4] == "block1.scores");
  CHECK(r.csv_rows.size() == 2);
  CHECK(r.csv_rows[0].size() == all / 4);
  CHECK(r.violations() == 0);
  // a configuration whose storage differs from the reference's is refused
  auto q = p;
  q.weights = sim::formats::binary16;
  CHECK_THROWS_WITH(analysis::validate(net, ref, q, opt), Catch::Contains("stored differently"));
  // the elementwise parameters are stored in the activation format: a reference computed with another is refused
  auto a = p;
  a.act = sim::formats::bfloat16;
  CHECK_THROWS_WITH(analysis::validate(net, ref, a, opt), Catch::Contains("elementwise parameters are stored in"));
}

// ---------------------------------------------------------------------------
// validate(vit, data, configs, opt) in chunks: bounded memory, the results of one run

TEST_CASE("log_histogram: exact counts, quantiles within 2^-11 of the exact ones", "[vit-validate]") {
  using analysis::validate_detail::log_histogram;
  sim::random_stream rng(77);
  std::vector<double> all;
  log_histogram whole, a, b;
  // zeros, subnormals, a wide range of binades, repeated values, +inf
  for (int i = 0; i < 20000; ++i) {
    double x = 0;
    const double r = rng.uniform();
    if (r < 0.05)
      x = 0;
    else if (r < 0.07)
      x = 0x1p-1070 * std::floor(rng.uniform() * 8);
    else if (r < 0.1)
      x = 0.75;
    else if (r < 0.1005)
      x = std::numeric_limits<double>::infinity();
    else
      x = std::ldexp(1 + rng.uniform(), static_cast<int>(rng.uniform() * 120) - 100);
    all.push_back(x);
    whole.add(x);
    (i % 3 == 0 ? a : b).add(x);
  }
  a.merge(b);
  REQUIRE(whole.size() == all.size());
  REQUIRE(a.size() == all.size());
  auto sorted = all;
  std::sort(sorted.begin(), sorted.end());
  for (double q : {0.0, 0.01, 0.05, 0.06, 0.3, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const double exact = sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))];
    const double h = whole.quantile(q);
    INFO("q " << q << " exact " << exact << " sketch " << h);
    CHECK(a.quantile(q) == h);  // merging pieces gives the same counts
    if (exact == 0 || std::isinf(exact))
      CHECK(h == exact);
    else if (exact >= 0x1p-1022)
      CHECK(std::fabs(h - exact) <= 0x1p-11 * exact);
    else
      CHECK(std::fabs(h - exact) <= 0x1p-1074 * 0x1p42);  // subnormal: within the bucket
  }
  CHECK(whole.max() == sorted.back());
  // the largest finite value and the smallest positive one are exact
  log_histogram f;
  for (double x : {3.0, 3.001, 3.002, 1e-300}) f.add(x);
  CHECK(f.quantile(1) == 3.002);
  CHECK(f.quantile(0) == 1e-300);
}

namespace {

void same_quantiles(const analysis::quantiles& a, const analysis::quantiles& b) {
  CHECK(a.n == b.n);
  CHECK(a.q50 == b.q50);
  CHECK(a.q90 == b.q90);
  CHECK(a.q99 == b.q99);
  CHECK(a.max == b.max);
}

// the sketch (chunked) quantiles against the exact ones (all values held)
void near_quantiles(const analysis::quantiles& sketch, const analysis::quantiles& exact) {
  CHECK(sketch.n == exact.n);
  CHECK(sketch.max == exact.max);
  for (auto [s, e] : {std::pair{sketch.q50, exact.q50}, {sketch.q90, exact.q90}, {sketch.q99, exact.q99}}) {
    INFO("sketch " << s << " exact " << e);
    if (e == 0 || std::isinf(e))
      CHECK(s == e);
    else
      CHECK(std::fabs(s - e) <= 0x1p-11 * e);
  }
}

void same_counts(const analysis::layer_summary& a, const analysis::layer_summary& b) {
  CHECK(a.layer == b.layer);
  CHECK(a.components == b.components);
  CHECK(a.uncovered == b.uncovered);
  CHECK(a.uncovered_by_cause == b.uncovered_by_cause);
  CHECK(a.violations_v == b.violations_v);
  CHECK(a.violations_y == b.violations_y);
  CHECK(a.local_checked == b.local_checked);
  CHECK(a.local_violations == b.local_violations);
  CHECK(a.local_vacuous == b.local_vacuous);
  CHECK(a.prob_violations_v == b.prob_violations_v);
  CHECK(a.prob_violations_y == b.prob_violations_y);
  CHECK(a.prob_ratio_max == b.prob_ratio_max);
  CHECK(a.zero_error_v == b.zero_error_v);
  CHECK(a.zero_error_y == b.zero_error_y);
  CHECK(a.act_dominated == b.act_dominated);
  CHECK(a.kappa_dot_max == b.kappa_dot_max);
  CHECK(a.spearman_n == b.spearman_n);
  REQUIRE(a.local.size() == b.local.size());
  for (std::size_t q = 0; q < a.local.size(); ++q) {
    CHECK(a.local[q].violations == b.local[q].violations);
    CHECK(a.local[q].vacuous == b.local[q].vacuous);
  }
}

}  // namespace

TEST_CASE("vit validate in chunks: the results of one run whatever the chunk size", "[vit-validate]") {
  const std::vector<std::string> texts = {
      // stochastic accumulation and activations: the words depend on the sample's index
      "acc=bfloat16;order=blocked:3;rounding=stochastic;seed=5;weights=e4m3-ieee;biases=e4m3-ieee;act=bfloat16;"
      "act_rounding=stochastic",
      "acc=e4m3-ieee;order=blocked:2;saturate=on;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16",
      "acc=binary16;order=recursive;weights=none;biases=none;act=binary16",
  };
  std::vector<nn::precision_config> configs;
  configs.reserve(texts.size());
  for (const auto& t : texts) configs.push_back(nn::parse_precision(t));
  for (double mag : {0.5, 4.0}) {  // 4.0: overflow in e4m3-ieee, some components uncovered
    INFO("mag " << mag);
    const auto net = random_vit(91, 2, mag);
    const std::size_t rows = 7;
    const auto X = random_images(rows, net.inputs(), 92);
    const auto data = as_dataset(X, rows, net.inputs());
    analysis::validate_options opt;
    opt.threads = 2;
    opt.csv_samples = 5;
    opt.lambdas = {2, 4};
    std::vector<std::vector<analysis::validation_result>> runs;
    std::size_t calls = 0;
    for (std::size_t chunk : {0, 1, 3}) {
      opt.chunk = chunk;
      opt.progress = [&](std::size_t done, std::size_t total) {
        ++calls;
        CHECK(done <= total);
        CHECK(total == rows);
      };
      runs.push_back(analysis::validate(net, data, configs, opt));
    }
    CHECK(calls == 1 + 7 + 3);
    for (std::size_t c = 0; c < configs.size(); ++c) {
      INFO(texts[c]);
      // the exact form (every value held) on the same configuration
      analysis::validate_options eo = opt;
      eo.chunk = 0;
      const auto ref = analysis::compute_reference(net, data, eo, configs[c]);
      const auto exact = analysis::validate(net, ref, configs[c], eo);
      const auto& one = runs[0][c];
      if (mag > 1 && c == 1) CHECK(one.total().uncovered > 0);
      CHECK(one.violations() == 0);
      REQUIRE(one.layers.size() == exact.layers.size());
      for (std::size_t l = 0; l < one.layers.size(); ++l) {
        INFO("layer " << l);
        same_counts(one.layers[l], exact.layers[l]);
        near_quantiles(one.layers[l].err_over_bound_v, exact.layers[l].err_over_bound_v);
        near_quantiles(one.layers[l].err_over_bound_y, exact.layers[l].err_over_bound_y);
        near_quantiles(one.layers[l].bound_over_exact_y, exact.layers[l].bound_over_exact_y);
        near_quantiles(one.layers[l].estimate_over_error_y, exact.layers[l].estimate_over_error_y);
        // fewer pairs than the sample's size: all of them, in another order
        CHECK(std::fabs(one.layers[l].spearman - exact.layers[l].spearman) <= 1e-12);
        for (std::size_t r = 1; r < runs.size(); ++r) {
          const auto& a = runs[r][c].layers[l];
          const auto& b = one.layers[l];
          same_counts(a, b);
          same_quantiles(a.err_over_bound_v, b.err_over_bound_v);
          same_quantiles(a.err_over_bound_y, b.err_over_bound_y);
          same_quantiles(a.bound_over_exact_v, b.bound_over_exact_v);
          same_quantiles(a.bound_over_exact_y, b.bound_over_exact_y);
          same_quantiles(a.estimate_over_error_v, b.estimate_over_error_v);
          same_quantiles(a.estimate_over_error_y, b.estimate_over_error_y);
          CHECK(a.spearman == b.spearman);
          CHECK(a.kappa_dot_median == b.kappa_dot_median);
        }
      }
      for (const auto& run : runs) {
        const auto& a = run[c];
        CHECK(a.inputs_stored == exact.inputs_stored);
        CHECK(a.inputs_inexact == exact.inputs_inexact);
        REQUIRE(a.csv_rows.size() == exact.csv_rows.size());
        for (std::size_t s = 0; s < a.csv_rows.size(); ++s) {
          REQUIRE(a.csv_rows[s].size() == exact.csv_rows[s].size());
          std::size_t diff = 0;
          for (std::size_t i = 0; i < a.csv_rows[s].size(); ++i) {
            const auto &x = a.csv_rows[s][i], &y = exact.csv_rows[s][i];
            const bool same = (x.v_sim == y.v_sim || (std::isnan(x.v_sim) && std::isnan(y.v_sim))) &&
                              (x.y_sim == y.y_sim || (std::isnan(x.y_sim) && std::isnan(y.y_sim))) &&
                              (x.bound_y == y.bound_y || (std::isnan(x.bound_y) && std::isnan(y.bound_y))) &&
                              x.flags == y.flags && x.flags_act == y.flags_act && x.cause == y.cause;
            diff += same ? 0 : 1;
          }
          CHECK(diff == 0);
        }
      }
    }
  }
}
