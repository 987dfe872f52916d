// SPDX-License-Identifier: MIT
// sim::dot against the MPFR implementation of the same model (ref::dot_mpfr),
// bit for bit with flags, on random and adversarial inner products, for every
// order, both product models, every named accumulator format (docs/formats.md) on the fast
// path and every mode; and the deterministic bound on every case.
#include <catch2/catch.hpp>

#include <algorithm>

#include <cmath>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/layer.hpp"
#include "support.hpp"

using namespace mpacc;
using sim::rounding;

namespace {

struct case_t {
  std::vector<double> w, x;
  double b = 0;
};

// Inputs stored in `store` (values of that format), scaled around `scale`.
std::vector<case_t> make_cases(const sim::format& store, double scale, std::uint64_t seed) {
  sim::random_stream rng(seed);
  auto val = [&](double mag) {
    const double u = rng.uniform() * 2 - 1;
    return sim::round(u * mag, store);
  };
  std::vector<case_t> cases;
  for (int c = 0; c < 60; ++c) {
    case_t k;
    const std::size_t n = 1 + rng() % 40;
    for (std::size_t j = 0; j < n; ++j) {
      k.w.push_back(val(1.0));
      k.x.push_back(val(scale));
    }
    const int kind = c % 5;
    if (kind == 1 && n >= 2) {  // heavy cancellation: mirror half the terms
      for (std::size_t j = 0; j + 1 < n; j += 2) {
        k.w[j + 1] = -k.w[j];
        k.x[j + 1] = k.x[j];
      }
      k.x[0] = sim::round(k.x[0] * (1 + 0x1p-3), store);
    } else if (kind == 2) {  // large: saturation / overflow of small accumulators
      for (auto& v : k.x) {
        unsigned fl = 0;
        v = sim::round(v * 1e4, store, rounding::nearest_even, true, fl);
      }
    } else if (kind == 3) {  // tiny: subnormal partial sums
      for (auto& v : k.x) v = sim::round(v * 0x1p-20, store);
    } else if (kind == 4) {  // exact ties: 1 and +-2^-k steps
      for (std::size_t j = 0; j < n; ++j) {
        k.w[j] = 1;
        k.x[j] = j == 0 ? 1.0 : std::ldexp((rng() & 1) ? 1.0 : -1.0, -static_cast<int>(rng() % 14));
        k.x[j] = sim::round(k.x[j], store);
      }
    }
    k.b = val(scale);
    cases.push_back(std::move(k));
  }
  return cases;
}

}  // namespace

TEST_CASE("sim::dot equals the MPFR model bit for bit, and the bound holds", "[sim][accumulate][oracle]") {
  const sim::order orders[] = {{sim::order::kind::recursive, 8},
                               {sim::order::kind::pairwise, 8},
                               {sim::order::kind::blocked, 8},
                               {sim::order::kind::blocked, 3}};
  std::vector<case_t> cases;
  for (const auto& store :
       {sim::formats::binary16, sim::formats::e4m3_ieee, sim::formats::bfloat16, sim::formats::binary64})
    for (double scale : {1.0, 100.0}) {
      auto c = make_cases(store, scale, 17 + static_cast<std::uint64_t>(scale));
      cases.insert(cases.end(), c.begin(), c.end());
    }
  std::size_t checked = 0;
  for (const auto& nf : sim::named_formats()) {
    sim::accumulation a;
    a.acc = nf.fmt;
    if (!sim::fast_path_applies(a)) continue;  // binary64: MPFR path only
    for (rounding mode : sim::all_roundings)
      for (const auto& ord : orders)
        for (int prod = 0; prod < 2; ++prod)
          for (bool sat : {false, true}) {
            a.mode = mode;
            a.ord = ord;
            a.saturate = sat;
            a.seed = 3;
            a.product = prod ? std::optional<sim::format>(sim::formats::binary16) : std::nullopt;
            std::size_t bad = 0, violations = 0;
            std::string first;
            const auto count = static_cast<std::ptrdiff_t>(cases.size());
#pragma omp parallel for reduction(+ : bad, violations) schedule(dynamic)
            for (std::ptrdiff_t i = 0; i < count; ++i) {
              const auto& k = cases[i];
              const auto fast = sim::dot(k.w, k.x, k.b, a, 100);
              const auto slow = ref::dot_mpfr(k.w, k.x, k.b, a, 100);
              if (!test::same(fast.value, slow.value) || fast.flags != slow.flags || !fast.exact_model) {
                ++bad;
#pragma omp critical
                if (first.empty())
                  first = "case " + std::to_string(i) + " sim=" + test::hexs(fast.value) + " [" +
                          sim::flags_to_string(fast.flags) + "] mpfr=" + test::hexs(slow.value) + " [" +
                          sim::flags_to_string(slow.flags) + "]";
              }
              if (!(fast.flags & sim::flag::overflow) && std::isfinite(fast.value)) {
                const auto ex = ref::dot_exact(k.w, k.x, k.b);
                ref::mpfr_float err(64);
                mpfr_sub_d(err.get(), ex.value.get(), fast.value, MPFR_RNDU);
                mpfr_abs(err.get(), err.get(), MPFR_RNDU);
                const double bound = analysis::deterministic_bound(k.w, k.x, k.b, a);
                if (mpfr_cmp_d(err.get(), bound) > 0) ++violations;
              }
            }
            checked += cases.size();
            INFO(nf.name << " " << sim::to_string(mode) << " " << sim::to_string(ord) << " product="
                         << (prod ? "binary16" : "exact") << " saturate=" << sat << " first mismatch: " << first);
            CHECK(bad == 0);
            CHECK(violations == 0);
          }
  }
  CHECK(checked > 100000);
}

TEST_CASE("rounding counts per order", "[sim][accumulate]") {
  using K = sim::order::kind;
  // recursive: p_1 goes through n roundings, p_k through n-k+1; plus the bias
  CHECK(sim::rounding_counts(4, {K::recursive, 8}) == std::vector<int>{5, 4, 3, 2});
  CHECK(sim::rounding_counts(5, {K::blocked, 2}) == std::vector<int>{5, 4, 5, 4, 3});
  CHECK(sim::rounding_counts(4, {K::pairwise, 8}) == std::vector<int>{4, 4, 4, 4});
  CHECK(sim::rounding_counts(3, {K::pairwise, 8}) == std::vector<int>{3, 4, 4});
  // the figures docs/error-bounds.md and docs/analysis.md quote for n = 784: the
  // largest count per term (bias rounding included) and the rounding steps
  // (the union of the probabilistic bound), products exact
  auto kmax = [](const sim::order& o) {
    const auto k = sim::rounding_counts(784, o);
    return *std::max_element(k.begin(), k.end());
  };
  CHECK(kmax({K::recursive, 8}) == 785);  // n + 1
  CHECK(kmax({K::blocked, 8}) == 106);    // B + ceil(n/B) = 8 + 98
  CHECK(kmax({K::pairwise, 8}) == 12);    // ceil(log2 n) + 2
  sim::accumulation a;
  a.ord = {K::blocked, 8};
  CHECK(sim::words_per_dot(784, a) == 882);  // n + (ceil(n/B) - 1) + 1
  a.ord = {K::recursive, 8};
  CHECK(sim::words_per_dot(784, a) == 785);  // n + 1
  a.ord = {K::pairwise, 8};
  CHECK(sim::words_per_dot(784, a) == 1568);  // n + (n - 1) + 1
  CHECK(sim::parse_order("blocked:8") == sim::order{K::blocked, 8});
  CHECK_THROWS_WITH(sim::parse_order("blocked:0"), Catch::Contains("block size"));
  CHECK_THROWS_WITH(sim::parse_order("zigzag"), Catch::Contains("unknown order 'zigzag'"));
}

TEST_CASE("a double-rounding trap: products of binary64 values and far-apart partial sums", "[sim][accumulate]") {
  // s + w x where w x needs 106 bits and s is far away: rounding w x to
  // binary64 first, or s + fl(w x), would round twice.
  sim::accumulation a;
  a.acc = sim::formats::binary16;
  a.ord = {sim::order::kind::recursive, 8};
  const double w[] = {1.0, 1 + 0x1p-52};
  const double x[] = {1.0, 0x1p-11 * (1 - 0x1p-52)};  // 1 + (2^-11 - tiny): just below the tie
  const auto r = sim::dot(w, x, 0.0, a);
  const auto m = ref::dot_mpfr(w, x, 0.0, a);
  CHECK(test::same(r.value, m.value));
  CHECK(r.value == 1.0);  // below the midpoint 1 + 2^-11: rounds down
}

TEST_CASE("signed zeros follow IEEE 754's round-to-nearest rule for exact zero sums", "[sim][accumulate]") {
  for (rounding mode : sim::all_roundings) {
    for (const auto& ord : {sim::order{sim::order::kind::recursive, 8}, sim::order{sim::order::kind::pairwise, 8}}) {
      sim::accumulation a;
      a.acc = sim::formats::e4m3_ieee;
      a.mode = mode;
      a.ord = ord;
      const std::vector<std::vector<double>> ws = {{-1, 1}, {-1}, {-1, -1}, {1, -1}, {0, -0.0}, {-0.0, -0.0}};
      const std::vector<std::vector<double>> xs = {{0, 0}, {0}, {0, 0}, {2, 2}, {1, 1}, {1, 1}};
      for (std::size_t c = 0; c < ws.size(); ++c)
        for (double b : {0.0, -0.0}) {
          const auto r = sim::dot(ws[c], xs[c], b, a);
          const auto m = ref::dot_mpfr(ws[c], xs[c], b, a);
          INFO(sim::to_string(mode) << " case " << c << " b=" << b);
          CHECK(test::same(r.value, m.value));
        }
    }
  }
}

TEST_CASE("double rounding through binary32 (accumulation.via): sim::dot equals the MPFR model, the bound holds",
          "[sim][accumulate][oracle]") {
  // a hand-made witness: 1 + 2^-4 + 2^-30 is above the e4m3-ieee midpoint
  // 1 + 2^-4 between 1 and 1.125, so one rounding gives 1.125; binary32 drops
  // the 2^-30 first and the tie then goes to the even 1.0
  {
    sim::accumulation a;
    a.acc = sim::formats::e4m3_ieee;
    const double w[] = {1.0}, x[] = {1 + 0x1p-4 + 0x1p-30};
    CHECK(sim::dot(w, x, 0.0, a).value == 1.125);
    a.via = sim::formats::binary32;
    CHECK(sim::dot(w, x, 0.0, a).value == 1.0);
    CHECK(ref::dot_mpfr(w, x, 0.0, a).value == 1.0);
  }
  std::vector<case_t> cases;
  for (const auto& store : {sim::formats::binary16, sim::formats::e4m3_ieee})
    for (double scale : {1.0, 100.0}) {
      auto c = make_cases(store, scale, 41 + static_cast<std::uint64_t>(scale));
      cases.insert(cases.end(), c.begin(), c.end());
    }
  std::size_t checked = 0, differs = 0;
  for (const auto& acc : {sim::formats::e4m3_ieee, sim::formats::e5m2, sim::formats::bfloat16, sim::formats::binary16})
    for (const auto& via : {sim::formats::binary32, sim::formats::binary16})
      for (rounding mode : sim::all_roundings)
        for (const auto& ord : {sim::order{sim::order::kind::recursive, 8}, sim::order{sim::order::kind::blocked, 8}})
          for (bool sat : {false, true}) {
            if (via.p <= acc.p) continue;
            sim::accumulation a;
            a.acc = acc;
            a.via = via;
            a.mode = mode;
            a.ord = ord;
            a.saturate = sat;
            a.seed = 5;
            sim::accumulation direct = a;
            direct.via.reset();
            std::size_t bad = 0, violations = 0;
            const auto count = static_cast<std::ptrdiff_t>(cases.size());
#pragma omp parallel for reduction(+ : bad, violations, differs) schedule(dynamic)
            for (std::ptrdiff_t i = 0; i < count; ++i) {
              const auto& k = cases[i];
              const auto fast = sim::dot(k.w, k.x, k.b, a, 7);
              const auto slow = ref::dot_mpfr(k.w, k.x, k.b, a, 7);
              if (!test::same(fast.value, slow.value) || fast.flags != slow.flags) ++bad;
              if (!test::same(fast.value, sim::dot(k.w, k.x, k.b, direct, 7).value)) ++differs;
              if (!(fast.flags & sim::flag::overflow) && std::isfinite(fast.value)) {
                const auto ex = ref::dot_exact(k.w, k.x, k.b);
                ref::mpfr_float err(64);
                mpfr_sub_d(err.get(), ex.value.get(), fast.value, MPFR_RNDU);
                mpfr_abs(err.get(), err.get(), MPFR_RNDU);
                if (mpfr_cmp_d(err.get(), analysis::deterministic_bound(k.w, k.x, k.b, a)) > 0) ++violations;
              }
            }
            checked += cases.size();
            INFO(sim::to_string(acc) << " via " << sim::to_string(via) << " " << sim::to_string(mode) << " "
                                     << sim::to_string(ord) << " saturate=" << sat);
            CHECK(bad == 0);
            CHECK(violations == 0);
          }
  CHECK(checked > 10000);
  CHECK(differs > 0);  // the model is not silently the single-rounding one
}
