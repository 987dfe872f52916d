// SPDX-License-Identifier: MIT
#include "mpacc/sim/row_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace mpacc::sim {

void softmax_binary64(std::span<const double> z, std::span<double> t, std::span<double> s) noexcept {
  const std::size_t n = z.size();
  if (n == 0) return;
  double m = z[0];
  for (const double v : z) m = std::max(m, v);
  double S = 0;
  for (std::size_t j = 0; j < n; ++j) {
    t[j] = z[j] - m;
    s[j] = std::exp(t[j]);
    S += s[j];
  }
  for (std::size_t j = 0; j < n; ++j) s[j] /= S;
}

double layer_norm_binary64(std::span<const double> x, double eps, std::span<double> d, std::span<double> xh) noexcept {
  const std::size_t n = x.size();
  const double nd = static_cast<double>(n);
  double S = 0;
  for (const double v : x) S += v;
  const double mu = S / nd;
  double Q = 0;
  for (std::size_t j = 0; j < n; ++j) {
    d[j] = x[j] - mu;
    Q += d[j] * d[j];
  }
  const double sd = std::sqrt(Q / nd + eps);
  for (std::size_t j = 0; j < n; ++j) xh[j] = d[j] / sd;
  return sd;
}

}  // namespace mpacc::sim
