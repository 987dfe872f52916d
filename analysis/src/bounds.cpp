#include "mpacc/analysis/bounds.hpp"

#include <cmath>
#include <limits>

namespace mpacc::analysis {

double kappa_dot(std::span<const double> w, std::span<const double> x, double b, double value) noexcept {
  double num = std::fabs(b);
  for (std::size_t j = 0; j < w.size(); ++j) num += std::fabs(w[j] * x[j]);
  if (value == 0) return num == 0 ? 1.0 : std::numeric_limits<double>::infinity();
  return num / std::fabs(value);
}

double max_derivative(const sim::activation_fn& f, double lo, double hi) noexcept {
  using sim::activation;
  if (!(lo <= hi)) return std::numeric_limits<double>::infinity();  // NaN interval
  const double closest = lo > 0 ? lo : (hi < 0 ? hi : 0.0);        // point nearest to 0
  const double up = 1 + 0x1p-40;                                   // libm's error, rounded up
  switch (f.kind) {
    case activation::identity: return 1;
    case activation::relu: return hi > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: {
      const double s = std::fabs(f.slope);
      if (lo > 0) return 1;
      if (hi <= 0) return s;
      return std::max(1.0, s);
    }
    case activation::tanh: {
      const double t = std::tanh(closest);
      return std::min(1.0, (1 - t * t) * up);
    }
    case activation::sigmoid: {
      const double e = std::exp(-std::fabs(closest));
      return std::min(0.25, e / ((1 + e) * (1 + e)) * up);
    }
    case activation::gelu:
    case activation::silu: return sim::lipschitz(f);
  }
  return std::numeric_limits<double>::infinity();
}

double probabilistic_confidence(std::size_t roundings, double u, double lambda) noexcept {
  const double q = 1 - 2 * static_cast<double>(roundings) * std::exp(-lambda * lambda * (1 - u) * (1 - u) / 2);
  return q > 0 ? q : 0;
}

}  // namespace mpacc::analysis
