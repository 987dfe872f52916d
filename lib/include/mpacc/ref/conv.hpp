// SPDX-License-Identifier: MIT
// Exact values of convolution outputs: the reference of sim::prepared_conv2d.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/conv.hpp"

namespace mpacc::ref {

// The exact value of every output sum_j w_cj x_j + b_c of the convolution
// (finite operands), each in an mpfr_float whose precision holds it exactly
// (the long accumulator; ref::dot_exact for products it cannot take).
// Layout of sim::prepared_conv2d::run: batch x c_out x oh x ow.
std::vector<mpfr_float> conv2d_exact(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                     std::span<const double> W, std::span<const double> b);

// The same values correctly rounded (nearest-even) to binary64.
std::vector<double> conv2d_nearest(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                   std::span<const double> W, std::span<const double> b);

}  // namespace mpacc::ref
