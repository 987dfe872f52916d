// SPDX-License-Identifier: MIT
// The number of OpenMP threads a parallel region should use.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::sim {

// The most threads any region starts: more would only exhaust memory (each
// OpenMP thread has its own stack) without making anything faster.
inline constexpr int max_threads = 256;

// `requested` threads, or all available when requested <= 0 (1 without
// OpenMP), at most max_threads.
inline int thread_count(int requested) noexcept {
#ifdef _OPENMP
  const int n = requested > 0 ? requested : omp_get_max_threads();
  return n < max_threads ? n : max_threads;
#else
  (void)requested;
  return 1;
#endif
}

}  // namespace mpacc::sim
