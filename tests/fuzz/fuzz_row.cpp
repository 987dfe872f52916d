// SPDX-License-Identifier: MIT
// libFuzzer target: result rows of sweep shards (analysis::parse_csv_row, which
// `mpacc merge` runs on every line after a shard's header).
//
// The input up to its first newline is the line (as std::getline gives it).
// A row is either accepted or refused with std::runtime_error carrying a
// message; anything else is a finding. An accepted row must survive the round
// trip: to_csv(row) is one line that parses again, to the same to_csv text
// (checked with __builtin_trap).
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "mpacc/analysis/sweep.hpp"

namespace {

[[noreturn]] void finding(const char* what, const std::string& a, const std::string& b = {}) {
  std::fprintf(stderr, "fuzz_row: %s\n%s\n%s\n", what, a.c_str(), b.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);
  line = line.substr(0, line.find('\n'));
  mpacc::analysis::result_row row;
  try {
    row = mpacc::analysis::parse_csv_row(line);
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    if (m.empty() || m.find('\n') != std::string::npos) finding("bad error message", m);
    return 0;
  }
  const std::string csv = mpacc::analysis::to_csv(row);
  if (csv.empty() || csv.back() != '\n' || csv.find('\n') != csv.size() - 1) finding("to_csv is not one line", csv);
  std::string again;
  try {
    again = mpacc::analysis::to_csv(mpacc::analysis::parse_csv_row(csv.substr(0, csv.size() - 1)));
  } catch (const std::exception& e) {
    finding("to_csv of an accepted row is refused", csv, e.what());
  }
  if (again != csv) finding("to_csv does not read back as the same row", csv, again);
  return 0;
}
