// SPDX-License-Identifier: MIT
// Test helpers: value generators for a format and bit-exact comparison.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mpacc/sim/format.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/random.hpp"

namespace mpacc::test {

// Same value, same sign of zero, or both NaN.
inline bool same(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

inline std::string hexs(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

// Every positive finite value of f (with subnormals, whatever f says), ascending.
inline std::vector<double> positive_values(const sim::format& f) {
  std::vector<double> v;
  const double sub_q = std::ldexp(1.0, f.emin - f.p + 1);
  const std::int64_t half = std::int64_t{1} << (f.p - 1);
  for (std::int64_t m = 1; m < half; ++m) v.push_back(static_cast<double>(m) * sub_q);
  for (int e = f.emin; e <= f.emax; ++e) {
    const double q = std::ldexp(1.0, e - f.p + 1);
    for (std::int64_t m = half; m < 2 * half; ++m) {
      const double x = static_cast<double>(m) * q;
      if (x > f.max_finite) return v;
      v.push_back(x);
    }
  }
  return v;
}

// The dangerous inputs of a format: every value, every midpoint between
// consecutive values (and above the largest), and the binary64 neighbours of
// all of them, with both signs; plus zeros, infinities, NaN and extremes.
inline std::vector<double> boundary_inputs(const sim::format& f) {
  std::vector<double> vals = positive_values(f);
  std::vector<double> pts;
  pts.reserve(vals.size() * 2 + 16);
  double prev = 0;
  for (double x : vals) {
    pts.push_back(x);
    pts.push_back(prev + (x - prev) / 2);
    prev = x;
  }
  // above the top: the next grid points as if the exponent range had no top
  const double top_q = std::ldexp(1.0, f.emax - f.p + 1);
  for (int k = 1; k <= 4; ++k) {
    pts.push_back(f.max_finite + k * top_q / 2);
  }
  pts.push_back(std::ldexp(1.0, f.emax + 1));
  pts.push_back(std::ldexp(1.0, f.emax + 2) * 1.5);
  pts.push_back(0x1.fffffffffffffp+1023);
  pts.push_back(0x1p-1074);
  pts.push_back(0x1p-1022);
  pts.push_back(std::ldexp(1.0, f.emin - f.p - 1));
  pts.push_back(std::ldexp(1.0, f.emin - f.p));
  pts.push_back(std::ldexp(1.0, f.emin - 1));
  std::vector<double> in;
  in.reserve(pts.size() * 6 + 8);
  for (double x : pts) {
    for (double y : {std::nextafter(x, 0.0), x, std::nextafter(x, HUGE_VAL)}) {
      if (!std::isfinite(y)) continue;
      in.push_back(y);
      in.push_back(-y);
    }
  }
  for (double s : {0.0, -0.0, HUGE_VAL, -HUGE_VAL, std::nan("")}) in.push_back(s);
  return in;
}

// Random doubles around the format's range: random bits in the significand,
// exponents from below the subnormals to above the top, both signs.
inline std::vector<double> random_inputs(const sim::format& f, std::size_t n, std::uint64_t seed) {
  sim::random_stream rng(seed);
  std::vector<double> v;
  v.reserve(n);
  const int lo = std::max(-1074, f.emin - f.p - 4), hi = std::min(1023, f.emax + 2);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng();
    const int e = lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    const double m = 1.0 + static_cast<double>(r >> 12) * 0x1p-52;  // [1, 2)
    double x = std::ldexp(m, e);
    // sometimes cut the significand short to create exact ties and values
    if ((r & 7) == 0) x = std::ldexp(std::round(std::ldexp(m, f.p + 1)), e - f.p - 1);
    v.push_back((r >> 63) ? -x : x);
  }
  return v;
}

// The dense kernels this processor can run (the scalar path first).
inline std::vector<sim::dense_kernel> available_kernels() {
  std::vector<sim::dense_kernel> k = {sim::dense_kernel::scalar, sim::dense_kernel::portable};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k.push_back(sim::dense_kernel::avx2);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
    k.push_back(sim::dense_kernel::avx512);
    k.push_back(sim::dense_kernel::avx512_b32);
  }
  return k;
}

// The specs the binary32 kernel is documented to cover (sim/layer.hpp): exact
// products, no via, not stochastic, every accumulator with p <= 22,
// emin >= -100, emax <= 100.
inline bool b32_covers(const sim::layer_spec& spec) {
  if (spec.base.product || spec.base.via || spec.base.mode == sim::rounding::stochastic) return false;
  const auto ok = [](const sim::format& f) { return f.p <= 22 && f.emin >= -100 && f.emax <= 100; };
  if (spec.acc.formats.empty()) return ok(spec.base.acc);
  for (const auto& f : spec.acc.formats)
    if (!ok(f)) return false;
  return true;
}

// The kernel a forced choice k gives for a spec the vector kernels cover:
// k itself, except avx512-b32, which falls back to avx512 where it does not apply.
inline sim::dense_kernel expected_kernel(sim::dense_kernel k, const sim::layer_spec& spec) {
  return k == sim::dense_kernel::avx512_b32 && !b32_covers(spec) ? sim::dense_kernel::avx512 : k;
}

// Forces a dense kernel for a scope; back to "auto" at the end.
struct forced_kernel {
  explicit forced_kernel(sim::dense_kernel k) { sim::set_dense_kernel_choice(sim::to_string(k)); }
  ~forced_kernel() { sim::set_dense_kernel_choice("auto"); }
  forced_kernel(const forced_kernel&) = delete;
  forced_kernel& operator=(const forced_kernel&) = delete;
};

}  // namespace mpacc::test
