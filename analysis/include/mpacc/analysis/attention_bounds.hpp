// SPDX-License-Identifier: MIT
// Condition numbers and error bounds of the two nonlinear row operations of a
// transformer block, softmax and layer normalization (part of mpacc::bounds,
// which depends on mpacc::sim only). Derivations, theorems and the measured
// tightness: docs/attention-bounds.md (the section named at each function).
//
// Three kinds of statement, kept apart:
//   - first-order condition numbers (kappa): the worst-case sensitivity of one
//     output to componentwise perturbations of the inputs, exact as the size of
//     the perturbation goes to 0; not bounds;
//   - rigorous perturbation bounds: for every perturbation |dz_j| <= eta_j of any
//     size, with the bound's own binary64 evaluation covered;
//   - rounding bounds of the computation mpacc defines (softmax_binary64,
//     layer_norm_binary64: binary64, then one rounding to the output format).
// All functions take one row (one token's logits or features); inputs must be
// finite, n >= 1 (softmax) or n >= 2 (layer normalization), eta_j >= 0.
#pragma once

#include <span>
#include <vector>

#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::analysis {

// ---------------------------------------------------------------------------
// Softmax s_i = exp(z_i - max z) / sum_j exp(z_j - max z)

// The computation the bounds below are about (docs/attention-bounds.md §3):
// m = max_j z_j; t_j = fl(z_j - m); e_j = exp(t_j) (libm); S = sum_j e_j (in
// index order; the bound holds for any order); s_j = fl(e_j / S).
std::vector<double> softmax_binary64(std::span<const double> z);

// First-order componentwise relative condition number w.r.t. relative
// perturbations |dz_j| <= eps |z_j| (§1):
//   kappa_i = sum_j |z_j| |delta_ij - s_j| = |z_i| (1 - s_i) + sum_{j != i} s_j |z_j|,
// so |ds_i| / s_i <= kappa_i eps + O(eps^2); attained by dz_j = eps |z_j| sign(delta_ij - s_j).
std::vector<double> softmax_kappa_rel(std::span<const double> z);

// The same w.r.t. absolute perturbations |dz_j| <= eps (§1):
//   kappa_abs_i = sum_j |delta_ij - s_j| = 2 (1 - s_i)    (relative output error per unit eps).
std::vector<double> softmax_kappa_abs(std::span<const double> z);

// Per logit: how much the whole row of outputs moves per unit absolute error in logit j,
// to first order (§1): c_j = sum_i |ds_i/dz_j| = 2 s_j (1 - s_j), the column sums of the
// Jacobian s_i (delta_ij - s_j). Each logit is one inner product of QK^T, so this is the
// weight of that inner product's error in the attention weights (for Algorithm 1's indicators).
std::vector<double> softmax_logit_sensitivity(std::span<const double> z);

// Rigorous relative bound (Theorem 1, §2): for every z' with |z'_j - z_j| <= eta_j,
//   |softmax(z')_i - softmax(z)_i| <= r_i softmax(z)_i,
//   r_i = max(U_i - 1, 1 - L_i),  U_i = 1 / (s_i + sum_{j != i} s_j exp(-(eta_i + eta_j))),
//                                 L_i = 1 / (s_i + sum_{j != i} s_j exp(+(eta_i + eta_j))),
// s = softmax(z). U_i and L_i are attained (z'_i = z_i +- eta_i, z'_j = z_j -+ eta_j), so
// the bound is the exact worst case; it is at most exp(eta_i + max_j eta_j) - 1. The
// center z may be either point: the statement is symmetric, so validation evaluates it
// at the simulated logits. s is taken from softmax_binary64(z) with its error bound.
std::vector<double> softmax_perturbation_bound(std::span<const double> z, std::span<const double> eta);

// Rounding error of softmax_binary64 (Theorem 2, §3): |s_hat_i - s_i| <= rho_i s_i + 2^-1070
// with s the exact softmax of z and
//   rho_i = max(e^phi_i r_hi - 1, 1 - e^-phi_i r_lo),  phi_i = u (|t_i| + ln n),
//   r_hi = (1 + c u)(1 + u) / ((1 - c u - n 2^-1072)(1 - u)^(n-1)),
//   r_lo = (1 - c u)(1 - u) / ((1 + c u + n 2^-1072)(1 + u)^(n-1)),
// u = 2^-53, c = 8 (libm's exp within 4 ulps, as for the activations), t_i = z_i - max z.
// To first order rho_i = u (|t_i| + ln n + 2c + n).
std::vector<double> softmax_binary64_error(std::span<const double> z);
// The absolute term of that bound (underflow of exp and of the quotient).
inline constexpr double softmax_binary64_abs_error = 0x1p-1070;

// What validation needs (§4): for the simulated logits z_hat, with |z_hat_j - z_j| <= eta_j
// for the exact logits z, an upper bound of |round_f(softmax_binary64(z_hat)_i) - softmax(z)_i|
// (absolute), the final rounding to f in `mode` without overflow (s <= 1).
std::vector<double> softmax_output_bound(std::span<const double> z_hat, std::span<const double> eta,
                                         const sim::format& f, sim::rounding mode);

// ---------------------------------------------------------------------------
// Layer normalization y_i = gamma_i (x_i - mu) / sqrt(sigma^2 + eps) + beta_i,
// mu = mean x, sigma^2 = mean (x - mu)^2 (biased, as PyTorch's LayerNorm), eps > 0.
// gamma and beta are exact parameters (stored values); x_hat = (x - mu) / sigma_eps.

// The computation (§7): S = sum_j x_j; mu = fl(S / n); d_j = fl(x_j - mu); Q = sum_j fl(d_j^2);
// v = fl(Q / n); sd = fl(sqrt(fl(v + eps))); xh_j = fl(d_j / sd); y_j = fl(fl(gamma_j xh_j) + beta_j)
// (two-pass variance; the sums in index order, the bound holds for any order and for an FMA
// in the last step). Requires eps >= 2^-900.
std::vector<double> layer_norm_binary64(std::span<const double> x, std::span<const double> gamma,
                                        std::span<const double> beta, double eps);

// First-order componentwise relative condition number of y_i w.r.t. relative
// perturbations |dx_j| <= e |x_j| (§5): with the Jacobian
//   dy_i/dx_j = (gamma_i / sigma_eps) J_ij,  J_ij = delta_ij - 1/n - x_hat_i x_hat_j / n,
//   kappa_i = |gamma_i| sum_j |J_ij| |x_j| / (sigma_eps |y_i|)   (+inf where y_i = 0 and the sum is not).
std::vector<double> layer_norm_kappa_rel(std::span<const double> x, std::span<const double> gamma,
                                         std::span<const double> beta, double eps);

// Absolute sensitivity (§5): sup over |dx_j| <= e of |dy_i|, divided by e, to first order:
//   a_i = |gamma_i| sum_j |J_ij| / sigma_eps.   (The relative condition of y_i w.r.t. absolute
// perturbations is a_i / |y_i|.)
std::vector<double> layer_norm_sensitivity_abs(std::span<const double> x, std::span<const double> gamma, double eps);

// Per input: sum_i |dy_i/dx_j| = sum_i |gamma_i| |J_ij| / sigma_eps (§5), the first-order change of
// the whole output row per unit absolute error in x_j (the column sums of the Jacobian).
std::vector<double> layer_norm_input_sensitivity(std::span<const double> x, std::span<const double> gamma, double eps);

// Rigorous absolute bound (Theorem 3, §6): for every x' with |x'_j - x_j| <= eta_j, with
// tau = ||eta||_2 / sqrt(n) < sigma_eps, m = mean_j |x_hat_j| eta_j, F_i = sum_j |J_ij| eta_j,
//   omega = min(tau, (2 sigma_eps m + tau^2) / (2 sigma_eps - tau)),
//   |y'_i - y_i| <= |gamma_i| (F_i + |x_hat_i| (m omega + tau^2) / (2 sigma_eps - omega)) / (sigma_eps - omega),
// and always <= 2 |gamma_i| sqrt(n - 1). The leading term is the first-order worst case
// |gamma_i| F_i / sigma_eps. Evaluated at x from layer_norm_binary64's values and their error
// bounds (the center may be either point).
std::vector<double> layer_norm_perturbation_bound(std::span<const double> x, std::span<const double> gamma, double eps,
                                                  std::span<const double> eta);

// Rounding error of layer_norm_binary64 (Theorem 4, §7): an upper bound of
// |y_hat_i - y_i| (absolute), y the exact layer normalization of x.
std::vector<double> layer_norm_binary64_error(std::span<const double> x, std::span<const double> gamma,
                                              std::span<const double> beta, double eps);

// What validation needs (§8): for simulated inputs x_hat with |x_hat_j - x_j| <= eta_j for the
// exact inputs x, an upper bound of |round_f(layer_norm_binary64(x_hat)_i) - y(x)_i|, the final
// rounding to f in `mode` (no overflow: check the flags).
std::vector<double> layer_norm_output_bound(std::span<const double> x_hat, std::span<const double> eta,
                                            std::span<const double> gamma, std::span<const double> beta, double eps,
                                            const sim::format& f, sim::rounding mode);

}  // namespace mpacc::analysis
