// SPDX-License-Identifier: MIT
// The accumulation models of docs/semantics.md §3 computed with MPFR: every partial sum and
// product formed exactly, then rounded once with ref::round_mpfr. The oracle
// of sim::dot, and the path for formats outside sim's fast exact path.
#pragma once

#include <span>

#include "mpacc/ref/mpfr.hpp"
#include "mpacc/sim/accumulate.hpp"

namespace mpacc::ref {

// Same contract as sim::dot (same stochastic stream). Stochastic steps round
// the 53-bit round-to-odd value of the exact sum, as sim::dot does.
sim::dot_result dot_mpfr(std::span<const double> w, std::span<const double> x, double bias, const sim::accumulation& a,
                         std::uint64_t first_random = 0);

// The exact value of sum_j w_j x_j + b (finite inputs), and of sum |w_j x_j| + |b|.
struct exact_dot {
  mpfr_float value{4400};
  mpfr_float abs_sum{4400};
};
exact_dot dot_exact(std::span<const double> w, std::span<const double> x, double bias);

}  // namespace mpacc::ref
