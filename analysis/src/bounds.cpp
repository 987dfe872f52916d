// SPDX-License-Identifier: MIT
#include "mpacc/analysis/bounds.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace mpacc::analysis {

double kappa_dot(std::span<const double> w, std::span<const double> x, double b, double value) noexcept {
  double num = std::fabs(b);
  for (std::size_t j = 0; j < w.size(); ++j) num += std::fabs(w[j] * x[j]);
  return kappa_ratio(num, value);
}

double kappa_ratio(double numerator, double value) noexcept {
  if (value == 0) return numerator == 0 ? 1.0 : std::numeric_limits<double>::infinity();
  return numerator / std::fabs(value);
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

namespace {

double eta_of(const sim::format& f, sim::rounding mode) {
  const bool nearest = mode == sim::rounding::nearest_even || mode == sim::rounding::nearest_away;
  const int q = f.subnormals ? f.emin - f.p + 1 : f.emin;
  return std::ldexp(1.0, nearest ? q - 1 : q);
}

}  // namespace

double unit_roundoff(const sim::format& f, sim::rounding mode) noexcept {
  const bool nearest = mode == sim::rounding::nearest_even || mode == sim::rounding::nearest_away;
  return std::ldexp(1.0, nearest ? -f.p : 1 - f.p);
}

double gamma_deterministic(int k, double u, double) noexcept {
  // (1 + u)^k - 1, the exact worst case of k relative errors of size u; it is
  // below gamma_k = k u / (1 - k u) and, unlike it, finite for k u >= 1.
  // expm1/log1p are within an ulp; the product k log1p(u) (<= 710) adds at most
  // 2^-43 relative to the result: inflate by 2^-40.
  const double x = static_cast<double>(k) * std::log1p(u);
  return std::expm1(x) * (1 + 0x1p-40);
}

double gamma_probabilistic(int k, double u, double lambda) noexcept {
  return std::expm1(lambda * std::sqrt(static_cast<double>(k)) * u + k * u * u / (1 - u));
}

bound_model make_bound_model(std::size_t n, const sim::accumulation& a, gamma_fn gamma, double param) {
  bound_model m;
  const auto k = sim::rounding_counts(n, a.ord);
  const double u_acc = unit_roundoff(a.acc, a.mode);
  // through `via`: |round_acc(round_via(X)) - X| <= (u_via + u_acc + u_via u_acc)|X|
  // (+ the subnormal-range terms below)
  const double u_via = a.via ? unit_roundoff(*a.via, sim::rounding::nearest_even) : 0.0;
  const double u = a.via ? (u_acc + u_via + u_acc * u_via) * (1 + 0x1p-50) : u_acc;
  const double up = a.product ? unit_roundoff(*a.product, a.mode) : 0.0;
  m.theta.resize(n);
  int kmax = 1;
  for (std::size_t j = 0; j < n; ++j) {
    const double g = gamma(k[j], u, param);
    m.theta[j] = g + up + up * g;
    kmax = std::max(kmax, k[j]);
  }
  m.bias_coef = u;
  // additive errors of roundings in the subnormal range: one per accumulator
  // step (n steps + merges + bias <= 2n + 1) and one per rounded product,
  // each amplified by at most (1 + gamma_kmax)
  const double steps = 2.0 * static_cast<double>(n) + 1;
  double eta = steps * eta_of(a.acc, a.mode);
  if (a.via) eta += steps * eta_of(*a.via, sim::rounding::nearest_even) * (1 + u_acc);
  if (a.product) eta += static_cast<double>(n) * eta_of(*a.product, a.mode) * (1 + up);
  m.eta = eta * (1 + gamma_deterministic(kmax, u, 0));
  // margin for evaluating the bound itself in binary64 (n + 8 roundings)
  m.margin = 1 + (static_cast<double>(n) + 8) * 0x1p-52;
  return m;
}

double bound_model::evaluate(std::span<const double> w, std::span<const double> x, double bias) const noexcept {
  double sum = 0;
  for (std::size_t j = 0; j < w.size(); ++j) {
    const double t = std::fabs(w[j] * x[j]);
    if (t != 0) sum += t * theta[j];  // 0 * inf would be NaN
  }
  return (sum + std::fabs(bias) * bias_coef + eta) * margin;
}

double accumulation_bound(std::span<const double> w, std::span<const double> x, double bias, const sim::accumulation& a,
                          gamma_fn gamma, double param) {
  return make_bound_model(w.size(), a, gamma, param).evaluate(w, x, bias);
}

double deterministic_bound(std::span<const double> w, std::span<const double> x, double bias,
                           const sim::accumulation& a) {
  return accumulation_bound(w, x, bias, a, gamma_deterministic, 0);
}

}  // namespace mpacc::analysis
