// SPDX-License-Identifier: MIT
// libFuzzer target: mpacc model files (io::parse_model, the body of io::load_model).
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "mpacc/io/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.mpnn";
  try {
    std::string meta;
    const auto net = mpacc::io::parse_model({data, size}, name, &meta);
    // what is accepted is a valid network
    net.validate();
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
  }
  return 0;
}
