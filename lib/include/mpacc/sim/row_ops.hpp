// SPDX-License-Identifier: MIT
// The two row operations of a transformer block in binary64, as one kernel
// shared by the simulated pass (nn/vit_passes.hpp) and the error bounds that
// cover exactly this computation (analysis/attention_bounds.hpp, Theorems 2
// and 4 of docs/attention-bounds.md). Any change here changes what those
// theorems must cover.
#pragma once

#include <span>

namespace mpacc::sim {

// Softmax by max-shift: m = max_j z_j, t_j = fl(z_j - m), s_j = exp(t_j)
// (libm), S = the sum of the s_j left to right, s_j = fl(s_j / S). t and s
// have z.size() entries (n >= 1, finite z).
void softmax_binary64(std::span<const double> z, std::span<double> t, std::span<double> s) noexcept;

// Two-pass layer normalization without gain and shift: mu = fl(sum x / n)
// (the sum left to right), d_j = fl(x_j - mu), v = fl(fl(sum fl(d_j^2)) / n),
// sd = fl(sqrt(fl(v + eps))), xh_j = fl(d_j / sd); returns sd. The output of
// the layer is then fl(fl(gamma_j xh_j) + beta_j). d and xh have x.size()
// entries (n >= 1).
double layer_norm_binary64(std::span<const double> x, double eps, std::span<double> d, std::span<double> xh) noexcept;

}  // namespace mpacc::sim
