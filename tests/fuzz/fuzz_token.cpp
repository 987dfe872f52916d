// SPDX-License-Identifier: MIT
// libFuzzer target: the number tokens of `mpacc round` and `mpacc dot`
// (ref::round_token and ref::parse_binary64, both on ref::parse_to_odd).
//
// The first input byte chooses the target format (high nibble), the rounding
// mode (low 3 bits) and saturation (bit 3); the rest is the token. Besides a
// crash, a finding is a broken property (checked with __builtin_trap):
//  - a token is accepted exactly when it is a number of the documented grammar:
//    [+-] then a decimal (digits, '.', e-exponent), a C99 hex float (0x, hex
//    digits, '.', p-exponent), nan, inf or infinity, any case, however long its
//    exponent;
//  - both entry points agree on what is a number;
//  - an accepted token rounds to a value of the format (or NaN); in binary64
//    nearest-even it is bit for bit glibc's strtod (correctly rounded);
//  - a nonzero token never rounds to zero upward or downward, away from its sign
//    (the round-to-odd value must keep the token's sign and nonzero-ness);
//  - a token that is exactly a binary64 value d rounds in every format and mode
//    as ref::round_mpfr(d) does, flags included, and parse_binary64 gives d;
//  - the accepted binary64 value d printed with "%.17g" parses back to d exactly
//    in nearest-even, and printed with "%a" is a binary64 value equal to d.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "mpacc/ref/parse.hpp"
#include "mpacc/ref/round.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace {

namespace sim = mpacc::sim;

const sim::format kFormats[16] = {sim::formats::binary64,
                                  sim::formats::binary32,
                                  sim::formats::binary16,
                                  sim::formats::bfloat16,
                                  sim::formats::tf32,
                                  sim::formats::e5m2,
                                  sim::formats::e4m3,
                                  sim::formats::e4m3_ieee,
                                  sim::formats::e3m2,
                                  sim::formats::e2m3,
                                  sim::formats::e2m1,
                                  sim::make_format(1, -3, 3),
                                  sim::make_format(53, -1022, 1023, false),
                                  sim::make_format(11, -14, 15, false),
                                  sim::make_format(2, -1022, 1023),
                                  sim::make_format(53, 1020, 1023)};

[[noreturn]] void finding(const char* what, std::string_view token) {
  std::fprintf(stderr, "fuzz_token: %s; token '%.*s'\n", what, static_cast<int>(token.size()), token.data());
  __builtin_trap();
}

bool lower_is(std::string_view s, std::string_view word) {
  if (s.size() != word.size()) return false;
  for (std::size_t k = 0; k < s.size(); ++k)
    if ((s[k] | 0x20) != word[k]) return false;
  return true;
}

// The documented token grammar, written independently of the parser.
// zero: the value is zero (every digit of the significand is 0); finite: not nan
// or inf; huge_exponent: the exponent has 17 or more significant digits.
bool grammar(std::string_view t, bool& zero, bool& finite, bool& huge_exponent) {
  zero = true;
  finite = true;
  huge_exponent = false;
  std::size_t k = 0;
  if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
  const std::string_view body = t.substr(k);
  if (lower_is(body, "nan") || lower_is(body, "inf") || lower_is(body, "infinity")) {
    zero = false;
    finite = false;
    return true;
  }
  const bool hex = body.size() >= 2 && body[0] == '0' && (body[1] | 0x20) == 'x';
  if (hex) k += 2;
  auto digit = [&](char c) { return hex ? std::isxdigit(static_cast<unsigned char>(c)) != 0 : (c >= '0' && c <= '9'); };
  std::size_t digits = 0;
  for (; k < t.size() && digit(t[k]); ++k, ++digits)
    if (t[k] != '0') zero = false;
  if (k < t.size() && t[k] == '.')
    for (++k; k < t.size() && digit(t[k]); ++k, ++digits)
      if (t[k] != '0') zero = false;
  if (digits == 0) return false;
  if (k < t.size() && (t[k] | 0x20) == (hex ? 'p' : 'e')) {
    ++k;
    if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
    std::size_t e = 0, significant = 0;
    for (; k < t.size() && t[k] >= '0' && t[k] <= '9'; ++k, ++e)
      if (significant || t[k] != '0') ++significant;
    if (e == 0) return false;
    huge_exponent = significant >= 17;
  }
  return k == t.size();
}

bool same(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const sim::format& f = kFormats[data[0] >> 4];
  const auto mode = sim::all_roundings[(data[0] & 7) % 7];
  const bool saturate = (data[0] & 8) != 0;
  const std::string_view token(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::uint64_t word = 0x9e3779b97f4a7c15ull * (size + 1);

  unsigned flags = 0;
  double r = 0;
  const bool ok = mpacc::ref::round_token(token, f, mode, saturate, flags, word, r);
  double exact = 0;
  const bool is_binary64 = mpacc::ref::parse_binary64(token, exact);
  bool zero = false, finite = false, huge_exponent = false;
  const bool valid = grammar(token, zero, finite, huge_exponent);
  if (ok && !valid) finding("a token outside the grammar was accepted", token);
  if (!ok) {
    if (is_binary64) finding("parse_binary64 accepted a token round_token refused", token);
    if (valid) finding("a number of the grammar was refused", token);
    return 0;
  }

  // a value of the format
  if (!std::isnan(r)) {
    unsigned f2 = 0;
    if (std::isinf(r) ? !f.has_inf : sim::round(r, f, sim::rounding::nearest_even, false, f2) != r)
      finding("the result is not a value of the format", token);
    if (saturate && !(std::fabs(r) <= f.max_finite)) finding("saturation gave a value beyond max", token);
  } else if (finite && f.has_inf && !saturate) {
    finding("a finite token rounded to NaN in a format with infinities", token);
  }

  // binary64, nearest-even: strtod's value
  unsigned f64 = 0;
  double d = 0;
  if (!mpacc::ref::round_token(token, sim::formats::binary64, sim::rounding::nearest_even, false, f64, 0, d))
    finding("accepted once, refused once", token);
  if (token.find('\0') == std::string_view::npos) {
    const std::string s(token);
    char* end = nullptr;
    const double c = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !same(c, d)) finding("differs from strtod", token);
  }

  // nonzero stays nonzero in the directed mode away from zero
  if (finite && !zero) {
    const bool neg = token[0] == '-';
    unsigned fd = 0;
    double away = 0;
    (void)mpacc::ref::round_token(token, f, neg ? sim::rounding::downward : sim::rounding::upward, false, fd, 0, away);
    if (!std::isnan(away) && (away == 0 || std::signbit(away) != neg))
      finding("a nonzero token rounded to zero (or changed sign) away from zero", token);
  } else if (finite && zero && r != 0) {
    finding("a zero token rounded to nonzero", token);
  }

  // exactly a binary64 value: the binary64 path and MPFR agree
  if (is_binary64) {
    if (!same(exact, d)) finding("parse_binary64 and round_token disagree", token);
    unsigned fm = 0, fs = 0;
    double rs = 0;
    (void)mpacc::ref::round_token(token, f, mode, saturate, fs, word, rs);
    const double rm = mpacc::ref::round_mpfr(exact, f, mode, saturate, fm, word);
    if (!same(rs, rm) || (!std::isnan(exact) && fs != fm)) finding("sim::round and ref::round_mpfr disagree", token);
  }

  // printed and read back
  if (std::isfinite(d)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    unsigned fp = 0;
    double back = 0;
    if (!mpacc::ref::round_token(buf, sim::formats::binary64, sim::rounding::nearest_even, false, fp, 0, back) ||
        !same(back, d))
      finding("%.17g of the value does not read back", token);
    std::snprintf(buf, sizeof buf, "%a", d);
    if (!mpacc::ref::parse_binary64(buf, back) || !same(back, d))
      finding("%a of the value is not read back exactly", token);
  }
  return 0;
}
