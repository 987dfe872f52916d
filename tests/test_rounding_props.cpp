// SPDX-License-Identifier: MIT
// Properties that need no oracle: binary32 equals the float cast, binary64 is
// the identity, rounding is idempotent, monotone and sign-symmetric; the
// named-format semantics docs/semantics.md §2 spells out; stochastic rounding statistics.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "mpacc/ref/round.hpp"
#include "mpacc/sim/rounding.hpp"
#include "support.hpp"

using namespace mpacc;
using sim::rounding;

namespace {
double rnd(double x, const sim::format& f, rounding m, bool sat = false, std::uint64_t w = 0) {
  unsigned fl = 0;
  return sim::round(x, f, m, sat, fl, w);
}
}  // namespace

TEST_CASE("binary32 nearest-even equals the float cast", "[sim][round]") {
  const auto in = test::random_inputs(sim::formats::binary32, 200000, 42);
  std::size_t bad = 0;
  for (double x : in) {
    const double cast = static_cast<double>(static_cast<float>(x));
    if (!test::same(cast, rnd(x, sim::formats::binary32, rounding::nearest_even))) ++bad;
  }
  CHECK(bad == 0);
}

TEST_CASE("binary64 is the identity in every mode", "[sim][round]") {
  sim::random_stream rng(5);
  for (int i = 0; i < 100000; ++i) {
    const double x = std::bit_cast<double>(rng());
    if (std::isnan(x)) continue;
    for (rounding m : sim::all_roundings) {
      unsigned fl = 0;
      REQUIRE(test::same(sim::round(x, sim::formats::binary64, m, false, fl, rng()), x));
      REQUIRE(fl == 0);
    }
  }
}

TEST_CASE("idempotent, monotone and sign-symmetric", "[sim][round]") {
  for (const auto& nf : sim::named_formats()) {
    const auto& f = nf.fmt;
    auto in = test::random_inputs(f, 20000, 11);
    in.erase(std::remove_if(in.begin(), in.end(), [](double v) { return std::isnan(v); }), in.end());
    std::sort(in.begin(), in.end());
    for (rounding m : sim::all_roundings) {
      if (m == rounding::stochastic) continue;
      INFO(nf.name << " " << sim::to_string(m));
      std::size_t not_idem = 0, not_mono = 0, not_sym = 0;
      double prev = -HUGE_VAL;
      for (double x : in) {
        const double r = rnd(x, f, m, true);  // saturating: finite results compare
        if (!test::same(rnd(r, f, m, true), r)) ++not_idem;
        if (r < prev) ++not_mono;
        prev = r;
        const rounding mirror = m == rounding::upward     ? rounding::downward
                                : m == rounding::downward ? rounding::upward
                                                          : m;
        if (!test::same(rnd(-x, f, mirror, true), -r)) ++not_sym;
      }
      CHECK(not_idem == 0);
      CHECK(not_mono == 0);
      CHECK(not_sym == 0);
    }
  }
}

TEST_CASE("named formats have the exact parameters of docs/formats.md", "[sim][format]") {
  using namespace sim::formats;
  CHECK(e4m3.max_finite == 448);
  CHECK(e4m3_ieee.max_finite == 240);
  CHECK(binary16.max_finite == 65504);
  CHECK(e5m2.max_finite == 57344);
  CHECK(e3m2.max_finite == 28);
  CHECK(e2m3.max_finite == 7.5);
  CHECK(e2m1.max_finite == 6);
  CHECK(bfloat16.max_finite == 0x1.fep+127);
  CHECK(tf32.max_finite == 0x1.ffcp+127);
  CHECK(binary32.max_finite == 0x1.fffffep+127);
  CHECK(!e4m3.has_inf);
  CHECK(e4m3_ieee.has_inf);
  CHECK(binary16.min_positive() == 0x1p-24);
  CHECK(binary16.unit_roundoff() == 0x1p-11);
  for (const auto& nf : sim::named_formats()) {
    INFO(nf.name);
    CHECK(sim::validate(nf.fmt).empty());
    CHECK(sim::parse_format(nf.name) == nf.fmt);
    CHECK(sim::parse_format(sim::to_string(nf.fmt)) == nf.fmt);
  }
}

TEST_CASE("custom formats parse and invalid ones name the field", "[sim][format]") {
  const auto f = sim::parse_format("p=5,emin=-10,emax=5,subnormals=off,inf=off,max=48");
  CHECK(f.p == 5);
  CHECK(f.emin == -10);
  CHECK(f.emax == 5);
  CHECK(!f.subnormals);
  CHECK(!f.has_inf);
  CHECK(f.max_finite == 48);
  CHECK(sim::parse_format(sim::to_string(f)) == f);
  auto message = [](const char* s) {
    try {
      (void)sim::parse_format(s);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK_THAT(message("p=0,emin=-1,emax=1"), Catch::Contains("p=0") && Catch::Contains("[1, 53]"));
  CHECK_THAT(message("p=54,emin=-1,emax=1"), Catch::Contains("[1, 53]"));
  CHECK_THAT(message("p=3,emin=4,emax=4"), Catch::Contains("emin=4 must be smaller than emax=4"));
  CHECK_THAT(message("p=3,emin=-2000,emax=4"), Catch::Contains("emin=-2000"));
  CHECK_THAT(message("p=3,emin=-2,emax=2000"), Catch::Contains("emax=2000"));
  CHECK_THAT(message("p=3,emin=-2,emax=4,max=29"), Catch::Contains("max="));
  CHECK_THAT(message("p=3,emin=-2,emax=4,max=100"), Catch::Contains("max="));
  CHECK_THAT(message("p=3,emin=-2"), Catch::Contains("missing field emax"));
  CHECK_THAT(message("p=3,emin=-2,emax=4,colour=red"), Catch::Contains("unknown field 'colour'"));
  CHECK_THAT(message("p=x,emin=-2,emax=4"), Catch::Contains("p='x' is not an integer"));
  CHECK_THAT(message("fp7"), Catch::Contains("unknown format 'fp7'"));
  CHECK_THAT(message("p=3,emin=-2,emax=4,subnormals=maybe"), Catch::Contains("on or off"));
}

TEST_CASE("worked cases of docs/semantics.md §2", "[sim][round]") {
  using namespace sim::formats;
  unsigned fl = 0;
  // e4m3: 464 is a tie between 448 and the NaN code's 480: goes to 448
  CHECK(rnd(464, e4m3, rounding::nearest_even) == 448);
  CHECK(std::isnan(rnd(465, e4m3, rounding::nearest_even)));
  CHECK(rnd(465, e4m3, rounding::nearest_even, true) == 448);
  CHECK(std::isnan(rnd(HUGE_VAL, e4m3, rounding::nearest_even)));
  CHECK(rnd(-HUGE_VAL, e4m3, rounding::nearest_even, true) == -448);
  CHECK(rnd(1e6, e4m3, rounding::toward_zero) == 448);
  CHECK(rnd(-1e6, binary16, rounding::upward) == -65504);
  CHECK(rnd(-1e6, binary16, rounding::downward) == -HUGE_VAL);
  CHECK(rnd(1e6, binary16, rounding::nearest_even) == HUGE_VAL);
  CHECK(rnd(65519.99, binary16, rounding::nearest_even) == 65504);
  CHECK(rnd(65520, binary16, rounding::nearest_even) == HUGE_VAL);
  // subnormals off: 0.6 min_normal -> min_normal; the tie 0.5 min_normal -> 0 / min_normal
  sim::format nosub = binary16;
  nosub.subnormals = false;
  const double mn = binary16.min_normal();
  CHECK(rnd(0.6 * mn, nosub, rounding::nearest_even) == mn);
  CHECK(rnd(0.5 * mn, nosub, rounding::nearest_even) == 0);
  CHECK(rnd(0.5 * mn, nosub, rounding::nearest_away) == mn);
  CHECK(test::same(rnd(-0.4 * mn, nosub, rounding::nearest_even), -0.0));
  // flags
  (void)sim::round(1e-30, binary16, rounding::nearest_even, false, fl);
  CHECK(fl == (sim::flag::inexact | sim::flag::underflow));
  fl = 0;
  (void)sim::round(1e30, e4m3_ieee, rounding::nearest_even, true, fl);
  CHECK(fl == (sim::flag::inexact | sim::flag::overflow | sim::flag::saturated));
  fl = 0;
  (void)sim::round(1e30, e4m3, rounding::nearest_even, false, fl);
  CHECK(fl == (sim::flag::inexact | sim::flag::overflow | sim::flag::invalid));
  fl = 0;
  (void)sim::round(0.5, e4m3, rounding::nearest_even, false, fl);
  CHECK(fl == 0);
}

TEST_CASE("stochastic rounding: neighbours, frequencies, seeds, threads", "[sim][round][stochastic]") {
  using namespace sim::formats;
  SECTION("results are one of the two neighbours") {
    for (const auto& f : {binary16, bfloat16, e4m3, e5m2, e2m1}) {
      const auto in = test::random_inputs(f, 20000, 3);
      std::vector<double> out(in.size());
      sim::round_array(in, out, {f, rounding::stochastic, true, 77});
      std::size_t bad = 0;
      for (std::size_t i = 0; i < in.size(); ++i) {
        if (!std::isfinite(in[i])) continue;
        double rd = 0, ru = 0;
        ref::neighbours_mpfr(in[i], f, rd, ru);
        rd = std::clamp(rd, -f.max_finite, f.max_finite);
        ru = std::clamp(ru, -f.max_finite, f.max_finite);
        if (!(out[i] == rd || out[i] == ru)) ++bad;
      }
      CHECK(bad == 0);
    }
  }
  SECTION("frequencies within a 5-sigma binomial bound") {
    // x = 1 + k/16 ulp in binary16 (and a subnormal case, and a value below
    // the smallest subnormal): P(up) = k/16 exactly.
    const int N = 40000;
    struct probe {
      double x, lo, hi, p;
    };
    std::vector<probe> probes;
    for (int k = 1; k < 16; k += 2) probes.push_back({1 + k * 0x1p-14, 1.0, 1 + 0x1p-10, k / 16.0});
    probes.push_back({0x1.4p-24 * 1.0, 0x1p-24, 0x1p-23, 0.25});  // subnormal: 1.25 quanta
    probes.push_back({0x1p-26, 0, 0x1p-24, 0.25});                // below the smallest subnormal
    probes.push_back({-1 - 3 * 0x1p-14, -1 - 0x1p-10, -1.0, 3 / 16.0});
    for (const auto& pr : probes) {
      std::vector<double> in(N, pr.x), out(N);
      sim::round_array(in, out, {binary16, rounding::stochastic, false, 2024});
      int away = 0, other = 0;
      for (double v : out) {
        if (v == (pr.x > 0 ? pr.hi : pr.lo))
          ++away;
        else if (v == (pr.x > 0 ? pr.lo : pr.hi))
          ++other;
      }
      REQUIRE(away + other == N);
      const double mean = N * pr.p, sd = std::sqrt(N * pr.p * (1 - pr.p));
      INFO("x=" << test::hexs(pr.x) << " away=" << away << " expected " << mean << " +- 5*" << sd);
      CHECK(std::abs(away - mean) <= 5 * sd);
    }
  }
  SECTION("same seed, same stream; another seed, another stream") {
    const auto in = test::random_inputs(binary16, 10000, 8);
    std::vector<double> a(in.size()), b(in.size()), c(in.size());
    sim::round_array(in, a, {binary16, rounding::stochastic, false, 1});
    sim::round_array(in, b, {binary16, rounding::stochastic, false, 1});
    sim::round_array(in, c, {binary16, rounding::stochastic, false, 2});
    std::size_t diff_ab = 0, diff_ac = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
      diff_ab += !test::same(a[i], b[i]);
      diff_ac += !test::same(a[i], c[i]);
    }
    CHECK(diff_ab == 0);
    CHECK(diff_ac > 100);
    // the scalar rounder walks the same stream
    sim::rounder r({binary16, rounding::stochastic, false, 1});
    std::size_t diff_scalar = 0;
    for (std::size_t i = 0; i < in.size(); ++i) diff_scalar += !test::same(r(in[i]), a[i]);
    CHECK(diff_scalar == 0);
  }
  SECTION("any thread count, same stream") {
    const auto in = test::random_inputs(bfloat16, 300000, 9);
    std::vector<double> one(in.size()), two(in.size()), three(in.size());
    sim::round_array(in, one, {bfloat16, rounding::stochastic, false, 5}, 0, 1);
    sim::round_array(in, two, {bfloat16, rounding::stochastic, false, 5}, 0, 2);
    sim::round_array(in, three, {bfloat16, rounding::stochastic, false, 5}, 0, 3);
    std::size_t diff = 0;
    for (std::size_t i = 0; i < in.size(); ++i) diff += !test::same(one[i], two[i]) + !test::same(one[i], three[i]);
    CHECK(diff == 0);
  }
}

TEST_CASE("round_array (vector paths) equals the scalar rounding element by element, flags included, every mode",
          "[sim][round][stochastic]") {
  using namespace sim::formats;
  for (rounding mode : sim::all_roundings)
    for (sim::format f : {binary16, bfloat16, e4m3, e4m3_ieee, e5m2, e2m1, binary32, tf32,
                          sim::parse_format("p=5,emin=-6,emax=7,subnormals=off")})
      for (bool saturate : {false, true})
        for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{13}}) {
          // every boundary of the small formats (binary32 has too many: random values only)
          auto in = f.p <= 11 ? test::boundary_inputs(f) : std::vector<double>{};
          const auto more = test::random_inputs(f, 50003, 21);
          in.insert(in.end(), more.begin(), more.end());
          std::vector<double> out(in.size());
          const unsigned flags = sim::round_array(in, out, {f, mode, saturate, 99}, first, 1);
          sim::rounder r({f, mode, saturate, 99}, first);
          std::size_t bad = 0;
          std::string where;
          for (std::size_t i = 0; i < in.size(); ++i) {
            const double v = r(in[i]);
            if (!test::same(v, out[i]) && !bad++)
              where = test::hexs(in[i]) + " -> " + test::hexs(out[i]) + ", scalar " + test::hexs(v);
          }
          INFO(sim::to_string(mode) << " " << sim::to_string(f) << " saturate=" << saturate << " first=" << first << " "
                                    << where);
          CHECK(bad == 0);
          CHECK(sim::flags_to_string(flags) == sim::flags_to_string(r.flags()));
          // a short array (the scalar tail only) and an unaligned start
          std::vector<double> part(in.begin() + 3, in.begin() + 3 + 21), out2(part.size());
          (void)sim::round_array(part, out2, {f, mode, saturate, 99}, first + 3, 1);
          std::size_t bad2 = 0;
          for (std::size_t i = 0; i < part.size(); ++i) bad2 += !test::same(out2[i], out[i + 3]);
          CHECK(bad2 == 0);
        }
}

// test::same accepts any NaN for a NaN; the NaN an overflow produces in a format
// without infinities is +NaN in the scalar rounding, and must be the same bits
// from the vector paths (the nearest-even kernel once copied the input's sign;
// found by the Python bindings' tests, tests/python/test_identity.py).
TEST_CASE("round_array: an overflow to NaN gives the scalar rounding's bits", "[sim][round]") {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> in;
  for (int i = 0; i < 1000; ++i)
    for (double v : {-1000.0, 1000.0, -inf, inf, -0x1p+1000, 0.5, -0.5}) in.push_back(v);
  for (rounding mode : sim::all_roundings)
    for (sim::format f : {sim::formats::e4m3, sim::formats::e2m1, sim::parse_format("p=5,emin=-6,emax=7,inf=off")}) {
      std::vector<double> out(in.size());
      (void)sim::round_array(in, out, {f, mode, false, 5}, 0, 1);
      sim::rounder r({f, mode, false, 5});
      std::size_t bad = 0;
      for (std::size_t i = 0; i < in.size(); ++i)
        bad += std::bit_cast<std::uint64_t>(r(in[i])) != std::bit_cast<std::uint64_t>(out[i]);
      INFO(sim::to_string(mode) << " " << sim::to_string(f));
      CHECK(bad == 0);
    }
}
