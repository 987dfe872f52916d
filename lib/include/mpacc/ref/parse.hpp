// SPDX-License-Identifier: MIT
// The number tokens of `mpacc round` and `mpacc dot` (decimal or C99 hex
// floats, nan, inf), parsed through ref::parse_to_odd so that decimals are
// never rounded twice. Kept apart from the commands so that they can be fuzzed
// (tests/fuzz/fuzz_token.cpp).
#pragma once

#include <cstdint>
#include <string_view>

#include "mpacc/sim/format.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::ref {

// `mpacc round`: the correctly rounded value of the number `token` in f, in
// `mode` (random_word: the stochastic word), saturating or not; sticky flags
// are OR-ed into `flags` as sim::round raises them. Binary64 values take
// sim::round, anything else (0.1, 1e-400, 40-digit decimals) ref::round_mpfr on
// its 128-bit round-to-odd value. Returns false (out untouched) when the token
// is not a number in full.
bool round_token(std::string_view token, const sim::format& f, sim::rounding mode, bool saturate, unsigned& flags,
                 std::uint64_t random_word, double& out);

// `mpacc dot`: a stored value, which must be exactly a binary64 value (or nan,
// +-inf). Returns false when the token is not a number or not a binary64
// value (out is then the nearest binary64 value or unspecified).
bool parse_binary64(std::string_view token, double& out);

}  // namespace mpacc::ref
