// SPDX-License-Identifier: MIT
// Vision transformers (nn/vit.hpp, train/vit.hpp, nn/vit_passes.hpp,
// io vit model files): the description's checks, gradients of every
// parameter tensor against central finite differences (which checks the
// backward pass of every layer: each layer's input gradient reaches the
// parameters upstream of it), the simulated pass against sim::dot per inner
// product and against the native binary64 forward pass, model files, and
// (hidden, [mnist-vit]) training on MNIST or Fashion-MNIST.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/train/vit.hpp"
#include "support.hpp"

using namespace mpacc;

namespace {

// every parameter tensor of a vit with its name, in a fixed order
std::vector<std::pair<std::string, std::vector<double>*>> tensors(nn::vit& net) {
  std::vector<std::pair<std::string, std::vector<double>*>> t{
      {"embed.W", &net.embed.W}, {"embed.b", &net.embed.b}, {"cls", &net.cls}, {"pos", &net.pos}};
  for (std::size_t k = 0; k < net.blocks.size(); ++k) {
    auto& b = net.blocks[k];
    const std::string n = "block" + std::to_string(k + 1) + ".";
    for (auto& [name, v] : std::vector<std::pair<std::string, std::vector<double>*>>{{"ln1.gamma", &b.ln1.gamma},
                                                                                     {"ln1.beta", &b.ln1.beta},
                                                                                     {"q.W", &b.q.W},
                                                                                     {"q.b", &b.q.b},
                                                                                     {"k.W", &b.k.W},
                                                                                     {"k.b", &b.k.b},
                                                                                     {"v.W", &b.v.W},
                                                                                     {"v.b", &b.v.b},
                                                                                     {"proj.W", &b.proj.W},
                                                                                     {"proj.b", &b.proj.b},
                                                                                     {"ln2.gamma", &b.ln2.gamma},
                                                                                     {"ln2.beta", &b.ln2.beta},
                                                                                     {"fc1.W", &b.fc1.W},
                                                                                     {"fc1.b", &b.fc1.b},
                                                                                     {"fc2.W", &b.fc2.W},
                                                                                     {"fc2.b", &b.fc2.b}})
      t.emplace_back(n + name, v);
  }
  t.emplace_back("ln_f.gamma", &net.ln_f.gamma);
  t.emplace_back("ln_f.beta", &net.ln_f.beta);
  t.emplace_back("head.W", &net.head.W);
  t.emplace_back("head.b", &net.head.b);
  return t;
}

// A tiny vit (8x8 images, 4x4 patches: 5 tokens) with every parameter drawn
// uniformly in +-mag (layer-norm gains around 1).
nn::vit tiny_vit(std::uint64_t seed, std::size_t blocks = 2, double mag = 0.5, std::size_t d = 8, std::size_t heads = 2,
                 std::size_t hidden = 6) {
  auto net = nn::make_vit(blocks, d, heads, hidden, 10, 8, 4);
  sim::random_stream rng(seed);
  for (auto& [name, v] : tensors(net)) {
    const bool gain = name.find("gamma") != std::string::npos;
    for (auto& x : *v) x = (gain ? 1.0 : 0.0) + (rng.uniform() * 2 - 1) * mag;
  }
  return net;
}

std::vector<double> random_images(std::size_t n, std::size_t pixels, std::uint64_t seed) {
  sim::random_stream rng(seed);
  std::vector<double> X(n * pixels);
  for (auto& x : X) x = rng.uniform() * 3 - 0.5;
  return X;
}

}  // namespace

TEST_CASE("vit: make_vit, arch, product layers and validate", "[vit]") {
  auto net = nn::make_vit(2, 64, 4);
  CHECK(net.arch() == "vit28p7-d64-h4-b2-m256-c10");
  CHECK(net.tokens() == 17);
  CHECK(net.d_head() == 16);
  CHECK(net.inputs() == 784);
  CHECK(net.product_layers() == 18);
  const auto names = net.product_layer_names();
  REQUIRE(names.size() == 18);
  CHECK(names[0] == "embed");
  CHECK(names[4] == "block1.scores");
  CHECK(names[9] == "block2.q");
  CHECK(names[17] == "head");
  REQUIRE_NOTHROW(net.validate());
  CHECK_THROWS_WITH(nn::make_vit(2, 64, 5), Catch::Contains("invalid sizes"));
  CHECK_THROWS_WITH(nn::make_vit(2, 64, 4, 0, 10, 28, 5), Catch::Contains("invalid sizes"));
  auto bad = net;
  bad.blocks[1].k.W.pop_back();
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("block 2 k: W has"));
  bad = net;
  bad.blocks[0].fc1.act.kind = sim::activation::relu;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("block 1 fc1 has activation relu, expected gelu"));
  bad = net;
  bad.pos.resize(16 * 64);
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("position embedding: pos has 1024 values, expected 1088"));
  bad = net;
  bad.ln_f.gamma[3] = NAN;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("final norm: gamma holds a non-finite value"));
  bad = net;
  bad.blocks[0].fc2.n_in = 128;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("block 1 fc2 is 128 -> 64, expected 256 -> 64"));
  bad = net;
  bad.heads = 3;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("not divisible by 3 heads"));
}

TEST_CASE("vit: gradients of every parameter against central finite differences", "[vit]") {
  // two configurations: moderate weights, and large ones (peaked softmax, GELU tails)
  for (const double mag : {0.5, 1.5}) {
    auto net = tiny_vit(7 + static_cast<std::uint64_t>(mag * 10), 2, mag);
    const std::size_t batch = 3;
    const auto X = random_images(batch, net.inputs(), 99);
    const std::vector<std::uint8_t> labels{3, 0, 9};
    nn::vit grad;
    const double loss = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, grad);
    REQUIRE(std::isfinite(loss));
    auto net_t = tensors(net);
    auto grad_t = tensors(grad);
    double worst = 0;
    std::string worst_at;
    for (std::size_t k = 0; k < net_t.size(); ++k) {
      auto& v = *net_t[k].second;
      const auto& g = *grad_t[k].second;
      REQUIRE(g.size() == v.size());
      for (std::size_t i = 0; i < v.size(); ++i) {
        const double keep = v[i], h = 1e-5 * std::max(1.0, std::abs(keep));
        nn::vit scratch;
        v[i] = keep + h;
        const double up = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, scratch);
        v[i] = keep - h;
        const double down = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, scratch);
        v[i] = keep;
        const double fd = (up - down) / (2 * h);
        const double rel = std::abs(fd - g[i]) / std::max(1e-3, std::abs(fd) + std::abs(g[i]));
        if (rel > worst) {
          worst = rel;
          worst_at =
              net_t[k].first + "[" + std::to_string(i) + "]: " + std::to_string(g[i]) + " vs " + std::to_string(fd);
        }
      }
    }
    INFO("magnitude " << mag << ", worst " << worst << " at " << worst_at);
    CHECK(worst < 1e-6);
  }
}

namespace {

// the loss sum_t c_t y_t of a layer's output y, with fixed random weights c
double weighted(const std::vector<double>& y, const std::vector<double>& c) {
  double s = 0;
  for (std::size_t t = 0; t < y.size(); ++t) s += c[t] * y[t];
  return s;
}

// the worst relative difference between g and the central differences of f
// with respect to every element of v
template <class F>
double worst_fd(std::vector<double>& v, const std::vector<double>& g, F&& f) {
  double worst = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i], h = 1e-5 * std::max(1.0, std::abs(keep));
    v[i] = keep + h;
    const double up = f();
    v[i] = keep - h;
    const double down = f();
    v[i] = keep;
    const double fd = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(fd - g[i]) / std::max(1e-3, std::abs(fd) + std::abs(g[i])));
  }
  return worst;
}

}  // namespace

TEST_CASE("vit layers alone: layer norm, attention and GELU against central finite differences", "[vit]") {
  sim::random_stream rng(41);
  auto draw = [&](std::size_t n, double lo, double hi) {
    std::vector<double> v(n);
    for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
    return v;
  };
  SECTION("layer norm: inputs, gamma, beta") {
    const std::size_t d = 6, rows = 3;
    auto x = draw(rows * d, -2, 3);
    nn::layer_norm n{draw(d, 0.5, 1.5), draw(d, -0.5, 0.5)};
    const auto c = draw(rows * d, -1, 1);
    std::vector<double> dx;
    nn::layer_norm dn;
    (void)train::detail::vit_layer_norm(x, d, n, 1e-5, &c, &dx, &dn);
    auto loss = [&] { return weighted(train::detail::vit_layer_norm(x, d, n, 1e-5), c); };
    CHECK(worst_fd(x, dx, loss) < 1e-7);
    CHECK(worst_fd(n.gamma, dn.gamma, loss) < 1e-7);
    CHECK(worst_fd(n.beta, dn.beta, loss) < 1e-7);
    // with gamma 1, beta 0 and eps 0 every row has mean 0 and (biased) variance 1
    nn::layer_norm unit{std::vector<double>(d, 1.0), std::vector<double>(d, 0.0)};
    const auto y = train::detail::vit_layer_norm(x, d, unit, 0.0);
    double mean = 0, var = 0;
    for (std::size_t j = 0; j < d; ++j) mean += y[j];
    for (std::size_t j = 0; j < d; ++j) var += y[j] * y[j];
    CHECK(std::abs(mean) < 1e-14);
    CHECK(std::abs(var / d - 1) < 1e-14);
  }
  SECTION("attention: q, k, v of two samples, three heads") {
    const std::size_t batch = 2, tokens = 4, d = 6, heads = 3;
    for (const double mag : {0.5, 3.0}) {  // 3: nearly one-hot softmax rows
      auto qkv = draw(batch * tokens * 3 * d, -mag, mag);
      const auto c = draw(batch * tokens * d, -1, 1);
      std::vector<double> dqkv;
      (void)train::detail::vit_attention(qkv, batch, tokens, d, heads, &c, &dqkv);
      auto loss = [&] { return weighted(train::detail::vit_attention(qkv, batch, tokens, d, heads), c); };
      INFO("magnitude " << mag);
      CHECK(worst_fd(qkv, dqkv, loss) < 1e-7);
    }
    // one token: softmax of one score is 1, the output is v
    const auto one = draw(3 * d, -1, 1);
    const auto o = train::detail::vit_attention(one, 1, 1, d, heads);
    for (std::size_t c = 0; c < d; ++c) CHECK(o[c] == one[2 * d + c]);
  }
  SECTION("GELU") {
    auto x = draw(40, -6, 6);
    const auto c = draw(40, -1, 1);
    std::vector<double> dx;
    const auto y = train::detail::vit_gelu(x, &c, &dx);
    CHECK(worst_fd(x, dx, [&] { return weighted(train::detail::vit_gelu(x), c); }) < 1e-7);
    // the exact-erf form: within a few ulps of sim::apply's GELU (checked against MPFR there)
    for (std::size_t t = 0; t < x.size(); ++t)
      CHECK(std::abs(y[t] - sim::apply({sim::activation::gelu}, x[t])) <= 1e-14 * std::max(1.0, std::abs(y[t])));
  }
}

TEST_CASE("vit: one block, one head: gradients and a loss that falls under training", "[vit]") {
  auto net = tiny_vit(3, 1, 0.7, 4, 1, 4);
  const std::size_t batch = 2;
  const auto X = random_images(batch, net.inputs(), 5);
  const std::vector<std::uint8_t> labels{1, 7};
  nn::vit grad;
  const double loss = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, grad);
  auto net_t = tensors(net);
  auto grad_t = tensors(grad);
  double worst = 0;
  for (std::size_t k = 0; k < net_t.size(); ++k)
    for (std::size_t i = 0; i < net_t[k].second->size(); ++i) {
      auto& w = (*net_t[k].second)[i];
      const double keep = w, h = 1e-5;
      nn::vit scratch;
      w = keep + h;
      const double up = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, scratch);
      w = keep - h;
      const double down = train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, scratch);
      w = keep;
      const double fd = (up - down) / (2 * h), g = (*grad_t[k].second)[i];
      worst = std::max(worst, std::abs(fd - g) / std::max(1e-3, std::abs(fd) + std::abs(g)));
    }
  CHECK(worst < 1e-6);
  // a plain gradient step lowers the loss
  for (std::size_t k = 0; k < net_t.size(); ++k)
    for (std::size_t i = 0; i < net_t[k].second->size(); ++i) (*net_t[k].second)[i] -= 0.01 * (*grad_t[k].second)[i];
  nn::vit scratch;
  CHECK(train::detail::vit_loss_and_gradients(net, X.data(), labels.data(), batch, scratch) < loss);
}

namespace {

// Every inner product of a simulated pass against sim::dot on the same
// operands (the stored network's weights, the layer's recorded inputs, the
// q/k/v/scores outputs for the attention products), with the stochastic word
// offsets the header documents; returns the number of outputs compared.
std::size_t check_against_dot(const nn::vit& net_in, const nn::simulated_vit& r, const nn::precision_config& p,
                              std::size_t first_sample) {
  const auto net = nn::stored_network(net_in, p);
  const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
  const std::size_t batch = r.layers.back().rows;
  std::size_t compared = 0;
  auto linear = [&](std::size_t k, const nn::dense_layer& l, std::size_t rows_per_sample) {
    const auto& L = r.layers[k];
    REQUIRE(L.cols == l.n_out);
    REQUIRE(L.in.size() == L.rows * l.n_in);
    const auto spec = p.layer_spec(k);
    for (std::size_t row = 0; row < L.rows; ++row)
      for (std::size_t i = 0; i < l.n_out; ++i) {
        sim::accumulation a = spec.base;
        a.acc = spec.acc.of(i);
        const auto want =
            sim::dot({l.row(i), l.n_in}, {L.in.data() + row * l.n_in, l.n_in}, l.b[i], a,
                     ((first_sample * rows_per_sample + row) * l.n_out + i) * sim::words_per_dot(l.n_in, a));
        INFO("layer " << net.product_layer_names()[k] << " row " << row << " output " << i);
        REQUIRE(test::same(L.v[row * l.n_out + i], want.value));
        REQUIRE(L.flags[row * l.n_out + i] == want.flags);
        ++compared;
      }
  };
  linear(0, net.embed, net.patches());
  for (std::size_t b = 0; b < net.blocks.size(); ++b) {
    const auto& B = net.blocks[b];
    const std::size_t k0 = 1 + 8 * b;
    linear(k0, B.q, T);
    linear(k0 + 1, B.k, T);
    linear(k0 + 2, B.v, T);
    linear(k0 + 5, B.proj, T);
    linear(k0 + 6, B.fc1, T);
    linear(k0 + 7, B.fc2, T);
    // proj's operands are mix's outputs, fc2's are fc1's: the layers chain
    CHECK(r.layers[k0 + 5].in == r.layers[k0 + 4].y);
    CHECK(r.layers[k0 + 7].in == r.layers[k0 + 6].y);
    const auto& Q = r.layers[k0].y;
    const auto& K = r.layers[k0 + 1].y;
    const auto& V = r.layers[k0 + 2].y;
    const auto& S = r.layers[k0 + 3];
    const auto& M = r.layers[k0 + 4];
    REQUIRE(S.rows == batch * H * T);
    REQUIRE(S.cols == T);
    REQUIRE(M.rows == batch * T);
    REQUIRE(M.cols == d);
    const auto sspec = p.layer_spec(k0 + 3), mspec = p.layer_spec(k0 + 4);
    for (std::size_t s = 0; s < batch; ++s)
      for (std::size_t h = 0; h < H; ++h)
        for (std::size_t i = 0; i < T; ++i) {
          const std::size_t row = (s * H + h) * T + i;
          for (std::size_t j = 0; j < T; ++j) {
            sim::accumulation a = sspec.base;
            a.acc = sspec.acc.of(j);
            const auto want =
                sim::dot({K.data() + (s * T + j) * d + h * dh, dh}, {Q.data() + (s * T + i) * d + h * dh, dh}, 0.0, a,
                         ((first_sample * H * T + row) * T + j) * sim::words_per_dot(dh, a));
            INFO("scores s " << s << " h " << h << " i " << i << " j " << j);
            REQUIRE(test::same(S.v[row * T + j], want.value));
            REQUIRE(S.flags[row * T + j] == want.flags);
            ++compared;
          }
          for (std::size_t c = 0; c < dh; ++c) {
            std::vector<double> vcol(T);
            for (std::size_t j = 0; j < T; ++j) vcol[j] = V[(s * T + j) * d + h * dh + c];
            sim::accumulation a = mspec.base;
            a.acc = mspec.acc.of(h * dh + c);
            const std::size_t at = (s * T + i) * d + h * dh + c;
            const auto want = sim::dot(vcol, {S.y.data() + row * T, T}, 0.0, a,
                                       (first_sample * T * d + at) * sim::words_per_dot(T, a));
            INFO("mix s " << s << " h " << h << " i " << i << " c " << c);
            REQUIRE(test::same(M.v[at], want.value));
            REQUIRE(M.flags[at] == want.flags);
            ++compared;
          }
        }
  }
  linear(net.product_layers() - 1, net.head, 1);
  return compared;
}

}  // namespace

TEST_CASE("vit simulated pass: every inner product is sim::dot on its operands", "[vit]") {
  const auto net = tiny_vit(11, 2, 0.6);
  const std::size_t batch = 3;
  const auto X = random_images(batch, net.inputs(), 12);
  std::vector<nn::precision_config> configs;
  configs.push_back(
      nn::parse_precision("acc=binary16;order=recursive;weights=e4m3-ieee;biases=e4m3-ieee;act=binary16"));
  configs.push_back(
      nn::parse_precision("acc=bfloat16;order=blocked:2;rounding=stochastic;seed=77;weights=e4m3-ieee;act=bfloat16;"
                          "act_rounding=stochastic"));
  configs.push_back(nn::parse_precision("acc=e5m2;order=pairwise;product=binary16;saturate=on;act=binary32"));
  {
    // one accumulator per inner-product layer, a per-component map on the scores and the mix of block 2
    auto p = nn::parse_precision("acc=binary16;order=blocked:3;act=binary32");
    p.acc.assign(net.product_layers(), sim::formats::binary16);
    p.acc[4] = sim::formats::bfloat16;
    p.acc[17] = sim::formats::binary32;
    p.maps.assign(net.product_layers(), {});
    p.maps[12] = {{sim::formats::binary16, sim::formats::e5m2}, std::vector<std::uint8_t>{0, 1, 0, 1, 1}};
    p.maps[13] = {{sim::formats::binary32, sim::formats::bfloat16}, std::vector<std::uint8_t>{0, 1, 1, 0, 0, 1, 0, 1}};
    configs.push_back(p);
  }
  for (const auto& p : configs) {
    INFO(p.to_string());
    const auto r = nn::simulate(net, {X.data(), batch, net.inputs()}, p, 2);
    REQUIRE(r.layers.size() == net.product_layers());
    CHECK(check_against_dot(net, r, p, 0) > 1000);
    // the softmax rows: one rounding of the binary64 softmax of v / sqrt(d_head)
    if (p.act_rounding == sim::rounding::nearest_even) {
      const auto& S = r.layers[4];
      for (std::size_t row = 0; row < S.rows; ++row) {
        double mx = -INFINITY, sum = 0;
        for (std::size_t j = 0; j < S.cols; ++j) mx = std::max(mx, S.v[row * S.cols + j] / 2);
        std::vector<double> e(S.cols);
        for (std::size_t j = 0; j < S.cols; ++j) sum += e[j] = std::exp(S.v[row * S.cols + j] / 2 - mx);
        for (std::size_t j = 0; j < S.cols; ++j) {
          unsigned fl = 0;
          REQUIRE(
              test::same(S.y[row * S.cols + j], sim::round(e[j] / sum, p.act, sim::rounding::nearest_even, false, fl)));
        }
      }
    }
    // pieces of a data set give the bits of one run (stochastic words numbered from first_sample)
    const auto a = nn::simulate(net, {X.data(), 1, net.inputs()}, p, 1, 0);
    const auto b = nn::simulate(net, {X.data() + net.inputs(), 2, net.inputs()}, p, 1, 1);
    for (std::size_t k = 0; k < r.layers.size(); ++k) {
      std::vector<double> joined = a.layers[k].y;
      joined.insert(joined.end(), b.layers[k].y.begin(), b.layers[k].y.end());
      INFO("layer " << k);
      CHECK(joined == r.layers[k].y);
    }
    CHECK(check_against_dot(net, b, p, 1) > 500);
  }
}

TEST_CASE("vit simulated pass: binary64 everywhere matches the native binary64 forward pass", "[vit]") {
  for (const std::uint64_t seed : {21, 22}) {
    const auto net = tiny_vit(seed, 2, 0.8);
    const std::size_t batch = 4;
    const auto X = random_images(batch, net.inputs(), seed + 1);
    // binary64 accumulators take the MPFR model; binary64 storage keeps every value
    const auto p =
        nn::parse_precision("acc=binary64;weights=none;biases=none;inputs=binary64;act=binary64;order=recursive");
    const auto r = nn::simulate(net, {X.data(), batch, net.inputs()}, p, 2);
    const auto native = train::vit_forward_native(net, X.data(), batch);
    REQUIRE(native.size() == r.logits().size());
    double worst = 0;
    for (std::size_t t = 0; t < native.size(); ++t)
      worst = std::max(worst, std::abs(native[t] - r.logits()[t]) / std::max(1.0, std::abs(native[t])));
    INFO("worst relative difference " << worst);
    CHECK(worst < 1e-12);
    CHECK(r.other_flags == 0);  // rounding a binary64 value to binary64 is exact
  }
}

TEST_CASE("vit simulated pass: configurations that do not fit are refused", "[vit]") {
  const auto net = tiny_vit(5, 1, 0.5);
  const auto X = random_images(1, net.inputs(), 6);
  auto p = nn::parse_precision("acc=binary16");
  p.acc.assign(3, sim::formats::binary16);
  CHECK_THROWS_WITH(nn::simulate(net, {X.data(), 1, net.inputs()}, p), Catch::Contains("10 layers"));
  p = nn::parse_precision("acc=binary16");
  p.maps.assign(net.product_layers(), {});
  p.maps[4] = {{sim::formats::binary16}, std::vector<std::uint8_t>(4, 0)};
  CHECK_THROWS_WITH(nn::simulate(net, {X.data(), 1, net.inputs()}, p),
                    Catch::Contains("(block1.scores) has a map of 4 components, expected 5"));
  CHECK_THROWS_WITH(nn::simulate(net, {X.data(), 1, 63}, nn::parse_precision("acc=binary16")),
                    Catch::Contains("the network takes 64"));
}

namespace {

const std::filesystem::path vit_tmp = std::filesystem::temp_directory_path() / "mpacc_test_vit";

std::vector<std::uint8_t> file_bytes(const std::filesystem::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void recompute_crc(std::vector<std::uint8_t>& b) {
  const auto crc = static_cast<std::uint32_t>(crc32_z(0L, b.data(), b.size() - 4));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
}

// "" when parse_vit refuses b with one line starting "t: " (and holding
// `fragment` when given), else what went wrong
std::string vit_refusal(const std::vector<std::uint8_t>& b, const char* fragment) {
  try {
    (void)io::parse_vit(b, "t");
    return "accepted";
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    if (w.find('\n') != std::string::npos || w.rfind("t: ", 0) != 0) return "bad message: " + w;
    if (fragment && w.find(fragment) == std::string::npos) return "unexpected message: " + w;
    return "";
  }
}

}  // namespace

TEST_CASE("vit model files: bit-exact round trip; other readers refuse them", "[vit][io]") {
  std::filesystem::create_directories(vit_tmp);
  auto net = tiny_vit(31, 2, 0.5);
  net.blocks[0].q.W[3] = -0.0;
  net.head.b[2] = 0x1p-1074;
  net.ln_eps = 1e-6;
  const auto file = vit_tmp / "v.mpnn";
  io::save_model(net, file, "{\"arch\": \"tiny\"}");
  CHECK(io::is_vit_model(file));
  CHECK_FALSE(io::is_cnn_model(file));
  std::string meta;
  const auto back = io::load_vit(file, &meta);
  CHECK(meta == "{\"arch\": \"tiny\"}");
  CHECK(back.arch() == net.arch());
  CHECK(back.ln_eps == net.ln_eps);
  auto a = tensors(net);
  auto b = tensors(const_cast<nn::vit&>(back));
  REQUIRE(a.size() == b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    INFO(a[k].first);
    REQUIRE(a[k].second->size() == b[k].second->size());
    for (std::size_t i = 0; i < a[k].second->size(); ++i) CHECK(test::same((*a[k].second)[i], (*b[k].second)[i]));
  }
  CHECK_THROWS_WITH(io::load_model(file), Catch::Contains("a vision transformer's model file (version 3)"));
  CHECK_THROWS_WITH(io::load_cnn(file), Catch::Contains("a vision transformer's model file (version 3)"));
  // an invalid network is not written
  auto bad = net;
  bad.cls.pop_back();
  CHECK_THROWS_AS(io::save_model(bad, vit_tmp / "bad.mpnn"), std::invalid_argument);
}

TEST_CASE("vit model files: truncated and corrupted files give one runtime_error line, never a crash", "[vit][io]") {
  std::filesystem::create_directories(vit_tmp);
  const auto net = tiny_vit(32, 1, 0.5, 4, 2, 4);
  io::save_model(net, vit_tmp / "t.mpnn", "m");
  const auto good = file_bytes(vit_tmp / "t.mpnn");
  REQUIRE_NOTHROW(io::parse_vit(good, "t"));
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    INFO("truncated to " << n << " bytes");
    CHECK(vit_refusal(cut, nullptr).empty());
  }
  // every byte of the header and the first tensors changed (CRC recomputed):
  // accepted only as a valid network, else one runtime_error line
  std::size_t accepted = 0, refused = 0;
  for (std::size_t pos = 8; pos < 200 && pos + 4 < good.size(); ++pos)
    for (const std::uint8_t v : std::vector<std::uint8_t>{0x00, 0x01, 0x02, 0x05, 0x7f, 0xff}) {
      auto b = good;
      if (b[pos] == v) continue;
      b[pos] = v;
      recompute_crc(b);
      try {
        const auto n = io::parse_vit(b, "t");
        REQUIRE_NOTHROW(n.validate());
        ++accepted;
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).rfind("t: ", 0) == 0);
        CHECK(std::string(e.what()).find('\n') == std::string::npos);
        ++refused;
      }
    }
  CHECK(refused > 100);
  CHECK(accepted > 100);  // the bytes of weights: any finite value is a network
  // named problems; header: magic 8, version 4, blocks 4, metadata length 8 + 1 byte, then the sizes
  const std::size_t sizes = 8 + 4 + 4 + 8 + 1;
  auto with = [&](std::size_t at, std::uint64_t v) {
    auto b = good;
    std::memcpy(b.data() + at, &v, 8);
    recompute_crc(b);
    return b;
  };
  CHECK(vit_refusal(with(sizes + 8, 3), "image 8 is not divisible into patches of 3").empty());
  CHECK(vit_refusal(with(sizes + 16, 5), "width 5 is not divisible by 2 heads").empty());
  CHECK(vit_refusal(with(sizes + 16, std::uint64_t{1} << 40), "width d 1099511627776 is outside").empty());
  CHECK(vit_refusal(with(sizes + 24, 0), "head count 0").empty());
  CHECK(vit_refusal(with(sizes + 32, std::uint64_t{1} << 24), "truncated model file (reading block 1 fc1 W").empty());
  {
    auto b = good;
    const double eps = -1;
    std::memcpy(b.data() + sizes + 48, &eps, 8);
    recompute_crc(b);
    CHECK(vit_refusal(b, "epsilon").empty());
  }
  {
    auto b = good;
    const double nan = NAN;
    std::memcpy(b.data() + sizes + 56, &nan, 8);  // the first embedding weight
    recompute_crc(b);
    CHECK(vit_refusal(b, "embed: W holds a non-finite value").empty());
  }
  {
    auto b = good;
    b.back() ^= 1;
    CHECK(vit_refusal(b, "checksum").empty());
  }
  {
    auto b = good;
    b[8] = 2;  // version 2: a CNN's
    CHECK(vit_refusal(b, "is not a vision transformer's").empty());
  }
  {
    auto b = good;
    b.insert(b.end() - 4, 0);
    recompute_crc(b);
    CHECK(vit_refusal(b, "trailing").empty());
  }
}

TEST_CASE("vit: MNIST or Fashion-MNIST ($MPACC_VIT_DATASET), binary32 training", "[.][mnist-vit]") {
  const auto dir = io::default_data_dir();
  const std::string name = std::getenv("MPACC_VIT_DATASET") ? std::getenv("MPACC_VIT_DATASET") : "mnist";
  if (!std::filesystem::exists(dir / name)) {
    WARN("no " << name << " under " << dir.string());
    return;
  }
  auto env = [](const char* var) { return std::getenv(var); };
  const std::size_t limit = env("MPACC_VIT_LIMIT") ? std::strtoul(env("MPACC_VIT_LIMIT"), nullptr, 10) : 0;
  const auto train = io::load_dataset(dir, name, true, limit);
  const auto test = io::load_dataset(dir, name, false);
  train::vit_train_options opt;
  if (env("MPACC_VIT_EPOCHS")) opt.epochs = std::strtoul(env("MPACC_VIT_EPOCHS"), nullptr, 10);
  if (env("MPACC_VIT_LR")) opt.lr = std::strtod(env("MPACC_VIT_LR"), nullptr);
  if (env("MPACC_VIT_BATCH")) opt.batch = std::strtoul(env("MPACC_VIT_BATCH"), nullptr, 10);
  if (env("MPACC_VIT_WD")) opt.weight_decay = std::strtod(env("MPACC_VIT_WD"), nullptr);
  if (env("MPACC_VIT_THREADS")) opt.threads = static_cast<int>(std::strtol(env("MPACC_VIT_THREADS"), nullptr, 10));
  if (env("MPACC_VIT_STORAGE")) {
    const std::string st = env("MPACC_VIT_STORAGE");
    opt.storage = st == "none" ? std::nullopt : std::optional<sim::format>(sim::parse_format(st));
  }
  const std::size_t blocks = env("MPACC_VIT_BLOCKS") ? std::strtoul(env("MPACC_VIT_BLOCKS"), nullptr, 10) : 2;
  const std::size_t d = env("MPACC_VIT_D") ? std::strtoul(env("MPACC_VIT_D"), nullptr, 10) : 64;
  const std::size_t heads = env("MPACC_VIT_HEADS") ? std::strtoul(env("MPACC_VIT_HEADS"), nullptr, 10) : 4;
  const std::size_t hidden = env("MPACC_VIT_MLP") ? std::strtoul(env("MPACC_VIT_MLP"), nullptr, 10) : 0;
  opt.progress = false;
  auto net = nn::make_vit(blocks, d, heads, hidden);
  opt.on_epoch = [&](const train::epoch_report& r) {
    std::printf("epoch %zu: loss %.4f, train accuracy %.4f, %.1f s\n", r.epoch, r.loss, r.train_accuracy, r.seconds);
    std::fflush(stdout);
  };
  const auto t0 = std::chrono::steady_clock::now();
  train::train_vit(net, train, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double acc32 = train::evaluate_vit_native(net, test, true);
  const double acc64 = train::evaluate_vit_native(net, test, false);
  std::printf("%s %s: test accuracy binary32 %.4f, binary64 %.4f, training %.1f s\n", name.c_str(), net.arch().c_str(),
              acc32, acc64, secs);
  CHECK(acc32 >= (name == "mnist" ? 0.97 : 0.87));
}
