// SPDX-License-Identifier: MIT
// Every error bound of the toolkit's simulated passes in one place (the
// target mpacc::bounds, which depends on mpacc::sim only): the unit roundoff
// of a rounding, gamma functions, the deterministic and probabilistic
// (Higham & Mary 2019) bounds of one simulated inner product, condition
// numbers (kappa_dot) and the derivative bounds that carry an error through an
// activation. validate.cpp propagates them through a network; the reference
// engine's own accuracy statement (nn/reference.hpp) is about the reference,
// not the simulation. Definitions: docs/semantics.md §6; derivations:
// docs/error-bounds.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/conv.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

// kappa_dot = (|w|^T|x| + |b|) / |w^T x + b|; `value` is w^T x + b (from the
// reference); +inf for an exact zero with a non-zero numerator, 1 for 0/0.
double kappa_dot(std::span<const double> w, std::span<const double> x, double b, double value) noexcept;
// The same ratio from its parts: numerator |w|^T|x| + |b| and value w^T x + b.
double kappa_ratio(double numerator, double value) noexcept;

// An upper bound of sup |phi'(t)| for t in [lo, hi]: exact for identity and (leaky)
// ReLU; for tanh and sigmoid, whose derivatives peak at 0, phi' at the point nearest
// 0 times (1 + 2^-40) plus 2^-1074 (never 0, also where phi' underflows); the global
// constant for GELU and SiLU.
double max_derivative(const sim::activation_fn& f, double lo, double hi) noexcept;

// Probability with which the probabilistic bound of an inner product with
// `roundings` rounding errors of unit roundoff u holds:
// 1 - 2 roundings exp(-lambda^2 (1 - u)^2 / 2) (clamped at 0).
double probabilistic_confidence(std::size_t roundings, double u, double lambda) noexcept;

// ---------------------------------------------------------------------------
// Accumulation bounds (docs/error-bounds.md)

// The deterministic bound of docs/error-bounds.md on |v_hat - v|:
//   sum_j |w_j x_j| ((1+u_p)(1+u)^k_j - 1) + |b| u + (number of roundings) * eta
// with u the accumulator's unit roundoff (2^-p for nearest, 2^(1-p) otherwise;
// with `via`, u + u_via + u u_via, the error of the two roundings together),
// u_p the product format's (0 for exact products) and eta the largest
// absolute error of a rounding in the subnormal range (half or one subnormal
// quantum of each format). Evaluated in binary64 with upward-rounded margins.
// Not valid when an overflow or saturation occurred (flag::overflow).
double deterministic_bound(std::span<const double> w, std::span<const double> x, double bias,
                           const sim::accumulation& a);

// The same bound with gamma_k(u) replaced by gamma(k, u) (e.g. the
// probabilistic gamma-tilde of Higham & Mary, param = lambda).
using gamma_fn = double (*)(int k, double u, double param);
double accumulation_bound(std::span<const double> w, std::span<const double> x, double bias, const sim::accumulation& a,
                          gamma_fn gamma, double param);

// The bound as coefficients, for evaluating it on many inner products of the
// same length and model: bound = margin * (sum_j |w_j x_j| theta[j] + |b| bias_coef + eta).
struct bound_model {
  std::vector<double> theta;  // per term: (1 + u_p)(1 + gamma(k_j)) - 1
  double bias_coef = 0;       // u of the accumulator (the bias is rounded once)
  double eta = 0;             // additive subnormal-range errors, amplified
  double margin = 1;          // 1 + (n + 8) 2^-52 for the bound's own evaluation
  [[nodiscard]] double evaluate(std::span<const double> w, std::span<const double> x, double bias) const noexcept;
};
bound_model make_bound_model(std::size_t n, const sim::accumulation& a, gamma_fn gamma, double param);

// (1 + u)^k - 1 rounded up: the exact worst case that gamma_k(u) = k u / (1 - k u)
// bounds when k u < 1, and finite for any k; param unused.
double gamma_deterministic(int k, double u, double param) noexcept;
// Higham & Mary (2019): gamma-tilde_k(lambda) = exp(lambda sqrt(k) u + k u^2 / (1 - u)) - 1,
// param = lambda.
double gamma_probabilistic(int k, double u, double lambda) noexcept;
// Unit roundoff of a rounding to f in `mode`: 2^-p for nearest modes, 2^(1-p) otherwise.
double unit_roundoff(const sim::format& f, sim::rounding mode) noexcept;

// Convolutions (sim/conv.hpp): the bound of every output of a layer.
// The deterministic bound (make_bound_model with gamma_deterministic) on
// |v_hat - v| of every output, v the exact sum of the same patch (padded terms
// are 0 and add nothing, but they keep their place in the order, so the other
// terms' rounding counts are those of the inner product actually computed).
// Same layout as Y. The accumulator of each output is spec.acc as above.
// Not valid for outputs whose flags include overflow (see deterministic_bound).
std::vector<double> conv2d_bounds(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                  std::span<const double> W, std::span<const double> b, const sim::layer_spec& spec);
// The same with gamma_k(u) replaced by gamma(k, u, param) (e.g.
// gamma_probabilistic, param = lambda: the Higham-Mary bound per output).
std::vector<double> conv2d_bounds(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                  std::span<const double> W, std::span<const double> b, const sim::layer_spec& spec,
                                  gamma_fn gamma, double param);

}  // namespace mpacc::analysis
