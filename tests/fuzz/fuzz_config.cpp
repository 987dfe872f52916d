// SPDX-License-Identifier: MIT
// libFuzzer target: sweep configurations (analysis::parse_sweep_config, the
// body of analysis::load_sweep_config; the input is the JSON text).
//
// A configuration is either accepted or refused with std::runtime_error or
// std::invalid_argument, one line starting with the file's name. Anything else
// (nlohmann::json's own exceptions, std::out_of_range, a crash, a sanitizer
// report) is a finding. What is accepted is checked: the lists the sweep loops
// over are non-empty and free of duplicates, and the configuration written by
// to_json (into manifest.json) reads back as the same configuration.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "fuzz_common.hpp"
#include "mpacc/analysis/sweep.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_config: %s\n%s\n", what, detail.c_str());
  __builtin_trap();
}

template <class V>
bool has_duplicates(const V& v) {
  for (std::size_t a = 0; a < v.size(); ++a)
    for (std::size_t b = 0; b < a; ++b)
      if (v[a] == v[b]) return true;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz.json";
  const std::string text(reinterpret_cast<const char*>(data), size);
  mpacc::analysis::sweep_config c;
  try {
    c = mpacc::analysis::parse_sweep_config(text, name);
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
    return 0;
  } catch (const std::invalid_argument& e) {
    mpacc::fuzz::check_message(e, name);
    return 0;
  }
  if (c.networks.empty() || c.taus.empty() || c.indicators.empty() || c.orders.empty())
    finding("an empty list was accepted", text);
  if (has_duplicates(c.taus) || has_duplicates(c.indicators) || has_duplicates(c.baselines) || has_duplicates(c.orders))
    finding("a duplicate was accepted", text);
  for (const double t : c.taus)
    if (!(t >= 0) || t == std::numeric_limits<double>::infinity()) finding("a bad tolerance was accepted", text);
  const std::string json = mpacc::analysis::to_json(c);
  std::string again;
  try {
    again = mpacc::analysis::to_json(mpacc::analysis::parse_sweep_config(json, name));
  } catch (const std::exception& e) {
    finding("to_json of an accepted configuration is refused", json + "\n" + e.what());
  }
  if (again != json) finding("to_json does not read back as the same configuration", json + "\n---\n" + again);
  return 0;
}
