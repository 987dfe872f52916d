// SPDX-License-Identifier: MIT
// The reference engine: exact inner products (against Boost's cpp_rational,
// software rationals independent of the GMP and MPFR the engine uses), P and
// 2P passes agreeing within their stated bounds, MPFR activations against 4P,
// exact zeros, cancellation, saturation, the binary64 tier within its bound of
// the MPFR tier, and the Boost.Multiprecision entry points (ref/multiprecision.hpp).
#include <bit>
#include <catch2/catch.hpp>
#include <gmp.h>

#include <boost/multiprecision/cpp_int.hpp>
#include <cmath>

#include "mpacc/nn/reference.hpp"
#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/long_accumulator.hpp"
#include "mpacc/ref/multiprecision.hpp"
#include "support.hpp"

using namespace mpacc;
using boost::multiprecision::cpp_int;
using boost::multiprecision::cpp_rational;

namespace {

// The exact value of a finite MPFR number as a cpp_rational: its integer
// significand (mpfr_get_z_2exp, exact) moved into a cpp_int byte by byte, times 2^e.
cpp_rational to_rational(mpfr_srcptr v) {
  REQUIRE(mpfr_number_p(v));
  if (mpfr_zero_p(v)) return 0;
  const auto widest = ref::exponent_range_guard::widest();
  mpz_t z;
  mpz_init(z);
  const mpfr_exp_t e = mpfr_get_z_2exp(z, v);
  std::vector<unsigned char> bytes((mpz_sizeinbase(z, 2) + 7) / 8);
  std::size_t count = 0;
  mpz_export(bytes.data(), &count, 1, 1, 1, 0, z);  // |z|, most significant byte first
  cpp_int m;
  import_bits(m, bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(count), 8);
  if (mpz_sgn(z) < 0) m = -m;
  mpz_clear(z);
  cpp_rational r(m);
  if (e >= 0)
    r *= cpp_rational(cpp_int(1) << static_cast<unsigned>(e));
  else
    r /= cpp_rational(cpp_int(1) << static_cast<unsigned>(-e));
  return r;
}
cpp_rational to_rational(const ref::mpfr_float& v) { return to_rational(v.get()); }

// exact sum_j w_j x_j + b (cpp_rational's conversion from a double is exact)
cpp_rational exact_q(const std::vector<double>& w, const std::vector<double>& x, double b) {
  cpp_rational q(b);
  for (std::size_t j = 0; j < w.size(); ++j) q += cpp_rational(w[j]) * cpp_rational(x[j]);
  return q;
}

// r (precision P, finite) is the rounding of q to nearest-even at P bits:
// no P-bit neighbour of r is nearer to q, and on a tie r's last bit is 0
// (mpfr_min_prec(r) < P). Decided in exact rationals.
bool is_nearest_even(mpfr_srcptr r, const cpp_rational& q) {
  const auto widest = ref::exponent_range_guard::widest();
  const mpfr_prec_t P = mpfr_get_prec(r);
  ref::mpfr_float below(P), above(P);
  mpfr_set(below.get(), r, MPFR_RNDN);
  mpfr_set(above.get(), r, MPFR_RNDN);
  mpfr_nextbelow(below.get());
  mpfr_nextabove(above.get());
  const cpp_rational d = abs(q - to_rational(r));
  const cpp_rational db = abs(q - to_rational(below)), da = abs(q - to_rational(above));
  if (d > db || d > da) return false;
  const bool tie = d == db || d == da;
  return !tie || mpfr_zero_p(r) || mpfr_min_prec(r) < P;
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

TEST_CASE("long accumulator sums exactly (cpp_rational)", "[ref][reference]") {
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
    const cpp_rational q = exact_q(w, x, b);
    CHECK(to_rational(got) == q);
    // and the P-bit rounding is the nearest-even rounding of the exact value
    ref::mpfr_float r(113);
    acc.round_to(r);
    CHECK(is_nearest_even(r.get(), q));
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
  std::vector<cpp_rational> in(x.begin(), x.end());
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& L = net.layers[k];
    std::vector<cpp_rational> out(L.n_out);
    for (std::size_t i = 0; i < L.n_out; ++i) {
      out[i] = cpp_rational(L.b[i]);
      for (std::size_t j = 0; j < L.n_in; ++j) out[i] += cpp_rational(L.row(i)[j]) * in[j];
      CHECK(to_rational(r.v[k][i]) == out[i]);
      if (out[i] <= 0) {
        if (L.act.kind == sim::activation::relu) out[i] = 0;
        if (L.act.kind == sim::activation::leaky_relu) out[i] *= cpp_rational(L.act.slope);
      }
      CHECK(to_rational(r.y[k][i]) == out[i]);
      CHECK(r.v_bound[k][i] == 0);
      CHECK(r.y_bound[k][i] == 0);
    }
    in.swap(out);
  }
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

TEST_CASE("binary64 tier: a batch gives the bits of its rows run one by one", "[ref][reference]") {
  // fast_forward runs samples in groups sharing each pass over W: the group
  // (and the tail of a batch that is not a multiple of it) must not change a bit
  for (auto a : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = random_net({37, 29, 11}, {a}, 5 + static_cast<std::uint64_t>(a), 1.5);
    sim::random_stream rng(77);
    const std::size_t rows = 7;
    std::vector<double> X(rows * 37);
    for (auto& x : X) x = (rng.uniform() * 2 - 1) * 4;
    const auto all = nn::fast_forward(net, {X.data(), rows, 37}, 2);
    std::size_t differ = 0, compared = 0;
    for (std::size_t s = 0; s < rows; ++s) {
      const auto one = nn::fast_forward(net, {X.data() + s * 37, 1, 37}, 1);
      for (std::size_t k = 0; k < net.layers.size(); ++k)
        for (std::size_t i = 0; i < one.layers[k].n; ++i) {
          const std::size_t t = s * all.layers[k].n + i;
          const auto& A = all.layers[k];
          const auto& O = one.layers[k];
          differ += std::bit_cast<std::uint64_t>(A.v_hi[t]) != std::bit_cast<std::uint64_t>(O.v_hi[i]);
          differ += std::bit_cast<std::uint64_t>(A.v_bound[t]) != std::bit_cast<std::uint64_t>(O.v_bound[i]);
          differ += std::bit_cast<std::uint64_t>(A.y_hi[t]) != std::bit_cast<std::uint64_t>(O.y_hi[i]);
          differ += std::bit_cast<std::uint64_t>(A.y_bound[t]) != std::bit_cast<std::uint64_t>(O.y_bound[i]);
          compared += 4;
        }
    }
    CHECK(compared == 4 * rows * (29 + 11));
    CHECK(differ == 0);
  }
}

TEST_CASE("bad input to the reference engine", "[ref][reference]") {
  auto net = random_net({3, 2}, {sim::activation::relu}, 1);
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, 2}), Catch::Contains("takes 3"));
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, NAN, 2}), Catch::Contains("non-finite"));
  net.layers[0].b.pop_back();
  CHECK_THROWS_WITH(nn::reference_forward_sample(net, std::vector<double>{1, 2, 3}), Catch::Contains("layer 1"));
}

// --- Boost.Multiprecision entry points (ref/multiprecision.hpp) ---------------

TEST_CASE("Boost numbers: exact conversions, precision in bits, never Boost's default", "[ref][boost]") {
  // a hostile default: 5 decimal digits. Nothing returned may take it.
  const unsigned old_default = ref::boost_float::default_precision();
  ref::boost_float::default_precision(5);
  const auto widest = ref::exponent_range_guard::widest();
  ref::mpfr_float v(200);
  mpfr_const_pi(v.get(), MPFR_RNDN);
  mpfr_mul_2si(v.get(), v.get(), -700, MPFR_RNDN);  // far below binary64's normal range
  const ref::boost_float b = ref::to_boost(v);
  CHECK(ref::precision_bits(b) == 200);
  CHECK(mpfr_equal_p(b.backend().data(), v.get()));
  const ref::mpfr_float back = ref::from_boost(b);
  CHECK(back.precision() == 200);
  CHECK(mpfr_equal_p(back.get(), v.get()));
  const auto bx = ref::make_boost_float(113, 0.1);
  CHECK(ref::precision_bits(bx) == 113);
  CHECK(bx == 0.1);  // exact: 0.1 is a double
  const auto layer = ref::to_boost(std::vector<ref::mpfr_float>{ref::mpfr_float(77, 1.5), v});
  REQUIRE(layer.size() == 2);
  CHECK(ref::precision_bits(layer[0]) == 77);
  CHECK(ref::precision_bits(layer[1]) == 200);
  // fixed precision: Boost counts decimal digits; boost_fixed_bits says the bits
  const auto f = ref::to_boost_fixed<40>(v);
  CHECK(ref::precision_bits(f) == ref::boost_fixed_bits<40>);
  CHECK(ref::precision_bits(ref::boost_fixed<50>()) == ref::boost_fixed_bits<50>);
  ref::mpfr_float want(ref::boost_fixed_bits<40>);
  mpfr_set(want.get(), v.get(), MPFR_RNDN);
  CHECK(mpfr_equal_p(f.backend().data(), want.get()));
  // pinning a Boost expression's result to P bits
  ref::boost_float c = b * 3;
  ref::set_precision_bits(c, 150);
  CHECK(ref::precision_bits(c) == 150);
  ref::boost_float::default_precision(old_default);
}

TEST_CASE("dot_rounded: one nearest-even rounding of the exact sum, at exactly P bits", "[ref][boost]") {
  sim::random_stream rng(41);
  const unsigned old_default = ref::boost_float::default_precision();
  ref::boost_float::default_precision(5);
  for (int c = 0; c < 200; ++c) {
    const std::size_t n = 1 + rng() % 40;
    std::vector<double> w(n), x(n);
    for (std::size_t j = 0; j < n; ++j) {
      w[j] = wide_random(rng, c % 3 == 0 ? -300 : -20, c % 3 == 0 ? 300 : 20);
      x[j] = wide_random(rng, -20, 20);
    }
    if (c % 4 == 1)  // cancellation to a tiny remainder
      for (std::size_t j = 0; j + 1 < n; j += 2) {
        w[j + 1] = -w[j];
        x[j + 1] = x[j];
      }
    if (c % 7 == 3) w[0] = 0x1p-1000, x[0] = 0x1p-60;  // a product below binary64: the MPFR path
    const double b = c % 5 == 0 ? 0.0 : wide_random(rng, -20, 5);
    const cpp_rational q = exact_q(w, x, b);
    for (mpfr_prec_t P : {11, 24, 53, 113, 200}) {
      const ref::boost_float r = ref::dot_rounded(w, x, b, P);
      INFO("case " << c << " P=" << P);
      CHECK(ref::precision_bits(r) == P);
      CHECK(is_nearest_even(r.backend().data(), q));
    }
    const auto rf = ref::dot_rounded_fixed<30>(w, x, b);
    CHECK(ref::precision_bits(rf) == ref::boost_fixed_bits<30>);
    CHECK(is_nearest_even(rf.backend().data(), q));
    // exact value and absolute sum
    const auto e = ref::dot_exact_boost(w, x, b);
    CHECK(to_rational(e.value.backend().data()) == q);
    cpp_rational abs_sum = abs(cpp_rational(b));
    for (std::size_t j = 0; j < n; ++j) abs_sum += abs(cpp_rational(w[j]) * cpp_rational(x[j]));
    CHECK(to_rational(e.abs_sum.backend().data()) == abs_sum);
    // Boost inputs of their own precisions: x_j / 3 at 150 bits, a 90-bit bias
    std::vector<ref::boost_float> xb;
    cpp_rational qb = 0;
    for (std::size_t j = 0; j < n; ++j) {
      ref::boost_float t = ref::make_boost_float(150, x[j]);
      t /= 3;  // Boost arithmetic at t's precision (rounded)
      xb.push_back(t);
      qb += cpp_rational(w[j]) * to_rational(xb.back().backend().data());
    }
    const ref::boost_float bias = ref::make_boost_float(90, b);
    qb += to_rational(bias.backend().data());
    const ref::boost_float rb = ref::dot_rounded(w, xb, bias, 120);
    CHECK(ref::precision_bits(rb) == 120);
    CHECK(is_nearest_even(rb.backend().data(), qb));
  }
  // non-finite inputs follow MPFR's sum; mismatched lengths are refused
  const std::vector<double> w2 = {1, HUGE_VAL}, x2 = {2, 1};
  CHECK(mpfr_inf_p(ref::dot_rounded(w2, x2, 0, 53).backend().data()));
  const std::vector<double> w3 = {0, HUGE_VAL};
  CHECK(mpfr_nan_p(ref::dot_rounded(w3, std::vector<double>{HUGE_VAL, 0}, 0, 53).backend().data()));
  CHECK_THROWS_WITH(ref::dot_rounded(w2, std::vector<double>{1}, 0, 53), Catch::Contains("2 weights but 1"));
  ref::boost_float::default_precision(old_default);
}

TEST_CASE("continuing the reference pass with Boost numbers gives the engine's own values", "[ref][boost]") {
  auto net = random_net({10, 8, 5}, {sim::activation::tanh}, 17);
  sim::random_stream rng(18);
  std::vector<double> x(10);
  for (auto& v : x) v = (rng.uniform() * 2 - 1) * 2;
  const mpfr_prec_t P = 160;
  const auto r = nn::reference_forward_sample(net, x, {.precision = P});
  // layer 2 from layer 1's outputs, with the Boost entry points
  const std::vector<ref::boost_float> y1 = ref::to_boost(r.y[0]);
  const auto& L = net.layers[1];
  for (std::size_t i = 0; i < L.n_out; ++i) {
    const ref::boost_float bias = ref::make_boost_float(53, L.b[i]);
    const ref::boost_float v = ref::dot_rounded({L.row(i), L.n_in}, y1, bias, P);
    INFO("component " << i);
    CHECK(mpfr_equal_p(v.backend().data(), r.v[1][i].get()));
    const ref::boost_float y = ref::activate(v, L.act, P);
    CHECK(ref::precision_bits(y) == P);
    CHECK(mpfr_equal_p(y.backend().data(), r.y[1][i].get()));
    // and the ordinary operators keep going: tanh(v) - y is within the stated bound
    const ref::boost_float err = abs(tanh(v) - y);
    CHECK(err.convert_to<double>() <= r.y_bound[1][i]);
  }
}

TEST_CASE("round_mpfr takes Boost numbers, variable and fixed precision", "[ref][boost]") {
  sim::random_stream rng(23);
  for (int c = 0; c < 2000; ++c) {
    ref::boost_float b = ref::make_boost_float(120, wide_random(rng, -20, 10));
    b /= 7;  // a value that is not a double
    const ref::boost_fixed<25> fx(b);
    for (const auto& f : {sim::formats::binary16, sim::formats::e4m3, sim::formats::bfloat16}) {
      for (auto mode : {sim::rounding::nearest_even, sim::rounding::odd, sim::rounding::upward}) {
        unsigned f1 = 0, f2 = 0, f3 = 0, f4 = 0;
        const double got = ref::round_mpfr(b, f, mode, false, f1);
        const double want = ref::round_mpfr(b.backend().data(), f, mode, false, f2);
        CHECK(test::same(got, want));
        CHECK(f1 == f2);
        const double gotf = ref::round_mpfr(fx, f, mode, false, f3);
        const double wantf = ref::round_mpfr(fx.backend().data(), f, mode, false, f4);
        CHECK(test::same(gotf, wantf));
        CHECK(f3 == f4);
      }
    }
  }
}
