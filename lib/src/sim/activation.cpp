#include "mpacc/sim/activation.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace mpacc::sim {

std::string_view to_string(activation a) noexcept {
  switch (a) {
    case activation::identity: return "identity";
    case activation::relu: return "relu";
    case activation::leaky_relu: return "leaky-relu";
    case activation::tanh: return "tanh";
    case activation::sigmoid: return "sigmoid";
    case activation::gelu: return "gelu";
    case activation::silu: return "silu";
  }
  return "?";
}

activation parse_activation(std::string_view text) {
  for (activation a : all_activations)
    if (to_string(a) == text) return a;
  if (text == "leaky_relu") return activation::leaky_relu;
  throw std::invalid_argument("unknown activation '" + std::string(text) +
                              "' (activations: identity, relu, leaky-relu, tanh, sigmoid, gelu, silu)");
}

namespace {
double sigma(double v) noexcept {
  // both branches avoid overflow of exp
  if (v >= 0) return 1 / (1 + std::exp(-v));
  const double e = std::exp(v);
  return e / (1 + e);
}
// apply() is defined by this Phi; derivative() and kappa_act() use it only on (-4, 40]
double Phi(double v) noexcept { return 0.5 * std::erfc(-v / std::numbers::sqrt2); }

constexpr double inv_sqrt_2pi = std::numbers::inv_sqrtpi * (std::numbers::sqrt2 / 2);

// c varphi(v) = c exp(-v^2/2) / sqrt(2 pi) with v^2 = s + ds split exactly (fma):
// rounding v^2 alone costs a relative error up to v^2 2^-54 (8e-14 at |v| = 38).
// exp(-s/2) is formed as h*h, h = exp(-s/4), with c in between, so the result is
// not lost to an underflow of exp before its own.
double c_varphi(double c, double v) noexcept {
  if (std::fabs(v) > 40) return 0;  // |c| varphi(v) < 2^-1100 for the c used here
  const double s = v * v;
  const double ds = std::fma(v, v, -s);
  const double h = std::exp(-0.25 * s);
  return h * (c * (1 - 0.5 * ds) * inv_sqrt_2pi) * h;
}

// Mills ratio Phi(-x) / varphi(x) for x >= 4, by Laplace's continued fraction
// 1/(x + 1/(x + 2/(x + 3/(x + ...)))) cut at 40 terms (below 2^-52 relative for
// x >= 4, checked against MPFR in tests/test_activation.cpp). Needs no erfc, so
// GELU's tail ratios stay finite where Phi(v) underflows (v < -38.5).
double mills(double x) noexcept {
  double t = x;
  for (int k = 40; k > 0; --k) t = x + k / t;
  return 1 / t;
}
}  // namespace

double apply(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity: return v;
    case activation::relu: return v > 0 ? v : 0.0;
    case activation::leaky_relu: return v > 0 ? v : f.slope * v;
    case activation::tanh: return std::tanh(v);
    case activation::sigmoid: return sigma(v);
    case activation::gelu: return v * Phi(v);
    case activation::silu: return v * sigma(v);
  }
  return v;
}

// Tails: 1 - sigma(v) and 1 - tanh(v)^2 cancel for large v (sigma(v) and tanh(v)
// round to 1 past v = 37 and 19), so every expression below is written with
// e = exp(-|v|) (or exp(-2|v|)), with no subtraction of nearly equal values.
// Where exp(-a) underflows before the result does, it is formed as h*h with
// h = exp(-a/2) and the other factors multiplied in between.
double derivative(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity: return 1;
    case activation::relu: return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: return v > 0 ? 1.0 : f.slope;
    case activation::tanh: {
      // sech^2(v) = 4e / (1 + e)^2, e = exp(-2|v|)
      const double h = std::exp(-std::fabs(v));
      const double e = h * h;
      return 4 * h * h / ((1 + e) * (1 + e));
    }
    case activation::sigmoid: {
      // sigma(v) sigma(-v) = e / (1 + e)^2, e = exp(-|v|)
      const double e = std::exp(-std::fabs(v));
      return e / ((1 + e) * (1 + e));
    }
    case activation::gelu: {
      if (std::fabs(v) > 40) return v > 0 ? 1.0 : 0.0;  // |v varphi(v)| < 2^-1100
      // Phi(v) + v varphi(v) = varphi(v) (R(-v) + v): Phi from the Mills ratio
      if (v <= -4) return c_varphi(mills(-v) + v, v);
      return Phi(v) + c_varphi(v, v);
    }
    case activation::silu: {
      // sigma(v) (1 + v sigma(-v))
      if (std::isinf(v)) return v > 0 ? 1.0 : 0.0;
      if (v >= 0) {
        const double e = std::exp(-v);
        return (1 + v * e / (1 + e)) / (1 + e);
      }
      const double h = std::exp(v / 2), e = h * h;  // e = exp(v)
      return h * (1 + v / (1 + e)) * h / (1 + e);
    }
  }
  return 1;
}

double kappa_act(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity: return 1;
    case activation::relu: return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: return 1;
    case activation::tanh: {
      // 2a/sinh(2a) = 4a e / (1 - e^2), e = exp(-2a), a = |v|: sinh(2a) overflows
      // past a = 355, where the ratio is still normal (it reaches 2^-1074 near a = 376)
      const double a = std::fabs(v);
      if (a == 0) return 1;
      if (a > 400) return 0;  // below 2^-1074; also keeps 4a and exp(-a) finite and non-zero
      const double h = std::exp(-a);
      return 4 * a * h * h / -std::expm1(-4 * a);
    }
    case activation::sigmoid: {
      // |v| (1 - sigma(v)) = |v| sigma(-v)
      if (v < 0) return -v / (1 + std::exp(v));
      if (std::isinf(v)) return 0;
      const double h = std::exp(-v / 2), e = h * h;  // e = exp(-v)
      return v * h * h / (1 + e);
    }
    case activation::gelu: {
      // |1 + v varphi(v) / Phi(v)|; for v <= -4 it is x / R(x) - 1 (x = -v, R the Mills
      // ratio), about v^2, finite where Phi underflows
      if (v <= -4) return -v / mills(-v) - 1;
      if (v > 40) return 1;
      return std::fabs(1 + c_varphi(v, v) / Phi(v));
    }
    case activation::silu: {
      // |1 + v sigma(-v)|
      if (v < 0) return std::fabs(1 + v / (1 + std::exp(v)));
      if (std::isinf(v)) return 1;
      const double e = std::exp(-v);
      return 1 + v * e / (1 + e);
    }
  }
  return 1;
}

double lipschitz(const activation_fn& f) noexcept {
  switch (f.kind) {
    case activation::identity:
    case activation::relu:
    case activation::tanh: return 1;
    case activation::leaky_relu: return std::max(1.0, std::fabs(f.slope));
    case activation::sigmoid: return 0.25;
    case activation::gelu: return 1.1290;  // max of Phi(v) + v varphi(v) = 1.128904..., at v = sqrt(2)
    case activation::silu: return 1.1000;  // max of sigma(v)(1 + v(1 - sigma(v))) = 1.099839..., near v = 2.3994
  }
  return 1;
}

bool piecewise_linear(const activation_fn& f) noexcept {
  return f.kind == activation::identity || f.kind == activation::relu || f.kind == activation::leaky_relu;
}

}  // namespace mpacc::sim
