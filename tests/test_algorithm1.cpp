// SPDX-License-Identifier: MIT
// Algorithm 1: tau = +inf is uniform low and forcing every component is
// uniform high, bit for bit; matched baselines recompute exactly as many
// components per layer and sample; sweeps are deterministic and independent
// of the shard count.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "mpacc/analysis/sweep.hpp"
#include "mpacc/nn/model_io.hpp"
#include "mpacc/sim/rounding.hpp"
#include "support.hpp"

using namespace mpacc;
namespace fs = std::filesystem;

namespace {

nn::mlp small_net(sim::activation a, std::uint64_t seed) {
  sim::random_stream rng(seed);
  auto net = nn::make_mlp({16, 24, 12, 10}, {a}, {sim::activation::identity});
  for (auto& l : net.layers) {
    const double s = 2 / std::sqrt(static_cast<double>(l.n_in));
    for (auto& w : l.W) w = sim::round((rng.uniform() * 2 - 1) * s, sim::formats::e4m3_ieee);
    for (auto& b : l.b) b = sim::round((rng.uniform() * 2 - 1) * 0.2, sim::formats::e4m3_ieee);
  }
  return net;
}

nn::dataset small_data(std::size_t rows, std::uint64_t seed) {
  nn::dataset d;
  d.rows = rows;
  d.cols = 16;
  sim::random_stream rng(seed);
  for (std::size_t k = 0; k < rows * 16; ++k) d.x.push_back((rng.uniform() * 2 - 1) * 2);
  for (std::size_t s = 0; s < rows; ++s) d.y.push_back(static_cast<std::uint8_t>(rng() % 10));
  return d;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (!test::same(a[k], b[k])) return false;
  return true;
}

}  // namespace

TEST_CASE("tau = +inf is uniform low, forcing every component is uniform high", "[analysis][algorithm1]") {
  for (auto act : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = small_net(act, 3);
    const auto data = small_data(50, 4);
    analysis::mixed_config cfg;
    cfg.model.ord = {sim::order::kind::blocked, 8};
    const analysis::mixed_runner R(net, data, 0, cfg, 1);
    analysis::selection low, high;
    low.type = analysis::selection::kind::uniform_low;
    high.type = analysis::selection::kind::uniform_high;
    const auto rl = R.run(low), rh = R.run(high);
    for (const auto& ind : analysis::indicator_names()) {
      analysis::selection s;
      s.indicator = ind;
      s.tau = HUGE_VAL;
      const auto a = R.run(s);
      INFO(ind);
      CHECK(same_bits(a.logits, rl.logits));
      CHECK(a.fraction == 0);
      s.tau = -HUGE_VAL;  // every score exceeds it
      const auto b = R.run(s);
      CHECK(same_bits(b.logits, rh.logits));
      CHECK(b.fraction == 1);
    }
    // and the two uniform runs really differ (the test can fail)
    CHECK(!same_bits(rl.logits, rh.logits));
  }
}

TEST_CASE("matched baselines recompute exactly as many components per layer and sample", "[analysis][algorithm1]") {
  const auto net = small_net(sim::activation::relu, 5);
  const auto data = small_data(40, 6);
  analysis::mixed_config cfg;
  const analysis::mixed_runner R(net, data, 0, cfg, 2);
  for (double tau : {0.01, 0.1, 1.0}) {
    analysis::selection s;
    s.indicator = "kappa";
    s.tau = tau;
    const auto a = R.run(s);
    for (auto kind : {analysis::selection::kind::random, analysis::selection::kind::smallest,
                      analysis::selection::kind::oracle}) {
      analysis::selection m;
      m.type = kind;
      m.counts = &a.counts;
      const auto b = R.run(m);
      CHECK(b.counts == a.counts);
      CHECK(b.fraction == a.fraction);
    }
  }
  analysis::selection bad;
  bad.type = analysis::selection::kind::random;
  CHECK_THROWS_WITH(R.run(bad), Catch::Contains("needs the recomputation counts"));
  CHECK_THROWS_WITH(analysis::find_indicator("magic"), Catch::Contains("unknown indicator 'magic'"));
}

TEST_CASE("sweeps are deterministic and independent of the shard count", "[analysis][algorithm1]") {
  // a tiny data set on disk and a model file
  const fs::path dir = fs::temp_directory_path() / ("mpacc_sweep_" + std::to_string(::getpid()));
  fs::create_directories(dir / "data" / "mnist");
  const auto data = small_data(30, 8);
  {
    std::ofstream img(dir / "data" / "mnist" / "t10k-images-idx3-ubyte", std::ios::binary);
    const unsigned char hdr[] = {0, 0, 8, 3, 0, 0, 0, 30, 0, 0, 0, 4, 0, 0, 0, 4};
    img.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    sim::random_stream rng(9);
    for (int k = 0; k < 30 * 16; ++k) img.put(static_cast<char>(rng() & 0xff));
    std::ofstream lab(dir / "data" / "mnist" / "t10k-labels-idx1-ubyte", std::ios::binary);
    const unsigned char lh[] = {0, 0, 8, 1, 0, 0, 0, 30};
    lab.write(reinterpret_cast<const char*>(lh), sizeof lh);
    for (int k = 0; k < 30; ++k) lab.put(static_cast<char>(k % 10));
  }
  nn::save_model(small_net(sim::activation::relu, 11), dir / "net.mpnn");
  analysis::sweep_config c;
  c.networks = {{"mnist", "relu", (dir / "net.mpnn").string()}};
  c.samples = 0;
  c.taus = {0.05, 0.5};
  c.data_dir = dir / "data";
  c.threads = 1;
  auto results = [&](const std::string& name, std::size_t shards) {
    c.out = dir / name;
    for (std::size_t i = 0; i < shards; ++i) analysis::run_sweep(c, i, shards);
    return analysis::merge_sweep(c, 0);
  };
  const auto one = results("one", 1);
  const auto again = results("again", 1);
  const auto three = results("three", 3);
  CHECK(one == again);
  CHECK(one == three);
  CHECK(std::count(one.begin(), one.end(), '\n') == 1 + 4 + 3 * 2 * 4);
  CHECK(fs::exists(dir / "one" / "manifest.json"));
  // merge refuses what would mix runs: a missing, foreign, duplicate, truncated or unparsable shard
  c.out = dir / "three";
  const auto s1 = dir / "three" / "shard-1-of-3.csv";
  const auto keep = dir / "shard-1.keep";
  fs::copy_file(s1, keep);
  auto text_of = [](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto write = [](const fs::path& f, const std::string& t) { std::ofstream(f, std::ios::binary) << t; };
  const std::string good = text_of(keep);
  fs::remove(s1);
  CHECK_THROWS_WITH(analysis::merge_sweep(c, 0), Catch::Contains("shard 1 of 3 is missing"));
  write(s1, good.substr(0, good.size() - 5));
  CHECK_THROWS_WITH(analysis::merge_sweep(c, 0), Catch::Contains("truncated"));
  std::string bad = good;
  bad.replace(bad.rfind(",0") + 1, 1, "abc");
  write(s1, bad);
  CHECK_THROWS_WITH(analysis::merge_sweep(c, 0), Catch::Contains("not a result row"));
  write(s1, good);
  fs::copy_file(s1, dir / "three" / "shard-1-of-3-copy.csv");
  CHECK_THROWS_WITH(analysis::merge_sweep(c, 0), Catch::Contains("appears twice"));
  fs::remove(dir / "three" / "shard-1-of-3-copy.csv");
  auto other = c;  // the same folder read with another configuration
  other.taus = {0.05, 0.6};
  CHECK_THROWS_WITH(analysis::merge_sweep(other, 0), Catch::Contains("a shard of another configuration"));
  fs::copy_file(dir / "one" / "shard-0-of-1.csv", dir / "three" / "shard-0-of-1.csv");
  CHECK_THROWS_WITH(analysis::merge_sweep(c, 0), Catch::Contains("beside shards of"));
  fs::remove(dir / "three" / "shard-0-of-1.csv");
  CHECK(analysis::merge_sweep(c, 0) == one);
  fs::remove_all(dir);
}

TEST_CASE("the reference logits take the stored inputs, or the exact data on request", "[analysis][algorithm1]") {
  const auto net = small_net(sim::activation::tanh, 9);
  const auto data = small_data(40, 10);
  analysis::mixed_config cfg;
  cfg.input_format = sim::formats::e4m3_ieee;  // a coarse storage: its error shows in the logits
  cfg.high = sim::formats::binary32;
  analysis::selection high;
  high.type = analysis::selection::kind::uniform_high;
  const auto stored = analysis::mixed_runner(net, data, 0, cfg, 1).run(high);
  cfg.ref_inputs = analysis::reference_inputs::exact;
  const auto exact = analysis::mixed_runner(net, data, 0, cfg, 1).run(high);
  CHECK(same_bits(stored.logits, exact.logits));  // the same simulation
  // binary32 on stored inputs is close to its reference; against the exact data
  // the e4m3 storage error (2^-4) dominates
  CHECK(stored.mean_relative_error < 1e-5);
  CHECK(exact.mean_relative_error > 1e-3);
}
