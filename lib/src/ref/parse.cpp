// SPDX-License-Identifier: MIT
#include "mpacc/ref/parse.hpp"

#include <cmath>

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/ref/round.hpp"

namespace mpacc::ref {

bool round_token(std::string_view token, const sim::format& f, sim::rounding mode, bool saturate, unsigned& flags,
                 std::uint64_t random_word, double& out) {
  mpfr_float v(128);
  if (!parse_to_odd(token, v)) return false;
  const double d = mpfr_get_d(v.get(), MPFR_RNDN);
  if (std::isnan(d) || (mpfr_number_p(v.get()) && std::isfinite(d) && mpfr_cmp_d(v.get(), d) == 0) ||
      mpfr_inf_p(v.get()))
    out = sim::round(d, f, mode, saturate, flags, random_word);
  else
    out = round_mpfr(v.get(), f, mode, saturate, flags, random_word);
  return true;
}

bool parse_binary64(std::string_view token, double& out) {
  mpfr_float v(128);
  if (!parse_to_odd(token, v)) return false;
  out = mpfr_get_d(v.get(), MPFR_RNDN);
  if (mpfr_nan_p(v.get())) return true;
  return mpfr_inf_p(v.get()) || (std::isfinite(out) && mpfr_cmp_d(v.get(), out) == 0);
}

}  // namespace mpacc::ref
