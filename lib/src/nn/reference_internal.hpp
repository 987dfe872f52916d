// SPDX-License-Identifier: MIT
// The pieces of the MPFR reference tier shared by the MLP engine
// (reference.cpp) and the convolutional network's pass (cnn_passes.cpp). Not installed.
#pragma once

#include <cstddef>
#include <vector>

#include "mpacc/ref/long_accumulator.hpp"
#include "mpacc/ref/mpfr.hpp"

namespace mpacc::nn::detail {

// Splits a P-bit value into binary64 parts summing to it exactly; false when
// a part would fall below binary64's range (then the caller uses MPFR products).
bool split(const ref::mpfr_float& y, std::vector<double>& parts);

// |x| * 2^-P as a binary64 upper bound (never 0 for x != 0, even when it
// is below binary64's range)
double scaled_abs_up(const ref::mpfr_float& x, mpfr_prec_t P);

// vi = sum_j w[j] in_j + b, in_j given as exact binary64 parts (parts[j],
// when use_parts) or as the MPFR value vals[j]; a null vals[j] (and parts[j])
// is a term that is exactly 0 (a padded position). exact: vi gets the
// precision the exact sum needs; else the sum is correctly rounded
// (nearest-even) to vi's precision. acc is scratch.
void reference_dot(ref::mpfr_float& vi, const double* w, std::size_t n, const std::vector<double>* const* parts,
                   const ref::mpfr_float* const* vals, bool use_parts, double b, bool exact,
                   ref::long_accumulator& acc);

// val as a double-double: hi the nearest binary64, lo the nearest binary64 to
// val - hi (scratch: any mpfr_float, its precision is reset).
void double_double(const ref::mpfr_float& val, double& hi, double& lo, ref::mpfr_float& scratch);

}  // namespace mpacc::nn::detail
