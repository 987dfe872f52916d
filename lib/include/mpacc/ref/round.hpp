// SPDX-License-Identifier: MIT
// The MPFR rounding to any format: the tests' oracle, and the path for inputs
// that are not binary64 values (decimal strings, wide intermediate results).
#pragma once

#include <cstdint>

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::ref {

// Rounds the exact value of x (any precision) to f in `mode`, with the
// semantics of docs/semantics.md §2, using MPFR's own directed and nearest roundings in the
// format's exponent range (mpfr_check_range + mpfr_subnormalize). Nearest-away,
// odd, stochastic, overflow and saturation are built on top. Stochastic: the
// magnitude rounds up iff random_word * 2^-64 < (|x| - |RZ(x)|) / (RU(x) - RD(x)),
// compared exactly (the same decision rule as sim::round).
// Raises the same sticky flags as sim::round.
double round_mpfr(mpfr_srcptr x, const sim::format& f, sim::rounding mode, bool saturate, unsigned& flags,
                  std::uint64_t random_word = 0);

// Same for a binary64 input.
double round_mpfr(double x, const sim::format& f, sim::rounding mode, bool saturate, unsigned& flags,
                  std::uint64_t random_word = 0);

// The two neighbours of x in f (ignoring the top of the exponent range):
// rd <= x <= ru, equal when x is a value of f. x finite.
void neighbours_mpfr(double x, const sim::format& f, double& rd, double& ru);

}  // namespace mpacc::ref
