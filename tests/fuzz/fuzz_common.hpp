// SPDX-License-Identifier: MIT
// Shared by the libFuzzer targets: what counts as a finding besides a crash.
#pragma once

#include <cstdlib>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace mpacc::fuzz {

// A parser may refuse its input only with the exception types its target
// catches (std::runtime_error; for the configuration also std::invalid_argument),
// as one line that starts with the file's name; anything else (another exception
// type escapes the target and aborts it) is a finding.
inline void check_message(const std::exception& e, const std::string& name) {
  const std::string m = e.what();
  if (m.rfind(name + ": ", 0) != 0 || m.find('\n') != std::string::npos || m.find('\r') != std::string::npos) {
    std::fprintf(stderr, "bad error message: %s\n", m.c_str());
    std::abort();
  }
}

}  // namespace mpacc::fuzz
