// SPDX-License-Identifier: MIT
// The C++ side of bench/python_round.py: times sim::round_array on the binary64
// values of a file (the same values the Python side rounds) and prints the best
// and the median of REPS calls in seconds: into a preallocated output, then into
// a freshly allocated std::vector (as mpacc.round without out= returns a new array).
//   round_timer FILE FORMAT MODE THREADS REPS
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "mpacc/sim/rounding.hpp"

using namespace mpacc;

int main(int argc, char** argv) try {
  if (argc != 6) {
    std::fprintf(stderr, "usage: round_timer FILE FORMAT MODE THREADS REPS\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary | std::ios::ate);
  const auto bytes = static_cast<std::size_t>(in.tellg());
  std::vector<double> x(bytes / sizeof(double)), y(x.size());
  in.seekg(0);
  in.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(double)));
  const sim::round_spec spec{sim::parse_format(argv[2]), sim::parse_rounding(argv[3]), false, 1};
  const int threads = std::stoi(argv[4]), reps = std::stoi(argv[5]);
  std::vector<double> t;
  unsigned flags = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    flags |= sim::round_array(x, y, spec, 0, threads);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> t_new;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<double> fresh(x.size());
    flags |= sim::round_array(x, fresh, spec, 0, threads);
    t_new.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (fresh[0] != y[0] && !(fresh[0] != fresh[0])) return 1;  // keeps the work observable
  }
  std::sort(t.begin(), t.end());
  std::sort(t_new.begin(), t_new.end());
  std::printf("%.6f %.6f %.6f %.6f %u\n", t.front(), t[t.size() / 2], t_new.front(), t_new[t_new.size() / 2], flags);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "round_timer: %s\n", e.what());
  return 2;
}
