// SPDX-License-Identifier: MIT
#include "mpacc/ref/multiprecision.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "mpacc/ref/accumulate.hpp"
#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/long_accumulator.hpp"

namespace mpacc::ref {

namespace {

void check_lengths(std::size_t nw, std::size_t nx) {
  if (nw != nx)
    throw std::invalid_argument("inner product: " + std::to_string(nw) + " weights but " + std::to_string(nx) +
                                " inputs");
}

// mpfr_sum of owned terms into out; returns the ternary value
int sum_into(mpfr_ptr out, std::vector<mpfr_float>& terms) {
  std::vector<mpfr_ptr> ptrs;
  ptrs.reserve(terms.size());
  for (auto& t : terms) ptrs.push_back(t.get());
  return mpfr_sum(out, ptrs.data(), static_cast<unsigned long>(ptrs.size()), MPFR_RNDN);
}

}  // namespace

boost_float make_boost_float(mpfr_prec_t bits, double x) {
  const mpfr_float v(bits, x);
  return to_boost(v.get());
}

boost_float to_boost(mpfr_srcptr x) {
  // mpfr_float_backend<0>(const mpfr_t) takes x's precision in bits; the check
  // below keeps that promise whatever the Boost version does on the way.
  boost_float r(x);
  if (mpfr_get_prec(r.backend().data()) != mpfr_get_prec(x)) {
    mpfr_set_prec(r.backend().data(), mpfr_get_prec(x));
    mpfr_set(r.backend().data(), x, MPFR_RNDN);
  }
  return r;
}

std::vector<boost_float> to_boost(const std::vector<mpfr_float>& xs) {
  std::vector<boost_float> r;
  r.reserve(xs.size());
  for (const auto& x : xs) r.push_back(to_boost(x.get()));
  return r;
}

int dot_round_to(mpfr_ptr out, std::span<const double> w, std::span<const double> x, double bias) {
  check_lengths(w.size(), x.size());
  const auto widest = exponent_range_guard::widest();
  bool fast = std::isfinite(bias);
  if (fast) {
    long_accumulator acc;
    for (std::size_t j = 0; j < w.size() && fast; ++j)
      fast = std::isfinite(w[j]) && std::isfinite(x[j]) && acc.add_product(w[j], x[j]);
    if (fast) {
      acc.add(bias);
      mpz_t z;
      mpz_init(z);
      acc.to_mpz(z);
      const int t = mpfr_set_z_2exp(out, z, -1074, MPFR_RNDN);
      mpz_clear(z);
      return t;
    }
  }
  // exact products (106 bits hold any product of two doubles) and one mpfr_sum
  std::vector<mpfr_float> terms;
  terms.reserve(w.size() + 1);
  for (std::size_t j = 0; j < w.size(); ++j) {
    terms.emplace_back(106, w[j]);
    mpfr_mul_d(terms.back().get(), terms.back().get(), x[j], MPFR_RNDN);  // exact
  }
  terms.emplace_back(53, bias);
  return sum_into(out, terms);
}

int dot_round_to(mpfr_ptr out, std::span<const double> w, std::span<const boost_float> x, const boost_float& bias) {
  check_lengths(w.size(), x.size());
  const auto widest = exponent_range_guard::widest();
  std::vector<mpfr_float> terms;
  terms.reserve(w.size() + 1);
  for (std::size_t j = 0; j < w.size(); ++j) {
    const mpfr_srcptr xj = x[j].backend().data();
    terms.emplace_back(mpfr_get_prec(xj) + 53);
    mpfr_mul_d(terms.back().get(), xj, w[j], MPFR_RNDN);  // exact: prec(x_j) + 53 bits
  }
  terms.emplace_back(mpfr_get_prec(bias.backend().data()));
  mpfr_set(terms.back().get(), bias.backend().data(), MPFR_RNDN);  // same precision: exact
  return sum_into(out, terms);
}

boost_float dot_rounded(std::span<const double> w, std::span<const double> x, double bias, mpfr_prec_t P) {
  boost_float r = make_boost_float(P);
  dot_round_to(r.backend().data(), w, x, bias);
  return r;
}

boost_float dot_rounded(std::span<const double> w, std::span<const boost_float> x, const boost_float& bias,
                        mpfr_prec_t P) {
  boost_float r = make_boost_float(P);
  dot_round_to(r.backend().data(), w, x, bias);
  return r;
}

boost_exact_dot dot_exact_boost(std::span<const double> w, std::span<const double> x, double bias) {
  check_lengths(w.size(), x.size());
  const exact_dot e = dot_exact(w, x, bias);
  return {to_boost(e.value.get()), to_boost(e.abs_sum.get())};
}

boost_float activate(const boost_float& v, const sim::activation_fn& f, mpfr_prec_t P) {
  const mpfr_float in = from_boost(v);
  mpfr_float out(P);
  activate(out, in, f);
  return to_boost(out.get());
}

}  // namespace mpacc::ref
