// SPDX-License-Identifier: MIT
// Which inputs a reference pass takes (validation and Algorithm 1 alike).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace mpacc::analysis {

// The data as stored in the input format (the default: the reference then
// answers "what does the accumulation cost", and the storage error of the data
// is reported as a separate term), or the exact data (the bounds then include
// the storage error).
enum class reference_inputs { stored, exact };

inline std::string_view to_string(reference_inputs r) noexcept {
  return r == reference_inputs::stored ? "stored" : "exact";
}

// "stored" | "exact"; throws std::invalid_argument naming the token.
inline reference_inputs parse_reference_inputs(std::string_view text) {
  if (text == "stored") return reference_inputs::stored;
  if (text == "exact") return reference_inputs::exact;
  throw std::invalid_argument("unknown reference inputs '" + std::string(text) + "' (stored or exact)");
}

}  // namespace mpacc::analysis
