// SPDX-License-Identifier: MIT
// Simulated inner products v = sum_j w_j x_j + b (docs/semantics.md §3-4): product model,
// accumulator format and mode, order, bias last. Every step is one correct
// rounding of the exact value.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::sim {

// The summation order of the terms p_j (bias last in every order).
struct order {
  enum class kind : std::uint8_t { recursive, blocked, pairwise } type = kind::recursive;
  int block = 8;  // blocked only: block size B >= 1
  friend bool operator==(const order&, const order&) = default;
};
// "recursive", "pairwise", "blocked:B"; throws std::invalid_argument naming the token.
order parse_order(std::string_view text);
std::string to_string(const order& o);

struct accumulation {
  format acc = formats::binary32;          // accumulator format
  rounding mode = rounding::nearest_even;  // accumulator (and product) rounding
  std::optional<format> product;           // none: exact products (FMA); else p_j = round(w_j x_j)
  struct order ord {};
  bool saturate = false;
  std::uint64_t seed = 0;  // stochastic: step k of the dot uses random_bits(seed, k)
  // Double rounding through a wider format, as hardware that accumulates in
  // binary32 and converts each partial sum does: when set, every accumulator
  // rounding (each step, block merge and the bias step) first rounds the exact
  // value to `via` (nearest-even, no saturation), then that to `acc` in `mode`.
  // Product roundings are not affected. None: one correct rounding per step.
  std::optional<format> via;
};

// Whether the fast exact path covers this model (else the MPFR path is used):
// every format involved (accumulator, product, via) has p <= 51 and
// emin - p + 1 >= -1072.
bool fast_path_applies(const accumulation& a) noexcept;

// The result of one inner product and the flags its roundings raised.
struct dot_result {
  double value = 0;
  unsigned flags = 0;
  // false when some product w_j x_j was outside [2^-960, 2^1000] in magnitude
  // (nor 0, inf or NaN), where binary64 error-free products stop being exact:
  // the value is then not guaranteed; use ref::dot_mpfr.
  bool exact_model = true;
};

// v = round(sum + b) with the terms summed in the order of `a`. w and x are
// the stored values (no storage rounding here), of equal length n >= 0; an
// empty sum is 0 and v = round(b). `first_random` offsets the stochastic
// stream (each rounding step consumes one word). Requires fast_path_applies(a)
// (throws std::invalid_argument otherwise).
dot_result dot(std::span<const double> w, std::span<const double> x, double bias, const accumulation& a,
               std::uint64_t first_random = 0);

// How many accumulator roundings each term w_j x_j undergoes in the order of
// `a` (bias rounding included), j = 0..n-1; the bias undergoes one. This is
// what the deterministic bound is built from (docs/error-bounds.md).
std::vector<int> rounding_counts(std::size_t n, const order& o);

}  // namespace mpacc::sim
