// SPDX-License-Identifier: MIT
// Networks, data and training: the IDX reader on tiny files (malformed ones
// included), model save/load round trip and corruption, .npz import from the
// checked-in fixture, gradients against finite differences, convergence on a
// synthetic problem.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/train/train.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

using namespace mpacc;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("mpacc_test_nn_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims, std::size_t payload,
                                    std::uint8_t type = 8) {
  std::vector<std::uint8_t> b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  for (std::size_t k = 0; k < payload; ++k) b.push_back(static_cast<std::uint8_t>(k * 7));
  return b;
}

void write_gz(const fs::path& p, const std::vector<std::uint8_t>& b, std::size_t keep = SIZE_MAX) {
  const fs::path tmp = p.string() + ".full";
  gzFile f = gzopen(tmp.c_str(), "wb");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
  std::ifstream in(tmp, std::ios::binary);
  std::vector<std::uint8_t> z((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (keep < z.size()) z.resize(keep);
  write_bytes(p, z);
  fs::remove(tmp);
}

std::string error_of(const fs::path& p) {
  try {
    (void)io::read_idx(p);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("IDX reader: raw, gzip and malformed files", "[nn][data]") {
  const auto d = temp_dir();
  write_bytes(d / "ok", idx_bytes({3, 2, 2}, 12));
  const auto a = io::read_idx(d / "ok");
  CHECK(a.dims == std::vector<std::size_t>{3, 2, 2});
  REQUIRE(a.data.size() == 12);
  CHECK(a.data[5] == 35);
  write_gz(d / "ok.gz", idx_bytes({3, 2, 2}, 12));
  CHECK(io::read_idx(d / "ok.gz").data == a.data);

  write_bytes(d / "magic", {1, 0, 8, 1, 0, 0, 0, 1, 5});
  CHECK_THAT(error_of(d / "magic"), Catch::Contains((d / "magic").string() + ": not an IDX file") &&
                                        Catch::Contains("magic must start with two zero bytes"));
  write_bytes(d / "type", idx_bytes({2}, 2, 0x0d));
  CHECK_THAT(error_of(d / "type"), Catch::Contains("not unsigned byte"));
  write_bytes(d / "short", {0, 0, 8, 3, 0, 0});
  CHECK_THAT(error_of(d / "short"), Catch::Contains("truncated IDX header"));
  write_bytes(d / "trunc", idx_bytes({3, 2, 2}, 11));
  CHECK_THAT(error_of(d / "trunc"), Catch::Contains("size does not match its header") && Catch::Contains("trunc"));
  write_bytes(d / "long", idx_bytes({3, 2, 2}, 13));
  CHECK_THAT(error_of(d / "long"), Catch::Contains("size does not match"));
  write_gz(d / "cut.gz", idx_bytes({100, 10}, 1000), 40);
  CHECK_THAT(error_of(d / "cut.gz"), Catch::Contains("gzip"));
  CHECK_THAT(error_of(d / "absent"), Catch::Contains("cannot open"));

  // a whole data set: images and labels
  fs::create_directories(d / "mnist");
  write_bytes(d / "mnist" / "t10k-images-idx3-ubyte", idx_bytes({3, 2, 2}, 12));
  write_gz(d / "mnist" / "t10k-labels-idx1-ubyte.gz", {0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 9});
  const auto ds = io::load_dataset(d, "mnist", false);
  CHECK(ds.rows == 3);
  CHECK(ds.cols == 4);
  CHECK(ds.y == std::vector<std::uint8_t>{7, 1, 9});
  CHECK(ds.x[5] == Approx((35 / 255.0 - 0.1307) / 0.3081).margin(1e-15));
  CHECK_THROWS_WITH(io::load_dataset(d, "mnist", true), Catch::Contains("not found") && Catch::Contains("fetch-data"));
  CHECK_THROWS_WITH(io::load_dataset(d, "cifar", true), Catch::Contains("unknown dataset 'cifar'"));
  fs::remove_all(d);
}

TEST_CASE("model files: bit-exact round trip, corruption is detected", "[nn][model]") {
  const auto d = temp_dir();
  auto net = nn::make_mlp({5, 4, 3}, {sim::activation::leaky_relu, 0.0625});
  sim::random_stream rng(3);
  for (auto& l : net.layers) {
    for (auto& w : l.W) w = std::bit_cast<double>(rng() >> 2);  // arbitrary finite bit patterns
    for (auto& b : l.b) b = rng.uniform() - 0.5;
  }
  net.layers[0].W[0] = -0.0;
  io::save_model(net, d / "m.mpnn", "{\"note\":\"x\"}");
  std::string meta;
  const auto back = io::load_model(d / "m.mpnn", &meta);
  CHECK(meta == "{\"note\":\"x\"}");
  REQUIRE(back.layers.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(std::memcmp(back.layers[k].W.data(), net.layers[k].W.data(), net.layers[k].W.size() * 8) == 0);
    CHECK(std::memcmp(back.layers[k].b.data(), net.layers[k].b.data(), net.layers[k].b.size() * 8) == 0);
    CHECK(back.layers[k].act == net.layers[k].act);
  }
  // corruption, truncation, bad magic, trailing bytes
  std::ifstream in(d / "m.mpnn", std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto flipped = bytes;
  flipped[100] ^= 1;
  write_bytes(d / "flip.mpnn", flipped);
  CHECK_THROWS_WITH(io::load_model(d / "flip.mpnn"), Catch::Contains("checksum"));
  write_bytes(d / "cut.mpnn", {bytes.begin(), bytes.begin() + 90});
  CHECK_THROWS_WITH(io::load_model(d / "cut.mpnn"), Catch::Contains("truncated") || Catch::Contains("trailing"));
  auto magic = bytes;
  magic[0] = 'X';
  write_bytes(d / "magic.mpnn", magic);
  CHECK_THROWS_WITH(io::load_model(d / "magic.mpnn"), Catch::Contains("bad magic"));
  auto longer = bytes;
  longer.push_back(0);
  write_bytes(d / "long.mpnn", longer);
  CHECK_THROWS_WITH(io::load_model(d / "long.mpnn"), Catch::Contains("trailing") || Catch::Contains("checksum"));
  // an existing file is replaced whole; no temporary is left behind, after a
  // successful write or a failed one (a folder in the way of the rename, a
  // folder that does not exist)
  io::save_model(back, d / "m.mpnn");
  CHECK(io::load_model(d / "m.mpnn").layers[1].W == net.layers[1].W);
  fs::create_directories(d / "taken.mpnn" / "inside");
  CHECK_THROWS_WITH(io::save_model(back, d / "taken.mpnn"), Catch::Contains("cannot rename into place"));
  CHECK_THROWS_WITH(io::save_model(back, d / "absent" / "m.mpnn"), Catch::Contains("cannot create"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"cut.mpnn", "flip.mpnn", "long.mpnn", "m.mpnn", "magic.mpnn", "taken.mpnn"});
  fs::remove_all(d);
}

TEST_CASE(".npz import from the checked-in fixture (stored and deflated)", "[nn][model]") {
  for (const char* f : {"tiny.npz", "tiny_deflated.npz"}) {
    const auto net = io::import_npz(fs::path(MPACC_TEST_DATA) / f, {sim::activation::tanh});
    INFO(f);
    REQUIRE(net.layers.size() == 2);
    CHECK(net.arch() == "3-4-2");
    CHECK(net.layers[0].act.kind == sim::activation::tanh);
    CHECK(net.layers[1].act.kind == sim::activation::identity);
    for (std::size_t i = 0; i < 4; ++i) {
      for (std::size_t j = 0; j < 3; ++j)
        CHECK(net.layers[0].row(i)[j] == static_cast<double>(i + 1) * 0.25 - static_cast<double>(j) * 0.5);
      CHECK(net.layers[0].b[i] == -0.125 * static_cast<double>(i));
    }
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 4; ++j) CHECK(net.layers[1].row(i)[j] == std::ldexp(1.0, -static_cast<int>(i + j)));
    CHECK(net.layers[1].b == std::vector<double>{1.0, -2.0});
  }
  const auto d = temp_dir();
  write_bytes(d / "bad.npz", {1, 2, 3, 4});
  CHECK_THROWS_WITH(io::import_npz(d / "bad.npz", {}), Catch::Contains("not a zip"));
  fs::remove_all(d);
}

TEST_CASE("gradients agree with central finite differences", "[nn][train]") {
  for (auto a : {sim::activation::relu, sim::activation::tanh, sim::activation::sigmoid, sim::activation::gelu}) {
    auto net = nn::make_mlp({6, 5, 4, 10}, {a});
    sim::random_stream rng(17);
    for (auto& l : net.layers) {
      for (auto& w : l.W) w = rng.uniform() - 0.5;
      for (auto& b : l.b) b = 0.2 * (rng.uniform() - 0.5);
    }
    std::vector<double> X(3 * 6);
    for (auto& x : X) x = 2 * rng.uniform() - 1;
    const std::vector<std::uint8_t> y = {3, 0, 9};
    std::vector<std::vector<double>> dW, db, tW, tb;
    (void)train::detail::loss_and_gradients(net, X.data(), y.data(), 3, dW, db);
    double worst = 0;
    const double h = 1e-6;
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      for (std::size_t t = 0; t < net.layers[k].W.size(); t += 3) {
        auto p = net, m = net;
        p.layers[k].W[t] += h;
        m.layers[k].W[t] -= h;
        const double fd = (train::detail::loss_and_gradients(p, X.data(), y.data(), 3, tW, tb) -
                           train::detail::loss_and_gradients(m, X.data(), y.data(), 3, tW, tb)) /
                          (2 * h);
        worst = std::max(worst, std::fabs(fd - dW[k][t]) / std::max(1e-3, std::fabs(fd)));
      }
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      for (std::size_t t = 0; t < net.layers[k].b.size(); ++t) {
        auto p = net, m = net;
        p.layers[k].b[t] += h;
        m.layers[k].b[t] -= h;
        const double fd = (train::detail::loss_and_gradients(p, X.data(), y.data(), 3, tW, tb) -
                           train::detail::loss_and_gradients(m, X.data(), y.data(), 3, tW, tb)) /
                          (2 * h);
        worst = std::max(worst, std::fabs(fd - db[k][t]) / std::max(1e-3, std::fabs(fd)));
      }
    INFO(sim::to_string(a));
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("training converges on a synthetic problem, reproducibly", "[nn][train]") {
  // 10 Gaussian blobs in 8 dimensions
  io::dataset d;
  d.name = "blobs";
  d.rows = 2000;
  d.cols = 8;
  sim::random_stream rng(5);
  std::vector<double> centers(10 * 8);
  for (auto& c : centers) c = 4 * rng.uniform() - 2;
  for (std::size_t s = 0; s < d.rows; ++s) {
    const auto label = static_cast<std::uint8_t>(s % 10);
    d.y.push_back(label);
    for (std::size_t j = 0; j < 8; ++j) {
      const double u1 = rng.uniform() + 1e-12, u2 = rng.uniform();
      const double g = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
      d.x.push_back(centers[label * 8 + j] + 0.3 * g);
    }
  }
  train::train_options opt;
  opt.epochs = 8;
  opt.batch = 32;
  opt.threads = 1;
  opt.progress = false;
  std::vector<train::epoch_report> log;
  const auto net = train::fit({8, 32, 10}, {sim::activation::relu}, d, opt, &log);
  CHECK(log.back().loss < log.front().loss);
  CHECK(train::evaluate_native(net, d, true, 1) > 0.95);
  // stored weights are e4m3-ieee values
  unsigned fl = 0;
  for (double w : net.layers[0].W)
    CHECK(sim::round(w, sim::formats::e4m3_ieee, sim::rounding::nearest_even, true, fl) == w);
  const auto again = train::fit({8, 32, 10}, {sim::activation::relu}, d, opt);
  CHECK(again.layers[0].W == net.layers[0].W);
}

TEST_CASE("precision_config: JSON and compact forms round-trip, strictly", "[nn][precision]") {
  nn::precision_config d;
  CHECK(nn::parse_precision_json(d.to_json()) == d);
  CHECK(nn::parse_precision(d.to_string()) == d);
  CHECK(nn::parse_precision("") == d);
  nn::precision_config p;
  p.weights = sim::formats::e5m2;
  p.biases.reset();
  p.inputs = sim::formats::binary16;
  p.product = sim::formats::bfloat16;
  p.acc = {sim::formats::e4m3_ieee, sim::formats::binary16, sim::formats::binary32};
  p.rounding = sim::rounding::stochastic;
  p.order = {sim::order::kind::blocked, 4};
  p.saturate = true;
  p.via = sim::formats::binary32;
  p.seed = 77;
  p.act = sim::formats::bfloat16;
  p.act_rounding = sim::rounding::toward_zero;
  p.act_saturate = true;
  CHECK_FALSE(p == d);
  CHECK(nn::parse_precision(p.to_string()) == p);
  CHECK(nn::parse_precision_json(p.to_json()) == p);
  p.maps = {sim::precision_map::uniform(sim::formats::e4m3_ieee),
            {{sim::formats::e4m3_ieee, sim::formats::binary16}, {0, 1, 1, 0}},
            {}};
  CHECK(nn::parse_precision_json(p.to_json()) == p);
  CHECK(nn::parse_precision("acc=e4m3-ieee;order=blocked:8;saturate=on").saturate);
  CHECK(nn::parse_precision("acc=e4m3-ieee,binary16").acc.size() == 2);
  // every malformed input names its key
  CHECK_THROWS_WITH(nn::parse_precision("colour=red"), Catch::Contains("key 'colour': unknown key"));
  CHECK_THROWS_WITH(nn::parse_precision("acc=fp7"), Catch::Contains("key 'acc'"));
  CHECK_THROWS_WITH(nn::parse_precision("acc=binary16;acc=binary32"), Catch::Contains("given twice"));
  CHECK_THROWS_WITH(nn::parse_precision("saturate=maybe"), Catch::Contains("key 'saturate'"));
  CHECK_THROWS_WITH(nn::parse_precision("seed=-1"), Catch::Contains("key 'seed'"));
  CHECK_THROWS_WITH(nn::parse_precision("order"), Catch::Contains("not key=value"));
  CHECK_THROWS_WITH(nn::parse_precision("order=zigzag"), Catch::Contains("key 'order'"));
  CHECK_THROWS_WITH(nn::parse_precision("maps=x"), Catch::Contains("JSON form only"));
  CHECK_THROWS_WITH(nn::parse_precision_json("[1]"), Catch::Contains("JSON object"));
  CHECK_THROWS_WITH(nn::parse_precision_json("{\"saturate\": \"on\"}"), Catch::Contains("key 'saturate'"));
  CHECK_THROWS_WITH(nn::parse_precision_json("{\"acc\": []}"), Catch::Contains("key 'acc'"));
  CHECK_THROWS_WITH(nn::parse_precision_json("{\"maps\": [{\"formats\": [\"binary16\"], \"index\": [1]}]}"),
                    Catch::Contains("below the number of formats"));
  CHECK_THROWS_WITH(nn::parse_precision_json("{\"inputs\": 3}"), Catch::Contains("key 'inputs': must be a string"));
  // per-layer lists must fit the network
  nn::precision_config two;
  two.acc = {sim::formats::binary16, sim::formats::binary32};
  CHECK_NOTHROW(two.check(2));
  CHECK_THROWS_WITH(two.check(3), Catch::Contains("2 accumulator formats for a network of 3 layers"));
}

TEST_CASE("simulate with a precision_config equals the pass it describes", "[nn][precision]") {
  sim::random_stream rng(41);
  auto net = nn::make_mlp({12, 9, 5}, {sim::activation::tanh}, {sim::activation::identity});
  for (auto& l : net.layers) {
    for (auto& w : l.W) w = (rng.uniform() * 2 - 1) * 1.5;
    for (auto& b : l.b) b = (rng.uniform() * 2 - 1) * 0.3;
  }
  std::vector<double> x(20 * 12);
  for (auto& v : x) v = (rng.uniform() * 2 - 1) * 3;
  const sim::matrix_view X{x.data(), 20, 12};
  nn::precision_config p;  // weights and biases stored in e4m3-ieee
  p.acc = {sim::formats::e4m3_ieee, sim::formats::binary16};
  p.order = {sim::order::kind::blocked, 8};
  p.inputs = sim::formats::bfloat16;
  p.act = sim::formats::binary16;
  const auto pass = nn::simulate(net, X, p, 1);
  // the same pass assembled by hand: stored weights, layer by layer
  const auto stored = nn::stored_network(net, p);
  for (const auto& l : stored.layers)
    for (double w : l.W) CHECK(sim::round(w, sim::formats::e4m3_ieee) == w);
  std::vector<double> in = nn::store_inputs(X, sim::formats::bfloat16);
  std::size_t cols = 12;
  for (std::size_t k = 0; k < 2; ++k) {
    std::vector<double> v;
    std::vector<unsigned> flags;
    nn::simulate_layer(stored.layers[k], {in.data(), 20, cols}, p.layer_spec(k), v, flags, 1);
    CHECK(v == pass[k].v);
    std::vector<double> y = v;
    nn::apply_activation(stored.layers[k], sim::formats::binary16, y, 1);
    CHECK(y == pass[k].y);
    in = y;
    cols = stored.layers[k].n_out;
  }
  // layer 0 used e4m3-ieee, layer 1 binary16 (a single e4m3 accumulator differs)
  nn::precision_config q = p;
  q.acc = {sim::formats::e4m3_ieee};
  CHECK(nn::simulate(net, X, q, 1)[1].v != pass[1].v);
  // activation saturation changes only the values that overflow the activation format
  nn::precision_config s = p;
  s.act = sim::formats::e4m3_ieee;
  s.act_rounding = sim::rounding::nearest_even;
  auto big = net;
  for (auto& b : big.layers[1].b) b = 300;  // logits near 300 > 240, e4m3-ieee's largest
  const auto off = nn::simulate(big, X, s, 1);
  s.act_saturate = true;
  const auto on = nn::simulate(big, X, s, 1);
  std::size_t saturated = 0;
  for (std::size_t t = 0; t < off[1].y.size(); ++t) {
    if (std::isinf(off[1].y[t])) {
      ++saturated;
      CHECK(on[1].y[t] == 240);
    } else {
      CHECK(on[1].y[t] == off[1].y[t]);
    }
  }
  CHECK(saturated > 0);
  CHECK(on[0].y == off[0].y);
}

TEST_CASE("precision_config messages stay on one line", "[nn][precision]") {
  try {
    (void)nn::parse_precision_json("{\"co\\nlour\": 1}");
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
    CHECK_THAT(e.what(), Catch::Contains("co\\x0alour"));
  }
  CHECK_THROWS_WITH(nn::parse_precision(std::string("acc=\x01")), Catch::Contains("\\x01"));
}
