// SPDX-License-Identifier: MIT
// sim::round and sim::round_array against the MPFR oracle, bit for bit,
// flags included: exhaustive over every value, midpoint and neighbour for
// small formats; boundary and fixed-seed random inputs for wide ones.
#include <catch2/catch.hpp>

#include <omp.h>

#include "mpacc/ref/round.hpp"
#include "mpacc/sim/rounding.hpp"
#include "support.hpp"

using namespace mpacc;
using sim::rounding;

namespace {

struct report {
  std::size_t checked = 0, mismatches = 0;
  std::string first;
};

report compare(const std::vector<double>& in, const sim::format& f, rounding mode, bool saturate,
               std::uint64_t seed = 7) {
  report r;
  r.checked = in.size();
  std::vector<double> scalar(in.size());
  const auto n = static_cast<std::ptrdiff_t>(in.size());
  std::size_t bad = 0;
  std::ptrdiff_t first_bad = n;
#pragma omp parallel for reduction(+ : bad) reduction(min : first_bad) schedule(static)
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const std::uint64_t word = sim::random_bits(seed, static_cast<std::uint64_t>(i));
    unsigned fs = 0, fo = 0;
    const double a = sim::round(in[i], f, mode, saturate, fs, word);
    const double b = ref::round_mpfr(in[i], f, mode, saturate, fo, word);
    scalar[i] = a;
    if (!test::same(a, b) || fs != fo) {
      ++bad;
      first_bad = std::min(first_bad, i);
    }
  }
  r.mismatches = bad;
  if (bad) {
    const double x = in[first_bad];
    unsigned fs = 0, fo = 0;
    const std::uint64_t word = sim::random_bits(seed, static_cast<std::uint64_t>(first_bad));
    const double a = sim::round(x, f, mode, saturate, fs, word);
    const double b = ref::round_mpfr(x, f, mode, saturate, fo, word);
    r.first = "x=" + test::hexs(x) + " sim=" + test::hexs(a) + " [" + sim::flags_to_string(fs) +
              "] mpfr=" + test::hexs(b) + " [" + sim::flags_to_string(fo) + "]";
  }
  // the array path (multi-threaded) must equal the scalar path element by element
  std::vector<double> arr(in.size());
  sim::round_array(in, arr, {f, mode, saturate, seed});
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!test::same(arr[i], scalar[i])) {
      ++r.mismatches;
      if (r.first.empty()) r.first = "array path differs at x=" + test::hexs(in[i]);
      break;
    }
  }
  return r;
}

void check_all(const std::string& name, const sim::format& base, const std::vector<double>& in,
               std::initializer_list<rounding> modes) {
  for (bool subnormals : {true, false}) {
    sim::format f = base;
    f.subnormals = subnormals;
    for (rounding mode : modes) {
      for (bool saturate : {false, true}) {
        const report r = compare(in, f, mode, saturate);
        INFO(name << " subnormals=" << subnormals << " mode=" << sim::to_string(mode) << " saturate=" << saturate
                  << " checked=" << r.checked << " first: " << r.first);
        CHECK(r.mismatches == 0);
      }
    }
  }
}

constexpr std::initializer_list<rounding> every_mode = {
    rounding::nearest_even, rounding::nearest_away, rounding::toward_zero, rounding::upward,
    rounding::downward,     rounding::odd,          rounding::stochastic};

}  // namespace

TEST_CASE("every 8-bit-or-smaller format, exhaustively, every mode", "[sim][round][oracle]") {
  for (const auto& nf : sim::named_formats()) {
    if (nf.fmt.bit_width() > 8) continue;
    const auto in = test::boundary_inputs(nf.fmt);
    check_all(std::string(nf.name), nf.fmt, in, every_mode);
  }
}

TEST_CASE("binary16 and bfloat16 exhaustively, every mode", "[sim][round][oracle]") {
  for (const auto& f : {sim::formats::binary16, sim::formats::bfloat16}) {
    const auto in = test::boundary_inputs(f);
    REQUIRE(in.size() > 6 * 60000);
    check_all(sim::to_string(f), f, in, every_mode);
  }
}

TEST_CASE("tf32 exhaustively (2^19 encodings), every mode", "[.][exhaustive][sim][round][oracle]") {
  const auto in = test::boundary_inputs(sim::formats::tf32);
  check_all("tf32", sim::formats::tf32, in, every_mode);
}

TEST_CASE("binary32, tf32, bfloat16, binary64: boundaries and random inputs", "[sim][round][oracle]") {
  for (const auto& f : {sim::formats::binary32, sim::formats::tf32, sim::formats::bfloat16, sim::formats::binary64}) {
    std::vector<double> in = test::random_inputs(f, 20000, 1234);
    // every power of two in range with its neighbours, and a value per binade at a tie
    for (int e = std::max(-1074, f.emin - f.p - 2); e <= std::min(1023, f.emax + 1); ++e) {
      const double x = std::ldexp(1.0, e);
      const double tie = std::ldexp(1.0 + std::ldexp(1.0, -f.p), e);  // 1 + u: a midpoint
      for (double y : {x, tie}) {
        if (f.p == 53 && y == tie) continue;
        in.push_back(y);
        in.push_back(std::nextafter(y, 0.0));
        in.push_back(std::nextafter(y, HUGE_VAL));
        in.push_back(-y);
      }
    }
    for (double y : {f.max_finite, f.min_normal(), f.min_positive()}) {
      in.push_back(y);
      in.push_back(std::nextafter(y, 0.0));
      in.push_back(std::nextafter(y, HUGE_VAL));
    }
    check_all(sim::to_string(f), f, in, every_mode);
  }
}

TEST_CASE("custom formats: p=1, p=2, p=53, subnormals off, custom max, odd ranges", "[sim][round][oracle]") {
  const char* specs[] = {"p=1,emin=-3,emax=3",
                         "p=2,emin=-2,emax=3,inf=off",
                         "p=5,emin=-10,emax=5,max=48",
                         "p=3,emin=1,emax=6,subnormals=off",
                         "p=12,emin=-20,emax=20,inf=off,max=786432",
                         "p=53,emin=-1000,emax=1000",
                         "p=7,emin=-1016,emax=-1000",
                         "p=4,emin=1000,emax=1023"};
  for (const char* s : specs) {
    const sim::format f = sim::parse_format(s);
    auto in = test::boundary_inputs(f.p <= 12 ? f : sim::formats::e5m2);
    const auto extra = test::random_inputs(f, 5000, 99);
    in.insert(in.end(), extra.begin(), extra.end());
    check_all(s, f, in, every_mode);
  }
}
