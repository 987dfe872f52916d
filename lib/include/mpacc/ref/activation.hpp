// SPDX-License-Identifier: MIT
// Activation functions evaluated by MPFR.
#pragma once

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/activation.hpp"

namespace mpacc::ref {

// out = phi(v) rounded to nearest at out's precision P. Identity, ReLU and
// leaky ReLU are one rounding of the exact value (exact when P is large
// enough; leaky ReLU's product slope * v is formed exactly first). tanh is
// MPFR's correctly rounded mpfr_tanh. sigmoid = 1/(1 + exp(-v)),
// SiLU = v * sigmoid(v) and GELU = (v/2) erfc(-v/sqrt 2) are evaluated at
// P + 64 bits and then rounded to P: their error is at most
// 2^-P |out| (1 + 2^-32) (docs/design.md, "Reference engine").
void activate(mpfr_float& out, const mpfr_float& v, const sim::activation_fn& f);

// Relative error factor of activate() beyond the final rounding: the bound is
// |out - phi(v)| <= 2^-P |out| * activation_rounding_factor(f).
double activation_rounding_factor(const sim::activation_fn& f) noexcept;

}  // namespace mpacc::ref
