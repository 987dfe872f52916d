// SPDX-License-Identifier: MIT
// Exact inner products of the reference engine on integer (fixed-point) data.
// When a layer's weights are integers at one common scale
// (w_ij = W_ij 2^ew with |W_ij| < 2^62, true for weights stored in any format
// narrower than binary64 over a moderate range) and the layer's inputs are
// integers at a common scale (x_j = X_j 2^ex, X_j spanning nl 64-bit limbs),
// sum_j w_ij x_j = (sum_j W_ij X_j) 2^(ew+ex) is an integer dot product: one
// 64x64->128-bit multiply-add per term (nl = 1) or mpn_addmul_1 (nl > 1),
// exact, then one rounding (with the bias) by MPFR.
#pragma once

#include <gmp.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mpacc/ref/mpfr.hpp"

namespace mpacc::ref {

// A layer's weights (rows x cols, row-major) as integers at one common scale:
// w_ij = W_ij 2^ew; ok = false when they span more than 62 bits.
struct int_weights {
  bool ok = false;
  long ew = 0;
  std::vector<std::int64_t> W;  // n_out * n_in
  int bits = 0;                 // max bit length of |W_ij|
};
int_weights make_int_weights(std::span<const double> W);

// A layer's input as integers at a common scale: x_j = sign_j * mag_j * 2^ex,
// mag_j in nl limbs (little-endian); ok = false when they span more than 4096 bits.
struct int_inputs {
  bool ok = false;
  long ex = 0;
  std::size_t nl = 0;
  int bits = 0;                     // max bit length of mag_j
  std::vector<mp_limb_t> mag;       // n * nl
  std::vector<std::int64_t> small;  // nl == 1 and bits <= 62: signed values
  std::vector<char> neg;
};
int_inputs make_int_inputs(const std::vector<mpfr_float>& xs);

// value = (sum_j W_ij X_j) 2^(ew+ex) + b for row i, rounded once to out's
// precision (exact = true: out's precision set to what the exact value needs).
// pos, negacc and z are scratch space the caller keeps between calls.
void int_dot(mpfr_float& out, const int_weights& IW, const int_inputs& IX, std::size_t i, std::size_t n_in, double b,
             bool exact, std::vector<mp_limb_t>& pos, std::vector<mp_limb_t>& negacc, mpz_t z);

}  // namespace mpacc::ref
