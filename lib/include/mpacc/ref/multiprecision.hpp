// SPDX-License-Identifier: MIT
// Boost.Multiprecision entry points of the reference engine: its MPFR values,
// exact and correctly rounded inner products, activations and the MPFR rounding
// to a format, taking and giving boost::multiprecision::mpfr_float (variable
// precision) or number<mpfr_float_backend<D>> (fixed), so a C++ user continues
// a high-precision computation with ordinary operators.
//
// Precision is always explicit. Every number returned here has its precision set
// in bits from the engine (an argument P, or the exact precision of the value it
// converts, or 4400 bits for exact inner products), through mpfr_t; nothing here
// constructs a Boost number at Boost's default precision, reads it or changes it.
// What Boost does afterwards is Boost's rule (Boost 1.74): the result of an
// expression takes the largest precision of its operands, counted in decimal
// digits and converted back to bits (200 bits -> 201, 113 -> 114, but 53 -> 51),
// and assigning an expression to a variable gives the variable that precision.
// To pin a result to P bits, call set_precision_bits(x, P) (a rounding to
// nearest). Boost 1.74 applies the operands' precision during an expression by
// temporarily changing mpfr_float's process-wide default precision: code that
// evaluates Boost expressions at different precisions on several threads at once,
// or constructs mpfr_float without a precision while another thread does, races
// on that default (mpacc itself never does either). See docs/design.md.
//
// The thin ref::mpfr_float wrapper stays the engine's own type in the hot paths
// (measured in bench/bench_reference.cpp, docs/performance.md).
#pragma once

#include <boost/multiprecision/mpfr.hpp>
#include <cstdint>
#include <span>
#include <vector>

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/ref/round.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::ref {

namespace bmp = boost::multiprecision;

// Variable precision: the precision of each value is its own (set in bits here).
using boost_float = bmp::mpfr_float;
// Fixed precision: Boost's template argument counts decimal digits; the type
// holds boost_fixed_bits<D> bits (Boost's conversion: D * 1000 / 301 rounded
// down, plus 2, or plus 1 when exact).
template <unsigned Digits10>
using boost_fixed = bmp::number<bmp::mpfr_float_backend<Digits10>>;
template <unsigned Digits10>
inline constexpr mpfr_prec_t boost_fixed_bits = static_cast<mpfr_prec_t>(Digits10 * 1000UL / 301UL +
                                                                         (Digits10 * 1000UL % 301UL ? 2 : 1));

// The precision of a Boost MPFR number in bits (Boost's own precision() counts
// decimal digits).
template <unsigned D, bmp::mpfr_allocation_type A, bmp::expression_template_option ET>
mpfr_prec_t precision_bits(const bmp::number<bmp::mpfr_float_backend<D, A>, ET>& x) noexcept {
  return mpfr_get_prec(x.backend().data());
}

// Rounds x to nearest at exactly `bits` bits (MPFR_PREC_MIN <= bits), in place.
inline void set_precision_bits(boost_float& x, mpfr_prec_t bits) {
  mpfr_prec_round(x.backend().data(), bits, MPFR_RNDN);
}

// A variable-precision number of exactly `bits` bits holding x rounded to nearest
// (exact when bits >= 53).
boost_float make_boost_float(mpfr_prec_t bits, double x = 0.0);

// ref value -> Boost, exact: the result has x's precision in bits.
boost_float to_boost(mpfr_srcptr x);
inline boost_float to_boost(const mpfr_float& x) { return to_boost(x.get()); }
// A vector of them (e.g. one layer of nn::reference_sample::v or y, at P bits).
std::vector<boost_float> to_boost(const std::vector<mpfr_float>& xs);

// ref value -> fixed-precision Boost type, rounded to nearest at its bits.
template <unsigned Digits10>
boost_fixed<Digits10> to_boost_fixed(mpfr_srcptr x) {
  boost_fixed<Digits10> r;  // fixed type: its precision comes from Digits10, not a default
  mpfr_set(r.backend().data(), x, MPFR_RNDN);
  return r;
}
template <unsigned Digits10>
boost_fixed<Digits10> to_boost_fixed(const mpfr_float& x) {
  return to_boost_fixed<Digits10>(x.get());
}

// Boost -> ref value, exact: the result has x's precision in bits.
template <unsigned D, bmp::mpfr_allocation_type A, bmp::expression_template_option ET>
mpfr_float from_boost(const bmp::number<bmp::mpfr_float_backend<D, A>, ET>& x) {
  mpfr_float r(mpfr_get_prec(x.backend().data()));
  mpfr_set(r.get(), x.backend().data(), MPFR_RNDN);
  return r;
}

// --- inner products ---------------------------------------------------------

// sum_j w_j x_j + bias rounded once, to nearest-even, to out's precision (any
// finite or non-finite binary64 inputs; NaN and infinities as MPFR's sum gives
// them). The exact sum comes from the long accumulator, or MPFR's exact
// products and mpfr_sum when a product leaves binary64's range. Returns MPFR's
// ternary value (0: the result is exact). Throws std::invalid_argument when the
// spans' lengths differ.
int dot_round_to(mpfr_ptr out, std::span<const double> w, std::span<const double> x, double bias);
// Same with Boost inputs x_j of any precisions: every product w_j x_j is formed
// exactly (precision(x_j) + 53 bits), then one correctly rounded mpfr_sum.
int dot_round_to(mpfr_ptr out, std::span<const double> w, std::span<const boost_float> x, const boost_float& bias);

// The inner product rounded once to P bits, as a Boost number of exactly P bits.
boost_float dot_rounded(std::span<const double> w, std::span<const double> x, double bias, mpfr_prec_t P);
// Same with Boost inputs (e.g. the previous layer's outputs at P bits): how a user
// continues the reference pass layer by layer.
boost_float dot_rounded(std::span<const double> w, std::span<const boost_float> x, const boost_float& bias,
                        mpfr_prec_t P);
// Into a fixed-precision Boost type (its boost_fixed_bits<D> bits).
template <unsigned Digits10>
boost_fixed<Digits10> dot_rounded_fixed(std::span<const double> w, std::span<const double> x, double bias) {
  boost_fixed<Digits10> r;
  dot_round_to(r.backend().data(), w, x, bias);
  return r;
}

// The exact value of sum_j w_j x_j + b and of sum |w_j x_j| + |b| (finite
// inputs), as ref::dot_exact computes them, at its 4400 bits.
struct boost_exact_dot {
  boost_float value, abs_sum;
};
boost_exact_dot dot_exact_boost(std::span<const double> w, std::span<const double> x, double bias);

// --- activations and rounding to a format ------------------------------------

// phi(v) at P bits with ref::activate's error bound (docs/design.md).
boost_float activate(const boost_float& v, const sim::activation_fn& f, mpfr_prec_t P);

// ref::round_mpfr of a Boost number (any precision, variable or fixed): one
// rounding of its exact value to format f with the semantics of sim::round.
template <unsigned D, bmp::mpfr_allocation_type A, bmp::expression_template_option ET>
double round_mpfr(const bmp::number<bmp::mpfr_float_backend<D, A>, ET>& x, const sim::format& f, sim::rounding mode,
                  bool saturate, unsigned& flags, std::uint64_t random_word = 0) {
  return round_mpfr(static_cast<mpfr_srcptr>(x.backend().data()), f, mode, saturate, flags, random_word);
}

}  // namespace mpacc::ref
