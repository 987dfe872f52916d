// SPDX-License-Identifier: MIT
// libFuzzer target: IDX files, raw or gzip (io::parse_idx, the body of io::read_idx).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_common.hpp"
#include "mpacc/io/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.idx";
  try {
    const auto a = mpacc::io::parse_idx({data, size}, name);
    // what is accepted holds exactly the data its dimensions declare
    std::size_t count = 1;
    for (auto d : a.dims) count *= d;
    if (a.dims.empty() || count != a.data.size()) std::abort();
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
  }
  return 0;
}
