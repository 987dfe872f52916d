// SPDX-License-Identifier: MIT
// libFuzzer target: model files read as convolutional networks (io::parse_cnn,
// the body of io::load_cnn: version 2, and version 1 as a dense-only network).
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "mpacc/io/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.mpnn";
  try {
    std::string meta;
    const auto net = mpacc::io::parse_cnn({data, size}, name, &meta);
    // what is accepted is a valid network, and it can be named
    net.validate();
    (void)net.arch();
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
  }
  return 0;
}
