// SPDX-License-Identifier: MIT
// Softmax and layer normalization bounds (analysis/attention_bounds.hpp,
// docs/attention-bounds.md) against MPFR: inputs are perturbed exactly (2300-bit
// sums of binary64 values), softmax and layer normalization evaluated at 320 bits.
// (a) the rigorous perturbation and rounding bounds are never violated; (b) the
// first-order condition numbers are attained by worst-case-sign perturbations and
// never exceeded by random ones, and the perturbation bounds are attained at the
// vertices that should attain them (so none is loose by construction); (c) the
// binary64-then-round computations stay within their rounding bounds in several
// formats and modes; (d) the Jacobian column sums (per-input sensitivities) are attained
// by single-input perturbations. Each case prints its measured tightness (the numbers of the doc).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "mpacc/analysis/attention_bounds.hpp"
#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

using namespace mpacc;
using ref::mpfr_float;
using vec = std::vector<double>;
using mvec = std::vector<mpfr_float>;

namespace {

constexpr mpfr_prec_t P = 320;    // working precision of the exact values
constexpr mpfr_prec_t PX = 2300;  // a binary64 plus a product of two binary64 values, exactly

// x_j + r_j eta_j exactly (r_j eta_j is a product of two doubles: 106 bits)
mvec perturbed(const vec& x, const vec& eta, const vec& r) {
  mvec out;
  out.reserve(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) {
    mpfr_float d(PX, eta[j]);
    mpfr_mul_d(d.get(), d.get(), r[j], MPFR_RNDN);
    mpfr_float v(PX, x[j]);
    mpfr_add(v.get(), v.get(), d.get(), MPFR_RNDN);
    out.push_back(std::move(v));
  }
  return out;
}

mvec exact(const vec& x) {
  mvec out;
  out.reserve(x.size());
  for (const double v : x) out.emplace_back(PX, v);
  return out;
}

mvec mp_softmax(const mvec& z) {
  const auto widest = ref::exponent_range_guard::widest();
  mpfr_float m(PX), sum(P);
  mpfr_set(m.get(), z[0].get(), MPFR_RNDN);
  for (const auto& v : z) mpfr_max(m.get(), m.get(), v.get(), MPFR_RNDN);
  mvec e;
  mpfr_set_zero(sum.get(), 1);
  for (const auto& v : z) {
    mpfr_float t(PX);
    mpfr_sub(t.get(), v.get(), m.get(), MPFR_RNDN);  // exact at PX
    mpfr_float x(P);
    mpfr_exp(x.get(), t.get(), MPFR_RNDN);
    mpfr_add(sum.get(), sum.get(), x.get(), MPFR_RNDN);
    e.push_back(std::move(x));
  }
  for (auto& x : e) mpfr_div(x.get(), x.get(), sum.get(), MPFR_RNDN);
  return e;
}

mvec mp_layer_norm(const mvec& x, const vec& gamma, const vec& beta, double eps) {
  const std::size_t n = x.size();
  mpfr_float mu(PX + 64), v(P), t(P), sd(P);
  mpfr_set_zero(mu.get(), 1);
  for (const auto& a : x) mpfr_add(mu.get(), mu.get(), a.get(), MPFR_RNDN);  // exact
  mpfr_div_ui(mu.get(), mu.get(), n, MPFR_RNDN);
  mvec d;
  mpfr_set_zero(v.get(), 1);
  for (const auto& a : x) {
    mpfr_float c(P);
    mpfr_sub(c.get(), a.get(), mu.get(), MPFR_RNDN);
    mpfr_sqr(t.get(), c.get(), MPFR_RNDN);
    mpfr_add(v.get(), v.get(), t.get(), MPFR_RNDN);
    d.push_back(std::move(c));
  }
  mpfr_div_ui(v.get(), v.get(), n, MPFR_RNDN);
  mpfr_add_d(v.get(), v.get(), eps, MPFR_RNDN);
  mpfr_sqrt(sd.get(), v.get(), MPFR_RNDN);
  for (std::size_t i = 0; i < n; ++i) {
    mpfr_div(d[i].get(), d[i].get(), sd.get(), MPFR_RNDN);
    mpfr_mul_d(d[i].get(), d[i].get(), gamma[i], MPFR_RNDN);
    mpfr_add_d(d[i].get(), d[i].get(), beta[i], MPFR_RNDN);
  }
  return d;
}

// |a - b| as a double (rounded up)
double absdiff(const mpfr_float& a, const mpfr_float& b) {
  mpfr_float t(P);
  mpfr_sub(t.get(), a.get(), b.get(), MPFR_RNDN);
  return std::fabs(mpfr_get_d(t.get(), MPFR_RNDA));
}
double absdiff(double a, const mpfr_float& b) { return absdiff(mpfr_float(P, a), b); }
// (a - b) / b as a double
double reldiff(const mpfr_float& a, const mpfr_float& b) {
  mpfr_float t(P);
  mpfr_sub(t.get(), a.get(), b.get(), MPFR_RNDN);
  mpfr_div(t.get(), t.get(), b.get(), MPFR_RNDN);
  return mpfr_get_d(t.get(), MPFR_RNDN);
}

double sgn(double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); }

// Random rows of logits: the families of docs/attention-bounds.md §9.
vec logits(sim::random_stream& rng, int family, std::size_t n) {
  vec z(n);
  auto sym = [&] { return 2 * rng.uniform() - 1; };
  for (std::size_t j = 0; j < n; ++j) {
    switch (family) {
      case 0:
        z[j] = 3 * sym();
        break;  // moderate
      case 1:
        z[j] = 40 * sym();
        break;  // peaked
      case 2:
        z[j] = 1000 + sym() * 1e-9;
        break;  // near-ties, large offset
      case 3:
        z[j] = (j < 2 ? 5.0 : 0.0) + sym() * 1e-12;
        break;  // two tied maxima
      case 4:
        z[j] = 1e4 * sym();
        break;  // large logits (underflowing exps)
      default:
        z[j] = std::ldexp(sym(), static_cast<int>(rng() % 20) - 10);
        break;  // mixed scales
    }
  }
  return z;
}

// Random layer-norm rows: moderate, large offset with tiny variance, variance below eps,
// one outlier, mixed scales.
vec features(sim::random_stream& rng, int family, std::size_t n) {
  vec x(n);
  auto sym = [&] { return 2 * rng.uniform() - 1; };
  for (std::size_t j = 0; j < n; ++j) {
    switch (family) {
      case 0:
        x[j] = 2 * sym() + 0.5;
        break;
      case 1:
        x[j] = 1000 + 1e-3 * sym();
        break;
      case 2:
        x[j] = 3 + 1e-6 * sym();
        break;  // sigma^2 ~ 3e-13 << eps
      case 3:
        x[j] = j == 0 ? 50.0 : sym();
        break;
      default:
        x[j] = std::ldexp(sym(), static_cast<int>(rng() % 16) - 8);
        break;
    }
  }
  return x;
}

void params(sim::random_stream& rng, std::size_t n, vec& gamma, vec& beta) {
  gamma.resize(n);
  beta.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    gamma[j] = 0.5 + rng.uniform();
    if (rng() % 4 == 0) gamma[j] = -gamma[j];
    beta[j] = 0.2 * (2 * rng.uniform() - 1);
  }
}

struct tally {
  double lo = HUGE_VAL, hi = 0;
  void add(double r) {
    lo = std::min(lo, r);
    hi = std::max(hi, r);
  }
};

}  // namespace

TEST_CASE("softmax: first-order condition numbers are attained and not exceeded", "[attention]") {
  sim::random_stream rng(151);
  tally rel_worst, abs_worst, rel_random, abs_random;
  for (int family = 0; family < 6; ++family) {
    for (int rep = 0; rep < 6; ++rep) {
      const std::size_t n = 2 + rng() % 16;
      const vec z = logits(rng, family, n);
      const auto k_rel = analysis::softmax_kappa_rel(z);
      const auto k_abs = analysis::softmax_kappa_abs(z);
      const auto s = mp_softmax(exact(z));
      double kmax = 1;
      for (const double k : k_rel) kmax = std::max(kmax, k);
      const double e = 0x1p-30 / kmax;  // second-order terms below 2^-30 relative
      for (std::size_t i = 0; i < n; ++i) {
        vec worst_rel(n), worst_abs(n), one(n, 1.0), mag(n), r(n);
        for (std::size_t j = 0; j < n; ++j) {
          mag[j] = e * std::fabs(z[j]);
          worst_rel[j] = worst_abs[j] = j == i ? 1.0 : -1.0;  // sign(delta_ij - s_j)
          r[j] = 2 * rng.uniform() - 1;
        }
        for (auto& v : one) v = e;
        const double m_rel = std::fabs(reldiff(mp_softmax(perturbed(z, mag, worst_rel))[i], s[i])) / e;
        const double m_abs = std::fabs(reldiff(mp_softmax(perturbed(z, one, worst_abs))[i], s[i])) / e;
        const double r_rel = std::fabs(reldiff(mp_softmax(perturbed(z, mag, r))[i], s[i])) / e;
        const double r_abs = std::fabs(reldiff(mp_softmax(perturbed(z, one, r))[i], s[i])) / e;
        INFO("family " << family << " n " << n << " i " << i << " kappa_rel " << k_rel[i] << " measured " << m_rel
                       << " kappa_abs " << k_abs[i] << " measured " << m_abs);
        // 320 bits resolve relative changes above ~1e-90: smaller condition numbers (a dominant
        // s_i = 1 - 1e-142) are below what the oracle can see at this perturbation size
        if (k_rel[i] > 1e-50) {
          rel_worst.add(m_rel / k_rel[i]);
          rel_random.add(r_rel / k_rel[i]);
          CHECK(m_rel / k_rel[i] == Approx(1).margin(1e-6));
          CHECK(r_rel <= k_rel[i] * (1 + 1e-6));
        }
        if (k_abs[i] > 1e-50) {
          abs_worst.add(m_abs / k_abs[i]);
          abs_random.add(r_abs / k_abs[i]);
          CHECK(m_abs / k_abs[i] == Approx(1).margin(1e-6));
          CHECK(r_abs <= k_abs[i] * (1 + 1e-6));
        }
      }
    }
  }
  std::printf(
      "softmax kappa: worst-sign measured/kappa_rel in [%.9f, %.9f], kappa_abs in [%.9f, %.9f]; random signs "
      "<= %.3f, %.3f\n",
      rel_worst.lo, rel_worst.hi, abs_worst.lo, abs_worst.hi, rel_random.hi, abs_random.hi);
}

// Column sums of the Jacobians: an error in one input alone moves every output with a fixed
// sign, so sum_i |change of output i| / e tends to the column sum exactly.
TEST_CASE("per-input sensitivities (Jacobian column sums) are attained", "[attention]") {
  sim::random_stream rng(157);
  tally sm, ln;
  for (int family = 0; family < 6; ++family) {
    for (int rep = 0; rep < 4; ++rep) {
      const std::size_t n = 2 + rng() % 16;
      const vec z = logits(rng, family, n);
      const auto c = analysis::softmax_logit_sensitivity(z);
      const auto s = mp_softmax(exact(z));
      const double e = 0x1p-40;
      for (std::size_t j = 0; j < n; ++j) {
        vec eta(n, 0.0), one(n, 1.0);
        eta[j] = e;
        const auto sp = mp_softmax(perturbed(z, eta, one));
        double moved = 0;
        for (std::size_t i = 0; i < n; ++i) moved += absdiff(sp[i], s[i]);
        if (c[j] > 1e-50) {
          INFO("family " << family << " j " << j << " c " << c[j] << " measured " << moved / e);
          CHECK(moved / e / c[j] == Approx(1).margin(1e-6));
          sm.add(moved / e / c[j]);
        }
      }
    }
  }
  for (int family = 0; family < 5; ++family) {
    for (int rep = 0; rep < 4; ++rep) {
      const std::size_t n = 2 + rng() % 30;
      const vec x = features(rng, family, n);
      vec gamma, beta;
      params(rng, n, gamma, beta);
      const double eps = rep % 2 ? 1e-5 : 1e-12;
      const auto c = analysis::layer_norm_input_sensitivity(x, gamma, eps);
      const auto y = mp_layer_norm(exact(x), gamma, beta, eps);
      double cmax = 1;
      for (const double v : c) cmax = std::max(cmax, v);
      const double e = 0x1p-30 / cmax;
      for (std::size_t j = 0; j < n; ++j) {
        vec eta(n, 0.0), one(n, 1.0);
        eta[j] = e;
        const auto yp = mp_layer_norm(perturbed(x, eta, one), gamma, beta, eps);
        double moved = 0;
        for (std::size_t i = 0; i < n; ++i) moved += absdiff(yp[i], y[i]);
        INFO("family " << family << " j " << j << " c " << c[j] << " measured " << moved / e);
        CHECK(moved / e / c[j] == Approx(1).margin(1e-6));
        ln.add(moved / e / c[j]);
      }
    }
  }
  std::printf("column sums: softmax measured/c in [%.9f, %.9f], layer norm in [%.9f, %.9f]\n", sm.lo, sm.hi, ln.lo,
              ln.hi);
}

TEST_CASE("softmax: the perturbation bound holds for every perturbation and is attained", "[attention]") {
  sim::random_stream rng(152);
  tally vertex, random_in_box, simple_over_sharp;
  std::size_t checks = 0;
  for (int family = 0; family < 6; ++family) {
    for (const double size : {1e-14, 1e-8, 1e-3, 0.1, 1.0, 5.0}) {
      for (int rep = 0; rep < 3; ++rep) {
        const std::size_t n = 2 + rng() % 16;
        const vec z = logits(rng, family, n);
        vec eta(n);
        const bool relative = rep == 2;  // eta_j = size |z_j| (relative), else absolute, varying per j
        for (std::size_t j = 0; j < n; ++j) eta[j] = relative ? size * std::fabs(z[j]) : size * (0.25 + rng.uniform());
        const auto r = analysis::softmax_perturbation_bound(z, eta);
        const auto s = mp_softmax(exact(z));
        double eta_max = 0;
        for (const double e : eta) eta_max = std::max(eta_max, e);
        for (std::size_t i = 0; i < n; ++i) {
          if (mpfr_cmp_d(s[i].get(), 1e-280) < 0) continue;  // relative error of a value near underflow
          simple_over_sharp.add(std::expm1(eta[i] + eta_max) / r[i]);
          CHECK(r[i] <= std::expm1(eta[i] + eta_max) * (1 + 1e-12));
          // the two vertices of Theorem 1, then random points of the box
          double at_vertex = 0;
          for (int v = 0; v < 5; ++v) {
            vec sign(n);
            for (std::size_t j = 0; j < n; ++j) {
              if (v == 0) sign[j] = j == i ? 1.0 : -1.0;
              if (v == 1) sign[j] = j == i ? -1.0 : 1.0;
              if (v >= 2) sign[j] = 2 * rng.uniform() - 1;
            }
            const double obs = std::fabs(reldiff(mp_softmax(perturbed(z, eta, sign))[i], s[i]));
            INFO("family " << family << " size " << size << " i " << i << " vertex " << v << " observed " << obs
                           << " bound " << r[i]);
            CHECK(obs <= r[i]);
            ++checks;
            if (v < 2) {
              at_vertex = std::max(at_vertex, obs);
            } else if (std::isfinite(r[i]) && r[i] > 0) {
              random_in_box.add(obs / r[i]);
            }
          }
          // the larger vertex is the bound, up to the bound's evaluation margin
          if (std::isfinite(r[i]) &&
              r[i] > 1e-80) {  // what 320 bits resolve (and not the absolute term of an underflowed s)
            INFO("family " << family << " size " << size << " i " << i << " vertices " << at_vertex << " bound "
                           << r[i]);
            vertex.add(at_vertex / r[i]);
            CHECK(at_vertex / r[i] >= 1 - 1e-6);
          }
        }
      }
    }
  }
  std::printf(
      "softmax perturbation bound: %zu checks, 0 violations; worst vertex/bound in [%.9f, %.9f]; random points "
      "<= %.3f; (exp(eta_i + max eta) - 1)/bound in [%.3f, %.3g]\n",
      checks, vertex.lo, vertex.hi, random_in_box.hi, simple_over_sharp.lo, simple_over_sharp.hi);
}

TEST_CASE("softmax_binary64 and its rounding to a format stay within their bounds", "[attention]") {
  sim::random_stream rng(153);
  struct target {
    sim::format f;
    sim::rounding mode;
    const char* name;
  };
  const target targets[] = {{sim::formats::binary64, sim::rounding::nearest_even, "binary64"},
                            {sim::formats::binary32, sim::rounding::nearest_even, "binary32"},
                            {sim::formats::binary16, sim::rounding::nearest_even, "binary16"},
                            {sim::formats::bfloat16, sim::rounding::toward_zero, "bfloat16/rz"},
                            {sim::formats::e4m3_ieee, sim::rounding::nearest_even, "e4m3-ieee"},
                            {sim::formats::e4m3_ieee, sim::rounding::stochastic, "e4m3-ieee/sr"}};
  tally b64;         // |s_hat - s| / (rho s + A)
  tally b64_rel;     // |s_hat - s| / (u s): the measured error in units of u
  tally rho_units;   // rho / u
  tally fmt[6];      // |round(s_hat) - s| / output bound, results of at least 2^emin
  tally fmt_sub[6];  // the same below 2^emin (where half a subnormal quantum is attained)
  tally pert;        // with perturbed logits, at least 2^emin
  tally pert_small;  // the same, logit errors at most 1e-3
  std::size_t checks = 0;
  for (int family = 0; family < 6; ++family) {
    for (int rep = 0; rep < 12; ++rep) {
      const std::size_t n = 1 + rng() % 40;
      const vec z = logits(rng, family, n);
      const auto sh = analysis::softmax_binary64(z);
      const auto rho = analysis::softmax_binary64_error(z);
      const auto s = mp_softmax(exact(z));
      for (std::size_t i = 0; i < n; ++i) {
        const double err = absdiff(sh[i], s[i]);
        const double sv = s[i].to_double();
        const double bound = rho[i] * sv * (1 + 0x1p-40) + analysis::softmax_binary64_abs_error;
        INFO("family " << family << " n " << n << " s " << sv << " error " << err << " bound " << bound);
        CHECK(err <= bound);
        ++checks;
        b64.add(err / bound);
        if (sv > 1e-290) {
          b64_rel.add(err / (0x1p-53 * sv));
          rho_units.add(rho[i] / 0x1p-53);
        }
      }
      const vec zero(n, 0.0);
      for (std::size_t t = 0; t < 6; ++t) {
        const auto b = analysis::softmax_output_bound(z, zero, targets[t].f, targets[t].mode);
        for (std::size_t i = 0; i < n; ++i) {
          unsigned flags = 0;
          const double y = sim::round(sh[i], targets[t].f, targets[t].mode, false, flags, sim::random_bits(7, i));
          const double err = absdiff(y, s[i]);
          INFO(targets[t].name << " s_hat " << sh[i] << " y " << y << " error " << err << " bound " << b[i]);
          CHECK(err <= b[i]);
          ++checks;
          (std::fabs(y) >= std::ldexp(1.0, targets[t].f.emin) ? fmt[t] : fmt_sub[t]).add(err / b[i]);
        }
      }
      // simulated logits z_hat within eta of the exact z
      vec eta(n), zh(n);
      const double scale = std::ldexp(1e-3, -static_cast<int>(rng() % 40));  // one size per row
      for (std::size_t j = 0; j < n; ++j) {
        const double e = scale * (1 + std::fabs(z[j]));
        zh[j] = z[j] + e * (2 * rng.uniform() - 1);
        eta[j] = std::nextafter(std::fabs(zh[j] - z[j]) * (1 + 0x1p-52), HUGE_VAL);
      }
      double eta_max = 0;
      for (const double e : eta) eta_max = std::max(eta_max, e);
      for (std::size_t t = 0; t < 6; t += 2) {
        const auto b = analysis::softmax_output_bound(zh, eta, targets[t].f, targets[t].mode);
        const auto shh = analysis::softmax_binary64(zh);
        for (std::size_t i = 0; i < n; ++i) {
          unsigned flags = 0;
          const double y = sim::round(shh[i], targets[t].f, targets[t].mode, false, flags, sim::random_bits(9, i));
          const double err = absdiff(y, s[i]);
          INFO(targets[t].name << " perturbed: error " << err << " bound " << b[i]);
          CHECK(err <= b[i]);
          ++checks;
          if (std::fabs(y) >= std::ldexp(1.0, targets[t].f.emin)) (eta_max <= 1e-3 ? pert_small : pert).add(err / b[i]);
        }
      }
    }
  }
  std::printf(
      "softmax rounding: %zu checks, 0 violations; binary64 error/bound <= %.3f, error <= %.2f u, rho in "
      "[%.1f, %.1f] u; rounded to ",
      checks, b64.hi, b64_rel.hi, rho_units.lo, rho_units.hi);
  for (std::size_t t = 0; t < 6; ++t)
    std::printf("%s %.3f (%.3f below 2^emin), ", targets[t].name, fmt[t].hi, fmt_sub[t].hi);
  std::printf("with perturbed logits %.3f, errors <= 1e-3 %.3f (max error/bound)\n", pert.hi, pert_small.hi);
}

// Theorem 2 assumes libm's exp within 4 ulps: 8u relative for normal results, 2^-1072
// absolute below 2^-1022 (the activations' allowance). Checked here on the softmax's range.
TEST_CASE("libm exp is within the allowance Theorem 2 assumes", "[attention]") {
  sim::random_stream rng(158);
  const auto widest = ref::exponent_range_guard::widest();
  double worst_ulps = 0;
  for (int k = 0; k < 20000; ++k) {
    // t in [-746, 0]: uniform, and dense near 0 and near the underflow threshold
    double t = -746 * rng.uniform();
    if (k % 4 == 1) t = -std::ldexp(rng.uniform(), -static_cast<int>(rng() % 60));
    if (k % 4 == 2) t = -708.4 - 36.7 * rng.uniform();
    const double e = std::exp(t);
    mpfr_float x(P, t);
    mpfr_exp(x.get(), x.get(), MPFR_RNDN);
    const double ex = x.to_double();
    if (ex >= 0x1p-1022) {
      // relative error formed in MPFR (a difference below 2^-1074 would not survive as a double)
      const double rel = std::fabs(reldiff(mpfr_float(P, e), x));
      INFO("t " << t << " exp " << e << " relative error " << rel);
      CHECK(rel <= 8 * 0x1p-53);
      worst_ulps = std::max(worst_ulps, rel / 0x1p-52);
    } else {
      const double err = absdiff(e, x);
      INFO("t " << t << " exp " << e << " error " << err);
      CHECK(err <= 0x1p-1072);
    }
  }
  CHECK(std::exp(0.0) == 1.0);
  std::printf("libm exp: at most %.3f ulps (relative to 2^-52 e^t) on [-746, 0]\n", worst_ulps);
}

TEST_CASE("softmax_binary64: long rows whose sum rounds the same way at every step", "[attention]") {
  // z = (0, t, t, ..., t): the n - 1 equal terms exp(t) make the recursive sum round by the
  // same fraction of an ulp throughout each binade, so its error grows linearly with n — the
  // (1 + u)^(n-1) factor of Theorem 2 is needed (the random rows never show it).
  const std::size_t n = 4096;
  double worst = 0, worst_ratio = 0;
  for (const double t : {-0.3, -2.3e-10, -1.7e-8, -0.1234}) {
    vec z(n, t);
    z[0] = 0;
    const auto sh = analysis::softmax_binary64(z);
    const auto rho = analysis::softmax_binary64_error(z);
    const auto s = mp_softmax(exact(z));
    for (const std::size_t i : {std::size_t{0}, std::size_t{1}, n - 1}) {
      const double err = absdiff(sh[i], s[i]);
      const double sv = s[i].to_double();
      INFO("t " << t << " i " << i << " error " << err / (0x1p-53 * sv) << " u, bound " << rho[i] / 0x1p-53 << " u");
      CHECK(err <= rho[i] * sv * (1 + 0x1p-40) + analysis::softmax_binary64_abs_error);
      worst = std::max(worst, err / (0x1p-53 * sv));
      worst_ratio = std::max(worst_ratio, err / (rho[i] * sv));
    }
  }
  // far beyond the 2c + 1 + ln n = 25.3 u that the bound would be without the sum's term
  CHECK(worst > 100);
  std::printf("softmax long rows (n = 4096): error up to %.0f u, error/bound <= %.3f\n", worst, worst_ratio);
}

TEST_CASE("layer norm: first-order condition numbers are attained and not exceeded", "[attention]") {
  sim::random_stream rng(154);
  tally rel_worst, abs_worst, rel_random;
  for (int family = 0; family < 5; ++family) {
    for (const double eps : {1e-5, 1e-12}) {
      for (int rep = 0; rep < 3; ++rep) {
        const std::size_t n = 2 + rng() % 30;
        const vec x = features(rng, family, n);
        vec gamma, beta;
        params(rng, n, gamma, beta);
        const auto k_rel = analysis::layer_norm_kappa_rel(x, gamma, beta, eps);
        const auto a = analysis::layer_norm_sensitivity_abs(x, gamma, eps);
        const auto xh = analysis::layer_norm_binary64(x, vec(n, 1.0), vec(n, 0.0), eps);  // normalized values
        const auto y = mp_layer_norm(exact(x), gamma, beta, eps);
        double kmax = 1, xmax = 0;
        for (const double k : k_rel) kmax = std::isfinite(k) ? std::max(kmax, k) : kmax;
        for (const double v : x) xmax = std::max(xmax, std::fabs(v));
        double amax = 1;
        for (const double v : a) amax = std::max(amax, v);
        const double e = 0x1p-30 / kmax;
        const double ea = 0x1p-30 / amax;
        for (std::size_t i = 0; i < n; ++i) {
          vec mag(n), worst(n), r(n), one(n, ea);
          for (std::size_t j = 0; j < n; ++j) {
            mag[j] = e * std::fabs(x[j]);
            const double J =
                (i == j ? 1.0 : 0.0) - 1.0 / static_cast<double>(n) - xh[i] * xh[j] / static_cast<double>(n);
            worst[j] = sgn(gamma[i] * J);
            r[j] = 2 * rng.uniform() - 1;
          }
          const double yi = std::fabs(y[i].to_double());
          const double m_rel = absdiff(mp_layer_norm(perturbed(x, mag, worst), gamma, beta, eps)[i], y[i]) / (e * yi);
          const double r_rel = absdiff(mp_layer_norm(perturbed(x, mag, r), gamma, beta, eps)[i], y[i]) / (e * yi);
          const double m_abs = absdiff(mp_layer_norm(perturbed(x, one, worst), gamma, beta, eps)[i], y[i]) / ea;
          INFO("family " << family << " eps " << eps << " n " << n << " i " << i << " kappa " << k_rel[i]
                         << " measured " << m_rel << " a " << a[i] << " measured " << m_abs);
          if (std::isfinite(k_rel[i]) && k_rel[i] > 0) {
            rel_worst.add(m_rel / k_rel[i]);
            rel_random.add(r_rel / k_rel[i]);
            CHECK(m_rel / k_rel[i] == Approx(1).margin(1e-5));
            CHECK(r_rel <= k_rel[i] * (1 + 1e-5));
          }
          abs_worst.add(m_abs / a[i]);
          CHECK(m_abs / a[i] == Approx(1).margin(1e-5));
        }
      }
    }
  }
  std::printf(
      "layer norm kappa: worst-sign measured/kappa_rel in [%.7f, %.7f], measured/a in [%.7f, %.7f]; random signs "
      "<= %.3f\n",
      rel_worst.lo, rel_worst.hi, abs_worst.lo, abs_worst.hi, rel_random.hi);
}

TEST_CASE("layer norm: the perturbation bound holds and is tight for small perturbations", "[attention]") {
  sim::random_stream rng(155);
  // per tau / sigma_eps: the largest ratio observed / bound at the first-order worst signs
  const double sizes[] = {1e-9, 1e-4, 1e-2, 0.1, 0.5, 0.9};
  tally worst[6], random_in_box;
  std::size_t checks = 0, global = 0;
  for (int family = 0; family < 5; ++family) {
    for (const double eps : {1e-5, 1e-12}) {
      for (std::size_t k = 0; k < 6; ++k) {
        for (int rep = 0; rep < 2; ++rep) {
          const std::size_t n = 2 + rng() % 30;
          const vec x = features(rng, family, n);
          vec gamma, beta;
          params(rng, n, gamma, beta);
          const auto xh = analysis::layer_norm_binary64(x, vec(n, 1.0), vec(n, 0.0), eps);
          double var = 0, mean = 0;
          for (const double v : x) mean += v / static_cast<double>(n);
          for (const double v : x) var += (v - mean) * (v - mean) / static_cast<double>(n);
          const double sig = std::sqrt(var + eps);
          // eta_j of either shape (absolute, or proportional to |x_j|), scaled so that
          // ||eta||_2 / sqrt(n) = sizes[k] sigma_eps
          vec eta(n);
          double e2 = 0;
          for (std::size_t j = 0; j < n; ++j) {
            eta[j] = rep == 0 ? 0.5 + rng.uniform() : std::fabs(x[j]);
            e2 += eta[j] * eta[j] / static_cast<double>(n);
          }
          for (auto& v : eta) v *= sizes[k] * sig / std::sqrt(e2);
          const auto b = analysis::layer_norm_perturbation_bound(x, gamma, eps, eta);
          const auto y = mp_layer_norm(exact(x), gamma, beta, eps);
          for (std::size_t i = 0; i < n; ++i) {
            if (b[i] >= std::fabs(gamma[i]) * 2 * std::sqrt(static_cast<double>(n) - 1)) ++global;
            for (int v = 0; v < 4; ++v) {
              vec sign(n);
              for (std::size_t j = 0; j < n; ++j) {
                const double J =
                    (i == j ? 1.0 : 0.0) - 1.0 / static_cast<double>(n) - xh[i] * xh[j] / static_cast<double>(n);
                sign[j] = v == 0 ? sgn(gamma[i] * J) : (v == 1 ? -sgn(gamma[i] * J) : 2 * rng.uniform() - 1);
              }
              const double obs = absdiff(mp_layer_norm(perturbed(x, eta, sign), gamma, beta, eps)[i], y[i]);
              INFO("family " << family << " eps " << eps << " size " << sizes[k] << " n " << n << " i " << i
                             << " observed " << obs << " bound " << b[i]);
              CHECK(obs <= b[i]);
              ++checks;
              if (v < 2) {
                worst[k].add(obs / b[i]);
              } else {
                random_in_box.add(obs / b[i]);
              }
            }
          }
        }
      }
    }
  }
  // at tau = 1e-9 sigma_eps the bound is the first-order worst case, attained by its signs
  CHECK(worst[0].hi >= 1 - 1e-6);
  std::printf(
      "layer norm perturbation bound: %zu checks, 0 violations (%zu at the global bound); max observed/bound "
      "at the worst signs, by tau/sigma_eps: ",
      checks, global);
  for (std::size_t k = 0; k < 6; ++k) std::printf("%g: %.6f, ", sizes[k], worst[k].hi);
  std::printf("random points <= %.3f\n", random_in_box.hi);
}

TEST_CASE("layer_norm_binary64 and its rounding to a format stay within their bounds", "[attention]") {
  sim::random_stream rng(156);
  struct target {
    sim::format f;
    sim::rounding mode;
    const char* name;
  };
  const target targets[] = {{sim::formats::binary64, sim::rounding::nearest_even, "binary64"},
                            {sim::formats::binary32, sim::rounding::nearest_even, "binary32"},
                            {sim::formats::binary16, sim::rounding::nearest_even, "binary16"},
                            {sim::formats::bfloat16, sim::rounding::toward_zero, "bfloat16/rz"},
                            {sim::formats::e4m3_ieee, sim::rounding::stochastic, "e4m3-ieee/sr"}};
  tally b64, fmt[5], fmt_sub[5], pert, pert_small;
  tally fam_ratio[5];
  std::size_t checks = 0;
  for (int family = 0; family < 5; ++family) {
    for (const double eps : {1e-5, 1e-12}) {
      for (int rep = 0; rep < 8; ++rep) {
        const std::size_t n = 2 + rng() % 64;
        const vec x = features(rng, family, n);
        vec gamma, beta;
        params(rng, n, gamma, beta);
        const auto yh = analysis::layer_norm_binary64(x, gamma, beta, eps);
        const auto bnd = analysis::layer_norm_binary64_error(x, gamma, beta, eps);
        const auto y = mp_layer_norm(exact(x), gamma, beta, eps);
        for (std::size_t i = 0; i < n; ++i) {
          const double err = absdiff(yh[i], y[i]);
          INFO("family " << family << " eps " << eps << " n " << n << " i " << i << " error " << err << " bound "
                         << bnd[i]);
          CHECK(err <= bnd[i]);
          ++checks;
          b64.add(err / bnd[i]);
          fam_ratio[family].add(err / bnd[i]);
        }
        const vec zero(n, 0.0);
        for (std::size_t t = 0; t < 5; ++t) {
          const auto b = analysis::layer_norm_output_bound(x, zero, gamma, beta, eps, targets[t].f, targets[t].mode);
          for (std::size_t i = 0; i < n; ++i) {
            unsigned flags = 0;
            const double r = sim::round(yh[i], targets[t].f, targets[t].mode, false, flags, sim::random_bits(3, i));
            const double err = absdiff(r, y[i]);
            INFO(targets[t].name << " error " << err << " bound " << b[i]);
            CHECK(err <= b[i]);
            ++checks;
            (std::fabs(r) >= std::ldexp(1.0, targets[t].f.emin) ? fmt[t] : fmt_sub[t]).add(err / b[i]);
          }
        }
        // simulated inputs within eta of the exact x
        vec eta(n), xs(n);
        for (std::size_t j = 0; j < n; ++j) {
          const double e = std::ldexp(1.0, -static_cast<int>(rng() % 30)) * std::fabs(x[j]) * 1e-4;
          xs[j] = x[j] + e * (2 * rng.uniform() - 1);
          eta[j] = std::nextafter(std::fabs(xs[j] - x[j]) * (1 + 0x1p-52), HUGE_VAL);
        }
        double mean = 0, var = 0, tau = 0;
        for (const double v : xs) mean += v / static_cast<double>(n);
        for (const double v : xs) var += (v - mean) * (v - mean) / static_cast<double>(n);
        for (const double e : eta) tau += e * e / static_cast<double>(n);
        const bool small = std::sqrt(tau) <= 0.01 * std::sqrt(var + eps);
        for (std::size_t t = 0; t < 5; t += 2) {
          const auto b = analysis::layer_norm_output_bound(xs, eta, gamma, beta, eps, targets[t].f, targets[t].mode);
          const auto ys = analysis::layer_norm_binary64(xs, gamma, beta, eps);
          for (std::size_t i = 0; i < n; ++i) {
            unsigned flags = 0;
            const double r = sim::round(ys[i], targets[t].f, targets[t].mode, false, flags, sim::random_bits(5, i));
            const double err = absdiff(r, y[i]);
            INFO(targets[t].name << " perturbed: error " << err << " bound " << b[i]);
            CHECK(err <= b[i]);
            ++checks;
            if (std::fabs(r) >= std::ldexp(1.0, targets[t].f.emin)) (small ? pert_small : pert).add(err / b[i]);
          }
        }
      }
    }
  }
  std::printf("layer norm rounding: %zu checks, 0 violations; binary64 error/bound <= %.3f (by family:", checks,
              b64.hi);
  for (const auto& f : fam_ratio) std::printf(" %.3f", f.hi);
  std::printf("); rounded to ");
  for (std::size_t t = 0; t < 5; ++t)
    std::printf("%s %.3f (%.3f below 2^emin), ", targets[t].name, fmt[t].hi, fmt_sub[t].hi);
  std::printf("with perturbed inputs %.3f, tau <= 0.01 sigma_eps %.3f (max error/bound)\n", pert.hi, pert_small.hi);
}

TEST_CASE("attention bounds reject bad input", "[attention]") {
  const vec x{1, 2, 3};
  CHECK_THROWS_AS(analysis::layer_norm_binary64(x, vec{1, 1}, vec{0, 0, 0}, 1e-5), std::invalid_argument);
  CHECK_THROWS_AS(analysis::layer_norm_binary64(vec{1}, vec{1}, vec{0}, 1e-5), std::invalid_argument);
  CHECK_THROWS_AS(analysis::layer_norm_binary64(x, vec{1, 1, 1}, vec{0, 0, 0}, 0), std::invalid_argument);
  CHECK_THROWS_AS(analysis::softmax_perturbation_bound(x, vec{1, 1}), std::invalid_argument);
  // one logit: s = 1 whatever the perturbation
  const auto r = analysis::softmax_perturbation_bound(vec{3}, vec{10});
  CHECK(r[0] == 0);
}
