// SPDX-License-Identifier: MIT
// Dense layers: every output equals the scalar inner product sim::dot (itself
// checked against MPFR) bit for bit with its flags, with a per-component
// precision map, on every kernel this processor has (scalar, portable, AVX2,
// AVX-512: each forced in turn, and which one ran asserted), in every rounding
// mode; any thread count gives the same bits; stochastic layers are
// reproducible per seed.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <optional>

#include "mpacc/sim/layer.hpp"
#include "support.hpp"

using namespace mpacc;
using sim::rounding;

namespace {

struct layer_data {
  std::size_t batch, n_in, n_out;
  std::vector<double> X, W, b;
};

layer_data make_layer(std::size_t batch, std::size_t n_in, std::size_t n_out, std::uint64_t seed, double scale) {
  sim::random_stream rng(seed);
  layer_data L{batch, n_in, n_out, {}, {}, {}};
  auto val = [&](const sim::format& f, double mag) { return sim::round((rng.uniform() * 2 - 1) * mag, f); };
  for (std::size_t i = 0; i < batch * n_in; ++i) L.X.push_back(val(sim::formats::binary16, scale));
  for (std::size_t i = 0; i < n_out * n_in; ++i) L.W.push_back(val(sim::formats::e4m3_ieee, 1.0));
  for (std::size_t i = 0; i < n_out; ++i) L.b.push_back(val(sim::formats::e4m3_ieee, 1.0));
  // a few exactly cancelling rows and zero inputs
  if (n_out > 3 && n_in > 1)
    for (std::size_t j = 0; j + 1 < n_in; j += 2) {
      L.W[2 * n_in + j + 1] = -L.W[2 * n_in + j];
      for (std::size_t s = 0; s < batch; ++s) L.X[s * n_in + j + 1] = L.X[s * n_in + j];
    }
  return L;
}

// Full 53-bit values over a wide exponent range: every FMA step is inexact in
// binary64, so a kernel that rounded twice (to binary64, then to the format)
// would differ; ties at 53 bits are forced in a third of the products.
layer_data make_wide_layer(std::size_t batch, std::size_t n_in, std::size_t n_out, std::uint64_t seed) {
  sim::random_stream rng(seed);
  layer_data L{batch, n_in, n_out, {}, {}, {}};
  auto val = [&](int lo, int hi) {
    const double m = 1.0 + static_cast<double>(rng() >> 12) * 0x1p-52;
    const int e = lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    return std::ldexp((rng() & 1) ? -m : m, e);
  };
  for (std::size_t i = 0; i < batch * n_in; ++i) L.X.push_back(val(-30, 3));
  for (std::size_t i = 0; i < n_out * n_in; ++i) {
    double w = val(-20, 2);
    if (i % 3 == 0)
      w = std::ldexp(1.0 + std::ldexp(1.0, -(11 + static_cast<int>(rng() % 30))), static_cast<int>(rng() % 8) - 4);
    L.W.push_back(w);
  }
  for (std::size_t i = 0; i < n_out; ++i) L.b.push_back(val(-10, 0));
  return L;
}

// Values at the edges of the formats: binary16/e4m3 subnormals and below,
// exact ties of the accumulators, sums that overflow e4m3 (and binary16 with
// `huge`), infinities and a NaN when `specials`.
layer_data make_corner_layer(std::size_t batch, std::size_t n_in, std::size_t n_out, std::uint64_t seed, bool huge,
                             bool specials) {
  sim::random_stream rng(seed);
  layer_data L{batch, n_in, n_out, {}, {}, {}};
  auto pick = [&](std::initializer_list<double> v) { return *(v.begin() + static_cast<long>(rng() % v.size())); };
  for (std::size_t i = 0; i < batch * n_in; ++i) {
    double x = pick({0x1p-24, -0x1p-24, 0x1.8p-20, 0x1p-14, 0x1.ffcp-15, 0.5, -0.75, 1.0 + 0x1p-10, 0x1.002p+0, 3.0,
                     -0x1p-9, 0x1.4p-7, 0.0, -0.0, 240.0, -448.0});
    if (huge && rng() % 4 == 0) x = pick({60000.0, -65504.0, 0x1p+20});
    L.X.push_back(x);
  }
  for (std::size_t i = 0; i < n_out * n_in; ++i)
    L.W.push_back(pick({1.0, -1.0, 0.5, 0x1p-9, -0x1p-8, 0x1.2p+0, 15.0, -0.875, 0.0, 0x1p-3}));
  for (std::size_t i = 0; i < n_out; ++i) L.b.push_back(pick({0.0, -0.0, 0x1p-10, -1.5, 100.0}));
  if (specials && batch > 1 && n_in > 2) {
    L.X[1] = std::numeric_limits<double>::infinity();
    L.X[n_in + 2] = -std::numeric_limits<double>::infinity();
    L.X[(batch - 1) * n_in] = std::numeric_limits<double>::quiet_NaN();
  }
  return L;
}

// run_values and run_selected_values against run and run_selected: the
// number of outputs whose bits differ (a selection of every third output).
std::size_t values_only_mismatches(const layer_data& L, const sim::layer_spec& spec) {
  const sim::prepared_dense P({L.W.data(), L.n_out, L.n_in}, L.b, spec);
  const sim::matrix_view X{L.X.data(), L.batch, L.n_in};
  std::vector<double> Y, V, Ys, Vs;
  std::vector<std::uint8_t> need(L.batch * L.n_out);
  for (std::size_t o = 0; o < need.size(); ++o) need[o] = o % 3 == 1;
  P.run(X, Y, 2);
  P.run_values(X, V, 2);
  P.run_selected(X, need, Ys, 2);
  P.run_selected_values(X, need, Vs, 2);
  std::size_t bad = (V.size() != Y.size()) + (Vs.size() != Ys.size());
  for (std::size_t o = 0; o < std::min(V.size(), Y.size()); ++o) bad += !test::same(V[o], Y[o]);
  for (std::size_t o = 0; o < std::min(Vs.size(), Ys.size()); ++o) bad += !test::same(Vs[o], Ys[o]);
  return bad;
}

std::size_t compare_with_dot(const layer_data& L, const sim::layer_spec& spec, int threads, std::string& first) {
  std::vector<double> Y;
  const auto lf = sim::dense({L.X.data(), L.batch, L.n_in}, {L.W.data(), L.n_out, L.n_in}, L.b, spec, Y, threads);
  std::size_t bad = 0;
  sim::layer_flags expect;
  const std::uint64_t words = sim::words_per_dot(L.n_in, spec.base);
  for (std::size_t s = 0; s < L.batch; ++s)
    for (std::size_t i = 0; i < L.n_out; ++i) {
      sim::accumulation a = spec.base;
      a.acc = spec.acc.of(i);
      const auto r = sim::dot({L.W.data() + i * L.n_in, L.n_in}, {L.X.data() + s * L.n_in, L.n_in}, L.b[i], a,
                              (s * L.n_out + i) * words);
      expect.add(r.flags);
      if (!test::same(r.value, Y[s * L.n_out + i])) {
        if (!bad)
          first = "s=" + std::to_string(s) + " i=" + std::to_string(i) + " layer=" + test::hexs(Y[s * L.n_out + i]) +
                  " dot=" + test::hexs(r.value);
        ++bad;
      }
    }
  if (lf.inexact != expect.inexact || lf.underflow != expect.underflow || lf.overflow != expect.overflow ||
      lf.invalid != expect.invalid || lf.saturated != expect.saturated || lf.outputs != expect.outputs) {
    ++bad;
    if (first.empty())
      first = "flag counts differ: inexact " + std::to_string(lf.inexact) + " vs " + std::to_string(expect.inexact) +
              ", overflow " + std::to_string(lf.overflow) + " vs " + std::to_string(expect.overflow) + ", underflow " +
              std::to_string(lf.underflow) + " vs " + std::to_string(expect.underflow) + ", saturated " +
              std::to_string(lf.saturated) + " vs " + std::to_string(expect.saturated) + ", invalid " +
              std::to_string(lf.invalid) + " vs " + std::to_string(expect.invalid);
  }
  return bad;
}

}  // namespace

TEST_CASE("dense layer equals sim::dot per component on every kernel, mode, order, product model", "[sim][layer]") {
  using K = sim::order::kind;
  std::vector<layer_data> layers = {make_layer(7, 37, 21, 1, 1.0), make_layer(5, 16, 8, 2, 300.0),
                                    make_layer(4, 9, 13, 3, 0.001), make_layer(3, 0, 5, 4, 1.0),
                                    make_wide_layer(6, 29, 19, 6)};
  for (const sim::dense_kernel kernel : test::available_kernels()) {
    const test::forced_kernel force(kernel);
    for (const auto& L : layers)
      for (rounding mode : sim::all_roundings)
        for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}, sim::order{K::blocked, 5},
                                sim::order{K::pairwise, 8}})
          for (int prod = 0; prod < 2; ++prod)
            for (bool sat : {false, true}) {
              sim::layer_spec spec;
              spec.base.mode = mode;
              spec.base.ord = ord;
              spec.base.saturate = sat;
              spec.base.seed = 9;
              if (prod) spec.base.product = sim::formats::binary16;
              // four accumulators, assigned by component; the last has its largest
              // finite value in a lower binade than 2^emax
              spec.acc.formats = {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::e4m3,
                                  sim::parse_format("p=4,emin=-6,emax=8,max=20")};
              for (std::size_t i = 0; i < L.n_out; ++i) spec.acc.index.push_back(static_cast<std::uint8_t>(i % 4));
              std::string first;
              const std::size_t bad = compare_with_dot(L, spec, 2, first);
              INFO("kernel=" << sim::to_string(kernel) << " n_in=" << L.n_in << " " << sim::to_string(mode) << " "
                             << sim::to_string(ord) << " product=" << prod << " saturate=" << sat
                             << " first: " << first);
              CHECK(sim::dense_kernel_for(spec) == test::expected_kernel(kernel, spec));
              CHECK(bad == 0);
              CHECK(values_only_mismatches(L, spec) == 0);
            }
  }
}

TEST_CASE(
    "every kernel equals sim::dot on corner cases: subnormals, ties, overflow, infinities, NaN, "
    "formats without subnormals",
    "[sim][layer]") {
  using K = sim::order::kind;
  const std::vector<layer_data> layers = {make_corner_layer(6, 23, 17, 11, false, false),
                                          make_corner_layer(5, 31, 9, 12, true, false),
                                          make_corner_layer(4, 12, 10, 13, true, true)};
  const std::vector<sim::format> accs = {sim::formats::e4m3_ieee,
                                         sim::formats::e5m2,
                                         sim::formats::bfloat16,
                                         sim::formats::binary16,
                                         sim::formats::binary32,
                                         sim::formats::e4m3,
                                         sim::parse_format("p=5,emin=-6,emax=7,subnormals=off"),
                                         sim::parse_format("p=11,emin=-14,emax=15,subnormals=off,inf=off")};
  for (const sim::dense_kernel kernel : test::available_kernels()) {
    const test::forced_kernel force(kernel);
    for (std::size_t li = 0; li < layers.size(); ++li)
      for (rounding mode : sim::all_roundings)
        for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 4}, sim::order{K::pairwise, 8}})
          for (int prod = 0; prod < 3; ++prod)
            for (bool sat : {false, true})
              for (std::size_t fi = 0; fi < accs.size(); ++fi) {
                const auto& L = layers[li];
                sim::layer_spec spec;
                spec.base.mode = mode;
                spec.base.ord = ord;
                spec.base.saturate = sat;
                spec.base.seed = 77 + fi;
                if (prod == 1) spec.base.product = sim::formats::bfloat16;
                if (prod == 2) spec.base.product = sim::formats::e5m2;
                // each component alternates between this format and the next one
                spec.acc.formats = {accs[fi], accs[(fi + 1) % accs.size()]};
                for (std::size_t i = 0; i < L.n_out; ++i)
                  spec.acc.index.push_back(static_cast<std::uint8_t>((i / 3) % 2));
                std::string first;
                const std::size_t bad = compare_with_dot(L, spec, 1, first);
                INFO("kernel=" << sim::to_string(kernel) << " layer " << li << " " << sim::to_string(mode) << " "
                               << sim::to_string(ord) << " product=" << prod << " saturate=" << sat << " acc "
                               << sim::to_string(accs[fi]) << " first: " << first);
                CHECK(sim::dense_kernel_for(spec) == test::expected_kernel(kernel, spec));
                CHECK(bad == 0);
              }
  }
}

TEST_CASE("dense layer: same bits for any thread count; stochastic reproducible", "[sim][layer]") {
  const auto L = make_layer(13, 100, 70, 5, 1.0);
  for (const sim::dense_kernel kernel : test::available_kernels())
    for (rounding mode : sim::all_roundings) {
      const test::forced_kernel force(kernel);
      sim::layer_spec spec;
      spec.base.mode = mode;
      spec.base.ord = {sim::order::kind::blocked, 8};
      spec.base.seed = 42;
      spec.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
      std::vector<double> y1, y2, y3, y4;
      const sim::matrix_view X{L.X.data(), L.batch, L.n_in}, W{L.W.data(), L.n_out, L.n_in};
      sim::dense(X, W, L.b, spec, y1, 1);
      sim::dense(X, W, L.b, spec, y2, 2);
      sim::dense(X, W, L.b, spec, y3, 3);
      sim::dense(X, W, L.b, spec, y4, 2);
      std::size_t diff = 0;
      for (std::size_t k = 0; k < y1.size(); ++k)
        diff += !test::same(y1[k], y2[k]) + !test::same(y1[k], y3[k]) + !test::same(y2[k], y4[k]);
      INFO(sim::to_string(kernel) << " " << sim::to_string(mode));
      CHECK(diff == 0);
      if (mode == rounding::stochastic) {
        spec.base.seed = 43;
        std::vector<double> y5;
        sim::dense(X, W, L.b, spec, y5, 2);
        std::size_t changed = 0;
        for (std::size_t k = 0; k < y1.size(); ++k) changed += !test::same(y1[k], y5[k]);
        CHECK(changed > 0);
      }
    }
}

TEST_CASE("dense layer rejects mismatched shapes", "[sim][layer]") {
  std::vector<double> X(6), W(6), b(2), Y;
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(sim::formats::binary16);
  CHECK_THROWS_WITH(sim::dense({X.data(), 2, 3}, {W.data(), 3, 2}, b, spec, Y), Catch::Contains("columns"));
  CHECK_THROWS_WITH(sim::dense({X.data(), 2, 3}, {W.data(), 2, 3}, std::vector<double>(3), spec, Y),
                    Catch::Contains("bias"));
  // a prepared layer: X's width, and a selection of the wrong size, in every entry point
  const sim::prepared_dense P({W.data(), 2, 3}, b, spec);
  const std::vector<std::uint8_t> need(3, 1);  // 2 x 2 outputs: 4 entries expected
  CHECK_THROWS_WITH(P.run({X.data(), 3, 2}, Y), Catch::Contains("columns"));
  CHECK_THROWS_WITH(P.run_values({X.data(), 3, 2}, Y), Catch::Contains("columns"));
  CHECK_THROWS_WITH(P.run_selected({X.data(), 2, 3}, need, Y), Catch::Contains("the selection has 3 entries"));
  CHECK_THROWS_WITH(P.run_selected_values({X.data(), 2, 3}, need, Y), Catch::Contains("the selection has 3 entries"));
}

TEST_CASE("an empty precision map means base.acc for every component", "[sim][layer]") {
  sim::random_stream rng(77);
  std::vector<double> X(5 * 40), W(7 * 40), b(7), Y1, Y2;
  for (auto& v : X) v = rng.uniform() * 2 - 1;
  for (auto& v : W) v = sim::round(rng.uniform() * 2 - 1, sim::formats::e4m3_ieee);
  for (auto& v : b) v = rng.uniform() - 0.5;
  for (const auto& f : {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::binary64}) {
    sim::layer_spec implicit;  // no map: base.acc
    implicit.base.acc = f;
    implicit.base.ord = {sim::order::kind::blocked, 8};
    sim::layer_spec expl = implicit;
    expl.acc = sim::precision_map::uniform(f);
    if (f.p > 51) continue;  // binary64: not on sim's exact path
    sim::dense({X.data(), 5, 40}, {W.data(), 7, 40}, b, implicit, Y1);
    sim::dense({X.data(), 5, 40}, {W.data(), 7, 40}, b, expl, Y2);
    REQUIRE(Y1.size() == Y2.size());
    for (std::size_t t = 0; t < Y1.size(); ++t) CHECK(test::same(Y1[t], Y2[t]));
  }
}

TEST_CASE("every kernel path is exercised and asserted: automatic choice and each forced kernel", "[sim][layer]") {
  using K = sim::order::kind;
  const auto kernels = test::available_kernels();
  const sim::dense_kernel best = kernels.back();
  if (best != sim::dense_kernel::avx512_b32) WARN("this processor has no AVX-512: those kernels are not tested here");
  const auto L = make_layer(6, 41, 19, 7, 1.0);
  REQUIRE(sim::dense_kernel_choice() == "auto");
  for (rounding mode : sim::all_roundings)
    for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}})
      for (const auto& f : {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::bfloat16}) {
        sim::layer_spec spec;
        spec.base.mode = mode;
        spec.base.ord = ord;
        spec.acc = sim::precision_map::uniform(f);
        INFO(sim::to_string(mode) << " " << sim::to_string(ord) << " " << sim::to_string(f));
        CHECK(sim::dense_kernel_for(spec) == test::expected_kernel(best, spec));
        std::string first;
        CHECK(compare_with_dot(L, spec, 2, first) == 0);
        for (const sim::dense_kernel k : kernels) {
          sim::set_dense_kernel_choice(sim::to_string(k));
          CHECK(sim::dense_kernel_choice() == sim::to_string(k));
          CHECK(sim::dense_kernel_for(spec) == test::expected_kernel(k, spec));
          CHECK(sim::dense_vector_kernel_applies(spec) == (k != sim::dense_kernel::scalar));
          CHECK(compare_with_dot(L, spec, 2, first) == 0);
        }
        sim::set_dense_kernel_choice("auto");
      }
  // a spec no vector kernel covers takes the scalar path whatever is forced
  sim::layer_spec wide;
  wide.acc = sim::precision_map::uniform(sim::parse_format("p=52,emin=-1000,emax=900"));
  for (const sim::dense_kernel k : kernels) {
    const test::forced_kernel force(k);
    CHECK(sim::dense_kernel_for(wide) == sim::dense_kernel::scalar);
  }
  CHECK_THROWS_WITH(sim::set_dense_kernel_choice("avx9000"), Catch::Contains("unknown kernel choice"));
  if (kernels.size() < 4) {
    CHECK_THROWS_WITH(sim::set_dense_kernel_choice("avx512"), Catch::Contains("not available on this processor"));
    CHECK_THROWS_WITH(sim::set_dense_kernel_choice("avx512-b32"), Catch::Contains("not available on this processor"));
  }
  CHECK(sim::dense_kernel_choice() == "auto");
}

TEST_CASE("every kernel: a negative value rounded to zero gives -0, in every mode", "[sim][layer]") {
  // small negative terms and sums that round to zero in e4m3-ieee (smallest
  // subnormal 2^-9, so below 2^-10 in magnitude) toward zero, upward, to
  // nearest and sometimes stochastically (the AVX-512 kernel once returned +0)
  const std::size_t n_in = 3, n_out = 8, batch = 4;
  std::vector<double> W(n_out * n_in, 0.0), X(batch * n_in, 0.0), b(n_out);
  for (std::size_t i = 0; i < n_out; ++i) {
    W[i * n_in] = 0.5;
    b[i] = -0x1p-11 - std::ldexp(1.0, -14 - static_cast<int>(i));
  }
  for (std::size_t s = 0; s < batch; ++s) X[s * n_in] = -std::ldexp(1.0, -13 - static_cast<int>(s));
  for (const sim::dense_kernel kernel : test::available_kernels()) {
    const test::forced_kernel force(kernel);
    for (rounding mode : sim::all_roundings) {
      sim::layer_spec spec;
      spec.base.mode = mode;
      spec.base.seed = 3;
      spec.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
      const layer_data L{batch, n_in, n_out, X, W, b};
      std::string first;
      INFO(sim::to_string(kernel) << " " << sim::to_string(mode));
      const std::size_t bad = compare_with_dot(L, spec, 1, first);
      INFO(first);
      CHECK(bad == 0);
      if (mode == rounding::toward_zero || mode == rounding::upward || mode == rounding::nearest_even ||
          mode == rounding::nearest_away) {
        std::vector<double> Y;
        sim::dense({X.data(), batch, n_in}, {W.data(), n_out, n_in}, b, spec, Y, 1);
        for (double y : Y) CHECK((y == 0 && std::signbit(y)));
      }
    }
  }
}

TEST_CASE("dense layer: span_rows for the exactness proof changes no bit", "[sim][layer]") {
  const auto L = make_layer(9, 30, 17, 21, 1.0);
  sim::layer_spec spec;
  spec.base.ord = {sim::order::kind::blocked, 8};
  spec.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
  const sim::prepared_dense layer({L.W.data(), L.n_out, L.n_in}, L.b, spec);
  const sim::matrix_view X{L.X.data(), L.batch, L.n_in};
  std::vector<double> y1, y2, y3;
  layer.run(X, y1, 1);
  // one row holding every value of three rows (a superset), and a row of huge
  // values with a low bit (the proof fails: the slower exact path runs)
  std::vector<double> groups, wide(L.n_in, 0x1p+40);
  wide[0] = 0x1p-40;
  for (std::size_t g = 0; g < 3; ++g)
    groups.insert(groups.end(), L.X.begin() + static_cast<std::ptrdiff_t>(g * 3 * L.n_in),
                  L.X.begin() + static_cast<std::ptrdiff_t>((g * 3 + 3) * L.n_in));
  layer.run(X, y2, 1, nullptr, 0, {groups.data(), 3, 3 * L.n_in}, 3);
  layer.run(X, y3, 1, nullptr, 0, {wide.data(), 1, L.n_in}, L.batch);
  std::size_t diff = 0;
  for (std::size_t k = 0; k < y1.size(); ++k) diff += !test::same(y1[k], y2[k]) + !test::same(y1[k], y3[k]);
  CHECK(diff == 0);
  CHECK_THROWS_WITH(layer.run(X, y2, 1, nullptr, 0, {groups.data(), 2, 3 * L.n_in}, 3), Catch::Contains("cover"));
}

TEST_CASE("dense layer: run_selected gives the selected outputs' bits and flags, NaN elsewhere", "[sim][layer]") {
  // 13 samples (not a multiple of 4), 21 components (not a multiple of 8);
  // selections from none to all, random and by whole blocks, on every kernel,
  // every mode (stochastic: the words of the output's own position), two
  // threads, and rows numbered from first_row
  const auto L = make_layer(13, 40, 21, 31, 1.0);
  const sim::matrix_view X{L.X.data(), L.batch, L.n_in};
  const std::size_t N = L.batch * L.n_out;
  std::vector<std::vector<std::uint8_t>> needs;
  needs.emplace_back(N, 0);
  needs.emplace_back(N, 1);
  for (const double density : {0.02, 0.2, 0.7}) {
    sim::random_stream rng(static_cast<std::uint64_t>(density * 1000));
    std::vector<std::uint8_t> n(N);
    for (auto& v : n) v = rng.uniform() < density ? 1 : 0;
    needs.push_back(n);
  }
  {
    std::vector<std::uint8_t> n(N, 0);  // the last (partial) block of samples 3 and 12 only
    for (std::size_t i = 16; i < 21; ++i) n[3 * L.n_out + i] = n[12 * L.n_out + i] = 1;
    needs.push_back(n);
  }
  for (const sim::dense_kernel kernel : test::available_kernels())
    for (rounding mode : sim::all_roundings) {
      const test::forced_kernel force(kernel);
      sim::layer_spec spec;
      spec.base.mode = mode;
      spec.base.ord = {sim::order::kind::blocked, 8};
      spec.base.saturate = true;
      spec.base.seed = 5;
      spec.acc.formats = {sim::formats::e4m3_ieee, sim::formats::binary16};
      for (std::size_t i = 0; i < L.n_out; ++i) spec.acc.index.push_back(static_cast<std::uint8_t>(i % 3 == 0));
      const sim::prepared_dense layer({L.W.data(), L.n_out, L.n_in}, L.b, spec);
      REQUIRE(sim::dense_kernel_for(spec) == test::expected_kernel(kernel, spec));
      std::vector<double> all, part;
      std::vector<unsigned> fa, fp;
      layer.run(X, all, 1, &fa, 100);
      for (std::size_t q = 0; q < needs.size(); ++q) {
        const auto lf = layer.run_selected(X, needs[q], part, 2, &fp, 100);
        std::size_t bad = 0, selected = 0;
        for (std::size_t t = 0; t < N; ++t) {
          if (needs[q][t]) {
            ++selected;
            bad += !test::same(part[t], all[t]) || fp[t] != fa[t];
          } else {
            bad += !std::isnan(part[t]) || fp[t] != 0;
          }
        }
        INFO("kernel=" << sim::to_string(kernel) << " mode=" << sim::to_string(mode) << " selection " << q);
        CHECK(bad == 0);
        CHECK(lf.outputs == selected);
      }
    }
  std::vector<double> y;
  const sim::prepared_dense layer({L.W.data(), L.n_out, L.n_in}, L.b, sim::layer_spec{});
  CHECK_THROWS_WITH(layer.run_selected(X, std::vector<std::uint8_t>(N - 1, 1), y), Catch::Contains("selection"));
}

namespace {

// A spec with these mode, order, saturation and stochastic seed (accumulators: the caller's).
sim::layer_spec spec_of(rounding mode, const sim::order& ord, bool saturate, std::uint64_t seed) {
  sim::layer_spec spec;
  spec.base.mode = mode;
  spec.base.ord = ord;
  spec.base.saturate = saturate;
  spec.base.seed = seed;
  return spec;
}

// Full 24-bit binary32 significands over a wide exponent range (every step
// inexact in binary32, ties at 24 bits in a third of the weights): a binary32
// kernel that truncated instead of rounding to odd would differ.
layer_data make_float_layer(std::size_t batch, std::size_t n_in, std::size_t n_out, std::uint64_t seed, int xlo,
                            int xhi) {
  sim::random_stream rng(seed);
  layer_data L{batch, n_in, n_out, {}, {}, {}};
  auto val = [&](int lo, int hi) {
    const double m = 1.0 + static_cast<double>(rng() >> 41) * 0x1p-23;
    const int e = lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    return std::ldexp((rng() & 1) ? -m : m, e);
  };
  for (std::size_t i = 0; i < batch * n_in; ++i) L.X.push_back(val(xlo, xhi));
  for (std::size_t i = 0; i < n_out * n_in; ++i) {
    double w = val(-12, 2);
    if (i % 3 == 0)
      w = std::ldexp(1.0 + std::ldexp(1.0, -(11 + static_cast<int>(rng() % 13))), static_cast<int>(rng() % 8) - 4);
    L.W.push_back(w);
  }
  for (std::size_t i = 0; i < n_out; ++i) L.b.push_back(val(-10, 0));
  return L;
}

// The binary32 kernel's edge cases, one kind per sample row (rows of 4
// samples make a task, so most tasks mix kinds): subnormal results of e4m3
// and binary16, ties, exact cancellation to +-0, -0 inputs, products below
// binary32's subnormals (2^-149) and near its top (2^99, allowed) or above
// the per-task limit 2^100 (that task runs on avx512), sums that overflow.
layer_data make_b32_edge_layer(std::size_t batch, std::size_t n_in, std::size_t n_out, std::uint64_t seed) {
  sim::random_stream rng(seed);
  layer_data L{batch, n_in, n_out, {}, {}, {}};
  auto pick = [&](std::initializer_list<double> v) { return *(v.begin() + static_cast<long>(rng() % v.size())); };
  for (std::size_t s = 0; s < batch; ++s)
    for (std::size_t j = 0; j < n_in; ++j) {
      double x = 0;
      switch (s % 8) {
        case 0:  // tiny: subnormal e4m3 / binary16 results
          x = pick({0x1p-12, -0x1p-13, 0x1.8p-11, 0x1p-20, -0x1.4p-16, 0.0});
          break;
        case 1:  // ties of e4m3 (quantum 2^-3 at 1) and binary16
          x = pick({1.0625, -1.0625, 0x1.0008p+0, 0x1.0018p+0, 0.5, -0.25});
          break;
        case 2:  // products at binary32's lower limit
          x = pick({0x1p-149, -0x1p-149, 0x1.8p-140, 0x1p-126, -0x1.000002p-126});
          break;
        case 3:  // zeros of both signs
          x = pick({0.0, -0.0});
          break;
        case 4:  // large products (2^99 with |w| <= 16): the sums overflow e4m3 and binary16
          x = pick({0x1p+95, -0x1p+95, 0x1p+20, 300.0});
          break;
        case 5:  // above the task limit: |w| max |x| > 2^100
          x = pick({0x1p+99, 1.0});
          break;
        default:  // ordinary values
          x = pick({0.5, -0.75, 1.5, 3.0, -0x1.2p-3, 0x1.ffcp-15, 7.0});
      }
      L.X.push_back(x);
    }
  for (std::size_t i = 0; i < n_out * n_in; ++i)
    L.W.push_back(pick({1.0, -1.0, 0.5, 0x1p-9, -0x1p-8, 0x1.2p+0, 15.0, -0.875}));
  // rows 2 and 3: exactly cancelling pairs (x repeated, w negated)
  for (std::size_t j = 0; j + 1 < n_in; j += 2) {
    L.W[2 * n_in + j + 1] = -L.W[2 * n_in + j];
    L.W[3 * n_in + j + 1] = -L.W[3 * n_in + j];
    for (std::size_t s = 0; s < batch; ++s) L.X[s * n_in + j + 1] = L.X[s * n_in + j];
  }
  for (std::size_t i = 0; i < n_out; ++i) L.b.push_back(pick({0.0, -0.0, 0x1p-10, -1.5, 0x1p-20}));
  return L;
}

}  // namespace

TEST_CASE("the binary32 kernel equals sim::dot bit for bit and runs where it is documented to", "[sim][layer]") {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
    WARN("this processor has no AVX-512: the binary32 kernel is not tested here");
    return;
  }
  using K = sim::order::kind;
  const test::forced_kernel force(sim::dense_kernel::avx512_b32);
  const std::vector<layer_data> layers = {make_layer(9, 37, 21, 41, 1.0),
                                          make_layer(5, 64, 33, 42, 300.0),
                                          make_layer(4, 9, 13, 43, 0.001),
                                          make_float_layer(8, 45, 18, 44, -30, 3),
                                          make_float_layer(6, 30, 16, 45, -60, -20),
                                          make_b32_edge_layer(16, 26, 19, 46)};
  const std::vector<sim::format> accs = {sim::formats::e4m3_ieee,
                                         sim::formats::binary16,
                                         sim::formats::e4m3,
                                         sim::formats::e5m2,
                                         sim::parse_format("p=4,emin=-6,emax=8,max=20"),
                                         sim::parse_format("p=5,emin=-6,emax=7,subnormals=off"),
                                         sim::parse_format("p=11,emin=-14,emax=15,subnormals=off,inf=off"),
                                         sim::parse_format("p=22,emin=-100,emax=100"),
                                         sim::parse_format("p=12,emin=-100,emax=3")};
  std::size_t combos = 0, ran = 0;
  std::size_t idle[6][9] = {};
  for (std::size_t li = 0; li < layers.size(); ++li)
    for (rounding mode : sim::all_roundings)
      for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}, sim::order{K::blocked, 5},
                              sim::order{K::pairwise, 8}})
        for (bool sat : {false, true})
          for (std::size_t fi = 0; fi < accs.size(); ++fi) {
            const auto& L = layers[li];
            sim::layer_spec spec = spec_of(mode, ord, sat, 5);
            spec.acc.formats = {accs[fi], accs[(fi + 1) % accs.size()]};
            for (std::size_t i = 0; i < L.n_out; ++i) spec.acc.index.push_back(static_cast<std::uint8_t>((i / 5) % 2));
            const bool covers = mode != rounding::stochastic;
            const std::uint64_t before = sim::dense_b32_tasks();
            std::string first;
            const std::size_t bad = compare_with_dot(L, spec, 2, first);
            const std::uint64_t tasks = sim::dense_b32_tasks() - before;
            INFO("layer " << li << " " << sim::to_string(mode) << " " << sim::to_string(ord) << " saturate=" << sat
                          << " acc " << sim::to_string(accs[fi]) << " first: " << first);
            CHECK(sim::dense_kernel_for(spec) == (covers ? sim::dense_kernel::avx512_b32 : sim::dense_kernel::avx512));
            CHECK(bad == 0);
            // the values alone (no flag bookkeeping in the binary32 kernel): the same bits
            CHECK(values_only_mismatches(L, spec) == 0);
            if (!covers) CHECK(tasks == 0);
            combos += covers;
            ran += covers && tasks > 0;
            if (covers && tasks == 0) idle[li][fi] += 1;
          }
  // the binary32 kernel ran tasks of every covered combination, overflowing
  // ones included (layer 1: sums up to 10^4)
  for (std::size_t li = 0; li < layers.size(); ++li)
    for (std::size_t fi = 0; fi < accs.size(); ++fi) {
      INFO("layer " << li << " acc " << sim::to_string(accs[fi]));
      CHECK(idle[li][fi] == 0);
    }
  CHECK(ran == combos);
}

TEST_CASE("the binary32 kernel falls back where it must not run", "[sim][layer]") {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
    WARN("this processor has no AVX-512: the binary32 kernel is not tested here");
    return;
  }
  const auto L = make_layer(8, 40, 20, 51, 1.0);
  sim::layer_spec base;
  base.base.ord = {sim::order::kind::blocked, 8};
  base.acc = sim::precision_map::uniform(sim::formats::binary16);
  // under "auto" the binary32 kernel is chosen for the spec it covers
  CHECK(sim::dense_kernel_for(base) == sim::dense_kernel::avx512_b32);
  const test::forced_kernel force(sim::dense_kernel::avx512_b32);
  CHECK(sim::dense_kernel_for(base) == sim::dense_kernel::avx512_b32);
  auto run_counted = [&](const layer_data& D, const sim::layer_spec& spec, std::uint64_t& tasks) {
    const std::uint64_t before = sim::dense_b32_tasks();
    std::string first;
    const std::size_t bad = compare_with_dot(D, spec, 1, first);
    tasks = sim::dense_b32_tasks() - before;
    INFO(first);
    return bad;
  };
  std::uint64_t tasks = 0;
  CHECK(run_counted(L, base, tasks) == 0);
  CHECK(tasks == 4);  // 2 blocks of 16 components x 2 groups of 4 samples
  // specs it does not cover: avx512 (or scalar for via), no binary32 task
  std::vector<sim::layer_spec> not_covered;
  for (const char* f : {"p=23,emin=-14,emax=15", "p=24,emin=-126,emax=127,subnormals=off", "p=8,emin=-126,emax=127",
                        "p=11,emin=-101,emax=15", "p=11,emin=-14,emax=101"}) {
    sim::layer_spec s = base;
    s.acc = sim::precision_map::uniform(sim::parse_format(f));
    not_covered.push_back(s);
  }
  {
    sim::layer_spec s = base;  // one format of the map outside
    s.acc.formats = {sim::formats::binary16, sim::formats::bfloat16};
    s.acc.index.assign(L.n_out, 0);
    s.acc.index[19] = 1;
    not_covered.push_back(s);
    s = base;
    s.base.mode = rounding::stochastic;
    not_covered.push_back(s);
    s = base;
    s.base.product = sim::formats::binary16;
    not_covered.push_back(s);
  }
  for (const auto& s : not_covered) {
    INFO(sim::to_string(s.acc.formats.back())
         << " " << sim::to_string(s.base.mode) << " product " << s.base.product.has_value());
    CHECK(sim::dense_kernel_for(s) == sim::dense_kernel::avx512);
    CHECK(run_counted(L, s, tasks) == 0);
    CHECK(tasks == 0);
  }
  sim::layer_spec via = base;
  via.base.via = sim::formats::binary32;
  CHECK(sim::dense_kernel_for(via) == sim::dense_kernel::scalar);
  // data it does not cover: inputs that are not binary32 values, a NaN, inputs
  // above 2^100, weights that are not binary32 values: every task on avx512
  std::vector<layer_data> data = {make_wide_layer(4, 20, 16, 52), L, L, L, L};
  for (std::size_t s = 0; s < L.batch; ++s) {
    data[1].X[s * L.n_in + 3] = 0.1;  // not a binary32 value
    data[2].X[s * L.n_in + 5] = std::numeric_limits<double>::quiet_NaN();
    data[3].X[s * L.n_in + 7] = 0x1p+101;
  }
  for (std::size_t i = 0; i < L.n_out; ++i) data[4].W[i * L.n_in + 2] = 1.0 + 0x1p-30;
  for (std::size_t d = 0; d < data.size(); ++d) {
    INFO("data " << d);
    CHECK(run_counted(data[d], base, tasks) == 0);
    CHECK(tasks == 0);
  }
  // sums that overflow binary16 (and an input of 2^100, the largest allowed):
  // handled by the binary32 kernel itself, in every mode but stochastic, with
  // and without saturation
  layer_data big = L;
  for (auto& x : big.X) x = 60000.0;
  for (auto& w : big.W) w = 1.0;
  big.X[3] = 0x1p100;
  for (rounding mode : sim::all_roundings)
    for (const bool sat : {false, true}) {
      sim::layer_spec s = base;
      s.base.saturate = sat;
      s.base.mode = mode;
      INFO(sim::to_string(mode) << " saturate=" << sat);
      CHECK(run_counted(big, s, tasks) == 0);
      CHECK(tasks == (mode == rounding::stochastic ? 0 : 4));
    }
}

TEST_CASE("binary32 accumulators: the native paths (avx512-b32, avx2) equal sim::dot bit for bit", "[sim][layer]") {
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    WARN("this processor has no AVX2: the binary32-accumulator paths are not tested here");
    return;
  }
  if (!has512) WARN("this processor has no AVX-512: only avx2's binary32-accumulator path is tested here");
  using K = sim::order::kind;
  // binary16 and e4m3 values, full binary32 significands (every step inexact,
  // ties at 24 bits), sums in binary32's subnormal range (products down to
  // 2^-137, inputs binary32 normals), the edge layer (cancellation to +-0, -0 inputs, products at
  // 2^-149, rows above the per-task limit 2^100, which run on avx512)
  const std::vector<layer_data> layers = {
      make_layer(9, 37, 21, 61, 1.0), make_layer(5, 64, 33, 62, 300.0), make_float_layer(8, 45, 18, 63, -30, 3),
      make_float_layer(7, 33, 17, 64, -125, -112), make_b32_edge_layer(16, 26, 19, 65)};
  const sim::format f32 = sim::parse_format("p=24,emin=-126,emax=127");
  REQUIRE(f32 == sim::formats::binary32);
  // auto (avx512-b32 where the processor has AVX-512, else avx2), then each forced
  std::vector<std::optional<sim::dense_kernel>> kernels = {std::nullopt};
  if (has512) kernels.emplace_back(sim::dense_kernel::avx512_b32);
  kernels.emplace_back(sim::dense_kernel::avx2);
  for (const auto& kern : kernels) {
    const bool forced = kern.has_value();
    std::optional<test::forced_kernel> force;
    if (forced) force.emplace(*kern);
    for (std::size_t li = 0; li < layers.size(); ++li)
      for (rounding mode : sim::all_roundings)
        for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}, sim::order{K::blocked, 5},
                                sim::order{K::pairwise, 8}})
          for (bool sat : {false, true}) {
            const auto& L = layers[li];
            sim::layer_spec spec = spec_of(mode, ord, sat, 7);
            spec.acc = sim::precision_map::uniform(f32);
            const bool b32_mode = mode == rounding::nearest_even || mode == rounding::toward_zero ||
                                  mode == rounding::upward || mode == rounding::downward;
            const sim::dense_kernel k = sim::dense_kernel_for(spec);
            INFO("layer " << li << " " << sim::to_string(mode) << " " << sim::to_string(ord) << " saturate=" << sat
                          << " forced=" << forced << " kernel " << sim::to_string(k));
            if (has512 && kern != sim::dense_kernel::avx2)
              CHECK(k == (b32_mode ? sim::dense_kernel::avx512_b32 : sim::dense_kernel::avx512));
            else
              CHECK(k == sim::dense_kernel::avx2);
            // avx512-b32: nearest-even and the directed modes; avx2: nearest-even
            const bool native =
                k == sim::dense_kernel::avx512_b32 || (k == sim::dense_kernel::avx2 && mode == rounding::nearest_even);
            // with flags: the binary64 kernels run every task (run and run_selected)
            std::uint64_t before = sim::dense_b32_tasks();
            std::string first;
            CHECK(compare_with_dot(L, spec, 2, first) == 0);
            CHECK(sim::dense_b32_tasks() == before);
            // values only: the native path, against sim::dot directly
            const sim::prepared_dense P({L.W.data(), L.n_out, L.n_in}, L.b, spec);
            const sim::matrix_view X{L.X.data(), L.batch, L.n_in};
            std::vector<double> V, Vs;
            std::vector<std::uint8_t> need(L.batch * L.n_out);
            for (std::size_t o = 0; o < need.size(); ++o) need[o] = o % 3 != 1;
            before = sim::dense_b32_tasks();
            P.run_values(X, V, 2);
            P.run_selected_values(X, need, Vs, 1);
            const std::uint64_t tasks = sim::dense_b32_tasks() - before;
            CHECK((tasks > 0) == native);
            const std::uint64_t words = sim::words_per_dot(L.n_in, spec.base);
            std::size_t bad = 0, bad_sel = 0;
            for (std::size_t s = 0; s < L.batch; ++s)
              for (std::size_t i = 0; i < L.n_out; ++i) {
                const std::size_t o = s * L.n_out + i;
                const auto r = sim::dot({L.W.data() + i * L.n_in, L.n_in}, {L.X.data() + s * L.n_in, L.n_in}, L.b[i],
                                        spec.base, o * words);
                if (!test::same(r.value, V[o]) && bad++ == 0)
                  FAIL_CHECK("sample " << s << " component " << i << ": " << V[o] << " vs sim::dot " << r.value);
                bad_sel += need[o] ? !test::same(r.value, Vs[o]) : !std::isnan(Vs[o]);
              }
            CHECK(bad == 0);
            CHECK(bad_sel == 0);
          }
  }
  // not native: binary32 without subnormals, or one component's format not binary32
  const auto& L = layers[0];
  std::vector<sim::layer_spec> others(2);
  others[0].acc = sim::precision_map::uniform(sim::parse_format("p=24,emin=-126,emax=127,subnormals=off"));
  others[1].acc.formats = {f32, sim::formats::binary16};
  others[1].acc.index.assign(L.n_out, 0);
  others[1].acc.index[7] = 1;
  for (const auto& o : others) {
    if (has512) CHECK(sim::dense_kernel_for(o) == sim::dense_kernel::avx512);
    const test::forced_kernel force(sim::dense_kernel::avx2);
    const sim::prepared_dense P({L.W.data(), L.n_out, L.n_in}, L.b, o);
    std::vector<double> V;
    const std::uint64_t before = sim::dense_b32_tasks();
    P.run_values({L.X.data(), L.batch, L.n_in}, V, 1);
    CHECK(sim::dense_b32_tasks() == before);
  }
}
