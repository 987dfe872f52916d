// The number of OpenMP threads a parallel region should use.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::sim {

// `requested` threads, or all available when requested <= 0 (1 without OpenMP).
inline int thread_count(int requested) noexcept {
#ifdef _OPENMP
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

}  // namespace mpacc::sim
