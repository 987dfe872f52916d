// SPDX-License-Identifier: MIT
// A thin RAII layer over MPFR: every value carries its own explicit precision;
// there is no hidden default precision anywhere in mpacc.
#pragma once

#include <mpfr.h>

#include <string>
#include <string_view>
#include <utility>

namespace mpacc::ref {

class mpfr_float {
 public:
  // A NaN of `precision` bits (MPFR_PREC_MIN <= precision <= MPFR_PREC_MAX).
  explicit mpfr_float(mpfr_prec_t precision) { mpfr_init2(v_, precision); }
  // x rounded to `precision` bits (exact when precision >= 53).
  mpfr_float(mpfr_prec_t precision, double x, mpfr_rnd_t rnd = MPFR_RNDN) {
    mpfr_init2(v_, precision);
    mpfr_set_d(v_, x, rnd);
  }
  mpfr_float(const mpfr_float& o) {
    mpfr_init2(v_, mpfr_get_prec(o.v_));
    mpfr_set(v_, o.v_, MPFR_RNDN);  // same precision: exact
  }
  mpfr_float& operator=(const mpfr_float& o) {
    if (this != &o) {
      mpfr_set_prec(v_, mpfr_get_prec(o.v_));
      mpfr_set(v_, o.v_, MPFR_RNDN);
    }
    return *this;
  }
  mpfr_float(mpfr_float&& o) noexcept {
    mpfr_init2(v_, MPFR_PREC_MIN);
    mpfr_swap(v_, o.v_);
  }
  mpfr_float& operator=(mpfr_float&& o) noexcept {
    mpfr_swap(v_, o.v_);
    return *this;
  }
  ~mpfr_float() { mpfr_clear(v_); }

  mpfr_ptr get() noexcept { return v_; }
  [[nodiscard]] mpfr_srcptr get() const noexcept { return v_; }
  [[nodiscard]] mpfr_prec_t precision() const noexcept { return mpfr_get_prec(v_); }
  // Nearest binary64 value (ties to even); exact when the value is a double.
  [[nodiscard]] double to_double() const noexcept { return mpfr_get_d(v_, MPFR_RNDN); }
  // Exact decimal-free representation, e.g. "0x1.8p+3".
  [[nodiscard]] std::string to_hex() const;

 private:
  mpfr_t v_;
};

// Sets MPFR's exponent range for the lifetime of the guard and restores the
// previous one afterwards (MPFR's range is thread-local state).
class exponent_range_guard {
 public:
  exponent_range_guard(mpfr_exp_t emin, mpfr_exp_t emax) noexcept
      : old_emin_(mpfr_get_emin()), old_emax_(mpfr_get_emax()) {
    mpfr_set_emin(emin);
    mpfr_set_emax(emax);
  }
  // Widest range MPFR allows.
  static exponent_range_guard widest() noexcept { return {mpfr_get_emin_min(), mpfr_get_emax_max()}; }
  exponent_range_guard(const exponent_range_guard&) = delete;
  exponent_range_guard& operator=(const exponent_range_guard&) = delete;
  ~exponent_range_guard() {
    mpfr_set_emin(old_emin_);
    mpfr_set_emax(old_emax_);
  }

 private:
  mpfr_exp_t old_emin_, old_emax_;
};

// Parses a decimal or C99 hexadecimal number ("0.1", "-1e-400", "0x1.8p3"),
// "nan", "inf", "-inf" (case-insensitive) into `out`, rounded to odd at out's
// precision: rounding that value to any format of at most precision-2 bits, in
// any deterministic mode, gives the correct rounding of the exact decimal value.
// Returns false when the token is not a number in full.
bool parse_to_odd(std::string_view token, mpfr_float& out);

// Rounds the value in x toward zero and, if that was inexact, makes its last
// bit 1 (round to odd at x's precision). `ternary` is MPFR's from the rounding.
void make_odd(mpfr_float& x, int ternary);

}  // namespace mpacc::ref
