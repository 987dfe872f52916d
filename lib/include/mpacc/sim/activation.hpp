// SPDX-License-Identifier: MIT
// Activation functions in binary64: values, derivatives, condition numbers and
// the constants the error bounds need. The MPFR versions are in ref/activation.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mpacc::sim {

enum class activation : std::uint8_t { identity, relu, leaky_relu, tanh, sigmoid, gelu, silu };

inline constexpr activation all_activations[] = {activation::identity, activation::relu,    activation::leaky_relu,
                                                 activation::tanh,     activation::sigmoid, activation::gelu,
                                                 activation::silu};

// "identity", "relu", "leaky-relu", "tanh", "sigmoid", "gelu", "silu".
std::string_view to_string(activation a) noexcept;
// Inverse of to_string; throws std::invalid_argument naming the token.
activation parse_activation(std::string_view text);

// An activation with its parameter (the negative slope of leaky ReLU, a
// binary64 value used exactly by every tier).
struct activation_fn {
  activation kind = activation::identity;
  double slope = 0.01;  // leaky ReLU only
  friend bool operator==(const activation_fn&, const activation_fn&) = default;
};

// phi(v) in binary64, within 4 ulps of the exact value where that is normal and
// within 2 quanta of 2^-1074 where it is not: the libm term of validate's output
// bound relies on it (docs/error-bounds.md), and tests/test_activation.cpp checks
// it against MPFR over [-40, 40] and the far tails. Measured worst cases: identity
// and ReLU exact, leaky ReLU 0.5 ulp (one rounding of slope * v), tanh 1.97
// (libm's tanh), sigmoid 1.43, GELU 1.53, SiLU 1.42 on [-40, 40] and 2.01 near
// v = -714 (where exp(v) is subnormal but v sigma(v) is not). Sigmoid, GELU and
// SiLU carry their quotients and products in double-double, so that libm's exp or
// erfc is the only error beyond the final rounding; GELU never rounds -v/sqrt 2
// before erfc magnifies its error, and replaces libm's erfc where that is up to 4
// ulps off (-4 < v < -1: Taylor expansion about tabulated points; v <= -4: Mills
// ratio). At +-inf: the limits (GELU and SiLU 0 at -inf).
double apply(const activation_fn& f, double v) noexcept;
// phi'(v) (the right derivative at the kinks of ReLU and leaky ReLU).
double derivative(const activation_fn& f, double v) noexcept;
// kappa_act(v) = |v phi'(v) / phi(v)| (docs/semantics.md §6): ReLU 1 for v > 0 and 0 for v < 0;
// leaky ReLU and identity 1; tanh 2v/sinh(2v); sigmoid |v| (1 - sigma(v)) = |v| sigma(-v);
// GELU |1 + v varphi(v)/Phi(v)|; SiLU |1 + v sigma(-v)|.
// Both are evaluated without cancellation, overflow or premature underflow in the
// tails: relative error below 1e-14 for every finite v (2e-15 measured against
// MPFR; absolute 2^-1073 for subnormal results), except near the zero of phi' of
// GELU and SiLU (v = -0.75, -1.28), where it is relative to the sum of the terms'
// magnitudes. At +-inf they return the limits (e.g. GELU: phi' 0 and 1, kappa_act
// inf and 1).
double kappa_act(const activation_fn& f, double v) noexcept;
// sup |phi'| over the real line (a Lipschitz constant): 1 for identity, ReLU, tanh;
// max(1, |slope|) for leaky ReLU; 1/4 for sigmoid; 1.1290 for GELU; 1.1000 for SiLU
// (rounded up).
double lipschitz(const activation_fn& f) noexcept;
// Piecewise linear with exact binary slopes (identity, ReLU, leaky ReLU): an
// exact forward pass is possible.
bool piecewise_linear(const activation_fn& f) noexcept;

}  // namespace mpacc::sim
