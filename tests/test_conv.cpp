// SPDX-License-Identifier: MIT
// Convolutions, pooling and flatten (sim/conv.hpp): every output of the
// simulated convolution equals sim::dot on its patch, bit for bit with its
// flags, on every kernel this processor has, in every rounding mode, order,
// product model and accumulator map; the patches are checked against an
// independent direct indexing, exact cases against the explicit sum; the
// deterministic bound is never violated against the exact values (ref);
// pooling on hand cases, NaN and infinities; the average's one rounding
// against MPFR.
#include <catch2/catch.hpp>

#include <limits>

#include "mpacc/ref/conv.hpp"
#include "mpacc/ref/round.hpp"
#include "mpacc/analysis/bounds.hpp"
#include "mpacc/sim/conv.hpp"
#include "support.hpp"

using namespace mpacc;
using sim::rounding;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();
const double nan_v = std::numeric_limits<double>::quiet_NaN();

struct conv_data {
  sim::conv2d_shape s;
  std::size_t batch = 1;
  std::vector<double> X, W, b;
};

// x[smp][ci][iy][ix], or +0 in the padding: the operand of term (ci, ky, kx)
// of output (oy, ox), written from the definition (not through conv_patch)
double operand(const conv_data& D, std::size_t smp, std::size_t ci, std::size_t oy, std::size_t ox, std::size_t ky,
               std::size_t kx) {
  const long iy = static_cast<long>(oy * D.s.stride_h + ky) - static_cast<long>(D.s.pad_h);
  const long ix = static_cast<long>(ox * D.s.stride_w + kx) - static_cast<long>(D.s.pad_w);
  if (iy < 0 || ix < 0 || iy >= static_cast<long>(D.s.h) || ix >= static_cast<long>(D.s.w)) return 0.0;
  return D.X[((smp * D.s.c_in + ci) * D.s.h + static_cast<std::size_t>(iy)) * D.s.w + static_cast<std::size_t>(ix)];
}

// the operands of one output in the order (ci, ky, kx) and the matching weights
void naive_patch(const conv_data& D, std::size_t smp, std::size_t c, std::size_t oy, std::size_t ox,
                 std::vector<double>& x, std::vector<double>& w) {
  x.clear();
  w.clear();
  for (std::size_t ci = 0; ci < D.s.c_in; ++ci)
    for (std::size_t ky = 0; ky < D.s.kh; ++ky)
      for (std::size_t kx = 0; kx < D.s.kw; ++kx) {
        x.push_back(operand(D, smp, ci, oy, ox, ky, kx));
        w.push_back(D.W[((c * D.s.c_in + ci) * D.s.kh + ky) * D.s.kw + kx]);
      }
}

std::size_t out_index(const sim::conv2d_shape& s, std::size_t smp, std::size_t c, std::size_t oy, std::size_t ox) {
  return ((smp * s.c_out + c) * s.out_h() + oy) * s.out_w() + ox;
}

// small integers (exact sums in binary64 and binary32)
conv_data make_int(const sim::conv2d_shape& s, std::size_t batch, std::uint64_t seed) {
  sim::random_stream rng(seed);
  conv_data D{s, batch, {}, {}, {}};
  for (std::size_t i = 0; i < batch * s.in_size(); ++i) D.X.push_back(static_cast<double>(rng() % 9) - 4);
  for (std::size_t i = 0; i < s.weights(); ++i) D.W.push_back(static_cast<double>(rng() % 7) - 3);
  for (std::size_t i = 0; i < s.c_out; ++i) D.b.push_back(static_cast<double>(rng() % 5) - 2);
  return D;
}

// kind 0: e4m3-ieee weights, binary16 inputs (the experiment's operands);
// kind 1: full 53-bit values over a wide exponent range (every step inexact);
// kind 2: corner values (subnormals, ties, overflow, inf and NaN)
conv_data make_random(const sim::conv2d_shape& s, std::size_t batch, std::uint64_t seed, int kind) {
  sim::random_stream rng(seed);
  conv_data D{s, batch, {}, {}, {}};
  auto val = [&](const sim::format& f, double mag) { return sim::round((rng.uniform() * 2 - 1) * mag, f); };
  auto wide = [&](int lo, int hi) {
    const double m = 1.0 + static_cast<double>(rng() >> 12) * 0x1p-52;
    const int e = lo + static_cast<int>(rng() % static_cast<std::uint64_t>(hi - lo + 1));
    return std::ldexp((rng() & 1) ? -m : m, e);
  };
  auto pick = [&](std::initializer_list<double> v) { return *(v.begin() + static_cast<long>(rng() % v.size())); };
  for (std::size_t i = 0; i < batch * s.in_size(); ++i)
    D.X.push_back(kind == 0   ? val(sim::formats::binary16, 2.0)
                  : kind == 1 ? wide(-30, 3)
                              : pick({0x1p-24, -0x1p-24, 0x1p-14, 0.5, -0.75, 0x1.002p+0, 3.0, 0.0, -0.0, 240.0, -448.0,
                                      60000.0}));
  for (std::size_t i = 0; i < s.weights(); ++i)
    D.W.push_back(kind == 0   ? val(sim::formats::e4m3_ieee, 1.0)
                  : kind == 1 ? wide(-20, 2)
                              : pick({1.0, -1.0, 0.5, 0x1p-9, 15.0, -0.875, 0.0}));
  for (std::size_t i = 0; i < s.c_out; ++i) D.b.push_back(kind == 1 ? wide(-10, 0) : val(sim::formats::e4m3_ieee, 1.0));
  if (kind == 2 && D.X.size() > 10) {
    D.X[3] = inf;
    D.X[D.X.size() / 2] = -inf;
    D.X[D.X.size() - 2] = nan_v;
  }
  return D;
}

// the accumulator of output (c, oy, ox) under spec's map
const sim::format& acc_of(const sim::conv2d_shape& s, const sim::layer_spec& spec, std::size_t c, std::size_t pix) {
  const auto& idx = spec.acc.index;
  if (idx.empty()) return spec.acc.formats[0];
  if (idx.size() == s.c_out) return spec.acc.formats[idx[c]];
  return spec.acc.formats[idx[c * s.out_h() * s.out_w() + pix]];
}

// Simulated convolution against sim::dot on the naive patch of every output
// (value bits and flags); returns the number of mismatches.
std::size_t compare_with_dot(const conv_data& D, const sim::layer_spec& spec, int threads, std::string& first,
                             std::size_t first_sample = 0, std::size_t rows_per_piece = 0,
                             sim::dense_kernel* kernel = nullptr) {
  const sim::prepared_conv2d conv(D.s, D.W, D.b, spec);
  if (kernel) *kernel = conv.kernel();
  std::vector<double> Y;
  std::vector<unsigned> F;
  const auto lf = conv.run(D.X.data(), D.batch, Y, threads, &F, first_sample, rows_per_piece);
  std::size_t bad = 0;
  sim::layer_flags expect;
  std::vector<double> x, w;
  for (std::size_t smp = 0; smp < D.batch; ++smp)
    for (std::size_t c = 0; c < D.s.c_out; ++c)
      for (std::size_t oy = 0; oy < D.s.out_h(); ++oy)
        for (std::size_t ox = 0; ox < D.s.out_w(); ++ox) {
          naive_patch(D, smp, c, oy, ox, x, w);
          sim::accumulation a = spec.base;
          a.acc = acc_of(D.s, spec, c, oy * D.s.out_w() + ox);
          const auto r = sim::dot(w, x, D.b[c], a, sim::conv_first_word(D.s, a, first_sample + smp, c, oy, ox));
          expect.add(r.flags);
          const std::size_t o = out_index(D.s, smp, c, oy, ox);
          if (!test::same(r.value, Y[o]) || r.flags != F[o]) {
            if (!bad)
              first = "s=" + std::to_string(smp) + " c=" + std::to_string(c) + " y=" + std::to_string(oy) +
                      " x=" + std::to_string(ox) + " conv=" + test::hexs(Y[o]) + " dot=" + test::hexs(r.value) +
                      " flags " + std::to_string(F[o]) + " vs " + std::to_string(r.flags);
            ++bad;
          }
        }
  if (lf.outputs != expect.outputs || lf.inexact != expect.inexact || lf.overflow != expect.overflow ||
      lf.underflow != expect.underflow || lf.invalid != expect.invalid || lf.saturated != expect.saturated) {
    ++bad;
    if (first.empty()) first = "flag counts differ";
  }
  return bad;
}

sim::conv2d_shape shape(std::size_t c_in, std::size_t h, std::size_t w, std::size_t c_out, std::size_t kh,
                        std::size_t kw, std::size_t sh = 1, std::size_t sw = 1, std::size_t ph = 0,
                        std::size_t pw = 0) {
  sim::conv2d_shape s;
  s.c_in = c_in;
  s.h = h;
  s.w = w;
  s.c_out = c_out;
  s.kh = kh;
  s.kw = kw;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}

const std::vector<sim::order> all_orders = {{sim::order::kind::recursive, 8},
                                            {sim::order::kind::blocked, 8},
                                            {sim::order::kind::blocked, 3},
                                            {sim::order::kind::pairwise, 8}};

}  // namespace

TEST_CASE("conv2d shapes: output sizes, patch, validation", "[sim][conv]") {
  CHECK(shape(1, 28, 28, 6, 5, 5, 1, 1, 2, 2).out_h() == 28);
  CHECK(shape(6, 14, 14, 16, 5, 5).out_h() == 10);
  CHECK(shape(6, 14, 14, 16, 5, 5).patch() == 150);
  CHECK(shape(1, 3, 3, 1, 5, 5, 1, 1, 2, 2).out_h() == 3);  // kernel larger than the input
  CHECK(shape(1, 2, 2, 1, 4, 4, 1, 1, 1, 1).out_h() == 1);
  CHECK(shape(1, 10, 7, 1, 2, 2, 3, 3).out_h() == 3);  // stride > kernel: rows 0-1, 3-4, 6-7
  CHECK(shape(1, 10, 7, 1, 2, 2, 3, 3).out_w() == 2);
  CHECK(shape(2, 5, 8, 3, 3, 2, 2, 1, 1, 0).out_h() == 3);
  CHECK(shape(2, 5, 8, 3, 3, 2, 2, 1, 1, 0).out_w() == 7);
  CHECK_THROWS_WITH(shape(1, 3, 3, 1, 5, 5).validate(), Catch::Contains("larger than the padded input"));
  CHECK_THROWS_WITH(shape(1, 3, 3, 0, 1, 1).validate(), Catch::Contains("c_out"));
  CHECK_THROWS_WITH(shape(1, 3, 3, 1, 1, 1, 0, 1).validate(), Catch::Contains("stride_h"));
  const auto s = shape(2, 4, 4, 3, 3, 3, 1, 1, 1, 1);
  std::vector<double> X(32), Y;
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(sim::formats::binary32);
  CHECK_THROWS_WITH(sim::conv2d(s, X.data(), 1, std::vector<double>(53), std::vector<double>(3), spec, Y),
                    Catch::Contains("weights"));
  CHECK_THROWS_WITH(sim::conv2d(s, X.data(), 1, std::vector<double>(54), std::vector<double>(2), spec, Y),
                    Catch::Contains("bias"));
  // a map without formats: base.acc everywhere
  sim::layer_spec by_base;
  by_base.base.acc = sim::formats::binary16;
  std::vector<double> Y1, Y2, Wv(54), bv(3);
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = 1.0 + 0x1p-8 * static_cast<double>(i);
  for (std::size_t i = 0; i < Wv.size(); ++i) Wv[i] = 0.25 + 0x1p-9 * static_cast<double>(i);
  sim::conv2d(s, X.data(), 1, Wv, bv, by_base, Y1);
  sim::layer_spec uniform16;
  uniform16.acc = sim::precision_map::uniform(sim::formats::binary16);
  sim::conv2d(s, X.data(), 1, Wv, bv, uniform16, Y2);
  CHECK(Y1 == Y2);
  CHECK(analysis::conv2d_bounds(s, X.data(), 1, Wv, bv, by_base) ==
        analysis::conv2d_bounds(s, X.data(), 1, Wv, bv, uniform16));
  spec.acc.index = {0, 0};
  CHECK_THROWS_WITH(sim::conv2d(s, X.data(), 1, std::vector<double>(54), std::vector<double>(3), spec, Y),
                    Catch::Contains("precision map"));
}

TEST_CASE("im2col equals the definition; padded positions are +0 terms in their place", "[sim][conv]") {
  for (const auto& s :
       {shape(2, 5, 6, 3, 3, 3, 1, 1, 1, 1), shape(1, 3, 3, 2, 5, 5, 1, 1, 2, 2), shape(3, 7, 5, 2, 2, 3, 3, 2, 1, 1),
        shape(1, 10, 7, 1, 2, 2, 3, 3), shape(4, 3, 4, 5, 1, 1), shape(2, 2, 2, 1, 4, 4, 1, 1, 1, 1)}) {
    const auto D = make_int(s, 2, 3);
    std::vector<double> cols, x, w;
    sim::im2col(s, D.X.data(), D.batch, cols);
    REQUIRE(cols.size() == D.batch * s.out_h() * s.out_w() * s.patch());
    std::size_t bad = 0;
    for (std::size_t smp = 0; smp < D.batch; ++smp)
      for (std::size_t oy = 0; oy < s.out_h(); ++oy)
        for (std::size_t ox = 0; ox < s.out_w(); ++ox) {
          naive_patch(D, smp, 0, oy, ox, x, w);
          const double* row = cols.data() + ((smp * s.out_h() + oy) * s.out_w() + ox) * s.patch();
          for (std::size_t j = 0; j < s.patch(); ++j) bad += !test::same(row[j], x[j]);
        }
    CHECK(bad == 0);
  }
}

TEST_CASE("conv equals the explicit sum on small exact cases, every order, stride and padding edge cases",
          "[sim][conv]") {
  const std::vector<sim::conv2d_shape> shapes = {
      shape(2, 5, 6, 3, 3, 3, 1, 1, 1, 1),  // same padding
      shape(1, 3, 3, 2, 5, 5, 1, 1, 2, 2),  // kernel larger than the input, with padding
      shape(1, 2, 2, 2, 4, 4, 1, 1, 1, 1),  // one output whose window covers the input and the padding
      shape(3, 10, 7, 4, 2, 2, 3, 3),       // stride > kernel: inputs skipped
      shape(4, 3, 4, 9, 1, 1),              // 1x1 convolution
      shape(2, 5, 8, 3, 3, 2, 2, 1, 1, 0),  // non-square everything
      shape(1, 28, 28, 6, 5, 5, 1, 1, 2, 2),
  };
  for (const auto& s : shapes)
    for (const auto& ord : all_orders) {
      const auto D = make_int(s, 2, 11);
      sim::layer_spec spec;
      spec.base.ord = ord;
      spec.acc = sim::precision_map::uniform(sim::formats::binary32);  // every partial sum exact
      std::vector<double> Y;
      sim::conv2d(s, D.X.data(), D.batch, D.W, D.b, spec, Y, 2);
      REQUIRE(Y.size() == D.batch * s.out_size());
      std::size_t bad = 0;
      for (std::size_t smp = 0; smp < D.batch; ++smp)
        for (std::size_t c = 0; c < s.c_out; ++c)
          for (std::size_t oy = 0; oy < s.out_h(); ++oy)
            for (std::size_t ox = 0; ox < s.out_w(); ++ox) {
              // the explicit sum over the input positions the window covers
              double v = D.b[c];
              for (std::size_t ci = 0; ci < s.c_in; ++ci)
                for (std::size_t ky = 0; ky < s.kh; ++ky)
                  for (std::size_t kx = 0; kx < s.kw; ++kx)
                    v += D.W[((c * s.c_in + ci) * s.kh + ky) * s.kw + kx] * operand(D, smp, ci, oy, ox, ky, kx);
              bad += Y[out_index(s, smp, c, oy, ox)] != v;
            }
      INFO(sim::to_string(ord) << " c_in=" << s.c_in << " h=" << s.h << " w=" << s.w << " k=" << s.kh << "x" << s.kw);
      CHECK(bad == 0);
      // and the exact reference agrees
      const auto ref = ref::conv2d_nearest(s, D.X.data(), D.batch, D.W, D.b);
      std::size_t bad_ref = 0;
      for (std::size_t o = 0; o < Y.size(); ++o) bad_ref += ref[o] != Y[o];
      CHECK(bad_ref == 0);
    }
}

TEST_CASE("simulated conv equals sim::dot per output: every kernel, mode, order, product model, map", "[sim][conv]") {
  const std::vector<conv_data> cases = {
      make_random(shape(2, 6, 5, 5, 3, 3, 1, 1, 1, 1), 2, 1, 0),
      make_random(shape(3, 4, 7, 9, 2, 3, 2, 1, 1, 1), 2, 2, 1),
      make_random(shape(1, 3, 3, 3, 5, 5, 1, 1, 2, 2), 3, 3, 2),
  };
  for (const sim::dense_kernel kernel : test::available_kernels()) {
    const test::forced_kernel force(kernel);
    for (std::size_t ci = 0; ci < cases.size(); ++ci)
      for (rounding mode : sim::all_roundings)
        for (const auto& ord : all_orders)
          for (int prod = 0; prod < 2; ++prod)
            for (bool sat : {false, true})
              for (int map = 0; map < 3; ++map) {
                if (sat && ci != 2) continue;  // saturation matters on the corner case only
                const auto& D = cases[ci];
                sim::layer_spec spec;
                spec.base.mode = mode;
                spec.base.ord = ord;
                spec.base.saturate = sat;
                spec.base.seed = 17 + ci;
                if (prod) spec.base.product = sim::formats::bfloat16;
                spec.acc.formats = {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::e4m3,
                                    sim::formats::bfloat16};
                // map 0: one format; 1: per channel; 2: per (channel, pixel)
                const std::size_t ohw = D.s.out_h() * D.s.out_w();
                if (map == 0) spec.acc.formats.resize(1);
                if (map == 1)
                  for (std::size_t c = 0; c < D.s.c_out; ++c)
                    spec.acc.index.push_back(static_cast<std::uint8_t>(c % 4));
                if (map == 2)
                  for (std::size_t k = 0; k < D.s.c_out * ohw; ++k)
                    spec.acc.index.push_back(static_cast<std::uint8_t>((k * 7 / 3) % 3));
                std::string first;
                sim::dense_kernel ran{};
                const std::size_t bad = compare_with_dot(D, spec, 1, first, 0, 0, &ran);
                INFO("kernel=" << sim::to_string(kernel) << " case " << ci << " " << sim::to_string(mode) << " "
                               << sim::to_string(ord) << " product=" << prod << " saturate=" << sat << " map=" << map
                               << " first: " << first);
                // a per-(channel, pixel) map runs one uniform pass per format used;
                // kernel() names the first pass's kernel
                sim::layer_spec first_pass = spec;
                if (map == 2) first_pass.acc = sim::precision_map::uniform(spec.acc.formats[spec.acc.index[0]]);
                CHECK(ran == test::expected_kernel(kernel, first_pass));
                CHECK(bad == 0);
              }
  }
}

TEST_CASE("conv: same bits for any thread count, piece size and batch split; stochastic stream per output",
          "[sim][conv]") {
  const auto D = make_random(shape(2, 9, 9, 6, 3, 3, 1, 1, 1, 1), 5, 21, 1);
  for (rounding mode : {rounding::nearest_even, rounding::stochastic}) {
    sim::layer_spec spec;
    spec.base.mode = mode;
    spec.base.ord = {sim::order::kind::blocked, 8};
    spec.base.seed = 99;
    spec.acc = sim::precision_map::uniform(sim::formats::binary16);
    const sim::prepared_conv2d conv(D.s, D.W, D.b, spec);
    std::vector<double> whole, part, y;
    conv.run(D.X.data(), D.batch, whole, 2);
    std::size_t diff = 0;
    for (int threads : {1, 3})
      for (std::size_t piece : {std::size_t{1}, std::size_t{81}, std::size_t{100}, std::size_t{1000}}) {
        conv.run(D.X.data(), D.batch, y, threads, nullptr, 0, piece);
        for (std::size_t o = 0; o < y.size(); ++o) diff += !test::same(y[o], whole[o]);
      }
    // samples 2..4 run alone, numbered from 2
    conv.run(D.X.data() + 2 * D.s.in_size(), 3, part, 2, nullptr, 2);
    for (std::size_t o = 0; o < part.size(); ++o) diff += !test::same(part[o], whole[2 * D.s.out_size() + o]);
    INFO(sim::to_string(mode));
    CHECK(diff == 0);
    // and every output uses its own words: compare with sim::dot from a
    // first_sample offset (the counter of the whole data set)
    std::string first;
    const std::size_t bad = compare_with_dot(D, spec, 2, first, 1000, 50);
    INFO(first);
    CHECK(bad == 0);
    if (mode == rounding::stochastic) {
      spec.base.seed = 100;
      sim::conv2d(D.s, D.X.data(), D.batch, D.W, D.b, spec, y, 2);
      std::size_t changed = 0;
      for (std::size_t o = 0; o < y.size(); ++o) changed += !test::same(y[o], whole[o]);
      CHECK(changed > 0);
    }
  }
}

TEST_CASE("conv: the deterministic bound per output is never violated (exact reference)", "[sim][conv]") {
  const std::vector<conv_data> cases = {
      make_random(shape(2, 6, 6, 4, 3, 3, 1, 1, 1, 1), 2, 31, 0),
      make_random(shape(3, 5, 4, 3, 2, 3, 2, 1, 1, 1), 2, 32, 1),
      make_random(shape(1, 3, 3, 3, 5, 5, 1, 1, 2, 2), 3, 33, 0),
      make_random(shape(6, 7, 7, 16, 5, 5), 1, 34, 0),  // 150 terms: blocked and recursive bounds differ
  };
  std::size_t checked = 0;
  for (const auto& D : cases) {
    const auto exact = ref::conv2d_exact(D.s, D.X.data(), D.batch, D.W, D.b);
    for (rounding mode : sim::all_roundings)
      for (const auto& ord : all_orders)
        for (int prod = 0; prod < 2; ++prod) {
          sim::layer_spec spec;
          spec.base.mode = mode;
          spec.base.ord = ord;
          spec.base.seed = 5;
          if (prod) spec.base.product = sim::formats::binary16;
          spec.acc.formats = {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::bfloat16};
          for (std::size_t c = 0; c < D.s.c_out; ++c) spec.acc.index.push_back(static_cast<std::uint8_t>(c % 3));
          const sim::prepared_conv2d conv(D.s, D.W, D.b, spec);
          std::vector<double> Y;
          std::vector<unsigned> F;
          conv.run(D.X.data(), D.batch, Y, 2, &F);
          const auto bound = analysis::conv2d_bounds(D.s, D.X.data(), D.batch, D.W, D.b, spec);
          REQUIRE(bound.size() == Y.size());
          // any gamma: the deterministic one gives the same; the probabilistic
          // one (lambda = 5) is per output that of analysis::accumulation_bound on the patch
          CHECK(analysis::conv2d_bounds(D.s, D.X.data(), D.batch, D.W, D.b, spec, analysis::gamma_deterministic, 0) ==
                bound);
          const auto prob =
              analysis::conv2d_bounds(D.s, D.X.data(), D.batch, D.W, D.b, spec, analysis::gamma_probabilistic, 5.0);
          std::size_t differ = 0;
          std::vector<double> patch(D.s.patch());
          for (std::size_t smp = 0; smp < D.batch; ++smp)
            for (std::size_t c = 0; c < D.s.c_out; ++c)
              for (std::size_t pix = 0; pix < D.s.out_h() * D.s.out_w(); ++pix) {
                sim::conv_patch(D.s, D.X.data() + smp * D.s.in_size(), pix / D.s.out_w(), pix % D.s.out_w(),
                                patch.data());
                sim::accumulation a = spec.base;
                a.acc = spec.acc.formats[spec.acc.index[c]];
                const double want = analysis::accumulation_bound({D.W.data() + c * D.s.patch(), D.s.patch()}, patch,
                                                                 D.b[c], a, analysis::gamma_probabilistic, 5.0);
                differ += prob[(smp * D.s.c_out + c) * D.s.out_h() * D.s.out_w() + pix] != want;
              }
          CHECK(differ == 0);
          std::size_t violated = 0;
          ref::mpfr_float err(8000);
          for (std::size_t o = 0; o < Y.size(); ++o) {
            if (F[o] & sim::flag::overflow) continue;                // not covered by the bound
            mpfr_sub_d(err.get(), exact[o].get(), Y[o], MPFR_RNDN);  // exact at 8000 bits
            mpfr_abs(err.get(), err.get(), MPFR_RNDN);
            violated += mpfr_cmp_d(err.get(), bound[o]) > 0;
            ++checked;
          }
          INFO(sim::to_string(mode) << " " << sim::to_string(ord) << " product=" << prod);
          CHECK(violated == 0);
        }
  }
  CHECK(checked > 10000);
}

TEST_CASE("padding as zero terms: the bound's rounding counts are those of the full patch", "[sim][conv]") {
  // one output of a 3x3 kernel on a 1x1 input with padding 1: the only real
  // term is the centre (position 4 of 9); blocked:4 puts it in the second block
  const auto s = shape(1, 1, 1, 1, 3, 3, 1, 1, 1, 1);
  std::vector<double> X = {3.0}, W(9, 0.5), b = {0.0};
  sim::layer_spec spec;
  spec.base.ord = {sim::order::kind::blocked, 4};
  spec.acc = sim::precision_map::uniform(sim::formats::binary16);
  const std::vector<double> patch = {0, 0, 0, 0, 3.0, 0, 0, 0, 0};
  const auto bound = analysis::conv2d_bounds(s, X.data(), 1, W, b, spec);
  sim::accumulation a = spec.base;
  a.acc = sim::formats::binary16;
  CHECK(bound[0] == analysis::deterministic_bound(W, patch, 0.0, a));
  std::vector<double> Y;
  sim::conv2d(s, X.data(), 1, W, b, spec, Y);
  CHECK(Y[0] == 1.5);
}

TEST_CASE("max pooling: hand cases, padding, NaN, infinities, signed zeros, argmax", "[sim][pool]") {
  sim::pool2d_shape p;  // 2x2 stride 2
  p.c = 2;
  p.h = 4;
  p.w = 4;
  // channel 0: 1..16; channel 1: NaN, inf, -inf, zeros
  std::vector<double> X(32);
  for (int i = 0; i < 16; ++i) X[static_cast<std::size_t>(i)] = i + 1;
  const std::vector<double> c1 = {-1,   nan_v, 5,    2,     //
                                  0,    3,     inf,  -inf,  //
                                  -0.0, -inf,  -inf, -inf,  //
                                  -0.0, 0.0,   -inf, -inf};
  std::copy(c1.begin(), c1.end(), X.begin() + 16);
  std::vector<double> Y;
  std::vector<std::uint32_t> at;
  sim::max_pool2d(p, X.data(), 1, Y, &at);
  REQUIRE(Y.size() == 8);
  CHECK(Y[0] == 6);
  CHECK(Y[1] == 8);
  CHECK(Y[2] == 14);
  CHECK(Y[3] == 16);
  CHECK(at[0] == 5);
  CHECK(at[3] == 15);
  CHECK(std::isnan(Y[4]));
  CHECK(at[4] == 16 + 1);
  CHECK(Y[5] == inf);
  CHECK(at[5] == 16 + 6);
  CHECK(Y[6] == 0.0);
  CHECK(!std::signbit(Y[6]));  // +0 above -0
  CHECK(at[6] == 16 + 13);
  CHECK(Y[7] == -inf);
  CHECK(at[7] == 16 + 10);
  // 3x3 stride 1 pad 1 (padding is not an input: an all-negative corner stays negative)
  sim::pool2d_shape q;
  q.c = 1;
  q.h = 3;
  q.w = 3;
  q.kh = q.kw = 3;
  q.stride_h = q.stride_w = 1;
  q.pad_h = q.pad_w = 1;
  std::vector<double> Z = {-5, -4, -3, -2, -1, -6, -7, -8, -9};
  sim::max_pool2d(q, Z.data(), 1, Y);
  CHECK(Y == std::vector<double>{-1, -1, -1, -1, -1, -1, -1, -1, -1});
  Z = {-5, -4, -3, -2, -10, -6, -7, -8, -9};
  sim::max_pool2d(q, Z.data(), 1, Y);
  CHECK(Y == std::vector<double>{-2, -2, -3, -2, -2, -3, -2, -2, -6});
  // non-square window, stride > window
  sim::pool2d_shape r;
  r.c = 1;
  r.h = 4;
  r.w = 7;
  r.kh = 1;
  r.kw = 2;
  r.stride_h = 3;
  r.stride_w = 3;
  std::vector<double> V(28);
  for (int i = 0; i < 28; ++i) V[static_cast<std::size_t>(i)] = (i * 5) % 11;
  sim::max_pool2d(r, V.data(), 1, Y);
  REQUIRE(Y.size() == 2 * 2);
  CHECK(Y[0] == std::max(V[0], V[1]));
  CHECK(Y[1] == std::max(V[3], V[4]));
  CHECK(Y[2] == std::max(V[21], V[22]));
  CHECK(Y[3] == std::max(V[24], V[25]));
  sim::pool2d_shape bad = q;
  bad.pad_h = 2;
  CHECK_THROWS_WITH(sim::max_pool2d(bad, Z.data(), 1, Y), Catch::Contains("half the window"));
}

TEST_CASE("round_quotient is the correct rounding of x / k (MPFR), every mode, tiny and huge values", "[sim][pool]") {
  sim::random_stream rng(4);
  const std::vector<sim::format> fmts = {sim::formats::binary16,
                                         sim::formats::e4m3_ieee,
                                         sim::formats::e4m3,
                                         sim::formats::bfloat16,
                                         sim::formats::binary32,
                                         sim::parse_format("p=8,emin=-1022,emax=20"),
                                         sim::parse_format("p=5,emin=-6,emax=7,subnormals=off")};
  std::size_t bad = 0, n = 0;
  ref::mpfr_float q(53);
  for (const auto& f : fmts)
    for (rounding mode : sim::all_roundings)
      for (int t = 0; t < 400; ++t) {
        const std::uint64_t k = std::initializer_list<std::uint64_t>{1, 2, 3, 4, 9, 25, 49, 7, 1u << 20}.begin()[t % 9];
        const double m = 1.0 + static_cast<double>(rng() >> 12) * 0x1p-52;
        int e = static_cast<int>(rng() % 60) - 40;
        if (t % 7 == 0) e = -1074 + static_cast<int>(rng() % 200);       // below 2^-900
        if (t % 11 == 0) e = f.emax + static_cast<int>(rng() % 30) - 4;  // around overflow
        double x = std::ldexp((rng() & 1) ? -m : m, std::max(e, -1074));
        if (t % 13 == 0) x = static_cast<double>(k) * 3.0;  // exact quotient
        const std::uint64_t word = rng();
        for (bool sat : {false, true}) {
          unsigned f1 = 0, f2 = 0;
          const double a = sim::round_quotient(x, k, f, mode, sat, f1, word);
          mpfr_set_d(q.get(), x, MPFR_RNDN);
          const int tern = mpfr_div_ui(q.get(), q.get(), static_cast<unsigned long>(k), MPFR_RNDZ);
          ref::make_odd(q, tern);  // round to odd at 53 bits, with an unbounded exponent: sim's convention
          const double b = ref::round_mpfr(q.get(), f, mode, sat, f2, word);
          ++n;
          if (!test::same(a, b) || f1 != f2) {
            if (bad < 5)
              WARN(sim::to_string(f) << " " << sim::to_string(mode) << " x=" << test::hexs(x) << " k=" << k << " got "
                                     << test::hexs(a) << " want " << test::hexs(b));
            ++bad;
          }
        }
      }
  CHECK(n > 30000);
  CHECK(bad == 0);
  unsigned fl = 0;
  CHECK(std::isnan(sim::round_quotient(nan_v, 9, sim::formats::binary16, rounding::nearest_even, false, fl)));
  CHECK(sim::round_quotient(inf, 9, sim::formats::binary16, rounding::nearest_even, false, fl) == inf);
  CHECK(sim::round_quotient(-inf, 9, sim::formats::binary16, rounding::nearest_even, true, fl) == -65504.0);
}

TEST_CASE("average pooling: hand cases, the sum as sim::dot then one rounding, NaN and infinities", "[sim][pool]") {
  sim::pool2d_shape p;
  p.c = 1;
  p.h = 2;
  p.w = 4;
  std::vector<double> X = {1, 2, 5, 6, 3, 4, 7, 8};
  sim::accumulation a;
  a.acc = sim::formats::binary32;
  std::vector<double> Y;
  sim::avg_pool2d(p, X.data(), 1, a, Y);
  CHECK(Y == std::vector<double>{2.5, 6.5});
  // 3x3 window: the mean 1/9 rounded once (not 1/9 rounded, times the sum rounded)
  sim::pool2d_shape q;
  q.c = 1;
  q.h = q.w = 3;
  q.kh = q.kw = 3;
  q.stride_h = q.stride_w = 3;
  std::vector<double> Z = {0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.0};
  a.acc = sim::formats::binary16;
  sim::avg_pool2d(q, Z.data(), 1, a, Y);
  CHECK(Y[0] == sim::round(1.0 / 9.0, sim::formats::binary16));
  // padding counts as zero terms (count_include_pad): corner of 3x3/s1/p1 on ones
  sim::pool2d_shape r = q;
  r.stride_h = r.stride_w = 1;
  r.pad_h = r.pad_w = 1;
  std::vector<double> ones(9, 1.0);
  a.acc = sim::formats::binary32;
  sim::avg_pool2d(r, ones.data(), 1, a, Y);
  CHECK(Y[0] == sim::round(4.0 / 9.0, sim::formats::binary32));
  CHECK(Y[4] == 1.0);
  // NaN and infinities
  std::vector<double> S = {1, nan_v, 5, inf, 3, 4, 7, 8};
  sim::avg_pool2d(p, S.data(), 1, a, Y);
  CHECK(std::isnan(Y[0]));
  CHECK(Y[1] == inf);
  S = {1, 2, inf, 6, 3, 4, -inf, 8};
  std::vector<unsigned> F;
  sim::avg_pool2d(p, S.data(), 1, a, Y, 1, &F);
  CHECK(std::isnan(Y[1]));  // inf - inf in the sum (flags as sim::dot's: checked below)
  a.saturate = true;
  S = {1, 2, inf, 6, 3, 4, 7, 8};
  sim::avg_pool2d(p, S.data(), 1, a, Y, 1, &F);
  CHECK(Y[1] == sim::formats::binary32.max_finite / 4);  // inf saturates in the sum, then the mean
  // every output: sim::dot(ones, window) then round_quotient, with its words
  const auto D = make_random(shape(3, 7, 6, 1, 1, 1), 2, 8, 1);
  sim::pool2d_shape t;
  t.c = 3;
  t.h = 7;
  t.w = 6;
  t.kh = 3;
  t.kw = 2;
  t.stride_h = 2;
  t.stride_w = 2;
  t.pad_h = 1;
  for (rounding mode : sim::all_roundings)
    for (const auto& ord : all_orders)
      for (bool via : {false, true}) {
        sim::accumulation b;
        b.acc = sim::formats::e4m3_ieee;
        b.mode = mode;
        b.ord = ord;
        b.seed = 3;
        if (via) b.via = sim::formats::binary16;
        sim::avg_pool2d(t, D.X.data(), D.batch, b, Y, 2, &F, 7);
        const std::uint64_t words = sim::words_per_dot(6, b) + 1;
        std::size_t bad = 0;
        for (std::size_t o = 0; o < Y.size(); ++o) {
          const std::size_t smp = o / t.out_size(), c = (o % t.out_size()) / (t.out_h() * t.out_w()),
                            pix = o % (t.out_h() * t.out_w());
          std::vector<double> win, w1(6, 1.0);
          for (std::size_t ky = 0; ky < 3; ++ky)
            for (std::size_t kx = 0; kx < 2; ++kx) {
              const long iy = static_cast<long>((pix / t.out_w()) * 2 + ky) - 1;
              const long ix = static_cast<long>((pix % t.out_w()) * 2 + kx);
              win.push_back(
                  iy < 0 || iy >= 7 || ix >= 6
                      ? 0.0
                      : D.X[((smp * 3 + c) * 7 + static_cast<std::size_t>(iy)) * 6 + static_cast<std::size_t>(ix)]);
            }
          const std::uint64_t first = (7 * t.out_size() + o) * words;
          const auto sum = sim::dot(w1, win, 0.0, b, first);
          unsigned f = sum.flags;
          const std::uint64_t word = mode == rounding::stochastic ? sim::random_bits(3, first + words - 1) : 0;
          double v = via ? sim::round(sim::round_quotient(sum.value, 6, sim::formats::binary16, rounding::nearest_even,
                                                          false, f),
                                      b.acc, mode, false, f, word)
                         : sim::round_quotient(sum.value, 6, b.acc, mode, false, f, word);
          bad += !test::same(v, Y[o]) || f != F[o];
        }
        INFO(sim::to_string(mode) << " " << sim::to_string(ord) << " via=" << via);
        CHECK(bad == 0);
      }
}

TEST_CASE("flatten is PyTorch's order over the NCHW batch", "[sim][conv]") {
  std::vector<double> X(2 * 3 * 2 * 2);
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = static_cast<double>(i);
  const auto v = sim::flatten(X.data(), 2, 12);
  CHECK(v.rows == 2);
  CHECK(v.cols == 12);
  CHECK(v.row(1)[(2 * 2 + 1) * 2 + 0] == 12 + 10);  // sample 1, channel 2, y 1, x 0
}
