// SPDX-License-Identifier: MIT
// The reference pass of a vision transformer (docs/attention.md, "Reference
// pass and validation"): the forward pass of nn::vit in MPFR on the network
// and inputs it is given (the stored ones: nn::stored_network(vit, p) and the
// inputs stored in p.inputs), every value carried at P bits with a rigorous
// absolute bound on its distance to the exact real value.
//
// What is exact and what is not. Every inner product (embedding, q, k, v,
// Q K^T, P V, projection, MLP, head) is the exact sum of the exact products
// of the P-bit operands, rounded once to P bits (nearest). Layer norm
// (sqrt), softmax (exp) and GELU (erf) are evaluated in MPFR at P + 64 bits
// and rounded to P bits; the residual and position-embedding additions are
// one rounding to P bits. The bound of each value is its own evaluation error
// plus the propagated bounds of its operands (first-order-free: the products
// of two computed values include the product of the two errors, and the
// nonlinearities use global perturbation bounds), so it holds for any
// network; on a trained ViT at P = 200 it is about 2^-190 relative.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/vit.hpp"
#include "mpacc/ref/mpfr.hpp"

namespace mpacc::nn {

// One sample: per inner-product layer (vit::product_layer_names order), v and y
// laid out as simulated_vit_layer's rows of this sample (row-major), as
// P-bit values, with |value - exact| <= bound.
struct vit_reference_sample {
  std::vector<std::vector<ref::mpfr_float>> v, y;
  std::vector<std::vector<double>> v_bound, y_bound;
};

// The reference of one image x (image^2 values, used as they are). Only the
// MPFR tier: opt.exact is refused (GELU, softmax and layer norm are not
// piecewise linear); opt.precision in [64, 100000]. Throws
// std::invalid_argument for a network that does not validate, an input of
// the wrong size or with a non-finite value, or a layer norm whose input
// bounds exceed half its spread (not expected: the bounds are ~2^-P).
vit_reference_sample reference_forward_sample(const vit& net, std::span<const double> x,
                                              const reference_options& opt = {});

// The same for every row of X, as double-doubles (value = hi + lo, hi the
// nearest binary64) with the bounds; layers[k].n is the number of values of
// inner-product layer k per sample (rows per sample x cols of the simulated
// layer), so that value i of sample s is at s * n + i as in simulated_vit.
forward_result reference_forward(const vit& net, sim::matrix_view X, const reference_options& opt = {});

}  // namespace mpacc::nn
