// SPDX-License-Identifier: MIT
// An exact accumulator for sums of binary64 values and of exact products of
// two binary64 values (Kulisch-style long accumulator with deferred carries).
#pragma once

#include <gmp.h>

#include <array>
#include <cstdint>

#include "mpacc/ref/mpfr.hpp"

namespace mpacc::ref {

// Holds sum_k d_k exactly for binary64 d_k (any finite values, any count): the
// fixed-point range 2^-1074 .. 2^1100 is cut into 32-bit chunks kept in signed
// 64-bit limbs, so each add touches three limbs with no carry propagation;
// carries are resolved every 2^30 adds and when reading.
class long_accumulator {
 public:
  void clear() noexcept {
    limbs_.fill(0);
    adds_ = 0;
  }
  // Adds a finite binary64 value exactly.
  void add(double d) noexcept;
  // Adds w * x exactly when the product's low part is representable
  // (TwoProd exact: |w x| >= 2^-969 or w x == 0) and returns true; otherwise
  // adds nothing and returns false (the caller takes a slower exact path).
  bool add_product(double w, double x) noexcept;
  // The exact sum as an integer multiple of 2^-1074: value = z * 2^-1074.
  void to_mpz(mpz_t z);
  // The sum correctly rounded (round-to-nearest-even) to out's precision;
  // returns MPFR's ternary value (0: exact).
  int round_to(mpfr_float& out);
  // The exact sum in `out`, whose precision is set to what it needs (at least 2 bits).
  void exact_to(mpfr_float& out);

 private:
  static constexpr int kLimbs = 72;  // 72 * 32 = 2304 bits >= 1074 + 1100 + headroom
  void normalize() noexcept;
  std::array<std::int64_t, kLimbs> limbs_{};
  std::uint32_t adds_ = 0;
};

}  // namespace mpacc::ref
