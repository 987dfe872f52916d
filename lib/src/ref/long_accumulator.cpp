// SPDX-License-Identifier: MIT
#include "mpacc/ref/long_accumulator.hpp"

#include <bit>
#include <cmath>

namespace mpacc::ref {

void long_accumulator::add(double d) noexcept {
  const std::uint64_t b = std::bit_cast<std::uint64_t>(d);
  const int E = static_cast<int>((b >> 52) & 0x7ff);
  std::uint64_t m = b & 0x000fffffffffffffULL;
  if (E) m |= 0x0010000000000000ULL;
  if (m == 0) return;
  // value = m * 2^(off - 1074), off >= 0
  const int off = E ? E - 1 : 0;
  const int limb = off >> 5, sh = off & 31;
  // the 32-bit chunks of m * 2^sh (< 2^85)
  const auto c0 = static_cast<std::int64_t>((m << sh) & 0xffffffffULL);
  const auto c1 = static_cast<std::int64_t>((sh ? m >> (32 - sh) : m >> 32) & 0xffffffffULL);
  const auto c2 = static_cast<std::int64_t>(sh ? m >> (64 - sh) : 0);
  if (b >> 63) {
    limbs_[limb] -= c0;
    limbs_[limb + 1] -= c1;
    limbs_[limb + 2] -= c2;
  } else {
    limbs_[limb] += c0;
    limbs_[limb + 1] += c1;
    limbs_[limb + 2] += c2;
  }
  if (++adds_ == (1u << 30)) normalize();
}

bool long_accumulator::add_product(double w, double x) noexcept {
  const double ph = w * x;
  if (ph == 0) return w == 0 || x == 0;
  const double a = std::fabs(ph);
  if (!(a >= 0x1p-969) || !(a <= 0x1p+1023)) return false;
  add(ph);
  add(std::fma(w, x, -ph));
  return true;
}

void long_accumulator::normalize() noexcept {
  // each limb to [0, 2^32) except the top one, which keeps the sign
  for (int i = 0; i + 1 < kLimbs; ++i) {
    const std::int64_t carry = limbs_[i] >> 32;  // arithmetic shift: floor division
    limbs_[i] -= carry * (std::int64_t{1} << 32);
    limbs_[i + 1] += carry;
  }
  adds_ = 0;
}

void long_accumulator::to_mpz(mpz_t z) {
  normalize();
  mpz_set_si(z, static_cast<long>(limbs_[kLimbs - 1]));
  for (int i = kLimbs - 2; i >= 0; --i) {
    mpz_mul_2exp(z, z, 32);
    mpz_add_ui(z, z, static_cast<unsigned long>(limbs_[i]));
  }
}

int long_accumulator::round_to(mpfr_float& out) {
  mpz_t z;
  mpz_init(z);
  to_mpz(z);
  const auto widest = exponent_range_guard::widest();
  const int t = mpfr_set_z_2exp(out.get(), z, -1074, MPFR_RNDN);
  mpz_clear(z);
  return t;
}

void long_accumulator::exact_to(mpfr_float& out) {
  mpz_t z;
  mpz_init(z);
  to_mpz(z);
  const auto widest = exponent_range_guard::widest();
  const std::size_t bits = mpz_sgn(z) == 0 ? 2 : std::max<std::size_t>(2, mpz_sizeinbase(z, 2));
  mpfr_set_prec(out.get(), static_cast<mpfr_prec_t>(bits));
  mpfr_set_z_2exp(out.get(), z, -1074, MPFR_RNDN);  // exact: the precision holds every bit
  mpz_clear(z);
}

}  // namespace mpacc::ref
