// SPDX-License-Identifier: MIT
// Number formats: a runtime description of a binary floating-point format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mpacc::sim {

// A binary floating-point format with p significand bits (implicit bit included)
// and normal exponents emin..emax: normal values are m * 2^(e - p + 1) with
// 2^(p-1) <= m < 2^p, emin <= e <= emax; subnormals (when present) are
// m * 2^(emin - p + 1) with 0 < m < 2^(p-1). Every value of every valid format
// is exactly representable in binary64 (validated: 1 <= p <= 53,
// -1022 <= emin < emax <= 1023).
//
// A literal, structural type: usable as a template argument in hot loops.
struct format {
  int p = 53;                                   // significand bits, including the implicit bit
  int emin = -1022;                             // exponent of the smallest normal number
  int emax = 1023;                              // exponent of the largest binade
  bool subnormals = true;                       // gradual underflow below 2^emin
  bool has_inf = true;                          // infinities exist (else overflow without saturation gives NaN)
  double max_finite = 0x1.fffffffffffffp+1023;  // largest finite value (a value of the format)

  // Unit roundoff u = 2^-p (round to nearest).
  [[nodiscard]] constexpr double unit_roundoff() const noexcept { return pow2(-p); }
  // Smallest positive normal number 2^emin.
  [[nodiscard]] constexpr double min_normal() const noexcept { return pow2(emin); }
  // Smallest positive number: 2^(emin-p+1) with subnormals, else 2^emin.
  [[nodiscard]] constexpr double min_positive() const noexcept { return subnormals ? pow2(emin - p + 1) : pow2(emin); }
  // The default largest finite value (2 - 2^(1-p)) * 2^emax.
  [[nodiscard]] static constexpr double default_max(int p, int emax) noexcept {
    return (2.0 - pow2(1 - p)) * pow2(emax);
  }
  // Storage width in bits of an IEEE-like encoding (sign + exponent + fraction);
  // used as the default cost weight of an accumulator.
  [[nodiscard]] int bit_width() const noexcept;

  friend constexpr bool operator==(const format&, const format&) = default;

  // 2^e for -1074 <= e <= 1023, exactly, in a constant expression.
  static constexpr double pow2(int e) noexcept {
    double r = 1.0;
    if (e >= 0) {
      for (int i = 0; i < e; ++i) r *= 2.0;
    } else {
      for (int i = 0; i < -e; ++i) r *= 0.5;
    }
    return r;
  }
};

// Builds a format with the default largest finite value.
constexpr format make_format(int p, int emin, int emax, bool subnormals = true, bool has_inf = true) noexcept {
  return format{p, emin, emax, subnormals, has_inf, format::default_max(p, emax)};
}

namespace formats {
inline constexpr format binary64 = make_format(53, -1022, 1023);
inline constexpr format binary32 = make_format(24, -126, 127);
inline constexpr format tf32 = make_format(11, -126, 127);
inline constexpr format binary16 = make_format(11, -14, 15);
inline constexpr format bfloat16 = make_format(8, -126, 127);
inline constexpr format e5m2 = make_format(3, -14, 15);
// OCP FP8 E4M3FN: no infinities, the top code is NaN, largest finite 448.
inline constexpr format e4m3{4, -6, 8, true, false, 448.0};
// IEEE-like E4M3 (the paper's companion code): infinities, largest finite 240.
inline constexpr format e4m3_ieee = make_format(4, -6, 7);
inline constexpr format e3m2 = make_format(3, -2, 4, true, false);  // OCP MX FP6
inline constexpr format e2m3 = make_format(4, 0, 2, true, false);   // OCP MX FP6
inline constexpr format e2m1 = make_format(2, 0, 2, true, false);   // OCP MX FP4
}  // namespace formats

struct named_format {
  std::string_view name;
  format fmt;
  std::string_view note;
};

// Every named format of the specification, in table order.
const std::vector<named_format>& named_formats();

// Checks a format: returns an empty string when valid, else a message naming the
// field and the allowed range.
std::string validate(const format& f);

// Parses a named format ("binary16", "e4m3", ...; case-sensitive, a few aliases
// such as "fp16", "bf16", "fp32", "fp64" are accepted) or a custom one
// "p=P,emin=E,emax=E[,subnormals=on|off][,inf=on|off][,max=X]".
// Throws std::invalid_argument naming the offending token.
format parse_format(std::string_view text);

// The name of a named format equal to f, or its custom description.
std::string to_string(const format& f);

}  // namespace mpacc::sim
