// SPDX-License-Identifier: MIT
#include "mpacc/ref/round.hpp"

#include <cmath>
#include <limits>

namespace mpacc::ref {

namespace {

using sim::rounding;

// Rounds x into r (precision f.p) with MPFR mode rnd inside the format's
// exponent range, top unbounded. Returns the ternary value.
int round_in_range(mpfr_float& r, mpfr_srcptr x, const sim::format& f, mpfr_rnd_t rnd) {
  // MPFR writes x = m * 2^E with 0.5 <= m < 1, so IEEE exponent e is E - 1.
  const mpfr_exp_t emin = f.subnormals ? f.emin - f.p + 2 : f.emin + 1;
  const exponent_range_guard range(emin, f.emax + 64);
  int t = mpfr_set(r.get(), x, rnd);
  t = mpfr_check_range(r.get(), t, rnd);
  if (f.subnormals) t = mpfr_subnormalize(r.get(), t, rnd);
  return t;
}

}  // namespace

double round_mpfr(mpfr_srcptr x, const sim::format& f, rounding mode, bool saturate, unsigned& flags,
                  std::uint64_t random_word) {
  namespace flag = sim::flag;
  const auto widest = exponent_range_guard::widest();
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (mpfr_nan_p(x)) return nan;
  const bool neg = mpfr_signbit(x) != 0;
  if (mpfr_inf_p(x)) {
    if (saturate) {
      flags |= flag::saturated;
      return neg ? -f.max_finite : f.max_finite;
    }
    if (f.has_inf) return neg ? -inf : inf;
    flags |= flag::invalid;
    return nan;
  }
  if (mpfr_zero_p(x)) return neg ? -0.0 : 0.0;

  mpfr_float rd(f.p), ru(f.p);
  round_in_range(rd, x, f, MPFR_RNDD);
  round_in_range(ru, x, f, MPFR_RNDU);
  const bool inexact = !mpfr_equal_p(rd.get(), ru.get());
  // -0 from RNDU of a tiny negative value: keep the sign of x on zero results
  mpfr_float res(f.p);
  if (!inexact) {
    mpfr_set(res.get(), rd.get(), MPFR_RNDN);
  } else {
    switch (mode) {
      case rounding::nearest_even:
        round_in_range(res, x, f, MPFR_RNDN);
        break;
      case rounding::toward_zero:
        round_in_range(res, x, f, MPFR_RNDZ);
        break;
      case rounding::upward:
        mpfr_set(res.get(), ru.get(), MPFR_RNDN);
        break;
      case rounding::downward:
        mpfr_set(res.get(), rd.get(), MPFR_RNDN);
        break;
      case rounding::nearest_away: {
        mpfr_float mid(f.p + 2);
        mpfr_add(mid.get(), rd.get(), ru.get(), MPFR_RNDN);  // exact at p+2 bits
        mpfr_div_2ui(mid.get(), mid.get(), 1, MPFR_RNDN);
        const int c = mpfr_cmpabs(x, mid.get());
        const bool away = c >= 0;
        mpfr_set(res.get(), (away == !neg) ? ru.get() : rd.get(), MPFR_RNDN);
        break;
      }
      case rounding::odd: {
        // toward zero, then the odd neighbour: parity of the multiple of the
        // quantum of the result's grid (0 counts as even)
        const mpfr_float& rz = neg ? ru : rd;
        const mpfr_float& other = neg ? rd : ru;
        bool odd = false;
        if (!mpfr_zero_p(rz.get())) {
          const long e = mpfr_get_exp(rz.get()) - 1;
          const long q = f.subnormals ? std::max<long>(e, f.emin) - (f.p - 1) : (e >= f.emin ? e - (f.p - 1) : f.emin);
          mpfr_float m(f.p + 2);
          mpfr_mul_2si(m.get(), rz.get(), -q - 1, MPFR_RNDN);  // exact: rz / (2 * 2^q)
          odd = !mpfr_integer_p(m.get());
        }
        mpfr_set(res.get(), odd ? rz.get() : other.get(), MPFR_RNDN);
        break;
      }
      case rounding::stochastic: {
        // the magnitude goes up iff U < (|x| - |rz|) / (ru - rd), i.e.
        // U * (ru - rd) < |x| - |rz|, compared exactly (U = word * 2^-64)
        const mpfr_prec_t wide = mpfr_get_prec(x) + 2 * 1100 + 128;
        mpfr_float num(wide), den(wide), lhs(wide);
        mpfr_sub(num.get(), x, neg ? ru.get() : rd.get(), MPFR_RNDN);
        mpfr_abs(num.get(), num.get(), MPFR_RNDN);
        mpfr_sub(den.get(), ru.get(), rd.get(), MPFR_RNDN);
        mpfr_set_uj(lhs.get(), random_word, MPFR_RNDN);
        mpfr_mul_2si(lhs.get(), lhs.get(), -64, MPFR_RNDN);
        mpfr_mul(lhs.get(), lhs.get(), den.get(), MPFR_RNDN);
        const bool up = mpfr_less_p(lhs.get(), num.get());
        mpfr_set(res.get(), (up != neg) ? ru.get() : rd.get(), MPFR_RNDN);
        break;
      }
    }
  }
  double v = mpfr_get_d(res.get(), MPFR_RNDN);  // exact: every value of f is a double
  if (v == 0) v = neg ? -0.0 : 0.0;
  if (inexact) {
    flags |= flag::inexact;
    if (mpfr_cmp_d(x, 0) != 0) {
      mpfr_float tiny(64, std::ldexp(1.0, f.emin));
      if (mpfr_cmpabs(x, tiny.get()) < 0) flags |= flag::underflow;
    }
  }
  if (std::fabs(v) > f.max_finite) {
    flags |= flag::overflow | flag::inexact;
    const bool to_max = mode == rounding::toward_zero || mode == rounding::odd || (mode == rounding::upward && neg) ||
                        (mode == rounding::downward && !neg);
    double m;
    if (saturate) {
      flags |= flag::saturated;
      m = f.max_finite;
    } else if (to_max) {
      m = f.max_finite;
    } else if (f.has_inf) {
      m = inf;
    } else {
      flags |= flag::invalid;
      return nan;
    }
    v = neg ? -m : m;
  }
  return v;
}

double round_mpfr(double x, const sim::format& f, sim::rounding mode, bool saturate, unsigned& flags,
                  std::uint64_t random_word) {
  const mpfr_float v(53, x);
  return round_mpfr(v.get(), f, mode, saturate, flags, random_word);
}

void neighbours_mpfr(double x, const sim::format& f, double& rd, double& ru) {
  const auto widest = exponent_range_guard::widest();
  const mpfr_float v(53, x);
  mpfr_float d(f.p), u(f.p);
  round_in_range(d, v.get(), f, MPFR_RNDD);
  round_in_range(u, v.get(), f, MPFR_RNDU);
  rd = mpfr_get_d(d.get(), MPFR_RNDN);
  ru = mpfr_get_d(u.get(), MPFR_RNDN);
}

}  // namespace mpacc::ref
