// SPDX-License-Identifier: MIT
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::sim {

std::string_view to_string(rounding mode) noexcept {
  switch (mode) {
    case rounding::nearest_even:
      return "nearest-even";
    case rounding::nearest_away:
      return "nearest-away";
    case rounding::toward_zero:
      return "toward-zero";
    case rounding::upward:
      return "upward";
    case rounding::downward:
      return "downward";
    case rounding::odd:
      return "odd";
    case rounding::stochastic:
      return "stochastic";
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

// Nearest-even on arrays, branch-free so that it vectorizes: rounding |x| to a
// multiple of 2^q is fl(|x| + c) - c with c = 2^(q+52), because binary64 adds
// in round-to-nearest-even and [c, 2c) has ulp exactly 2^q; the subtraction is
// exact. q comes from x's exponent field (2^e, clamped to 2^(emax+1), times
// 2^(1-p) and 2^52, at least 2^(emin-p+1+52)) with floating-point min/max, so
// every step is a SIMD instruction. Needs the default rounding mode (mpacc
// never changes it, and is not built with -ffast-math) and p <= 52, emax + 54
// - p <= 1023 (checked by the caller). Compiled for AVX-512, AVX2 and the
// baseline; the loader picks the best the processor supports.
struct ne_params {
  double scale;           // 2^(53-p): turns 2^e into 2^(q+52)
  double top;             // 2^(emax+1): larger exponents are clamped (they overflow anyway)
  double cmin;            // 2^(emin-p+1+52): the subnormal quantum's constant
  double c_nosub;         // 2^(emin+52): below 2^emin without subnormals the grid is {0, 2^emin}
  double min_normal;      // 2^emin
  double max;             // max_finite
  double overflow_value;  // +-inf, +-max (saturation) or NaN (no infinities)
};

// The hot loops are compiled for x86-64-v4 (AVX-512), v3 (AVX2) and the baseline ISA on x86-64
// and picked when the program is loaded; other processors get their baseline.
#if defined(__x86_64__)
#define MPACC_CLONES [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
#else
#define MPACC_CLONES
#endif

template <bool Subnormals>
MPACC_CLONES unsigned round_ne_kernel(const double* __restrict in, double* __restrict out, std::size_t n,
                                      const ne_params& P) noexcept {
  std::uint64_t inexact = 0, underflow = 0, overflow = 0;
  const double scale = P.scale, top = P.top, cmin = P.cmin, c_nosub = P.c_nosub, min_normal = P.min_normal, max = P.max,
               ovf = P.overflow_value;
  const std::uint64_t ovf_bits = std::bit_cast<std::uint64_t>(ovf);
  // a NaN replacing an overflow is +NaN, as the scalar rounding returns (no sign copied)
  const std::uint64_t sign_kept_on_overflow = std::isnan(ovf) ? 0 : ~std::uint64_t{0};
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t b = std::bit_cast<std::uint64_t>(in[i]);
    const std::uint64_t sign = b & detail::sign_mask;
    const double a = std::bit_cast<double>(b ^ sign);
    double p2e = std::bit_cast<double>(b & detail::exp_mask);  // 2^e; 0 for subnormals
    p2e = std::min(p2e, top);
    double c = std::max(p2e * scale, cmin);
    if constexpr (!Subnormals) c = a < min_normal ? c_nosub : c;
    const double r0 = (a + c) - c;
    // masks: all ones when true (branch-free, so the loop vectorizes)
    const std::uint64_t finite = -static_cast<std::uint64_t>(a <= 0x1.fffffffffffffp+1023);
    const std::uint64_t big = -static_cast<std::uint64_t>(r0 > max);
    const std::uint64_t changed = -static_cast<std::uint64_t>(r0 != a);
    const std::uint64_t tiny = -static_cast<std::uint64_t>(a < min_normal);
    const std::uint64_t rb = (std::bit_cast<std::uint64_t>(r0) & ~big) | (ovf_bits & big);
    const std::uint64_t inexact_i = finite & (changed | big);
    inexact |= inexact_i;
    underflow |= inexact_i & tiny;
    overflow |= finite & big;
    out[i] = std::bit_cast<double>(rb | (sign & (~big | sign_kept_on_overflow)));
  }
  return (inexact ? flag::inexact : 0u) | (underflow ? flag::underflow : 0u) | (overflow ? flag::overflow : 0u);
}

// The vector kernel on a chunk, with the flags its ovf substitution implies.
unsigned round_ne_chunk(const double* in, double* out, std::size_t n, const format& f, bool saturate) noexcept {
  const double inf = std::numeric_limits<double>::infinity();
  const ne_params P{std::ldexp(1.0, 53 - f.p),
                    std::ldexp(1.0, f.emax + 1),
                    std::ldexp(1.0, f.emin - f.p + 53),
                    std::ldexp(1.0, f.emin + 52),
                    std::ldexp(1.0, f.emin),
                    f.max_finite,
                    saturate    ? f.max_finite
                    : f.has_inf ? inf
                                : std::numeric_limits<double>::quiet_NaN()};
  unsigned flags = f.subnormals ? round_ne_kernel<true>(in, out, n, P) : round_ne_kernel<false>(in, out, n, P);
  // an overflow, or an infinite input, was replaced by P.overflow_value
  bool replaced = flags & flag::overflow;
  if (!replaced && (saturate || !f.has_inf)) {
    for (std::size_t i = 0; i < n && !replaced; ++i) replaced = std::isinf(in[i]);
  }
  if (replaced) {
    if (saturate)
      flags |= flag::saturated;
    else if (!f.has_inf)
      flags |= flag::invalid;
  }
  return flags;
}

bool ne_kernel_applies(const format& f) noexcept { return f.p <= 52 && f.emax + 54 - f.p <= 1023; }

// The other six modes on arrays, a vector at a time with GCC vector extensions
// (round_sr.inc, compiled for AVX-512, AVX2 and the baseline ISA and chosen at
// run time). With a = |x|, c = 2^(q+52) as above and r = fl(a + c) - c
// (nearest even): toward zero is r - 2^q when r > a, else r; away is r + 2^q
// when r < a (upward and downward pick by the sign); nearest-away moves a tie
// that went down (a - r = 2^(q-1)) one quantum up; odd sets the last bit of
// fl(a + c) minus one when r > a (c + RZ(a)) if inexact. Stochastic: element
// i's word is random_bits(seed, first + i), computed in the lanes (SplitMix64:
// shifts, xors and two 64-bit multiplications); the d = q - quantum(a) dropped
// bits are a's encoding modulo 2^d, and the magnitude rounds up iff the top d
// bits of the word are below them (below the quantum, d > 52: iff the word is
// below ceil(m 2^(64-d)), m a's integer significand), exactly
// detail::round_core's rules. A result above max gives the mode's overflow
// value. Non-finite values and values from 2^970 on are rounded by round_core
// itself (with the same word). Needs p <= 51 (so d >= 2), a quantum of at least
// 2^-1072 and emax + 54 - p <= 1023.
struct sr_params {
  double scale, cmin, c_nosub, min_normal, screen, max;
  std::uint64_t seed, first;
};

#ifdef __clang__
// clang (the fuzz build) ignores GCC's target regions: all three copies are then baseline code
#pragma clang diagnostic ignored "-Wunknown-pragmas"
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
namespace sr_base {
#define SR_BYTES 16
#include "round_sr.inc"
#undef SR_BYTES
}  // namespace sr_base
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2")
namespace sr_avx2 {
#define SR_BYTES 32
#include "round_sr.inc"
#undef SR_BYTES
}  // namespace sr_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq")
namespace sr_avx512 {
#define SR_BYTES 64
#include "round_sr.inc"
#undef SR_BYTES
}  // namespace sr_avx512
#pragma GCC pop_options
#endif
#pragma GCC diagnostic pop

bool sr_kernel_applies(const format& f) noexcept {
  return f.p <= 51 && (f.subnormals ? f.emin - f.p + 1 : f.emin) >= -1072 && f.emax + 54 - f.p <= 1023;
}

template <rounding Mode>
unsigned round_vec_chunk(const double* in, double* out, std::size_t n, const format& f, bool saturate,
                         std::uint64_t seed, std::uint64_t first) noexcept {
  const sr_params P{std::ldexp(1.0, 53 - f.p),
                    std::ldexp(1.0, f.emin - f.p + 53),
                    std::ldexp(1.0, f.emin + 52),
                    std::ldexp(1.0, f.emin),
                    std::ldexp(1.0, std::ilogb(f.max_finite)),
                    f.max_finite,
                    seed,
                    first};
#if defined(__x86_64__)
  static const int isa = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") ? 2
                         : __builtin_cpu_supports("avx2")                                        ? 1
                                                                                                 : 0;
  if (isa == 2)
    return f.subnormals ? sr_avx512::round_vec_kernel<Mode, true>(in, out, n, P, f, saturate)
                        : sr_avx512::round_vec_kernel<Mode, false>(in, out, n, P, f, saturate);
  if (isa == 1)
    return f.subnormals ? sr_avx2::round_vec_kernel<Mode, true>(in, out, n, P, f, saturate)
                        : sr_avx2::round_vec_kernel<Mode, false>(in, out, n, P, f, saturate);
#endif
  return f.subnormals ? sr_base::round_vec_kernel<Mode, true>(in, out, n, P, f, saturate)
                      : sr_base::round_vec_kernel<Mode, false>(in, out, n, P, f, saturate);
}

// One contiguous chunk.
template <rounding Mode>
unsigned round_chunk(const double* in, double* out, std::size_t n, const format& f, bool saturate, std::uint64_t seed,
                     std::uint64_t first) noexcept {
  if constexpr (Mode == rounding::nearest_even) {
    if (ne_kernel_applies(f)) return round_ne_chunk(in, out, n, f, saturate);
  }
  if constexpr (Mode != rounding::nearest_even) {
    if (sr_kernel_applies(f)) return round_vec_chunk<Mode>(in, out, n, f, saturate, seed, first);
  }
  unsigned flags = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t bits = 0;
    if constexpr (Mode == rounding::stochastic) bits = random_bits(seed, first + i);
    out[i] = detail::round_core<Mode>(in[i], f, saturate, flags, bits);
  }
  return flags;
}

template <rounding Mode>
unsigned round_array_mode(const double* in, double* out, std::size_t n, const round_spec& spec, std::uint64_t first,
                          int threads) {
  constexpr std::size_t parallel_threshold = 1 << 15;
#ifdef _OPENMP
  int nt = thread_count(threads);
  if (n < parallel_threshold) nt = 1;
  if (nt > 1) {
    unsigned flags = 0;
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel num_threads(nt) reduction(| : flags)
    {
      const std::ptrdiff_t t = omp_get_thread_num(), T = omp_get_num_threads();
      const std::ptrdiff_t lo = count * t / T, hi = count * (t + 1) / T;
      flags |= round_chunk<Mode>(in + lo, out + lo, static_cast<std::size_t>(hi - lo), spec.fmt, spec.saturate,
                                 spec.seed, first + static_cast<std::uint64_t>(lo));
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
    throw std::invalid_argument("round_array: input has " + std::to_string(in.size()) + " values but output has " +
                                std::to_string(out.size()));
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
