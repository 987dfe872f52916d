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
double Phi(double v) noexcept { return 0.5 * std::erfc(-v / std::numbers::sqrt2); }
double varphi(double v) noexcept { return std::exp(-0.5 * v * v) / std::sqrt(2 * std::numbers::pi); }
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

double derivative(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity: return 1;
    case activation::relu: return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: return v > 0 ? 1.0 : f.slope;
    case activation::tanh: {
      const double t = std::tanh(v);
      return 1 - t * t;
    }
    case activation::sigmoid: {
      const double s = sigma(v);
      return s * (1 - s);
    }
    case activation::gelu: return Phi(v) + v * varphi(v);
    case activation::silu: {
      const double s = sigma(v);
      return s * (1 + v * (1 - s));
    }
  }
  return 1;
}

double kappa_act(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity: return 1;
    case activation::relu: return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu: return 1;
    case activation::tanh: return v == 0 ? 1.0 : std::fabs(2 * v / std::sinh(2 * v));
    case activation::sigmoid: return std::fabs(v) * (1 - sigma(v));
    case activation::gelu: {
      const double P = Phi(v);
      return P == 0 ? HUGE_VAL : std::fabs(1 + v * varphi(v) / P);
    }
    case activation::silu: {
      const double s = sigma(v);
      return std::fabs(1 + v * (1 - s));
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
