// SPDX-License-Identifier: MIT
// Correct rounding of binary64 values to any format, in seven modes.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>

#include "mpacc/sim/format.hpp"
#include "mpacc/sim/random.hpp"

namespace mpacc::sim {

enum class rounding : std::uint8_t {
  nearest_even,  // ties to the value whose last significand bit is 0 (0 counts as even)
  nearest_away,  // ties away from zero
  toward_zero,
  upward,      // toward +inf
  downward,    // toward -inf
  odd,         // toward zero, then, if inexact, the neighbour with an odd last bit
  stochastic,  // away from zero with probability (|x| - |RZ(x)|) / (RU(x) - RD(x)):
               // the magnitude rounds up iff (random word) * 2^-64 < that fraction, so
               // RU(x) has probability (x - RD(x)) / (RU(x) - RD(x)) as docs/semantics.md §2 states
};

inline constexpr rounding all_roundings[] = {rounding::nearest_even, rounding::nearest_away, rounding::toward_zero,
                                             rounding::upward,       rounding::downward,     rounding::odd,
                                             rounding::stochastic};

// "nearest-even", "nearest-away", "toward-zero", "upward", "downward", "odd", "stochastic".
std::string_view to_string(rounding mode) noexcept;
// Inverse of to_string; throws std::invalid_argument naming the token.
rounding parse_rounding(std::string_view text);

// Sticky exception flags, OR-ed together. Arithmetic never throws.
namespace flag {
inline constexpr unsigned inexact = 1u;     // the result differs from the exact value
inline constexpr unsigned underflow = 2u;   // inexact and tiny (|x| < 2^emin) before rounding
inline constexpr unsigned overflow = 4u;    // the rounded magnitude exceeded max_finite
inline constexpr unsigned invalid = 8u;     // a NaN was produced from a non-NaN input
inline constexpr unsigned saturated = 16u;  // an overflow or an infinity was replaced by +-max
}  // namespace flag

// Names of the set flags, comma-separated ("inexact,underflow"), or "none".
std::string flags_to_string(unsigned flags);

// How to round: the format (which says whether subnormals exist), the mode,
// saturation, and the seed of the stochastic stream.
struct round_spec {
  format fmt = formats::binary64;
  rounding mode = rounding::nearest_even;
  bool saturate = false;   // overflow and +-inf give +-max_finite
  std::uint64_t seed = 0;  // stochastic rounding: element i uses random_bits(seed, i)
};

namespace detail {

inline constexpr std::uint64_t sign_mask = 0x8000000000000000ULL;
inline constexpr std::uint64_t exp_mask = 0x7ff0000000000000ULL;
inline constexpr std::uint64_t frac_mask = 0x000fffffffffffffULL;
inline constexpr std::uint64_t implicit_bit = 0x0010000000000000ULL;

// The core: rounds x to f in mode Mode. `rbits` are 64 random bits (stochastic
// mode only). Works on the binary64 encoding: rounding a magnitude to a multiple
// of 2^q is rounding the integer encoding at bit d = q - quantum(x), and a carry
// into the exponent field is exactly the step into the next binade.
template <rounding Mode>
[[gnu::always_inline]] inline double round_core(double x, const format& f, bool saturate, unsigned& flags,
                                                std::uint64_t rbits) noexcept {
  const std::uint64_t bx = std::bit_cast<std::uint64_t>(x);
  const std::uint64_t sign = bx & sign_mask;
  const std::uint64_t a = bx ^ sign;
  const int biased = static_cast<int>(a >> 52);
  const bool neg = sign != 0;
  if (biased == 0x7ff) [[unlikely]] {
    if (a & frac_mask) return x;  // NaN in, NaN out
    if (saturate) {
      flags |= flag::saturated;
      return neg ? -f.max_finite : f.max_finite;
    }
    if (f.has_inf) return x;
    flags |= flag::invalid;
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (a == 0) return x;  // signed zero kept

  // e: exponent of x (any value below every emin for binary64 subnormals);
  // q: exponent of the quantum of the result's grid at x; qx: quantum of x.
  const int e = biased == 0 ? -1100 : biased - 1023;
  const int q = f.subnormals ? (e > f.emin ? e : f.emin) - (f.p - 1) : (e >= f.emin ? e - (f.p - 1) : f.emin);
  const int qx = (biased > 1 ? biased : 1) - 1075;
  const int d = q - qx;

  std::uint64_t r;
  bool inexact;
  if (d <= 0) {
    r = a;
    inexact = false;
  } else if (d <= 52) [[likely]] {
    const std::uint64_t ulp = 1ULL << d;
    const std::uint64_t rem = a & (ulp - 1);
    const std::uint64_t trunc = a - rem;
    inexact = rem != 0;
    // parity of the multiple of 2^q (the implicit bit counts when d == 52)
    const std::uint64_t odd_bit = ((a | (biased ? implicit_bit : 0)) >> d) & 1;
    bool up;
    if constexpr (Mode == rounding::nearest_even) {
      const std::uint64_t half = ulp >> 1;
      up = rem > half || (rem == half && odd_bit);
    } else if constexpr (Mode == rounding::nearest_away) {
      up = rem >= (ulp >> 1);
    } else if constexpr (Mode == rounding::toward_zero) {
      up = false;
    } else if constexpr (Mode == rounding::upward) {
      up = inexact && !neg;
    } else if constexpr (Mode == rounding::downward) {
      up = inexact && neg;
    } else if constexpr (Mode == rounding::odd) {
      up = inexact && !odd_bit;
    } else {  // stochastic: d random bits against the d dropped bits
      up = (rbits >> (64 - d)) < rem;
    }
    r = trunc + (up ? ulp : 0);
  } else {
    // |x| < 2^q: the neighbours are 0 and 2^q (q >= -1021 here).
    inexact = true;
    const double ax = std::bit_cast<double>(a);
    const double half = std::ldexp(1.0, q - 1);
    bool up;
    if constexpr (Mode == rounding::nearest_even) {
      up = ax > half;  // the tie goes to 0, the even neighbour
    } else if constexpr (Mode == rounding::nearest_away) {
      up = ax >= half;
    } else if constexpr (Mode == rounding::toward_zero) {
      up = false;
    } else if constexpr (Mode == rounding::upward) {
      up = !neg;
    } else if constexpr (Mode == rounding::downward) {
      up = neg;
    } else if constexpr (Mode == rounding::odd) {
      up = true;  // 0 is even, 2^q is 1 quantum
    } else {
      // up iff rbits * 2^-64 < ax / 2^q, compared exactly: y = ax * 2^(64-q) is
      // exact when ax >= 2^(q-64) (y >= 1, normal), and y < 2^64
      if (ax >= std::ldexp(1.0, q - 64)) {
        const double y = std::ldexp(ax, 64 - q);
        up = rbits < static_cast<std::uint64_t>(std::ceil(y));
      } else {
        up = rbits == 0;  // 0 < y < 1
      }
    }
    r = up ? std::bit_cast<std::uint64_t>(std::ldexp(1.0, q)) : 0;
  }

  double res = std::bit_cast<double>(r);
  if (inexact) {
    flags |= flag::inexact;
    if (e < f.emin) flags |= flag::underflow;
  }
  if (res > f.max_finite) [[unlikely]] {
    flags |= flag::overflow | flag::inexact;
    constexpr bool toward_zero_like = Mode == rounding::toward_zero || Mode == rounding::odd;
    const bool to_max = toward_zero_like || (Mode == rounding::upward && neg) || (Mode == rounding::downward && !neg);
    if (saturate) {
      flags |= flag::saturated;
      res = f.max_finite;
    } else if (to_max) {
      res = f.max_finite;
    } else if (f.has_inf) {
      res = std::numeric_limits<double>::infinity();
    } else {
      flags |= flag::invalid;
      return std::numeric_limits<double>::quiet_NaN();
    }
  }
  return std::bit_cast<double>(std::bit_cast<std::uint64_t>(res) | sign);
}

}  // namespace detail

// Rounds x to spec.fmt in mode `Mode` (compile-time mode: the fastest scalar path).
template <rounding Mode>
[[nodiscard]] inline double round(double x, const format& f, bool saturate, unsigned& flags,
                                  std::uint64_t random_word = 0) noexcept {
  return detail::round_core<Mode>(x, f, saturate, flags, random_word);
}

// Rounds x with a runtime mode. `random_word` is used by stochastic rounding only
// (64 uniformly random bits, e.g. random_bits(seed, i)).
[[nodiscard]] double round(double x, const format& f, rounding mode, bool saturate, unsigned& flags,
                           std::uint64_t random_word = 0) noexcept;

// Convenience: nearest-even, no saturation, flags discarded.
[[nodiscard]] inline double round(double x, const format& f) noexcept {
  unsigned flags = 0;
  return detail::round_core<rounding::nearest_even>(x, f, false, flags, 0);
}

// A scalar rounder holding a spec and, for stochastic rounding, its stream
// position: the k-th call uses random_bits(spec.seed, k).
class rounder {
 public:
  explicit rounder(const round_spec& spec, std::uint64_t counter = 0) noexcept : spec_(spec), counter_(counter) {}
  double operator()(double x) noexcept {
    const std::uint64_t bits = spec_.mode == rounding::stochastic ? random_bits(spec_.seed, counter_++) : 0;
    return round(x, spec_.fmt, spec_.mode, spec_.saturate, flags_, bits);
  }
  [[nodiscard]] unsigned flags() const noexcept { return flags_; }
  void clear_flags() noexcept { flags_ = 0; }
  [[nodiscard]] const round_spec& spec() const noexcept { return spec_; }

 private:
  round_spec spec_;
  std::uint64_t counter_;
  unsigned flags_ = 0;
};

// Rounds in[i] into out[i] (in and out may be the same array). Element i of a
// stochastic rounding uses random_bits(spec.seed, first_index + i), so results
// do not depend on `threads` (0 = all available; arrays below a threshold run
// on one thread). Returns the OR of the flags. Sizes must match.
unsigned round_array(std::span<const double> in, std::span<double> out, const round_spec& spec,
                     std::uint64_t first_index = 0, int threads = 0);

}  // namespace mpacc::sim
