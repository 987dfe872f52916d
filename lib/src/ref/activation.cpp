// SPDX-License-Identifier: MIT
#include "mpacc/ref/activation.hpp"

#include <algorithm>

namespace mpacc::ref {

void activate(mpfr_float& out, const mpfr_float& v, const sim::activation_fn& f) {
  const auto widest = exponent_range_guard::widest();
  const mpfr_prec_t P = out.precision();
  const mpfr_prec_t G = P + 64;
  using sim::activation;
  switch (f.kind) {
    case activation::identity:
      mpfr_set(out.get(), v.get(), MPFR_RNDN);
      return;
    case activation::relu:
      if (mpfr_sgn(v.get()) > 0)
        mpfr_set(out.get(), v.get(), MPFR_RNDN);
      else
        mpfr_set_zero(out.get(), 1);
      return;
    case activation::leaky_relu:
      if (mpfr_sgn(v.get()) > 0) {
        mpfr_set(out.get(), v.get(), MPFR_RNDN);
      } else {
        mpfr_float t(v.precision() + 53);
        mpfr_mul_d(t.get(), v.get(), f.slope, MPFR_RNDN);  // exact
        mpfr_set(out.get(), t.get(), MPFR_RNDN);
      }
      return;
    case activation::tanh:
      mpfr_tanh(out.get(), v.get(), MPFR_RNDN);
      return;
    case activation::sigmoid:
    case activation::silu: {
      mpfr_float t(G);
      mpfr_neg(t.get(), v.get(), MPFR_RNDN);
      mpfr_exp(t.get(), t.get(), MPFR_RNDN);
      mpfr_add_ui(t.get(), t.get(), 1, MPFR_RNDN);
      mpfr_ui_div(t.get(), 1, t.get(), MPFR_RNDN);
      if (f.kind == activation::silu) mpfr_mul(t.get(), t.get(), v.get(), MPFR_RNDN);
      mpfr_set(out.get(), t.get(), MPFR_RNDN);
      return;
    }
    case activation::gelu: {
      // (v/2) erfc(-v/sqrt 2): no cancellation for negative v
      mpfr_float s(G), t(G);
      mpfr_sqrt_ui(s.get(), 2, MPFR_RNDN);
      mpfr_div(t.get(), v.get(), s.get(), MPFR_RNDN);
      mpfr_neg(t.get(), t.get(), MPFR_RNDN);
      mpfr_erfc(t.get(), t.get(), MPFR_RNDN);
      mpfr_mul(t.get(), t.get(), v.get(), MPFR_RNDN);
      mpfr_div_2ui(t.get(), t.get(), 1, MPFR_RNDN);
      mpfr_set(out.get(), t.get(), MPFR_RNDN);
      return;
    }
  }
}

double activation_rounding_factor(const sim::activation_fn& f) noexcept {
  using sim::activation;
  switch (f.kind) {
    case activation::identity:
    case activation::relu:
    case activation::leaky_relu:
    case activation::tanh:
      return 1.0;
    default:
      return 1.0 + 0x1p-32;
  }
}

}  // namespace mpacc::ref
