// SPDX-License-Identifier: MIT
// Text fit for a one-line error message, shared by every parser (data and
// model files, configurations, CSV rows, command-line tokens).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mpacc::sim {

// s with bytes outside printable ASCII (NUL, newline, DEL, ...) and the
// backslash written as \xNN escapes, nothing cut at a NUL; past `max`
// characters of input the rest is replaced by "...".
std::string printable(std::string_view s, std::size_t max = 80);

}  // namespace mpacc::sim
