// SPDX-License-Identifier: MIT
// libFuzzer target: model files read as vision transformers (io::parse_vit,
// the body of io::load_vit: version 3).
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "mpacc/io/model_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.mpnn";
  try {
    std::string meta;
    const auto net = mpacc::io::parse_vit({data, size}, name, &meta);
    // what is accepted is a valid network, and it can be named
    net.validate();
    (void)net.arch();
    (void)net.product_layer_names();
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
  }
  return 0;
}
