// SPDX-License-Identifier: MIT
#include "mpacc/sim/text.hpp"

namespace mpacc::sim {

std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (std::size_t k = 0; k < s.size(); ++k) {
    if (k == max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[k]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace mpacc::sim
