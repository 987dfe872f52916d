// SPDX-License-Identifier: MIT
#include "mpacc/sim/activation.hpp"

#include <array>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace mpacc::sim {

std::string_view to_string(activation a) noexcept {
  switch (a) {
    case activation::identity:
      return "identity";
    case activation::relu:
      return "relu";
    case activation::leaky_relu:
      return "leaky-relu";
    case activation::tanh:
      return "tanh";
    case activation::sigmoid:
      return "sigmoid";
    case activation::gelu:
      return "gelu";
    case activation::silu:
      return "silu";
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
// An unevaluated sum hi + lo (|lo| much smaller than |hi|).
struct split {
  double hi, lo;
};

// n / (1 + e) for 0 <= e <= 1 as an unevaluated sum hi + lo, accurate to about
// 2^-104 relative beyond the errors of n and e: 1 + e is split exactly (Fast2Sum)
// and the remainder of the division is recovered with an fma.
split over_one_plus(double n, double e) noexcept {
  const double d = 1 + e;
  const double dl = (1 - d) + e;  // 1 + e = d + dl exactly
  const double q = n / d;
  return {q, (std::fma(-q, d, n) - q * dl) / d};
}

// sigma(v) = 1/(1 + exp(-v)) = exp(v)/(1 + exp(v)); either branch keeps exp from
// overflowing. Beyond the final rounding only exp's error remains, not magnified
// (d log sigma / d log e = 1/(1 + e) <= 1): measured 1.43 ulps against MPFR (2.23
// with 1 + e and the division rounded separately).
double sigma(double v) noexcept {
  if (v >= 0) {
    const split s = over_one_plus(1, std::exp(-v));
    return s.hi + s.lo;
  }
  const double e = std::exp(v);
  const split s = over_one_plus(e, e);
  return s.hi + s.lo;
}

// v sigma(v), the same way with one rounding of the product at the end: measured
// 1.42 ulps on [-40, 40]. Past v = -708.4, exp(v) is subnormal while v exp(v) is
// still normal (down to v = -714.6): below v = -700 it is (v h) h with
// h = exp(v/2) (1/(1 + exp(v)) = 1 to 2^-1009 there), so the error of a subnormal
// exp(v) is not multiplied by |v| (v sigma(v) was 350 ulps off at v = -714):
// measured 2.0 ulps.
double silu(double v) noexcept {
  if (v > 40) return v;       // v (1 - sigma(-v)) rounds to v: sigma(-v) < 2^-57
  if (v < -800) return -0.0;  // |v exp(v)| < 2^-1075; also keeps v h finite at -inf
  if (v < -700) {
    const double h = std::exp(0.5 * v);
    const double p = v * h;
    return std::fma(p, h, std::fma(v, h, -p) * h);
  }
  split s;
  if (v >= 0) {
    s = over_one_plus(1, std::exp(-v));
  } else {
    const double e = std::exp(v);
    s = over_one_plus(e, e);
  }
  return std::fma(v, s.hi, v * s.lo);
}

// Double-double constants (hi + lo, |lo| <= ulp(hi)/2): 1/sqrt 2, 1/sqrt(2 pi); and 2/sqrt(pi).
constexpr double inv_sqrt2_hi = 0x1.6a09e667f3bcdp-1, inv_sqrt2_lo = -0x1.bdd3413b26456p-55;
constexpr double inv_sqrt_2pi_hi = 0x1.9884533d43651p-2, inv_sqrt_2pi_lo = -0x1.cbc0d30ebfd15p-56;
constexpr double two_inv_sqrtpi = 0x1.20dd750429b6dp+0;

// erfc(-v / sqrt 2) = e - de as {e, -de}. -v/sqrt 2 is t + dt with t its rounding and
// dt the rounding error (|dt| <= 2^-53 |t|, formed exactly up to 2^-106 |t| by an fma
// with the double-double 1/sqrt 2); de = (2/sqrt pi) exp(-t^2) dt corrects
// erfc(t) to first order (erfc' = -(2/sqrt pi) exp(-t^2)). Without it, for
// v < 0, erfc magnifies the relative error of its argument by about 2 t^2 (v Phi(v)
// was 20 ulps off on [-5, 0), 1650 near v = -37). What remains is erfc's own error
// while erfc(t) is normal (v > -37.5).
split erfc_arg(double v) noexcept {
  const double x = -v;
  const double t = x * inv_sqrt2_hi;
  const double dt = std::fma(x, inv_sqrt2_hi, -t) + x * inv_sqrt2_lo;
  return {std::erfc(t), -two_inv_sqrtpi * std::exp(-t * t) * dt};
}
// derivative() and kappa_act() use it on (-4, 40]
double Phi(double v) noexcept {
  const split e = erfc_arg(v);
  return 0.5 * (e.hi + e.lo);
}

// erfc(t0) as a double-double and K0 = (2/sqrt pi) exp(-t0^2) = -erfc'(t0), rounded
// to nearest from MPFR (400 bits), at t0 = k/8, k = 6..23.
struct erfc_node {
  double e_hi, e_lo, k0;
};
constexpr erfc_node erfc_nodes[] = {
    {0x1.27c6d14c5e341p-2, 0x1.3af3434d0eeabp-57, 0x1.492e42d78d2c5p-1},     // 6/8
    {0x1.ba36dab91c0e9p-3, 0x1.3c896e9a97c59p-58, 0x1.0cab61f084b93p-1},     // 7/8
    {0x1.4226162fbddd5p-3, -0x1.b40443f6ec34ap-59, 0x1.a911f096fbc26p-2},    // 8/8
    {0x1.c9296beb09cf1p-4, -0x1.5224acd170beep-59, 0x1.45e99bcbb7915p-2},    // 9/8
    {0x1.3bcd133aa0ffcp-4, -0x1.89da82345938bp-62, 0x1.e4652fadcb6b2p-3},    // 10/8
    {0x1.a8973c4b5c03ep-5, 0x1.d27662c1d9dc2p-59, 0x1.5ce595c455b0ap-3},     // 11/8
    {0x1.15aaa8ec85205p-5, -0x1.e86ee834da4cep-61, 0x1.e723726b824a9p-4},    // 12/8
    {0x1.612d893085125p-6, -0x1.7847afe4f2a7bp-62, 0x1.499d478bca735p-4},    // 13/8
    {0x1.b4be201caa4b4p-7, -0x1.6abde927f9cddp-61, 0x1.b055303221015p-5},    // 14/8
    {0x1.0678442cc256fp-7, -0x1.77b62199d8601p-61, 0x1.12ceb37ff9bc3p-5},    // 15/8
    {0x1.328f5ec350e67p-8, -0x1.ca006412e68dp-62, 0x1.529b9e8cf9a1ep-6},     // 16/8
    {0x1.5bde729a6b60fp-9, 0x1.999ec7becc5c7p-65, 0x1.94624e78e0fafp-7},     // 17/8
    {0x1.7f713f9cc9784p-10, -0x1.4207143202515p-64, 0x1.d4143a9dfe965p-8},   // 18/8
    {0x1.9a7c305336484p-11, 0x1.6394dd2ff0093p-65, 0x1.06918b6355624p-8},    // 19/8
    {0x1.aab859b20ac9ep-12, 0x1.88f4ff748376bp-66, 0x1.1d83170fbf6fbp-9},    // 20/8
    {0x1.aeb4423e690e7p-13, -0x1.a732e928e4c5dp-68, 0x1.2ce898809244ep-10},  // 21/8
    {0x1.a609f7584d32bp-14, 0x1.d92f3f7ab9ef5p-68, 0x1.3360ccd23db3ap-11},   // 22/8
    {0x1.916f7c5f2f764p-15, 0x1.84e95673c70a1p-70, 0x1.30538fbb77ecdp-12},   // 23/8
};

// (v/2) erfc(-v/sqrt 2) for -4 < v < -1, where glibc's erfc is up to 4 ulps off
// (3.95 measured near 1.241), too much for apply's 4 ulps even with an exact
// argument. With t + dt = -v/sqrt 2 as in erfc_arg, t0 the nearest node and
// H = (t - t0) + dt (|H| <= 1/16), Taylor's expansion
//   erfc(t0 + H) = erfc(t0) - K0 (H + sum_{m >= 2} G_{m-1} H^m / m!),
//   G_m = (-1)^m H_m(t0) (Hermite), G_{m+1} = -2 t0 G_m - 2m G_{m-1},
// cut after m = 14 (the remainder is below 2^-68 erfc(t0)). erfc(t0) - K0 (t - t0 + dt)
// is formed exactly up to 2^-105 (TwoSum, fma) and the sum, at most 0.1 of the
// value, in plain double; one rounding at the end. Measured 0.94 ulps.
double half_v_erfc_mid(double v) noexcept {
  const double x = -v;
  const double t = x * inv_sqrt2_hi;
  const double dt = std::fma(x, inv_sqrt2_hi, -t) + x * inv_sqrt2_lo;
  // t > 0, so the cast truncates: k is 8t rounded half up, 6..23 for 0.707 < t < 2.83
  const int k = static_cast<int>(8 * t + 0.5);  // NOLINT(bugprone-incorrect-roundings)
  const erfc_node& n = erfc_nodes[k - 6];
  const double h = t - 0.125 * k;  // exact (Sterbenz)
  const double H = h + dt;
  // W_m = G_{m-1} H^m: W_1 = H, W_{m+1} = a W_m + (m - 1) b W_{m-1}
  constexpr int terms = 14;
  constexpr auto inv_factorial = [] {
    std::array<double, terms + 1> f{};
    double q = 1;
    for (int m = 1; m <= terms; ++m) f[m] = 1 / (q *= m);
    return f;
  }();
  const double a = -0.25 * k * H, b = -2 * H * H;  // a = -2 t0 H
  double w_prev = H, w = a * H, sum = w * inv_factorial[2];
  for (int m = 2; m < terms; ++m) {
    const double w_next = a * w + (m - 1) * b * w_prev;
    sum += w_next * inv_factorial[m + 1];
    w_prev = w;
    w = w_next;
  }
  const double p = n.k0 * h;
  const double pl = std::fma(n.k0, h, -p) + n.k0 * dt;  // K0 (h + dt) = p + pl
  const double e = n.e_hi - p;                          // TwoSum: e + el = e_hi - p
  const double bv = e - n.e_hi;
  const double el = (n.e_hi - (e - bv)) + (-p - bv);
  const double hv = 0.5 * v;
  return std::fma(hv, e, hv * (el + n.e_lo - pl - n.k0 * sum));
}

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

// GELU(v) = v Phi(v), within 1.53 ulps measured against MPFR (docs/error-bounds.md):
// - v >= -1: (v/2) (e - de) with erfc_arg, rounded once (fma). There glibc's erfc is
//   within 1.1 ulps (its argument is below 0.71): measured 1.41 ulps for v >= 0,
//   1.53 on [-1, 0).
// - -4 < v < -1: half_v_erfc_mid, measured 0.94 ulps.
// - v <= -4: -x varphi(x) R(x) (x = -v) = -(1/sqrt(2 pi)) exp(-x^2/2) x/D with D the
//   continued fraction above, cut where its truncation error is below 2^-60 (40
//   terms at x = 4, 12 past x = 12). x/D, the constant and the factor
//   exp(-ds/2) = 1 - ds/2 of the exactly split x^2 = s + ds are carried in
//   double-double, so the only errors beyond the final rounding are exp(-s/2)'s and
//   D's (its last step is double-double too). exp(-s/2) underflows only where the
//   result, 2.5 times smaller, does too. Measured 1.3 ulps.
double gelu(double v) noexcept {
  if (v > 40) return v;      // v (1 - Phi(-v)) rounds to v: Phi(-v) < 2^-350
  if (v < -40) return -0.0;  // |v Phi(v)| < 2^-1100
  if (v == 0) return v;      // keeps the sign of zero
  if (v > -4) {
    if (v < -1) return half_v_erfc_mid(v);
    const split e = erfc_arg(v);
    const double hv = 0.5 * v;
    return std::fma(hv, e.hi, hv * e.lo);
  }
  const double x = -v;
  const int terms = x < 5 ? 40 : x < 6 ? 32 : x < 8 ? 24 : x < 12 ? 18 : 12;
  double d = x;
  for (int k = terms; k > 1; --k) d = x + k / d;
  const double r = 1 / d;
  const double dh = x + r, dl = (x - dh) + r;  // D = dh + dl (Fast2Sum: x >= 4 > r)
  const double q = x / dh;
  const double ql = (std::fma(-q, dh, x) - q * dl) / dh;  // x/D = q + ql
  const double s = x * x, ds = std::fma(x, x, -s);
  const double p = inv_sqrt_2pi_hi * q;
  const double pl = std::fma(inv_sqrt_2pi_hi, q, -p) + (inv_sqrt_2pi_hi * ql + inv_sqrt_2pi_lo * q) - 0.5 * ds * p;
  const double E = std::exp(-0.5 * s);
  return -std::fma(E, p, E * pl);
}
}  // namespace

double apply(const activation_fn& f, double v) noexcept {
  switch (f.kind) {
    case activation::identity:
      return v;
    case activation::relu:
      return v > 0 ? v : 0.0;
    case activation::leaky_relu:
      return v > 0 ? v : f.slope * v;
    case activation::tanh:
      return std::tanh(v);
    case activation::sigmoid:
      return sigma(v);
    case activation::gelu:
      return gelu(v);
    case activation::silu:
      return silu(v);
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
    case activation::identity:
      return 1;
    case activation::relu:
      return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu:
      return v > 0 ? 1.0 : f.slope;
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
    case activation::identity:
      return 1;
    case activation::relu:
      return v > 0 ? 1.0 : 0.0;
    case activation::leaky_relu:
      return 1;
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
    case activation::tanh:
      return 1;
    case activation::leaky_relu:
      return std::max(1.0, std::fabs(f.slope));
    case activation::sigmoid:
      return 0.25;
    case activation::gelu:
      return 1.1290;  // max of Phi(v) + v varphi(v) = 1.128904..., at v = sqrt(2)
    case activation::silu:
      return 1.1000;  // max of sigma(v)(1 + v(1 - sigma(v))) = 1.099839..., near v = 2.3994
  }
  return 1;
}

bool piecewise_linear(const activation_fn& f) noexcept {
  return f.kind == activation::identity || f.kind == activation::relu || f.kind == activation::leaky_relu;
}

}  // namespace mpacc::sim
