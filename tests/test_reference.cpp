// SPDX-License-Identifier: MIT
// The reference engine: exact inner products (against GMP rationals), P and
// 2P passes agreeing within their stated bounds, MPFR activations against 4P,
// exact zeros, cancellation, saturation, and the binary64 tier within its
// bound of the MPFR tier.
#include <catch2/catch.hpp>
#include <gmp.h>

#include <cmath>

#include "mpacc/nn/reference.hpp"
#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/long_accumulator.hpp"
#include "support.hpp"

using namespace mpacc;

namespace {

// exact sum_j w_j x_j + b as a rational
void exact_q(mpq_t q, const std::vector<double>& w, const std::vector<double>& x, double b) {
  mpq_t t, u;
  mpq_init(t);
  mpq_init(u);
  mpq_set_d(q, b);
  for (std::size_t j = 0; j < w.size(); ++j) {
    mpq_set_d(t, w[j]);
    mpq_set_d(u, x[j]);
    mpq_mul(t, t, u);
    mpq_add(q, q, t);
  }
  mpq_clear(t);
  mpq_clear(u);
}

double wide_random(sim::random_stream& rng, int lo, int hi) {
  const double m = 1.0 + static_cast<double>(rng() >> 12) * 0x1p-52;
  const int e = lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
  return std::ldexp((rng() & 1) ? -m : m, e);
}

nn::mlp random_net(const std::vector<std::size_t>& sizes, sim::activation_fn act, std::uint64_t seed,
                   double scale = 1.0) {
  sim::random_stream rng(seed);
  auto net = nn::make_mlp(sizes, act, act);
  for (auto& l : net.layers) {
    const double s = scale / std::sqrt(static_cast<double>(l.n_in));
    for (auto& w : l.W) w = (rng.uniform() * 2 - 1) * s * 2;
    for (auto& b : l.b) b = (rng.uniform() * 2 - 1) * 0.1;
  }
  return net;
}

// |a - b| where a, b are MPFR values, as an upward-rounded double
double diff_up(const ref::mpfr_float& a, const ref::mpfr_float& b) {
  ref::mpfr_float d(std::max(a.precision(), b.precision()) + 10);
  mpfr_sub(d.get(), a.get(), b.get(), MPFR_RNDA);
  return std::fabs(mpfr_get_d(d.get(), MPFR_RNDA));
}

}  // namespace

TEST_CASE("long accumulator sums exactly (GMP rationals)", "[ref][reference]") {
  sim::random_stream rng(11);
  for (int c = 0; c < 300; ++c) {
    const std::size_t n = 1 + rng() % 60;
    std::vector<double> w(n), x(n);
    for (std::size_t j = 0; j < n; ++j) {
      w[j] = wide_random(rng, c % 3 == 0 ? -400 : -30, c % 3 == 0 ? 400 : 30);
      x[j] = wide_random(rng, -30, 30);
    }
    if (c % 4 == 1)  // exact cancellation to a tiny remainder
      for (std::size_t j = 0; j + 1 < n; j += 2) {
        w[j + 1] = -w[j];
        x[j + 1] = x[j];
      }
    const double b = c % 5 == 0 ? 0.0 : wide_random(rng, -20, 5);
    ref::long_accumulator acc;
    bool ok = true;
    for (std::size_t j = 0; j < n; ++j) ok = ok && acc.add_product(w[j], x[j]);
    acc.add(b);
    REQUIRE(ok);
    ref::mpfr_float got(2);
    acc.exact_to(got);
    mpq_t q, g;
    mpq_init(q);
    mpq_init(g);
    exact_q(q, w, x, b);
    mpfr_get_q(g, got.get());
    CHECK(mpq_equal(q, g) != 0);
    // and the P-bit rounding is MPFR's rounding of the exact value
    ref::mpfr_float r(113), e(113);
    acc.round_to(r);
    mpfr_set_q(e.get(), q, MPFR_RNDN);
    CHECK(mpfr_equal_p(r.get(), e.get()));
    mpq_clear(q);
    mpq_clear(g);
  }
}

TEST_CASE("exact pass of a ReLU network equals rational arithmetic", "[ref][reference]") {
  auto net = random_net({12, 9, 7, 4}, {sim::activation::relu}, 3);
  net.layers[1].act = {sim::activation::leaky_relu, 0.01};
  net.layers.back().act = {sim::activation::identity};
  sim::random_stream rng(4);
  std::vector<double> x(12);
  for (auto& v : x) v = wide_random(rng, -10, 2);
  const auto r = nn::reference_forward_sample(net, x, {.exact = true});
  // rational forward pass
  std::vector<mpq_t> in(12);
  for (std::size_t j = 0; j < 12; ++j) {
    mpq_init(in[j]);
    mpq_set_d(in[j], x[j]);
  }
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& L = net.layers[k];
    std::vector<mpq_t> out(L.n_out);
    for (std::size_t i = 0; i < L.n_out; ++i) {
      mpq_init(out[i]);
      mpq_set_d(out[i], L.b[i]);
      mpq_t t;
      mpq_init(t);
      for (std::size_t j = 0; j < L.n_in; ++j) {
        mpq_set_d(t, L.row(i)[j]);
        mpq_mul(t, t, in[j]);
        mpq_add(out[i], out[i], t);
      }
      mpq_t got;
      mpq_init(got);
      mpfr_get_q(got, r.v[k][i].get());
      CHECK(mpq_equal(got, out[i]) != 0);
      if (mpq_sgn(out[i]) <= 0) {
        if (L.act.kind == sim::activation::relu) mpq_set_ui(out[i], 0, 1);
        if (L.act.kind == sim::activation::leaky_relu) {
          mpq_set_d(t, L.act.slope);
          mpq_mul(out[i], out[i], t);
        }
      }
      mpfr_get_q(got, r.y[k][i].get());
      CHECK(mpq_equal(got, out[i]) != 0);
      CHECK(r.v_bound[k][i] == 0);
      CHECK(r.y_bound[k][i] == 0);
      mpq_clear(got);
      mpq_clear(t);
    }
    for (auto& q : in) mpq_clear(q);
    in.swap(out);
  }
  for (auto& q : in) mpq_clear(q);
  CHECK_THROWS_WITH(nn::reference_forward_sample(random_net({3, 2}, {sim::activation::tanh}, 1),
                                                 std::vector<double>{1, 2, 3}, {.exact = true}),
                    Catch::Contains("not piecewise linear"));
}

TEST_CASE("P and 2P agree within the stated bounds, every activation", "[ref][reference]") {
  for (auto a : sim::all_activations) {
    auto net = random_net({20, 16, 12, 5}, {a, 0.01}, 7 + static_cast<std::uint64_t>(a), 3.0);
    sim::random_stream rng(9);
    std::vector<double> x(20);
    for (auto& v : x) v = (rng.uniform() * 2 - 1) * 4;
    const auto r1 = nn::reference_forward_sample(net, x, {.precision = 113});
    const auto r2 = nn::reference_forward_sample(net, x, {.precision = 226});
    std::size_t bad = 0;
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      for (std::size_t i = 0; i < net.layers[k].n_out; ++i) {
        if (diff_up(r1.v[k][i], r2.v[k][i]) > r1.v_bound[k][i] + r2.v_bound[k][i]) ++bad;
        if (diff_up(r1.y[k][i], r2.y[k][i]) > r1.y_bound[k][i] + r2.y_bound[k][i]) ++bad;
        CHECK(r1.y_bound[k][i] < 1e-25);  // the bound is meaningful, not trivially large
      }
    INFO(sim::to_string(a));
    CHECK(bad == 0);
  }
}

TEST_CASE("activations against MPFR at 4P, saturation and extreme arguments", "[ref][reference]") {
  const mpfr_prec_t P = 100;
  sim::random_stream rng(5);
  std::vector<double> vs = {0.0, -0.0, 1e-300, -1e-300, 50, -50, 800, -800, 1e5, -1e5, 3.5, -38};
  for (int i = 0; i < 200; ++i) vs.push_back(wide_random(rng, -20, 6));
  for (auto a : sim::all_activations) {
    const sim::activation_fn f{a, 0.01};
    for (double v : vs) {
      ref::mpfr_float vin(P, v), y(P), y4(4 * P);
      ref::activate(y, vin, f);
      ref::activate(y4, vin, f);
      INFO(sim::to_string(a) << " v=" << v);
      REQUIRE(mpfr_number_p(y.get()));
      // bounds 2^-P |y| factor, in MPFR (they can lie below binary64's range)
      ref::mpfr_float b1(64), b4(64), d(8 * P);
      mpfr_abs(b1.get(), y.get(), MPFR_RNDU);
      mpfr_mul_2si(b1.get(), b1.get(), -static_cast<long>(P), MPFR_RNDU);
      mpfr_mul_d(b1.get(), b1.get(), ref::activation_rounding_factor(f), MPFR_RNDU);
      mpfr_abs(b4.get(), y4.get(), MPFR_RNDU);
      mpfr_mul_2si(b4.get(), b4.get(), -static_cast<long>(4 * P), MPFR_RNDU);
      mpfr_mul_d(b4.get(), b4.get(), ref::activation_rounding_factor(f), MPFR_RNDU);
      mpfr_add(b1.get(), b1.get(), b4.get(), MPFR_RNDU);
      mpfr_sub(d.get(), y.get(), y4.get(), MPFR_RNDA);
      mpfr_abs(d.get(), d.get(), MPFR_RNDA);
      CHECK(mpfr_lessequal_p(d.get(), b1.get()));
    }
  }
  // saturating values are the expected limits
  ref::mpfr_float v(P, 800.0), y(P), ywide(1300);
  ref::activate(y, v, {sim::activation::sigmoid});
  CHECK(mpfr_cmp_ui(y.get(), 1) == 0);  // 1 - e^-800 rounds to 1 at 100 bits
  ref::activate(ywide, v, {sim::activation::sigmoid});
  CHECK(mpfr_cmp_ui(ywide.get(), 1) < 0);  // but not at 1300 bits
  ref::mpfr_float vn(P, -800.0);
  ref::activate(y, vn, {sim::activation::sigmoid});
  CHECK(mpfr_sgn(y.get()) > 0);  // e^-800 > 0, no underflow to zero
  ref::activate(y, vn, {sim::activation::gelu});
  CHECK(mpfr_sgn(y.get()) < 0);  // -800 * Phi(-800): tiny and negative, not 0 or NaN
}

TEST_CASE("exact zeros and huge cancellation", "[ref][reference]") {
  nn::mlp net = nn::make_mlp({3, 2}, {sim::activation::identity});
  net.layers[0].W = {1e300, -1e300, 1e-300, 0.5, -0.25, -0.25};
  net.layers[0].b = {0, 0};
  const std::vector<double> x = {1, 1, 1};
  const auto r = nn::reference_forward_sample(net, x, {.precision = 200});
  CHECK(mpfr_cmp_d(r.v[0][0].get(), 1e-300) == 0);
  CHECK(mpfr_zero_p(r.v[0][1].get()));
  CHECK(r.v_bound[0][1] == 0);
  // values whose parts fall below binary64 take the MPFR path and stay exact
  nn::mlp tiny = nn::make_mlp({2, 2, 1}, {sim::activation::identity});
  tiny.layers[0].W = {0x1p-600, 1, 1, 0};
  tiny.layers[1].W = {0x1p-500, 1};
  const auto t = nn::reference_forward_sample(tiny, std::vector<double>{0x1p-400, 1.0}, {.exact = true});
  ref::mpfr_float want(2000);
  mpfr_set_ui_2exp(want.get(), 1, -1500, MPFR_RNDN);
  mpfr_add_d(want.get(), want.get(), 0x1p-500, MPFR_RNDN);
  mpfr_add_d(want.get(), want.get(), 0x1p-400, MPFR_RNDN);
  CHECK(mpfr_equal_p(t.v[1][0].get(), want.get()));
}

TEST_CASE("binary64 tier within its bound of the MPFR tier", "[ref][reference]") {
  for (auto a : sim::all_activations) {
    auto net = random_net({30, 24, 16, 6}, {a, 0.01}, 21 + static_cast<std::uint64_t>(a), 2.0);
    // an adversarial row: exact cancellation but for a tiny remainder
    auto& L0 = net.layers[0];
    for (std::size_t j = 0; j + 1 < L0.n_in; j += 2) {
      L0.W[j] = 1e8;
      L0.W[j + 1] = -1e8;
    }
    L0.W[L0.n_in - 1] = 1e-8;
    sim::random_stream rng(33);
    std::vector<double> X(8 * 30);
    for (std::size_t s = 0; s < 8; ++s)
      for (std::size_t j = 0; j < 30; ++j)
        X[s * 30 + j] = (j % 2 == 1) ? X[s * 30 + j - 1] : (rng.uniform() * 2 - 1) * 3;
    const sim::matrix_view Xv{X.data(), 8, 30};
    const auto ref = nn::reference_forward(net, Xv, {.precision = 160});
    const auto fast = nn::fast_forward(net, Xv);
    std::size_t bad = 0, checked = 0;
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      for (std::size_t t = 0; t < ref.layers[k].v_hi.size(); ++t) {
        const auto& R = ref.layers[k];
        const auto& F = fast.layers[k];
        const double dv = std::fabs((F.v_hi[t] - R.v_hi[t]) - R.v_lo[t]);
        const double dy = std::fabs((F.y_hi[t] - R.y_hi[t]) - R.y_lo[t]);
        // the double-double difference is itself rounded: allow 2^-52 relative slack
        bad += dv > (F.v_bound[t] + R.v_bound[t]) * (1 + 0x1p-40) + 0x1p-52 * std::fabs(dv);
        bad += dy > (F.y_bound[t] + R.y_bound[t]) * (1 + 0x1p-40) + 0x1p-52 * std::fabs(dy);
        checked += 2;
      }
    INFO(sim::to_string(a));
    CHECK(bad == 0);
    CHECK(checked > 0);
  }
}

TEST_CASE("bad input to the reference engine", "[ref][reference]") {
  auto net = random_net({3, 2}, {sim::activation::relu}, 1);
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, 2}), Catch::Contains("takes 3"));
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, NAN, 2}),
                    Catch::Contains("non-finite"));
  net.layers[0].b.pop_back();
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, 2, 3}), Catch::Contains("layer 1"));
}
