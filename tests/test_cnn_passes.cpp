// SPDX-License-Identifier: MIT
// Convolutional networks end to end (docs/cnn.md, "Passes over a network"):
// model files of nn::cnn (round trip, MLP files, hostile bytes), the simulated
// pass against a layer-by-layer composition of the sim primitives and against
// the MLP pass, the reference pass against rational arithmetic, and validate's
// bounds on random tiny CNNs.
#include <catch2/catch.hpp>

#include <zlib.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <boost/multiprecision/gmp.hpp>

#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/conv.hpp"
#include "mpacc/sim/rounding.hpp"
#include "cnn_support.hpp"
#include "support.hpp"

using namespace mpacc;
using test::conv_shape;
using test::same;

namespace {

nn::pool_layer pool(nn::pool_layer::kind type, std::size_t c, std::size_t h, std::size_t w, std::size_t k,
                    std::size_t stride, std::size_t pad = 0) {
  nn::pool_layer p;
  p.type = type;
  p.shape.c = c;
  p.shape.h = h;
  p.shape.w = w;
  p.shape.kh = p.shape.kw = k;
  p.shape.stride_h = p.shape.stride_w = stride;
  p.shape.pad_h = p.shape.pad_w = pad;
  return p;
}

// weights: dyadic values m / 2^scale with |m| <= mmax (exact in every
// format of the tests when small), or uniform reals when scale < 0
struct filler {
  std::mt19937_64 rng;
  int scale;
  int mmax;
  void operator()(std::vector<double>& v, std::size_t n) {
    v.resize(n);
    for (auto& x : v) {
      if (scale < 0) {
        x = std::uniform_real_distribution<double>(-1, 1)(rng);
      } else {
        x = std::ldexp(static_cast<double>(std::uniform_int_distribution<int>(-mmax, mmax)(rng)), -scale);
      }
    }
  }
};

// conv -> pool -> conv -> pool -> flatten -> dense (act) -> dense, every
// weight and bias from fill
nn::cnn conv_pool_dense(filler& fill, std::size_t c, std::size_t hw, const sim::conv2d_shape& s1,
                        const nn::pool_layer& p1, const sim::conv2d_shape& s2, const nn::pool_layer& p2,
                        std::size_t hidden, std::size_t classes, sim::activation_fn act) {
  nn::cnn net;
  net.c = c;
  net.h = net.w = hw;
  nn::conv_layer c1, c2;
  c1.shape = s1;
  c2.shape = s2;
  for (auto* l : {&c1, &c2}) {
    l->act = act;
    fill(l->W, l->shape.weights());
    fill(l->b, l->shape.c_out);
  }
  const nn::flatten_layer flat{p2.shape.c, p2.shape.out_h(), p2.shape.out_w()};
  nn::dense_layer d1, d2;
  d1.n_in = flat.c * flat.h * flat.w;
  d1.n_out = hidden;
  d1.act = act;
  d2.n_in = hidden;
  d2.n_out = classes;
  for (auto* l : {&d1, &d2}) {
    fill(l->W, l->n_in * l->n_out);
    fill(l->b, l->n_out);
  }
  net.layers = {c1, p1, c2, p2, flat, d1, d2};
  net.validate();
  return net;
}

// 1x6x6 -> conv 1->3 3x3 p1 (act) -> maxpool 2 (3x3x3) -> conv 3->2 2x2 s1 p1 (act, 2x4x4)
// -> avgpool 2 (2x2x2) -> flatten 8 -> dense 8x5 (act) -> dense 5x3
nn::cnn tiny_cnn(filler& fill, sim::activation_fn act) {
  return conv_pool_dense(fill, 1, 6, conv_shape(1, 6, 6, 3, 3, 1, 1), pool(nn::pool_layer::kind::max, 3, 6, 6, 2, 2),
                         conv_shape(3, 3, 3, 2, 2, 1, 1), pool(nn::pool_layer::kind::avg, 2, 4, 4, 2, 2), 5, 3, act);
}

std::vector<double> inputs(filler& fill, std::size_t n) {
  std::vector<double> x;
  fill(x, n);
  return x;
}

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void fix_crc(std::vector<std::uint8_t>& b) {
  const auto crc = static_cast<std::uint32_t>(crc32_z(0L, b.data(), b.size() - 4));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
}

bool same_values(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same(a[i], b[i])) return false;
  return true;
}

const std::filesystem::path tmp_dir = std::filesystem::temp_directory_path() / "mpacc_test_cnn_passes";

}  // namespace

// ---------------------------------------------------------------------------
// 1. model files

TEST_CASE("cnn model files: bit-exact round trip, MLP files, and the MLP reader refusing a CNN", "[cnn][io]") {
  std::filesystem::create_directories(tmp_dir);
  filler fill{std::mt19937_64(7), -1, 0};
  auto net = nn::make_lenet5({sim::activation::relu});
  for (auto& l : net.layers) {
    if (auto* c = std::get_if<nn::conv_layer>(&l)) {
      fill(c->W, c->W.size());
      fill(c->b, c->b.size());
    } else if (auto* d = std::get_if<nn::dense_layer>(&l)) {
      fill(d->W, d->W.size());
      fill(d->b, d->b.size());
    }
  }
  std::get<nn::conv_layer>(net.layers[0]).W[3] = -0.0;
  std::get<nn::conv_layer>(net.layers[0]).W[4] = 0x1p-1074;
  // a non-square, strided, padded convolution and average pooling with padding
  nn::cnn odd;
  odd.c = 2;
  odd.h = 7;
  odd.w = 5;
  nn::conv_layer c;
  c.shape = conv_shape(2, 7, 5, 3, 3, 1, 1);
  c.shape.kw = 2;
  c.shape.stride_w = 2;
  c.shape.pad_w = 0;
  c.act = {sim::activation::leaky_relu, 0.125};
  fill(c.W, c.shape.weights());
  fill(c.b, 3);
  odd.layers.emplace_back(c);
  odd.layers.emplace_back(pool(nn::pool_layer::kind::avg, 3, c.shape.out_h(), c.shape.out_w(), 2, 1, 1));
  // A copy: a reference into odd.layers would dangle after the next emplace_back.
  const auto ps = std::get<nn::pool_layer>(odd.layers[1]).shape;
  odd.layers.emplace_back(nn::flatten_layer{3, ps.out_h(), ps.out_w()});
  nn::dense_layer d;
  d.n_in = ps.out_size();
  d.n_out = 4;
  fill(d.W, d.n_in * 4);
  fill(d.b, 4);
  d.act = {sim::activation::tanh};
  odd.layers.emplace_back(d);
  odd.validate();
  for (const auto* n : {&net, &odd}) {
    const auto file = tmp_dir / "net.mpnn";
    io::save_model(*n, file, "{\"k\":1}");
    REQUIRE(io::is_cnn_model(file));
    std::string meta;
    const auto back = io::load_cnn(file, &meta);
    CHECK(meta == "{\"k\":1}");
    CHECK(back.arch() == n->arch());
    REQUIRE(back.layers.size() == n->layers.size());
    for (std::size_t k = 0; k < n->layers.size(); ++k) {
      if (const auto* a = std::get_if<nn::conv_layer>(&n->layers[k])) {
        const auto& b = std::get<nn::conv_layer>(back.layers[k]);
        CHECK(same_values(a->W, b.W));
        CHECK(same_values(a->b, b.b));
        CHECK(a->act == b.act);
      } else if (const auto* da = std::get_if<nn::dense_layer>(&n->layers[k])) {
        const auto& db = std::get<nn::dense_layer>(back.layers[k]);
        CHECK(same_values(da->W, db.W));
        CHECK(same_values(da->b, db.b));
        CHECK(da->act == db.act);
      }
    }
    // the MLP reader refuses it with one line
    try {
      (void)io::load_model(file);
      FAIL("load_model accepted a CNN file");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find("convolutional") != std::string::npos);
    }
  }
  // an MLP file reads as the dense-only network on n_in x 1 x 1 inputs
  auto m = nn::make_mlp({6, 4, 3}, {sim::activation::relu});
  fill(m.layers[0].W, 24);
  fill(m.layers[1].W, 12);
  io::save_model(m, tmp_dir / "mlp.mpnn");
  CHECK_FALSE(io::is_cnn_model(tmp_dir / "mlp.mpnn"));
  const auto mc = io::load_cnn(tmp_dir / "mlp.mpnn");
  CHECK(mc.c == 6);
  CHECK(mc.h == 1);
  CHECK(mc.w == 1);
  REQUIRE(mc.layers.size() == 2);
  CHECK(same_values(std::get<nn::dense_layer>(mc.layers[1]).W, m.layers[1].W));
  CHECK(io::load_model(tmp_dir / "mlp.mpnn").arch() == "6-4-3");
  std::filesystem::remove_all(tmp_dir);
}

TEST_CASE("cnn model files: truncated and corrupted files give one runtime_error line, never a crash", "[cnn][io]") {
  std::filesystem::create_directories(tmp_dir);
  filler fill{std::mt19937_64(3), 2, 3};
  const auto net = tiny_cnn(fill, {sim::activation::relu});
  io::save_model(net, tmp_dir / "t.mpnn", "m");
  const auto good = read_bytes(tmp_dir / "t.mpnn");
  REQUIRE_NOTHROW(io::parse_cnn(good, "t"));
  auto expect_error = [](const std::vector<std::uint8_t>& b, const char* fragment) {
    try {
      (void)io::parse_cnn(b, "t");
      return std::string("accepted");
    } catch (const std::runtime_error& e) {
      const std::string w = e.what();
      if (w.find('\n') != std::string::npos || w.rfind("t: ", 0) != 0) return "bad message: " + w;
      if (fragment && w.find(fragment) == std::string::npos) return "unexpected message: " + w;
      return std::string();
    }
  };
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("truncated to " << n << " bytes");
    CHECK(expect_error(cut, nullptr).empty());
  }
  // every byte of the header and layer descriptions changed (CRC recomputed):
  // accepted only as a valid network, else one runtime_error line
  std::size_t accepted = 0, refused = 0;
  for (std::size_t pos = 8; pos < 200 && pos + 4 < good.size(); ++pos)
    for (const std::uint8_t v : std::vector<std::uint8_t>{0x00, 0x01, 0x02, 0x05, 0x7f, 0xff}) {
      auto b = good;
      if (b[pos] == v) continue;
      b[pos] = v;
      fix_crc(b);
      try {
        const auto n = io::parse_cnn(b, "t");
        REQUIRE_NOTHROW(n.validate());
        ++accepted;
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).rfind("t: ", 0) == 0);
        ++refused;
      }
    }
  CHECK(refused > 100);
  // named problems
  auto at_layer = [&](std::size_t layer_offset) {
    // header: magic 8, version 4, layers 4, metadata length 8 + 1 byte, input 3 x 8
    return std::size_t{8 + 4 + 4 + 8 + 1 + 24} + layer_offset;
  };
  {
    auto b = good;
    b[at_layer(0)] = 9;  // the first layer's kind
    fix_crc(b);
    CHECK(expect_error(b, "unknown layer kind 9").empty());
  }
  {
    auto b = good;
    const std::uint64_t zero = 0;
    std::memcpy(b.data() + at_layer(1 + 6 * 8), &zero, 8);  // the first convolution's stride_h
    fix_crc(b);
    CHECK(expect_error(b, "stride 0").empty());
  }
  {
    auto b = good;
    const std::uint64_t huge = std::uint64_t{1} << 40;
    std::memcpy(b.data() + at_layer(1 + 3 * 8), &huge, 8);  // c_out
    fix_crc(b);
    CHECK(expect_error(b, "c_out").empty());
  }
  {
    auto b = good;
    b.back() ^= 1;
    CHECK(expect_error(b, "checksum").empty());
  }
  {
    auto b = good;
    b.insert(b.end() - 4, 0);
    fix_crc(b);
    CHECK(expect_error(b, "trailing").empty());
  }
  {
    auto b = good;
    b[8] = 3;
    CHECK(expect_error(b, "version 3").empty());
  }
  std::filesystem::remove_all(tmp_dir);
}

TEST_CASE("conv2d_shape::validate refuses more than 2^31 weights without overflowing", "[cnn][io]") {
  // c_in kh kw = 2^72 wrapped to 0 in 64 bits before the check was made by division
  auto s = conv_shape(std::size_t{1} << 24, std::size_t{1} << 24, std::size_t{1} << 24, 1, std::size_t{1} << 24, 1, 0);
  CHECK_THROWS_AS(s.validate(), std::invalid_argument);
  s = conv_shape(std::size_t{1} << 20, 8, 8, std::size_t{1} << 12, 1, 1, 0);  // 2^32 weights
  CHECK_THROWS_AS(s.validate(), std::invalid_argument);
  s = conv_shape(std::size_t{1} << 19, 8, 8, std::size_t{1} << 12, 1, 1, 0);  // exactly 2^31
  CHECK_NOTHROW(s.validate());
}

// ---------------------------------------------------------------------------
// 3. the simulated pass

TEST_CASE("simulated cnn pass equals the composition of the sim primitives, bit for bit", "[cnn][simulate]") {
  filler fill{std::mt19937_64(11), -1, 0};
  const auto net = tiny_cnn(fill, {sim::activation::relu});
  const std::size_t batch = 5;
  filler fx{std::mt19937_64(12), -1, 0};
  const auto X = inputs(fx, batch * net.inputs());
  for (const char* text :
       {"acc=e4m3-ieee;order=blocked:8;saturate=on;act=e4m3-ieee", "acc=binary16;order=recursive;act=binary16",
        "acc=bfloat16;rounding=stochastic;seed=9;order=pairwise;product=binary16",
        "acc=e5m2,binary16,e4m3-ieee,bfloat16,binary16,binary16,e4m3-ieee;via=binary32"}) {
    INFO(text);
    const auto p = nn::parse_precision(text);
    const auto run = nn::simulate(net, {X.data(), batch, net.inputs()}, p);
    REQUIRE(run.size() == net.layers.size());
    const auto stored = nn::stored_network(net, p);
    std::vector<unsigned> in_flags;
    std::vector<double> in = nn::store_inputs({X.data(), batch, net.inputs()}, p.inputs, &in_flags);
    CHECK(run[0].in_flags == in_flags);
    std::size_t cols = net.inputs();
    for (std::size_t k = 0; k < net.layers.size(); ++k) {
      INFO("layer " << k + 1);
      std::vector<double> v, y;
      std::vector<unsigned> flags, act_flags;
      std::vector<std::uint32_t> where;
      const auto& L = stored.layers[k];
      if (const auto* c = std::get_if<nn::conv_layer>(&L)) {
        sim::prepared_conv2d(c->shape, c->W, c->b, p.layer_spec(k)).run(in.data(), batch, v, 1, &flags);
        y = v;
        nn::apply_activation(c->act, p.act, y, 1, &act_flags, p.act_rounding, p.act_saturate, p.seed + k + 1);
        cols = c->shape.out_size();
      } else if (const auto* q = std::get_if<nn::pool_layer>(&L)) {
        if (q->type == nn::pool_layer::kind::max) {
          sim::max_pool2d(q->shape, in.data(), batch, y, &where);
          CHECK(run[k].where == where);
        } else {
          sim::avg_pool2d(q->shape, in.data(), batch, p.layer_spec(k).base, y, 1, &flags);
          CHECK(run[k].flags == flags);
        }
        v = y;
        cols = q->shape.out_size();
      } else if (std::holds_alternative<nn::flatten_layer>(L)) {
        v = y = in;
      } else {
        const auto& d = std::get<nn::dense_layer>(L);
        nn::simulate_layer(d, {in.data(), batch, cols}, p.layer_spec(k), v, flags, 1);
        y = v;
        nn::apply_activation(d.act, p.act, y, 1, &act_flags, p.act_rounding, p.act_saturate, p.seed + k + 1);
        cols = d.n_out;
      }
      CHECK(same_values(run[k].v, v));
      CHECK(same_values(run[k].y, y));
      if (!flags.empty()) CHECK(run[k].flags == flags);
      if (!act_flags.empty()) CHECK(run[k].act_flags == act_flags);
      in = y;
    }
    // the result does not depend on the thread count
    const auto one = nn::simulate(net, {X.data(), batch, net.inputs()}, p, 1);
    for (std::size_t k = 0; k < net.layers.size(); ++k) CHECK(same_values(one[k].y, run[k].y));
  }
}

TEST_CASE("simulated cnn pass: a convolution outside the fast path (binary64 accumulator) is sim::dot's MPFR model",
          "[cnn][simulate]") {
  filler fill{std::mt19937_64(21), -1, 0};
  nn::cnn net;
  net.c = 2;
  net.h = net.w = 5;
  nn::conv_layer c;
  c.shape = conv_shape(2, 5, 5, 3, 3, 2, 1);
  c.act = {sim::activation::tanh};
  fill(c.W, c.shape.weights());
  fill(c.b, 3);
  nn::dense_layer d;
  d.n_in = c.shape.out_size();
  d.n_out = 2;
  fill(d.W, d.n_in * 2);
  fill(d.b, 2);
  net.layers = {c, nn::flatten_layer{3, 3, 3}, d};
  const std::size_t batch = 3;
  const auto X = inputs(fill, batch * net.inputs());
  auto p = nn::parse_precision("acc=binary64;weights=none;biases=none;inputs=binary64;rounding=stochastic;seed=5");
  const auto run = nn::simulate(net, {X.data(), batch, net.inputs()}, p);
  const auto& s = c.shape;
  sim::accumulation a = p.layer_spec(0).base;
  std::vector<double> patch(s.patch());
  for (std::size_t smp = 0; smp < batch; ++smp)
    for (std::size_t ch = 0; ch < 3; ++ch)
      for (std::size_t oy = 0; oy < 3; ++oy)
        for (std::size_t ox = 0; ox < 3; ++ox) {
          sim::conv_patch(s, X.data() + smp * s.in_size(), oy, ox, patch.data());
          const auto r = ref::dot_mpfr({c.W.data() + ch * s.patch(), s.patch()}, patch, c.b[ch], a,
                                       sim::conv_first_word(s, a, smp, ch, oy, ox));
          const std::size_t at = ((smp * 3 + ch) * 3 + oy) * 3 + ox;
          CHECK(same(run[0].v[at], r.value));
          CHECK(run[0].flags[at] == r.flags);
        }
}

TEST_CASE("simulated cnn pass on a dense-only network is nn::simulate of the MLP, bit for bit", "[cnn][simulate]") {
  filler fill{std::mt19937_64(5), -1, 0};
  auto m = nn::make_mlp({12, 9, 7, 4}, {sim::activation::tanh});
  for (auto& l : m.layers) {
    fill(l.W, l.W.size());
    fill(l.b, l.b.size());
  }
  nn::cnn net;
  net.c = 12;
  net.h = net.w = 1;
  for (const auto& l : m.layers) net.layers.emplace_back(l);
  const std::size_t batch = 6;
  const auto X = inputs(fill, batch * 12);
  for (const char* text : {"acc=e4m3-ieee;order=blocked:8;saturate=on", "acc=binary16,bfloat16,e5m2;order=pairwise",
                           "acc=bfloat16;rounding=stochastic;seed=3;act=bfloat16;act_rounding=stochastic",
                           "acc=binary64;weights=none;inputs=binary64"}) {
    INFO(text);
    const auto p = nn::parse_precision(text);
    const auto a = nn::simulate(m, {X.data(), batch, 12}, p);
    const auto b = nn::simulate(net, {X.data(), batch, 12}, p);
    REQUIRE(a.size() == b.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
      CHECK(same_values(a[k].v, b[k].v));
      CHECK(same_values(a[k].y, b[k].y));
      CHECK(a[k].flags == b[k].flags);
      CHECK(a[k].act_flags == b[k].act_flags);
      CHECK(a[k].in_flags == b[k].in_flags);
    }
  }
}

// ---------------------------------------------------------------------------
// 4. the reference pass against rational arithmetic

namespace {

using rational = boost::multiprecision::mpq_rational;

rational exact_of(double hi, double lo) { return rational(hi) + rational(lo); }

// the network in rational arithmetic (ReLU or identity only), every layer's outputs
std::vector<std::vector<rational>> rational_forward(const nn::cnn& net, const double* x) {
  std::vector<rational> in(x, x + net.inputs());
  std::vector<std::vector<rational>> out;
  auto relu = [](const sim::activation_fn& a, const rational& v) {
    return a.kind == sim::activation::relu && v < 0 ? rational(0) : v;
  };
  for (const auto& layer : net.layers) {
    std::vector<rational> y;
    if (const auto* c = std::get_if<nn::conv_layer>(&layer)) {
      const auto& s = c->shape;
      for (std::size_t co = 0; co < s.c_out; ++co)
        for (std::size_t oy = 0; oy < s.out_h(); ++oy)
          for (std::size_t ox = 0; ox < s.out_w(); ++ox) {
            rational sum = c->b[co];
            for (std::size_t ci = 0; ci < s.c_in; ++ci)
              for (std::size_t ky = 0; ky < s.kh; ++ky)
                for (std::size_t kx = 0; kx < s.kw; ++kx) {
                  const long iy = static_cast<long>(oy * s.stride_h + ky) - static_cast<long>(s.pad_h);
                  const long ix = static_cast<long>(ox * s.stride_w + kx) - static_cast<long>(s.pad_w);
                  if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h) || ix >= static_cast<long>(s.w)) continue;
                  sum += rational(c->W[((co * s.c_in + ci) * s.kh + ky) * s.kw + kx]) *
                         in[(ci * s.h + static_cast<std::size_t>(iy)) * s.w + static_cast<std::size_t>(ix)];
                }
            y.push_back(relu(c->act, sum));
          }
    } else if (const auto* q = std::get_if<nn::pool_layer>(&layer)) {
      const auto& s = q->shape;
      for (std::size_t ch = 0; ch < s.c; ++ch)
        for (std::size_t oy = 0; oy < s.out_h(); ++oy)
          for (std::size_t ox = 0; ox < s.out_w(); ++ox) {
            rational best, sum = 0;
            bool any = false;
            for (std::size_t ky = 0; ky < s.kh; ++ky)
              for (std::size_t kx = 0; kx < s.kw; ++kx) {
                const long iy = static_cast<long>(oy * s.stride_h + ky) - static_cast<long>(s.pad_h);
                const long ix = static_cast<long>(ox * s.stride_w + kx) - static_cast<long>(s.pad_w);
                if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h) || ix >= static_cast<long>(s.w)) continue;
                const auto& v = in[(ch * s.h + static_cast<std::size_t>(iy)) * s.w + static_cast<std::size_t>(ix)];
                if (!any || v > best) best = v;
                any = true;
                sum += v;
              }
            y.push_back(q->type == nn::pool_layer::kind::max ? best : sum / rational(static_cast<long>(s.window())));
          }
    } else if (std::holds_alternative<nn::flatten_layer>(layer)) {
      y = in;
    } else {
      const auto& d = std::get<nn::dense_layer>(layer);
      for (std::size_t i = 0; i < d.n_out; ++i) {
        rational sum = d.b[i];
        for (std::size_t j = 0; j < d.n_in; ++j) sum += rational(d.row(i)[j]) * in[j];
        y.push_back(relu(d.act, sum));
      }
    }
    out.push_back(y);
    in = std::move(y);
  }
  return out;
}

}  // namespace

TEST_CASE("cnn reference pass is exact for a ReLU CNN (against GMP rationals), and within its bound at P bits",
          "[cnn][reference]") {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    INFO("seed " << seed);
    // dyadic weights m/2^5 and inputs m/2^7: long sums whose exact values
    // need more than 53 bits after the first layers
    filler fw{std::mt19937_64(seed), 5, 31};
    const auto net = tiny_cnn(fw, {sim::activation::relu});
    filler fx{std::mt19937_64(100 + seed), 7, 127};
    const std::size_t batch = 3;
    auto X = inputs(fx, batch * net.inputs());
    X[1] = 0x1.fffffffp-3;  // a 29-bit input: the exact values then need more than 53 bits, less than 106
    nn::reference_options exact;
    exact.exact = true;
    const auto R = nn::reference_forward(net, {X.data(), batch, net.inputs()}, exact);
    nn::reference_options p200;
    p200.precision = 200;
    const auto R200 = nn::reference_forward(net, {X.data(), batch, net.inputs()}, p200);
    nn::reference_options p64;
    p64.precision = 64;
    const auto R64 = nn::reference_forward(net, {X.data(), batch, net.inputs()}, p64);
    for (std::size_t s = 0; s < batch; ++s) {
      const auto Q = rational_forward(net, X.data() + s * net.inputs());
      for (std::size_t k = 0; k < net.layers.size(); ++k) {
        const auto& lv = R.layers[k];
        REQUIRE(lv.n == Q[k].size());
        for (std::size_t i = 0; i < lv.n; ++i) {
          const std::size_t at = s * lv.n + i;
          INFO("layer " << k + 1 << " component " << i);
          // every value here has fewer than 106 significant bits: hi + lo is it exactly
          CHECK(exact_of(lv.y_hi[at], lv.y_lo[at]) == Q[k][i]);
          CHECK(lv.y_bound[at] == 0);
          // the P-bit tiers: within their stated bounds
          for (const auto* RP : {&R200, &R64}) {
            const auto& pv = RP->layers[k];
            const rational e = abs(exact_of(pv.y_hi[at], pv.y_lo[at]) - Q[k][i]);
            // double-double rounding of the P-bit value adds at most 2^-105 |value|
            CHECK(e <= rational(pv.y_bound[at]) + abs(Q[k][i]) / rational(boost::multiprecision::mpz_int(1) << 104));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// 5. validate on convolutional networks

namespace {

io::dataset random_images(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  io::dataset d;
  d.name = "random";
  d.rows = rows;
  d.cols = cols;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-0.5, 2.8);  // MNIST-like after normalization
  d.x.resize(rows * cols);
  for (auto& v : d.x) v = u(rng);
  d.y.assign(rows, 0);
  return d;
}

// 2x7x7 -> conv 2->4 3x3 s1 p1 (act) -> maxpool 2 s2 p1 (4x4x4) -> conv 4->3 3x3 s2 p1 (act, 3x2x2)
// -> avgpool 2 s1 (3x1x1) -> flatten 3 -> dense 3x6 (act) -> dense 6x4
nn::cnn random_cnn(std::uint64_t seed, sim::activation_fn act) {
  filler fill{std::mt19937_64(seed), -1, 0};
  return conv_pool_dense(fill, 2, 7, conv_shape(2, 7, 7, 4, 3, 1, 1), pool(nn::pool_layer::kind::max, 4, 7, 7, 2, 2, 1),
                         conv_shape(4, 4, 4, 3, 3, 2, 1), pool(nn::pool_layer::kind::avg, 3, 2, 2, 2, 1), 6, 4, act);
}

}  // namespace

TEST_CASE("validate on random tiny CNNs: the deterministic bound is never violated", "[cnn][validate]") {
  analysis::validate_options opt;
  opt.csv_samples = 2;
  opt.threads = 2;
  const auto data = random_images(12, 2 * 7 * 7, 77);
  std::size_t checked = 0, nonzero = 0;
  for (std::uint64_t seed : {1, 2, 3})
    for (const auto act : {sim::activation_fn{sim::activation::relu}, sim::activation_fn{sim::activation::tanh}}) {
      const auto net = random_cnn(seed, act);
      for (const char* acc : {"e4m3-ieee", "e4m3-ieee;saturate=on", "binary16", "bfloat16"})
        for (const char* ord : {"recursive", "blocked:8"}) {
          const auto p = nn::parse_precision(std::string("acc=") + acc + ";order=" + ord);
          INFO("seed " << seed << ", " << sim::to_string(act.kind) << ", " << p.to_string());
          const auto ref = analysis::compute_reference(net, data, opt, p);
          const auto r = analysis::validate(net, ref, p, opt);
          REQUIRE(r.layers.size() == net.layers.size() + 1);
          CHECK(r.layer_kinds ==
                std::vector<std::string>{"conv", "maxpool", "conv", "avgpool", "flatten", "dense", "dense"});
          CHECK(r.violations() == 0);
          const auto& t = r.total();
          CHECK(t.components == 12 * (196 + 64 + 12 + 3 + 3 + 6 + 4));
          // everything covered: e4m3's range holds these sums
          CHECK(t.uncovered == 0);
          // per inner product: convolutions, the average pooling's sums and dense layers
          CHECK(t.local_checked == 12 * (196 + 12 + 3 + 6 + 4));
          CHECK(t.local_violations == 0);
          checked += t.components;
          for (std::size_t k = 0; k < net.layers.size(); ++k) nonzero += r.layers[k].err_over_bound_y.max > 0;
          // the CSV rows: every component of the first samples, in layer order
          REQUIRE(r.csv_rows.size() == 2);
          CHECK(r.csv_rows[0].size() == t.components / 12);
        }
    }
  CHECK(checked > 20000);
  CHECK(nonzero > 100);  // errors are measured, not all zero
}

TEST_CASE("validate on a CNN detects a bound that does not hold", "[cnn][validate]") {
  // the same check with the accumulator's unit roundoff understated: a bound of
  // binary16 applied to a bfloat16 pass (via a wrong reference) must be caught
  analysis::validate_options opt;
  opt.csv_samples = 0;
  const auto data = random_images(8, 2 * 7 * 7, 5);
  const auto net = random_cnn(9, {sim::activation::relu});
  auto p = nn::parse_precision("acc=bfloat16;order=recursive");
  auto ref = analysis::compute_reference(net, data, opt, p);
  // perturb the reference of one convolution output by far more than any bound
  ref.ref.layers[0].v_hi[5] += 1.0;
  ref.ref.layers[0].y_hi[5] += 1.0;
  const auto r = analysis::validate(net, ref, p, opt);
  CHECK(r.layers[0].violations_v >= 1);
  CHECK(r.violations() >= 1);
  // and a maximum's reference moved: the max-pool component is flagged
  auto ref2 = analysis::compute_reference(net, data, opt, p);
  ref2.ref.layers[1].y_hi[3] += 0.5;
  ref2.ref.layers[1].v_hi[3] += 0.5;
  const auto r2 = analysis::validate(net, ref2, p, opt);
  CHECK(r2.layers[1].violations_y >= 1);
}

TEST_CASE("validate on a CNN with per-channel and per-pixel accumulator maps", "[cnn][validate]") {
  analysis::validate_options opt;
  opt.csv_samples = 1;
  const auto data = random_images(10, 2 * 7 * 7, 31);
  const auto net = random_cnn(4, {sim::activation::relu});
  auto p = nn::parse_precision("acc=e4m3-ieee;order=blocked:8;saturate=on");
  p.maps.assign(net.layers.size(), {});
  p.maps[0] = {{sim::formats::e4m3_ieee, sim::formats::binary16}, {0, 1, 0, 1}};  // per channel (4)
  p.maps[2].formats = {sim::formats::bfloat16, sim::formats::e5m2, sim::formats::binary16};
  for (std::size_t i = 0; i < 12; ++i) p.maps[2].index.push_back(static_cast<std::uint8_t>(i % 3));  // per pixel
  const auto ref = analysis::compute_reference(net, data, opt, p);
  const auto r = analysis::validate(net, ref, p, opt);
  CHECK(r.violations() == 0);
  CHECK(r.total().uncovered == 0);
  // the binary16 channels' bounds are tighter than the e4m3 channels' on the same kind of sums
  double e4 = 0, b16 = 0;
  for (std::size_t i = 0; i < 196; ++i) {
    const auto& c = r.csv_rows[0][i];
    if (c.v_ref == 0 || !std::isfinite(c.kappa_dot)) continue;
    // relative to |w|^T|x| + |b| = kappa_dot |v|
    const double rel = c.bound_local / (c.kappa_dot * std::fabs(c.v_ref));
    double& worst = (i / 49) % 2 == 0 ? e4 : b16;
    worst = std::max(worst, rel);
  }
  CHECK(b16 < e4 / 4);
}

TEST_CASE("validate on a CNN: stochastic and directed rounding, via, rounded products, exact reference inputs",
          "[cnn][validate]") {
  analysis::validate_options opt;
  opt.csv_samples = 0;
  const auto data = random_images(8, 2 * 7 * 7, 13);
  for (const auto act : {sim::activation_fn{sim::activation::relu}, sim::activation_fn{sim::activation::tanh}}) {
    const auto net = random_cnn(21, act);
    for (const char* text : {"acc=bfloat16;rounding=stochastic;seed=3;order=pairwise",
                             "acc=e5m2;rounding=toward-zero;product=binary16;order=blocked:8",
                             "acc=e4m3-ieee;via=binary32;order=recursive;act=bfloat16;act_rounding=upward",
                             "acc=binary16;inputs=bfloat16;order=blocked:8"}) {
      for (const auto inputs : {analysis::reference_inputs::stored, analysis::reference_inputs::exact}) {
        INFO(text << ", reference inputs " << analysis::to_string(inputs));
        opt.ref_inputs = inputs;
        const auto p = nn::parse_precision(text);
        const auto ref = analysis::compute_reference(net, data, opt, p);
        const auto r = analysis::validate(net, ref, p, opt);
        CHECK(r.violations() == 0);
        CHECK(r.total().components == 8 * 288);
        CHECK(r.total().uncovered == 0);
      }
    }
  }
}
