// SPDX-License-Identifier: MIT
#include "mpacc/analysis/bounds.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mpacc::analysis {

std::string_view to_string(reference_inputs r) noexcept { return r == reference_inputs::stored ? "stored" : "exact"; }

reference_inputs parse_reference_inputs(std::string_view text) {
  if (text == "stored") return reference_inputs::stored;
  if (text == "exact") return reference_inputs::exact;
  throw std::invalid_argument("unknown reference inputs '" + std::string(text) + "' (stored or exact)");
}

double kappa_dot(std::span<const double> w, std::span<const double> x, double b, double value) noexcept {
  double num = std::fabs(b);
  for (std::size_t j = 0; j < w.size(); ++j) num += std::fabs(w[j] * x[j]);
  if (value == 0) return num == 0 ? 1.0 : std::numeric_limits<double>::infinity();
  return num / std::fabs(value);
}

double max_derivative(const sim::activation_fn& f, double lo, double hi) noexcept {
  using sim::activation;
  if (!(lo <= hi)) return std::numeric_limits<double>::infinity();  // NaN interval
  const double closest = lo > 0 ? lo : (hi < 0 ? hi : 0.0);         // point nearest to 0
  const double up = 1 + 0x1p-40;                                    // libm's error, rounded up
  switch (f.kind) {
    case activation::identity:
      return 1;
    case activation::relu:
      return hi > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: {
      const double s = std::fabs(f.slope);
      if (lo > 0) return 1;
      if (hi <= 0) return s;
      return std::max(1.0, s);
    }
    // The derivative at the point nearest 0, written with h = exp(-a/2) or exp(-a)
    // (a = |closest|) so that nothing cancels (1 - tanh^2 is 0 past a = 19). `up`
    // goes in before the one rounding that can be subnormal; 2^-1074 covers that
    // rounding and keeps the bound positive where the derivative underflows. Where
    // h itself underflows (a > 708, resp. 1416) the derivative is below 2^-1074.
    case activation::tanh: {
      const double h = std::exp(-std::fabs(closest));  // sech^2 = 4e/(1 + e)^2, e = h^2
      const double e = h * h;
      return std::min(1.0, 4 * h * up * h / ((1 + e) * (1 + e)) + 0x1p-1074);
    }
    case activation::sigmoid: {
      const double h = std::exp(-std::fabs(closest) / 2);  // sigma' = e/(1 + e)^2, e = h^2
      const double e = h * h;
      return std::min(0.25, h * up * h / ((1 + e) * (1 + e)) + 0x1p-1074);
    }
    case activation::gelu:
    case activation::silu:
      return sim::lipschitz(f);
  }
  return std::numeric_limits<double>::infinity();
}

double probabilistic_confidence(std::size_t roundings, double u, double lambda) noexcept {
  const double q = 1 - 2 * static_cast<double>(roundings) * std::exp(-lambda * lambda * (1 - u) * (1 - u) / 2);
  return q > 0 ? q : 0;
}

}  // namespace mpacc::analysis
