// SPDX-License-Identifier: MIT
#include "mpacc/ref/accumulate.hpp"

#include <cmath>

#include "mpacc/ref/round.hpp"

namespace mpacc::ref {

namespace {

// Enough bits for any exact sum of binary64 values and products of two of them
// (exponents from 2^-2148 to 2^2048, plus carries).
constexpr mpfr_prec_t exact_prec = 4400;

struct mpfr_stepper {
  const sim::accumulation& a;
  std::uint64_t counter;
  unsigned flags = 0;

  std::uint64_t word() { return a.mode == sim::rounding::stochastic ? sim::random_bits(a.seed, counter++) : 0; }
  // one rounding of the exact value X to format f
  double round_exact(const mpfr_float& X, const sim::format& f) {
    const std::uint64_t w = word();
    if (a.mode == sim::rounding::stochastic && mpfr_number_p(X.get())) {
      mpfr_float odd(53);
      const int t = mpfr_set(odd.get(), X.get(), MPFR_RNDZ);
      make_odd(odd, t);
      return round_mpfr(odd.get(), f, a.mode, a.saturate, flags, w);
    }
    return round_mpfr(X.get(), f, a.mode, a.saturate, flags, w);
  }
  // one accumulator rounding of the exact value X: through `via` first when set
  double round_acc(const mpfr_float& X) {
    if (!a.via) return round_exact(X, a.acc);
    const std::uint64_t w = word();
    const double y = round_mpfr(X.get(), *a.via, sim::rounding::nearest_even, false, flags, 0);
    mpfr_float Y(53, y);
    return round_mpfr(Y.get(), a.acc, a.mode, a.saturate, flags, w);
  }
  // the term as it enters the sum: exact product, or rounded to the product format
  mpfr_float term(double w, double x) {
    mpfr_float p(exact_prec);
    mpfr_float wf(53, w), xf(53, x);
    mpfr_mul(p.get(), wf.get(), xf.get(), MPFR_RNDN);  // exact
    if (a.product) mpfr_set_d(p.get(), round_exact(p, *a.product), MPFR_RNDN);
    return p;
  }
  double first(double w, double x) { return round_acc(term(w, x)); }
  double add_term(double s, double w, double x) {
    mpfr_float p = term(w, x);
    mpfr_float sum(exact_prec);
    mpfr_add_d(sum.get(), p.get(), s, MPFR_RNDN);  // exact
    return round_acc(sum);
  }
  double add(double s, double t) {
    mpfr_float sum(exact_prec, s);
    mpfr_add_d(sum.get(), sum.get(), t, MPFR_RNDN);  // exact
    return round_acc(sum);
  }
  double recursive(const double* w, const double* x, std::size_t n) {
    double s = first(w[0], x[0]);
    for (std::size_t j = 1; j < n; ++j) s = add_term(s, w[j], x[j]);
    return s;
  }
  double pairwise(const double* w, const double* x, std::size_t n) {
    if (n == 1) return first(w[0], x[0]);
    const std::size_t m = n / 2;
    const double left = pairwise(w, x, m);
    const double right = pairwise(w + m, x + m, n - m);
    return add(left, right);
  }
};

}  // namespace

sim::dot_result dot_mpfr(std::span<const double> w, std::span<const double> x, double bias, const sim::accumulation& a,
                         std::uint64_t first_random) {
  const auto widest = exponent_range_guard::widest();
  mpfr_stepper st{a, first_random};
  const std::size_t n = w.size();
  double s = 0;
  if (n > 0) {
    switch (a.ord.type) {
      case sim::order::kind::recursive:
        s = st.recursive(w.data(), x.data(), n);
        break;
      case sim::order::kind::pairwise:
        s = st.pairwise(w.data(), x.data(), n);
        break;
      case sim::order::kind::blocked: {
        const auto B = static_cast<std::size_t>(a.ord.block);
        for (std::size_t start = 0; start < n; start += B) {
          const double t = st.recursive(w.data() + start, x.data() + start, std::min(B, n - start));
          s = start == 0 ? t : st.add(s, t);
        }
        break;
      }
    }
  }
  double v;
  if (n > 0) {
    v = st.add(s, bias);
  } else {
    mpfr_float b(53, bias);
    v = st.round_acc(b);
  }
  return {v, st.flags, true};
}

exact_dot dot_exact(std::span<const double> w, std::span<const double> x, double bias) {
  const auto widest = exponent_range_guard::widest();
  exact_dot r;
  mpfr_set_d(r.value.get(), bias, MPFR_RNDN);
  mpfr_set_d(r.abs_sum.get(), std::fabs(bias), MPFR_RNDN);
  mpfr_float p(exact_prec);
  for (std::size_t j = 0; j < w.size(); ++j) {
    mpfr_set_d(p.get(), w[j], MPFR_RNDN);
    mpfr_mul_d(p.get(), p.get(), x[j], MPFR_RNDN);  // exact
    mpfr_add(r.value.get(), r.value.get(), p.get(), MPFR_RNDN);
    mpfr_abs(p.get(), p.get(), MPFR_RNDN);
    mpfr_add(r.abs_sum.get(), r.abs_sum.get(), p.get(), MPFR_RNDN);
  }
  return r;
}

}  // namespace mpacc::ref
