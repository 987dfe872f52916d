// SPDX-License-Identifier: MIT
#include "mpacc/ref/fixed_point.hpp"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>

namespace mpacc::ref {

namespace {
__extension__ typedef __int128 s128;
}  // namespace

int_weights make_int_weights(std::span<const double> W) {
  int_weights r;
  long lo = LONG_MAX, hi = LONG_MIN;
  for (double w : W) {
    if (w == 0) continue;
    int e;
    const double m = std::frexp(std::fabs(w), &e);  // w = m 2^e, m in [0.5, 1)
    const auto mi = static_cast<std::uint64_t>(std::ldexp(m, 53));
    lo = std::min<long>(lo, e - 53 + std::countr_zero(mi));
    hi = std::max<long>(hi, e);
  }
  if (lo == LONG_MAX) lo = hi = 0;
  if (hi - lo > 62) return r;
  r.ok = true;
  r.ew = lo;
  r.bits = static_cast<int>(hi - lo);
  r.W.resize(W.size());
  for (std::size_t k = 0; k < W.size(); ++k)
    r.W[k] = static_cast<std::int64_t>(std::ldexp(W[k], static_cast<int>(-lo)));  // exact
  return r;
}

// The layer input as integers at a common scale: x_j = sign_j * mag_j * 2^ex,
// mag_j in nl limbs (little-endian).

int_inputs make_int_inputs(const std::vector<mpfr_float>& xs) {
  int_inputs r;
  const std::size_t n = xs.size();
  std::vector<mpz_t> z(n);
  std::vector<long> e(n);
  long lo = LONG_MAX, hi = LONG_MIN;
  for (std::size_t j = 0; j < n; ++j) {
    mpz_init(z[j]);
    if (mpfr_zero_p(xs[j].get())) continue;
    e[j] = mpfr_get_z_2exp(z[j], xs[j].get());  // x = z 2^e exactly
    const auto tz = static_cast<long>(mpz_scan1(z[j], 0));
    mpz_tdiv_q_2exp(z[j], z[j], static_cast<mp_bitcnt_t>(tz));
    e[j] += tz;
    lo = std::min(lo, e[j]);
    hi = std::max<long>(hi, e[j] + static_cast<long>(mpz_sizeinbase(z[j], 2)));
  }
  if (lo == LONG_MAX) lo = hi = 0;
  if (hi - lo <= 4096) {
    r.ok = true;
    r.ex = lo;
    r.bits = static_cast<int>(hi - lo);
    r.nl = static_cast<std::size_t>((hi - lo) / 64 + 1);
    r.mag.assign(n * r.nl, 0);
    r.neg.assign(n, 0);
    for (std::size_t j = 0; j < n; ++j) {
      if (mpz_sgn(z[j]) == 0) continue;
      r.neg[j] = mpz_sgn(z[j]) < 0;
      mpz_abs(z[j], z[j]);
      mpz_mul_2exp(z[j], z[j], static_cast<mp_bitcnt_t>(e[j] - lo));
      const std::size_t used = mpz_size(z[j]);
      for (std::size_t k = 0; k < used && k < r.nl; ++k)
        r.mag[j * r.nl + k] = mpz_getlimbn(z[j], static_cast<mp_size_t>(k));
    }
    if (r.nl == 1 && r.bits <= 62) {
      r.small.resize(n);
      for (std::size_t j = 0; j < n; ++j) {
        const auto m = static_cast<std::int64_t>(r.mag[j]);
        r.small[j] = r.neg[j] ? -m : m;
      }
    }
  }
  for (auto& zz : z) mpz_clear(zz);
  return r;
}

// value = (sum_j W_ij X_j) 2^(ew+ex) + b, rounded to out's precision (or
// exact, out's precision set to what it needs).
void int_dot(mpfr_float& out, const int_weights& IW, const int_inputs& IX, std::size_t i, std::size_t n_in, double b,
             bool exact, std::vector<mp_limb_t>& pos, std::vector<mp_limb_t>& negacc, mpz_t z) {
  const std::int64_t* w = IW.W.data() + i * n_in;
  const std::size_t n = n_in;
  if (!IX.small.empty() && IW.bits + IX.bits + 64 - std::countl_zero(static_cast<std::uint64_t>(n)) <= 125) {
    s128 acc = 0;
    const std::int64_t* x = IX.small.data();
    for (std::size_t j = 0; j < n; ++j) acc += static_cast<s128>(w[j]) * x[j];
    const bool negative = acc < 0;
    __extension__ unsigned __int128 mag =
        negative ? -static_cast<unsigned __int128>(acc) : static_cast<unsigned __int128>(acc);
    mpz_set_ui(z, static_cast<unsigned long>(mag >> 64));
    mpz_mul_2exp(z, z, 64);
    mpz_add_ui(z, z, static_cast<unsigned long>(mag));
    if (negative) mpz_neg(z, z);
  } else {
    const std::size_t nl = IX.nl, na = nl + 2;
    pos.assign(na, 0);
    negacc.assign(na, 0);
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t wv = w[j];
      if (wv == 0) continue;
      const mp_limb_t* xm = IX.mag.data() + j * nl;
      auto& target = ((wv < 0) != (IX.neg[j] != 0)) ? negacc : pos;
      const mp_limb_t aw = static_cast<mp_limb_t>(wv < 0 ? -wv : wv);
      const mp_limb_t carry = mpn_addmul_1(target.data(), xm, static_cast<mp_size_t>(nl), aw);
      mpn_add_1(target.data() + nl, target.data() + nl, 2, carry);
    }
    mpz_t a, c;
    mpz_roinit_n(a, pos.data(), static_cast<mp_size_t>(na));
    mpz_roinit_n(c, negacc.data(), static_cast<mp_size_t>(na));
    mpz_sub(z, a, c);
  }
  const long scale = IW.ew + IX.ex;
  if (mpz_sgn(z) == 0) {
    if (exact) mpfr_set_prec(out.get(), 53);
    mpfr_set_d(out.get(), b, MPFR_RNDN);
    if (b == 0) mpfr_set_zero(out.get(), 1);
    return;
  }
  const auto zbits = static_cast<long>(mpz_sizeinbase(z, 2));
  mpfr_float t(std::max<long>(zbits, 2));
  mpfr_set_z_2exp(t.get(), z, scale, MPFR_RNDN);  // exact
  if (exact) {
    long lo = scale, hi = scale + zbits;
    if (b != 0) {
      int eb;
      (void)std::frexp(b, &eb);
      lo = std::min<long>(lo, eb - 53);
      hi = std::max<long>(hi, eb);
    }
    mpfr_set_prec(out.get(), static_cast<mpfr_prec_t>(hi - lo + 2));
  }
  mpfr_add_d(out.get(), t.get(), b, MPFR_RNDN);  // one correct rounding of the exact sum
}

}  // namespace mpacc::ref
