#include "mpacc/sim/rounding.hpp"

#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::sim {

std::string_view to_string(rounding mode) noexcept {
  switch (mode) {
    case rounding::nearest_even: return "nearest-even";
    case rounding::nearest_away: return "nearest-away";
    case rounding::toward_zero: return "toward-zero";
    case rounding::upward: return "upward";
    case rounding::downward: return "downward";
    case rounding::odd: return "odd";
    case rounding::stochastic: return "stochastic";
  }
  return "?";
}

rounding parse_rounding(std::string_view text) {
  for (rounding m : all_roundings)
    if (to_string(m) == text) return m;
  throw std::invalid_argument("unknown rounding mode '" + std::string(text) +
                              "' (modes: nearest-even, nearest-away, toward-zero, upward, "
                              "downward, odd, stochastic)");
}

std::string flags_to_string(unsigned flags) {
  static const std::pair<unsigned, const char*> names[] = {{flag::inexact, "inexact"},
                                                            {flag::underflow, "underflow"},
                                                            {flag::overflow, "overflow"},
                                                            {flag::invalid, "invalid"},
                                                            {flag::saturated, "saturated"}};
  std::string s;
  for (auto [bit, name] : names)
    if (flags & bit) {
      if (!s.empty()) s += ',';
      s += name;
    }
  return s.empty() ? "none" : s;
}

double round(double x, const format& f, rounding mode, bool saturate, unsigned& flags,
             std::uint64_t random_word) noexcept {
  switch (mode) {
    case rounding::nearest_even:
      return detail::round_core<rounding::nearest_even>(x, f, saturate, flags, random_word);
    case rounding::nearest_away:
      return detail::round_core<rounding::nearest_away>(x, f, saturate, flags, random_word);
    case rounding::toward_zero:
      return detail::round_core<rounding::toward_zero>(x, f, saturate, flags, random_word);
    case rounding::upward:
      return detail::round_core<rounding::upward>(x, f, saturate, flags, random_word);
    case rounding::downward:
      return detail::round_core<rounding::downward>(x, f, saturate, flags, random_word);
    case rounding::odd:
      return detail::round_core<rounding::odd>(x, f, saturate, flags, random_word);
    case rounding::stochastic:
      return detail::round_core<rounding::stochastic>(x, f, saturate, flags, random_word);
  }
  return x;
}

namespace {

// One contiguous chunk, compiled for AVX2 and for the baseline ISA; the loader
// picks the best the processor supports.
template <rounding Mode>
unsigned round_chunk(const double* in, double* out, std::size_t n, const format& f, bool saturate,
                     std::uint64_t seed, std::uint64_t first) noexcept {
  unsigned flags = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t bits = 0;
    if constexpr (Mode == rounding::stochastic) bits = random_bits(seed, first + i);
    out[i] = detail::round_core<Mode>(in[i], f, saturate, flags, bits);
  }
  return flags;
}

template <rounding Mode>
unsigned round_array_mode(const double* in, double* out, std::size_t n, const round_spec& spec,
                          std::uint64_t first, int threads) {
  constexpr std::size_t parallel_threshold = 1 << 15;
#ifdef _OPENMP
  int nt = threads > 0 ? threads : omp_get_max_threads();
  if (n < parallel_threshold) nt = 1;
  if (nt > 1) {
    unsigned flags = 0;
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel num_threads(nt) reduction(| : flags)
    {
      const std::ptrdiff_t t = omp_get_thread_num(), T = omp_get_num_threads();
      const std::ptrdiff_t lo = count * t / T, hi = count * (t + 1) / T;
      flags |= round_chunk<Mode>(in + lo, out + lo, static_cast<std::size_t>(hi - lo), spec.fmt,
                                 spec.saturate, spec.seed, first + static_cast<std::uint64_t>(lo));
    }
    return flags;
  }
#else
  (void)threads;
  (void)parallel_threshold;
#endif
  return round_chunk<Mode>(in, out, n, spec.fmt, spec.saturate, spec.seed, first);
}

}  // namespace

unsigned round_array(std::span<const double> in, std::span<double> out, const round_spec& spec,
                     std::uint64_t first_index, int threads) {
  if (in.size() != out.size())
    throw std::invalid_argument("round_array: input has " + std::to_string(in.size()) +
                                " values but output has " + std::to_string(out.size()));
  const double* src = in.data();
  double* dst = out.data();
  const std::size_t n = in.size();
  switch (spec.mode) {
    case rounding::nearest_even:
      return round_array_mode<rounding::nearest_even>(src, dst, n, spec, first_index, threads);
    case rounding::nearest_away:
      return round_array_mode<rounding::nearest_away>(src, dst, n, spec, first_index, threads);
    case rounding::toward_zero:
      return round_array_mode<rounding::toward_zero>(src, dst, n, spec, first_index, threads);
    case rounding::upward:
      return round_array_mode<rounding::upward>(src, dst, n, spec, first_index, threads);
    case rounding::downward:
      return round_array_mode<rounding::downward>(src, dst, n, spec, first_index, threads);
    case rounding::odd:
      return round_array_mode<rounding::odd>(src, dst, n, spec, first_index, threads);
    case rounding::stochastic:
      return round_array_mode<rounding::stochastic>(src, dst, n, spec, first_index, threads);
  }
  return 0;
}

}  // namespace mpacc::sim
