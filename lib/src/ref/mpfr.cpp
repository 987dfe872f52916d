// SPDX-License-Identifier: MIT
#include "mpacc/ref/mpfr.hpp"

#include <cctype>
#include <cstdio>
#include <string>

namespace mpacc::ref {

std::string mpfr_float::to_hex() const {
  char* s = nullptr;
  if (mpfr_asprintf(&s, "%Ra", v_) < 0 || s == nullptr) return "?";
  std::string r(s);
  mpfr_free_str(s);
  return r;
}

void make_odd(mpfr_float& x, int ternary) {
  if (ternary == 0 || !mpfr_number_p(x.get()) || mpfr_zero_p(x.get())) return;
  // x was rounded toward zero? If it was rounded away, step back first.
  const bool away = (mpfr_sgn(x.get()) > 0) ? ternary > 0 : ternary < 0;
  if (away) {
    if (mpfr_sgn(x.get()) > 0)
      mpfr_nextbelow(x.get());
    else
      mpfr_nextabove(x.get());
  }
  // last significand bit: x / ulp(x) is an integer; test its parity exactly
  mpfr_float scaled(x.precision());
  const mpfr_exp_t ulp_exp = mpfr_get_exp(x.get()) - x.precision();
  mpfr_mul_2si(scaled.get(), x.get(), -ulp_exp - 1, MPFR_RNDN);  // exact: x/(2 ulp)
  const bool odd = !mpfr_integer_p(scaled.get());
  if (!odd) {
    if (mpfr_sgn(x.get()) > 0)
      mpfr_nextabove(x.get());
    else
      mpfr_nextbelow(x.get());
  }
}

bool parse_to_odd(std::string_view token, mpfr_float& out) {
  if (token.empty()) return false;
  std::string s(token);
  // MPFR's parser accepts forms we do not want ("@nan@", leading spaces):
  // only [+-], digits, '.', 'e'/'p' exponents, hex prefix, nan and inf.
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string body = lower;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.erase(0, 1);
  if (body == "nan" || body == "inf" || body == "infinity") {
    if (body == "nan")
      mpfr_set_nan(out.get());
    else
      mpfr_set_inf(out.get(), lower[0] == '-' ? -1 : 1);
    return true;
  }
  if (body.empty() || !(std::isdigit(static_cast<unsigned char>(body[0])) || body[0] == '.')) return false;
  // base 0 of mpfr_strtofr also reads '@' exponents ("1@3" = 1000) and binary
  // numbers ("0b101"): neither is a C number (found by tests/fuzz/fuzz_token)
  if (body.find('@') != std::string::npos || body.rfind("0b", 0) == 0) return false;
  // MPFR misreads exponents beyond a long once the significand's digits shift
  // them (".0001e-99999999999999999999" gave its largest number; found by
  // tests/fuzz/fuzz_token): an exponent of more than 15 digits is read as
  // +-10^15, which keeps the value nonzero and beyond every format, inside
  // MPFR's range, so every format and mode rounds it as the exact value.
  {
    const bool hex = body.size() >= 2 && body[0] == '0' && (body[1] == 'x');
    const auto mark = lower.find(hex ? 'p' : 'e');
    if (mark != std::string::npos) {
      std::size_t k = mark + 1;
      if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
      while (k < s.size() && s[k] == '0') ++k;
      const std::string_view digits = std::string_view(s).substr(k);
      if (digits.size() > 15 && digits.find_first_not_of("0123456789") == std::string_view::npos)
        s = s.substr(0, k) + "1000000000000000";
    }
  }
  const auto widest = exponent_range_guard::widest();
  char* end = nullptr;
  const int ternary = mpfr_strtofr(out.get(), s.c_str(), &end, 0, MPFR_RNDZ);
  if (end != s.c_str() + s.size()) return false;
  if (!mpfr_number_p(out.get())) return false;  // e.g. exponent beyond MPFR's own range
  if (mpfr_zero_p(out.get()) && ternary != 0) {
    // a nonzero value below MPFR's own range ("1e-99999999999999999999") came
    // out as 0: its round-to-odd value is the smallest magnitude of that range
    // (below every format, so every mode still rounds it correctly; found by
    // tests/fuzz/fuzz_token: upward rounding gave 0)
    if (mpfr_signbit(out.get()))
      mpfr_nextbelow(out.get());
    else
      mpfr_nextabove(out.get());
    return true;
  }
  make_odd(out, ternary);
  return true;
}

}  // namespace mpacc::ref
