// SPDX-License-Identifier: MIT
// Convolutional networks (nn/cnn.hpp): the description's checks, the native
// forward pass against the simulated layers of sim/conv.hpp, gradients of
// every layer kind against central finite differences, and (hidden,
// [mnist-cnn]) LeNet-5 trained on MNIST.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <filesystem>

#include "mpacc/train/cnn.hpp"
#include "mpacc/sim/random.hpp"
#include "cnn_support.hpp"
#include "support.hpp"

using namespace mpacc;
using test::conv_shape;

namespace {

// 2x7x6 -> conv 2->3 3x3 p1 (tanh) -> maxpool 2 (3x3x3) -> conv 3->4 2x2 s1 p1 (act2)
// -> avgpool 2 s1 p0 (4x3x3) -> flatten 36 -> dense 5 (tanh) -> dense 10
nn::cnn small_net(std::uint64_t seed, sim::activation_fn act2) {
  nn::cnn net;
  net.c = 2;
  net.h = 7;
  net.w = 6;
  sim::random_stream rng(seed);
  auto fill = [&](std::vector<double>& v, std::size_t n, double mag) {
    v.resize(n);
    for (auto& x : v) x = (rng.uniform() * 2 - 1) * mag;
  };
  nn::conv_layer c1;
  c1.shape = conv_shape(2, 7, 6, 3, 3, 1, 1);
  c1.act = {sim::activation::tanh};
  fill(c1.W, c1.shape.weights(), 0.5);
  fill(c1.b, 3, 0.2);
  nn::pool_layer p1;
  p1.shape.c = 3;
  p1.shape.h = 7;
  p1.shape.w = 6;
  nn::conv_layer c2;
  c2.shape = conv_shape(3, 3, 3, 4, 2, 1, 1);
  c2.act = act2;
  fill(c2.W, c2.shape.weights(), 0.5);
  fill(c2.b, 4, 0.2);
  nn::pool_layer p2;
  p2.type = nn::pool_layer::kind::avg;
  p2.shape.c = 4;
  p2.shape.h = p2.shape.w = 4;
  p2.shape.stride_h = p2.shape.stride_w = 1;
  nn::dense_layer d1;
  d1.n_in = 36;
  d1.n_out = 5;
  d1.act = {sim::activation::tanh};
  fill(d1.W, 180, 0.4);
  fill(d1.b, 5, 0.2);
  nn::dense_layer d2;
  d2.n_in = 5;
  d2.n_out = 10;
  fill(d2.W, 50, 0.5);
  fill(d2.b, 10, 0.2);
  net.layers = {c1, p1, c2, p2, nn::flatten_layer{4, 3, 3}, d1, d2};
  return net;
}

std::vector<double>* param(nn::cnn& net, std::size_t k, bool bias) {
  return std::visit(
      [&](auto& l) -> std::vector<double>* {
        using L = std::decay_t<decltype(l)>;
        if constexpr (std::is_same_v<L, nn::conv_layer> || std::is_same_v<L, nn::dense_layer>)
          return bias ? &l.b : &l.W;
        return nullptr;
      },
      net.layers[k]);
}

}  // namespace

TEST_CASE("cnn description: LeNet-5 shapes, arch string, validation", "[nn][cnn]") {
  auto net = nn::make_lenet5({sim::activation::relu});
  REQUIRE_NOTHROW(net.validate());
  CHECK(net.inputs() == 784);
  CHECK(net.outputs() == 10);
  CHECK(net.arch() ==
        "1x28x28,conv1x6k5p2-relu,maxpool2,conv6x16k5-relu,maxpool2,flatten,dense400x120-relu,dense120x84-relu,"
        "dense84x10");
  auto bad = net;
  std::get<nn::dense_layer>(bad.layers[5]).n_in = 399;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("layer 6"));
  bad = net;
  bad.layers.erase(bad.layers.begin() + 4);  // no flatten
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("flat input"));
  bad = net;
  std::get<nn::conv_layer>(bad.layers[2]).shape.c_in = 5;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("layer 3"));
  bad = net;
  std::get<nn::conv_layer>(bad.layers[0]).W[3] = std::nan("");
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("non-finite"));
  bad = net;
  bad.layers.pop_back();
  bad.layers.pop_back();
  bad.layers.pop_back();
  bad.layers.pop_back();
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("last layer must be dense"));
}

TEST_CASE("cnn native forward pass equals the sim layers in binary64", "[nn][cnn]") {
  // the native pass (GEMM in binary64) against sim::conv2d with a binary32
  // accumulator on values whose sums are exact in both: small integers and halves
  auto net = small_net(3, {sim::activation::relu});
  for (auto& v : net.layers)
    std::visit(
        [](auto& l) {
          using L = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<L, nn::conv_layer> || std::is_same_v<L, nn::dense_layer>) {
            for (auto& w : l.W) w = std::round(w * 8) / 8;
            for (auto& b : l.b) b = std::round(b * 8) / 8;
          }
        },
        v);
  std::get<nn::conv_layer>(net.layers[0]).act = {sim::activation::relu};
  sim::random_stream rng(5);
  const std::size_t B = 3;
  std::vector<double> X(B * net.inputs());
  for (auto& x : X) x = static_cast<double>(static_cast<int>(rng() % 9) - 4) / 2;
  const auto logits = train::cnn_forward_native(net, X.data(), B);
  // the same network through sim/conv.hpp and sim::dense
  sim::layer_spec spec;
  spec.acc = sim::precision_map::uniform(sim::formats::binary32);
  std::vector<double> cur = X, next;
  for (const auto& v : net.layers) {
    if (const auto* c = std::get_if<nn::conv_layer>(&v)) {
      sim::conv2d(c->shape, cur.data(), B, c->W, c->b, spec, next);
      for (auto& z : next) z = sim::apply(c->act, z);
    } else if (const auto* p = std::get_if<nn::pool_layer>(&v)) {
      if (p->type == nn::pool_layer::kind::max) {
        sim::max_pool2d(p->shape, cur.data(), B, next);
      } else {
        sim::accumulation a;
        a.acc = sim::formats::binary32;  // exact here
        sim::avg_pool2d(p->shape, cur.data(), B, a, next);
      }
    } else if (std::holds_alternative<nn::flatten_layer>(v)) {
      continue;
    } else {
      const auto& d = std::get<nn::dense_layer>(v);
      sim::dense({cur.data(), B, d.n_in}, {d.W.data(), d.n_out, d.n_in}, d.b, spec, next);
      for (auto& z : next) z = sim::apply(d.act, z);
    }
    cur.swap(next);
  }
  REQUIRE(cur.size() == logits.size());
  // tanh in the middle dense layer makes values inexact: compare within binary32 rounding
  for (std::size_t i = 0; i < cur.size(); ++i) CHECK(cur[i] == Approx(logits[i]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("cnn gradients of every layer kind against central finite differences", "[nn][cnn]") {
  for (const sim::activation_fn act2 :
       {sim::activation_fn{sim::activation::tanh}, sim::activation_fn{sim::activation::identity}}) {
    auto net = small_net(11, act2);
    sim::random_stream rng(12);
    const std::size_t B = 4;
    std::vector<double> X(B * net.inputs());
    for (auto& x : X) x = rng.uniform() * 2 - 1;  // distinct values: no ties in max pooling
    const std::vector<std::uint8_t> y = {3, 7, 0, 9};
    std::vector<std::vector<double>> dW, db;
    train::detail::cnn_loss_and_gradients(net, X.data(), y.data(), B, dW, db);
    std::vector<std::vector<double>> dW2, db2;
    const double h = 1e-6;
    std::size_t checked = 0, bad = 0;
    double worst = 0;
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      for (bool bias : {false, true}) {
        auto* p = param(net, k, bias);
        if (!p) continue;
        const auto& g = bias ? db[k] : dW[k];
        REQUIRE(g.size() == p->size());
        for (std::size_t i = 0; i < p->size(); ++i) {
          const double w0 = (*p)[i];
          (*p)[i] = w0 + h;
          const double lp = train::detail::cnn_loss_and_gradients(net, X.data(), y.data(), B, dW2, db2);
          (*p)[i] = w0 - h;
          const double lm = train::detail::cnn_loss_and_gradients(net, X.data(), y.data(), B, dW2, db2);
          (*p)[i] = w0;
          const double fd = (lp - lm) / (2 * h);
          const double err = std::fabs(fd - g[i]) / std::max(1e-3, std::fabs(fd) + std::fabs(g[i]));
          worst = std::max(worst, err);
          bad += err > 1e-5;
          ++checked;
        }
      }
    INFO("activation " << sim::to_string(act2.kind) << " worst relative difference " << worst);
    CHECK(checked == 3 * 18 + 3 + 4 * 12 + 4 + 180 + 5 + 50 + 10);
    CHECK(bad == 0);
  }
}

// Hidden: LeNet-5 on MNIST (data from $MPACC_DATA or ./data). Prints the test
// accuracy after each epoch and the time per epoch.
TEST_CASE("LeNet-5 on MNIST (or $MPACC_CNN_DATASET), quantization-aware (e4m3-ieee weights)", "[.][mnist-cnn]") {
  const auto dir = io::default_data_dir();
  const std::string name = std::getenv("MPACC_CNN_DATASET") ? std::getenv("MPACC_CNN_DATASET") : "mnist";
  if (!std::filesystem::exists(dir / name)) {
    WARN("no " << name << " under " << dir.string());
    return;
  }
  const auto train = io::load_dataset(dir, name, true);
  const auto test = io::load_dataset(dir, name, false);
  // the defaults reach 99 %; the environment varies them
  train::cnn_train_options opt;
  opt.lr = 0.01;
  opt.epochs = 15;
  opt.lr_steps = {10};
  auto env = [](const char* var) { return std::getenv(var); };
  if (env("MPACC_CNN_EPOCHS")) opt.epochs = std::strtoul(env("MPACC_CNN_EPOCHS"), nullptr, 10);
  if (env("MPACC_CNN_LR")) opt.lr = std::strtod(env("MPACC_CNN_LR"), nullptr);
  if (env("MPACC_CNN_STEP")) opt.lr_steps = {std::strtoul(env("MPACC_CNN_STEP"), nullptr, 10)};
  if (env("MPACC_CNN_THREADS")) opt.threads = static_cast<int>(std::strtol(env("MPACC_CNN_THREADS"), nullptr, 10));
  if (env("MPACC_CNN_STORAGE")) {
    const std::string st = env("MPACC_CNN_STORAGE");
    opt.storage = st == "none" ? std::nullopt : std::optional<sim::format>(sim::parse_format(st));
  }
  sim::activation_fn act{sim::activation::relu};
  if (env("MPACC_CNN_ACT")) act.kind = sim::parse_activation(env("MPACC_CNN_ACT"));
  opt.progress = false;
  auto net = nn::make_lenet5(act);
  opt.on_epoch = [&](const train::epoch_report& r) {
    std::printf("epoch %zu: loss %.4f, train accuracy %.4f, %.1f s\n", r.epoch, r.loss, r.train_accuracy, r.seconds);
    std::fflush(stdout);
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<train::epoch_report> log;
  train::train_cnn(net, train, opt, &log);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double acc32 = train::evaluate_cnn_native(net, test, true);
  const double acc64 = train::evaluate_cnn_native(net, test, false);
  std::printf(
      "%s: LeNet-5 %s, weights %s, lr %g (x%g after epoch %zu), %zu epochs, %.1f s: test accuracy binary32 %.4f, "
      "binary64 %.4f\n",
      name.c_str(), std::string(sim::to_string(act.kind)).c_str(),
      opt.storage ? sim::to_string(*opt.storage).c_str() : "binary32", opt.lr, opt.lr_gamma,
      opt.lr_steps.empty() ? std::size_t{0} : opt.lr_steps[0], opt.epochs, secs, acc32, acc64);
  CHECK(acc32 >= (name == "mnist" ? 0.99 : 0.90));
}
