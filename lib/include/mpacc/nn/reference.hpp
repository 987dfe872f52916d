// SPDX-License-Identifier: MIT
// Reference forward passes of an MLP on its stored weights and inputs:
// the MPFR tier (P bits, default 200, or exact for piecewise-linear networks)
// and a fast binary64 tier with compensated inner products. Both state a
// componentwise absolute error bound against exact real arithmetic
// (docs/design.md, "Reference engine").
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::nn {

struct reference_options {
  mpfr_prec_t precision = 200;  // P: every pre-activation and output is rounded to P bits
  bool exact = false;           // exact values (identity/ReLU/leaky-ReLU networks only; bounds are 0)
  int threads = 0;              // 0: all
};

// One sample at full precision: per layer, v and y as MPFR values and their bounds.
struct reference_sample {
  std::vector<std::vector<ref::mpfr_float>> v, y;
  std::vector<std::vector<double>> v_bound, y_bound;  // |value - exact| <= bound
};

// Per layer, for a batch: values as double-doubles (value = hi + lo to 106 bits;
// hi is the nearest binary64) and absolute error bounds, row-major batch x n.
struct layer_values {
  std::size_t n = 0;
  std::vector<double> v_hi, v_lo, y_hi, y_lo, v_bound, y_bound;
};
struct forward_result {
  std::size_t batch = 0;
  std::vector<layer_values> layers;
};

// The MPFR tier prepared for one network (weights analysed once: integer
// scaling for the fixed-point path). The network must outlive the engine.
// sample() and forward() are const and thread-safe.
class reference_engine {
 public:
  explicit reference_engine(const mlp& net);
  [[nodiscard]] reference_sample sample(std::span<const double> x, const reference_options& opt = {}) const;
  [[nodiscard]] forward_result forward(sim::matrix_view X, const reference_options& opt = {}) const;

 private:
  struct impl;
  std::shared_ptr<impl> p_;
};

// Throws std::invalid_argument for a malformed network, a mismatched input,
// non-finite inputs, or exact mode on a network that is not piecewise linear.
reference_sample reference_forward_sample(const mlp& net, std::span<const double> x, const reference_options& opt = {});
forward_result reference_forward(const mlp& net, sim::matrix_view X, const reference_options& opt = {});

// binary64 tier: inner products by Dot2 (Ogita, Rump, Oishi 2005: as if
// computed in twice the working precision), activations from libm. Bound per
// component: |v - exact| <= u|v| + 2 gamma_{n+1}^2 sum |w||x| + propagated input
// bounds; outputs add 8u|y| for libm's tanh/exp/erfc (glibc documents <= 2 ulps;
// 4 ulps assumed) and Lipschitz(phi) times the pre-activation bound.
forward_result fast_forward(const mlp& net, sim::matrix_view X, int threads = 0);

// Softmax of P-bit logits at P bits (inner evaluation at P + 64 bits).
std::vector<ref::mpfr_float> softmax(const std::vector<ref::mpfr_float>& logits);

}  // namespace mpacc::nn
