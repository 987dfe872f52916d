// SPDX-License-Identifier: MIT
// Algorithm 1: tau = +inf is uniform low and forcing every component is
// uniform high, bit for bit; matched baselines recompute exactly as many
// components per layer and sample; sweeps are deterministic and independent
// of the shard count.
#include <catch2/catch.hpp>

#include <cmath>
#include <optional>
#include <random>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "mpacc/analysis/sweep.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/rounding.hpp"
#include "../analysis/src/algorithm1_internal.hpp"  // detail::true_values (not installed)
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

io::dataset small_data(std::size_t rows, std::uint64_t seed) {
  io::dataset d;
  d.rows = rows;
  d.cols = 16;
  sim::random_stream rng(seed);
  for (std::size_t k = 0; k < rows * 16; ++k) d.x.push_back((rng.uniform() * 2 - 1) * 2);
  for (std::size_t s = 0; s < rows; ++s) d.y.push_back(static_cast<std::uint8_t>(rng() % 10));
  return d;
}

// the default low pass (e4m3-ieee accumulators), with the weights and biases used as they are
analysis::mixed_config as_stored() {
  analysis::mixed_config c;
  c.precision.weights = c.precision.biases = std::nullopt;
  return c;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k)
    if (!test::same(a[k], b[k])) return false;
  return true;
}

}  // namespace

TEST_CASE("the runner stores the weights and rounds the activations as its precision configuration says",
          "[analysis][algorithm1]") {
  const auto net = small_net(sim::activation::tanh, 11);  // e4m3-ieee weights and biases
  auto wide = net;  // the same scaled by 1.03: not e4m3 values, and e4m3 rounds them back to net's
  for (auto& l : wide.layers) {
    for (auto& w : l.W) w *= 1.03;
    for (auto& b : l.b) b *= 1.03;
  }
  const auto data = small_data(40, 12);
  analysis::selection low;
  low.type = analysis::selection::kind::uniform_low;
  // default configuration: weights and biases rounded to e4m3-ieee first
  REQUIRE(nn::stored_network(wide, analysis::mixed_config{}.precision).layers[1].W == net.layers[1].W);
  const auto a = analysis::mixed_runner(wide, data, 0, analysis::mixed_config{}, 1).run(low);
  const auto b = analysis::mixed_runner(net, data, 0, as_stored(), 1).run(low);
  CHECK(same_bits(a.logits, b.logits));
  const auto c = analysis::mixed_runner(wide, data, 0, as_stored(), 1).run(low);
  CHECK_FALSE(same_bits(a.logits, c.logits));
  // the uniform low pass is nn::simulate with the same configuration, activations
  // rounded toward zero to bfloat16 and products rounded included
  auto cfg = as_stored();
  cfg.precision.act = sim::formats::bfloat16;
  cfg.precision.act_rounding = sim::rounding::toward_zero;
  cfg.precision.product = sim::formats::binary16;
  cfg.precision.acc = {sim::formats::bfloat16, sim::formats::e5m2, sim::formats::binary16};  // one per layer
  const auto r = analysis::mixed_runner(wide, data, 0, cfg, 1).run(low);
  const auto pass = nn::simulate(wide, {data.x.data(), data.rows, data.cols}, cfg.precision, 1);
  CHECK(same_bits(r.logits, pass.back().y));
  // per-component maps are Algorithm 1's output, not its input
  cfg.precision.maps.assign(3, sim::precision_map::uniform(sim::formats::binary16));
  CHECK_THROWS_WITH(analysis::mixed_runner(net, data, 0, cfg, 1), Catch::Contains("per-component"));
}

TEST_CASE("tau = +inf is uniform low, forcing every component is uniform high", "[analysis][algorithm1]") {
  for (auto act : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = small_net(act, 3);
    const auto data = small_data(50, 4);
    analysis::mixed_config cfg = as_stored();
    cfg.precision.order = {sim::order::kind::blocked, 8};
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
  analysis::mixed_config cfg = as_stored();
  const analysis::mixed_runner R(net, data, 0, cfg, 2);
  for (double tau : {0.01, 0.1, 1.0}) {
    analysis::selection s;
    s.indicator = "kappa";
    s.tau = tau;
    const auto a = R.run(s);
    using K = analysis::selection::kind;
    for (auto kind : {K::random, K::random_active, K::smallest, K::oracle_pre, K::oracle_local, K::oracle_gain}) {
      analysis::selection m;
      m.type = kind;
      m.counts = &a.counts;
      m.keep_trace = true;
      const auto b = R.run(m);
      INFO(analysis::to_string(kind) << " tau " << tau);
      CHECK(b.counts == a.counts);
      CHECK(b.fraction == a.fraction);
      CHECK(analysis::parse_baseline(analysis::to_string(kind)) == kind);
      // random-active never picks an inactive ReLU unit (v_low < 0)
      if (kind == K::random_active)
        for (const auto& tr : b.trace)
          for (std::size_t t = 0; t < tr.recomputed.size(); ++t)
            if (tr.recomputed[t] && &tr != &b.trace.back()) CHECK(tr.v_low[t] >= 0);
      // the oracles by their definitions: every recomputed component's key is at
      // least every kept component's, per layer and sample
      if (kind == K::oracle_pre || kind == K::oracle_local || kind == K::oracle_gain)
        for (std::size_t k = 0; k < b.trace.size(); ++k) {
          const auto& tr = b.trace[k];
          const auto& l = net.layers[k];
          REQUIRE(tr.v_true.size() == tr.v_low.size());
          for (std::size_t smp = 0; smp < data.rows; ++smp) {
            double lo_picked = HUGE_VAL, hi_kept = -HUGE_VAL;
            for (std::size_t i = 0; i < l.n_out; ++i) {
              const std::size_t t = smp * l.n_out + i;
              const double y = sim::apply(l.act, tr.v_true[t]);
              const double key = kind == K::oracle_pre     ? std::fabs(tr.v_low[t] - tr.v_true[t])
                                 : kind == K::oracle_local ? std::fabs(sim::apply(l.act, tr.v_low[t]) - y)
                                                           : std::fabs(sim::apply(l.act, tr.v_low[t]) - y) -
                                                                 std::fabs(sim::apply(l.act, tr.v_high[t]) - y);
              (tr.recomputed[t] ? lo_picked : hi_kept) =
                  tr.recomputed[t] ? std::min(lo_picked, key) : std::max(hi_kept, key);
            }
            CHECK(lo_picked >= hi_kept);
          }
        }
    }
  }
  analysis::selection bad;
  bad.type = analysis::selection::kind::random;
  CHECK_THROWS_WITH(R.run(bad), Catch::Contains("needs the recomputation counts"));
  CHECK_THROWS_WITH(analysis::find_indicator("magic"), Catch::Contains("unknown indicator 'magic'"));
  CHECK_THROWS_WITH(analysis::parse_baseline("oracle"), Catch::Contains("unknown baseline 'oracle'"));
}

TEST_CASE("kprime recomputes ReLU units at v = 0; kprime-companion also keeps negative logits low",
          "[analysis][algorithm1]") {
  // a hand-made network whose low pass is exact (small dyadic values): hidden
  // v = (0, -2, 1, 0.5) with ReLU, logits v = (1, -0.5, 0.5, 0)
  auto net = nn::make_mlp({2, 4, 4}, {sim::activation::relu}, {sim::activation::identity});
  net.layers[0].W = {1, -1, 0, -1, 1, -0.5, 0.25, 0};
  net.layers[0].b = {0, 0, 0, 0};
  net.layers[1].W = {0, 0, 1, 0, 0, 0, -0.5, 0, 0, 0, 0, 1, 0, 0, 1, -2};
  net.layers[1].b = {0, 0, 0, 0};
  io::dataset d;
  d.rows = 1;
  d.cols = 2;
  d.x = {2, 2};
  d.y = {0};
  const analysis::mixed_runner R(net, d, 0, as_stored(), 1);
  auto mask = [&](const std::string& ind) {
    analysis::selection s;
    s.indicator = ind;
    s.tau = 1.5;
    s.keep_trace = true;
    const auto r = R.run(s);
    CHECK(r.trace[0].v_low == std::vector<double>{0, -2, 1, 0.5});
    CHECK(r.trace[1].v_low == std::vector<double>{1, -0.5, 0.5, 0});
    return std::make_pair(r.trace[0].recomputed, r.trace[1].recomputed);
  };
  using M = std::vector<std::uint8_t>;
  // hidden: v = 0 scores +inf, v < 0 scores 0, 1/|v| = 1 <= 1.5 stays, 1/0.5 = 2 > 1.5 recomputes
  CHECK(mask("kprime") == std::make_pair(M{1, 0, 0, 1}, M{0, 1, 1, 1}));
  CHECK(mask("kprime-companion") == std::make_pair(M{1, 0, 0, 1}, M{0, 0, 1, 1}));
  // the kappa indicators also recompute the ReLU unit at 0 and keep the negative one
  CHECK(mask("kappa").first[0] == 1);
  CHECK(mask("kappa").first[1] == 0);
  CHECK(mask("kappa-norm").first[0] == 1);
}

TEST_CASE("quantiles_of equals the nearest ranks of the sorted values", "[analysis][algorithm1]") {
  // quantiles_of selects its three ranks in stages (below 65,536 values) or
  // through a histogram of the values' top bits; sorting is the definition
  std::mt19937_64 g(7);
  for (std::size_t n : {1, 2, 3, 7, 10, 99, 100, 101, 1000, 4097, 65535, 65536, 300001}) {
    for (int rep = 0; rep < 5; ++rep) {
      std::vector<double> v(n);
      // few distinct values in some repetitions (ties), NaN and inf in others,
      // negative values and zeros of both signs in the last
      for (auto& x : v)
        x = rep == 1   ? static_cast<double>(g() % 3)
            : rep == 4 ? std::ldexp(static_cast<double>(static_cast<int>(g() % 2001) - 1000), -7)
                       : std::ldexp(static_cast<double>(g() % 1000), -5);
      if (rep == 4) v[g() % n] = -0.0;
      if (rep == 2) v[g() % n] = std::nan("");
      if (rep == 3) v[g() % n] = std::numeric_limits<double>::infinity();
      std::vector<double> sorted = v;
      for (auto& x : sorted)
        if (std::isnan(x)) x = std::numeric_limits<double>::infinity();
      std::sort(sorted.begin(), sorted.end());
      auto at = [&](double p) {
        const auto r = static_cast<std::size_t>(std::ceil(p * static_cast<double>(n)));
        return sorted[std::min(n - 1, r == 0 ? 0 : r - 1)];
      };
      const auto q = analysis::quantiles_of(v);
      CAPTURE(n, rep);
      CHECK(q.q50 == at(0.5));
      CHECK(q.q90 == at(0.9));
      CHECK(q.q99 == at(0.99));
      CHECK(q.max == sorted.back());
    }
  }
}

TEST_CASE("metrics on hand-computed cases", "[analysis][algorithm1]") {
  std::vector<double> v = {5, 1, 4, 2, 3, 6, 7, 8, 9, 10};
  const auto q = analysis::quantiles_of(v);
  CHECK(q.q50 == 5);  // nearest rank: ceil(0.5 * 10) = 5th smallest
  CHECK(q.q90 == 9);
  CHECK(q.q99 == 10);
  CHECK(q.max == 10);
  CHECK(q.n == 10);
  std::vector<double> with_nan = {1, std::nan(""), 2};
  CHECK(std::isinf(analysis::quantiles_of(with_nan).max));  // NaN counts as the worst
  // Wilson 95 %: 0 of 10 -> [0, 0.2775], 5 of 10 -> [0.2366, 0.7634]
  CHECK(analysis::wilson(0, 10).lo == 0);
  CHECK(analysis::wilson(0, 10).hi == Approx(0.27753).epsilon(1e-4));
  CHECK(analysis::wilson(5, 10).lo == Approx(0.23659).epsilon(1e-4));
  CHECK(analysis::wilson(5, 10).hi == Approx(0.76341).epsilon(1e-4));
  // McNemar exact: b = 0, c = 5: 2 * 2^-5; b = c: 1; b = 1, c = 9: 2 * (1 + 10) / 1024
  CHECK(analysis::mcnemar_p(0, 5) == Approx(0.0625));
  CHECK(analysis::mcnemar_p(3, 3) == 1);
  CHECK(analysis::mcnemar_p(1, 9) == Approx(22.0 / 1024));
  // KL(softmax(0, 0) || softmax(ln 3, 0)) = 0.5 ln(0.5 / 0.75) + 0.5 ln(0.5 / 0.25) = 0.5 ln(4/3)
  const double p[] = {0, 0}, qq[] = {std::log(3.0), 0}, big[] = {1000, 0}, inf[] = {HUGE_VAL, 0};
  CHECK(analysis::kl_softmax(p, qq, 2) == Approx(0.5 * std::log(4.0 / 3)));
  CHECK(analysis::kl_softmax(p, p, 2) == 0);
  CHECK(analysis::kl_softmax(big, big, 2) == 0);  // no overflow
  CHECK(std::isinf(analysis::kl_softmax(p, inf, 2)));
}

TEST_CASE("the saturation switch changes a pass only where a value saturates", "[analysis][algorithm1]") {
  auto net = small_net(sim::activation::relu, 21);
  for (auto& w : net.layers[0].W) w *= 64;  // e4m3-ieee's largest finite is 240: some sums overflow
  const auto data = small_data(40, 22);
  analysis::mixed_config cfg = as_stored();
  analysis::selection low;
  low.type = analysis::selection::kind::uniform_low;
  low.keep_trace = true;
  cfg.precision.saturate = false;
  const auto off = analysis::mixed_runner(net, data, 0, cfg, 1).run(low);
  cfg.precision.saturate = true;
  const auto on = analysis::mixed_runner(net, data, 0, cfg, 1).run(low);
  std::size_t saturated = 0;
  const auto& a = off.trace[0].v_low;
  const auto& b = on.trace[0].v_low;
  for (std::size_t t = 0; t < a.size(); ++t) {
    if (std::isfinite(a[t])) {
      CHECK(test::same(a[t], b[t]));
    } else {
      ++saturated;
      CHECK(std::fabs(b[t]) == sim::formats::e4m3_ieee.max_finite);
      CHECK(std::signbit(b[t]) == std::signbit(a[t]));
    }
  }
  CHECK(saturated > 0);
}

TEST_CASE("networks trained by a sweep do not depend on how many are trained at once", "[analysis][algorithm1]") {
  // two networks missing: trained side by side (train_missing); then one of them
  // alone, as a sweep with one thread trains it: the same file, byte for byte
  const fs::path dir = fs::temp_directory_path() / ("mpacc_train_" + std::to_string(::getpid()));
  fs::create_directories(dir / "data" / "mnist");
  auto write_set = [&](const std::string& prefix, int n, std::uint64_t seed) {
    std::ofstream img(dir / "data" / "mnist" / (prefix + "-images-idx3-ubyte"), std::ios::binary);
    const unsigned char hdr[] = {0, 0, 8, 3, 0, 0, 0, static_cast<unsigned char>(n), 0, 0, 0, 4, 0, 0, 0, 4};
    img.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    sim::random_stream rng(seed);
    for (int k = 0; k < n * 16; ++k) img.put(static_cast<char>(rng() & 0xff));
    std::ofstream lab(dir / "data" / "mnist" / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
    const unsigned char lh[] = {0, 0, 8, 1, 0, 0, 0, static_cast<unsigned char>(n)};
    lab.write(reinterpret_cast<const char*>(lh), sizeof lh);
    for (int k = 0; k < n; ++k) lab.put(static_cast<char>(k % 10));
  };
  write_set("train", 100, 3);
  write_set("t10k", 20, 4);
  analysis::sweep_config c;
  c.networks = {{"mnist", "relu", "", {12}, {}, "", {}}, {"mnist", "tanh", "", {10, 6}, {}, "", {}}};
  c.samples = 0;
  c.taus = {0.5};
  c.indicators = {"kprime-companion"};
  c.baselines = {};
  c.orders = {{sim::order::kind::blocked, 8}};
  c.epochs = 2;
  c.train_limit = 0;
  c.data_dir = dir / "data";
  c.models_dir = dir / "models";
  c.diagnostics = false;
  c.threads = 2;
  c.out = dir / "both";
  analysis::run_sweep(c, 0, 1);
  auto bytes = [](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir / "models")) files.push_back(e.path());
  REQUIRE(files.size() == 2);
  for (const auto& f : files) {
    const std::string side_by_side = bytes(f);
    fs::remove(f);
    c.threads = 1;
    c.out = dir / "alone";
    analysis::run_sweep(c, 0, 1);
    CAPTURE(f.string());
    CHECK(bytes(f) == side_by_side);
  }
  fs::remove_all(dir);
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
  io::save_model(small_net(sim::activation::relu, 11), dir / "net.mpnn");
  analysis::sweep_config c;
  c.networks = {{"mnist", "relu", (dir / "net.mpnn").string(), {784, 128}, {}, "", {}}};
  c.samples = 0;
  c.taus = {0.05, 0.5};
  c.data_dir = dir / "data";
  c.threads = 1;
  auto results = [&](const std::string& name, std::size_t shards) {
    c.out = dir / name;
    for (std::size_t i = 0; i < shards; ++i) analysis::run_sweep(c, i, shards);
    return analysis::merge_sweep(c, 0);
  };
  auto csv = [](const std::vector<analysis::result_row>& rows) {
    std::string s;
    for (const auto& r : rows) s += analysis::to_csv(r);
    return s;
  };
  const auto one = csv(results("one", 1));
  const auto again = csv(results("again", 1));
  const auto three = csv(results("three", 3));
  CHECK(one == again);
  CHECK(one == three);
  // 4 uniform rows + 2 indicators x 2 tolerances x (Algorithm 1 + 5 random-active seeds + the local oracle)
  CHECK(std::count(one.begin(), one.end(), '\n') == 4 + 2 * 2 * 7);
  CHECK(fs::exists(dir / "one" / "manifest.json"));
  CHECK(fs::exists(dir / "one" / "report.md"));
  // rows survive the text form
  for (const auto& r : results("one", 1))
    CHECK(analysis::to_csv(analysis::parse_csv_row(analysis::to_csv(r).substr(0, analysis::to_csv(r).size() - 1))) ==
          analysis::to_csv(r));
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
  CHECK(csv(analysis::merge_sweep(c, 0)) == one);
  fs::remove_all(dir);
}

TEST_CASE("the reference logits take the stored inputs, or the exact data on request", "[analysis][algorithm1]") {
  const auto net = small_net(sim::activation::tanh, 9);
  const auto data = small_data(40, 10);
  analysis::mixed_config cfg = as_stored();
  cfg.precision.inputs = sim::formats::e4m3_ieee;  // a coarse storage: its error shows in the logits
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

TEST_CASE("the per-term and tile costs on hand-counted cases", "[analysis][algorithm1]") {
  const auto net = small_net(sim::activation::relu, 31);  // 16 -> 24 -> 12 -> 10
  const auto data = small_data(40, 32);
  analysis::mixed_config cfg = as_stored();  // e4m3-ieee 8, binary16 16 per term
  cfg.tile_rows = 24;                        // a tile: every component of layer 1 for 16 samples
  cfg.tile_samples = 16;
  const analysis::mixed_runner R(net, data, 0, cfg, 1);
  const double high = 16.0 * 40 * (24 * 16 + 12 * 24 + 10 * 12);  // uniform high, in bit-terms
  analysis::selection s;
  s.type = analysis::selection::kind::uniform_low;
  CHECK(R.run(s).weighted_cost == Approx(0.5));
  CHECK(R.run(s).tile_cost == Approx(0.5));
  s.type = analysis::selection::kind::uniform_high;
  CHECK(R.run(s).weighted_cost == Approx(1));
  CHECK(R.run(s).tile_cost == Approx(1));
  // one recomputed component (layer 1, sample 0): 16 terms at 16 per term; its
  // tile holds 24 components x 16 samples of 16 terms each
  std::vector<std::vector<std::size_t>> counts = {std::vector<std::size_t>(40, 0), std::vector<std::size_t>(40, 0),
                                                  std::vector<std::size_t>(40, 0)};
  counts[0][0] = 1;
  analysis::selection m;
  m.type = analysis::selection::kind::random;
  m.counts = &counts;
  const auto r = R.run(m);
  CHECK(r.weighted_cost == Approx(0.5 + 16.0 * 16 / high));
  CHECK(r.tile_cost == Approx(0.5 + 24.0 * 16 * 16 * 16 / high));
  CHECK(r.fraction == Approx(1.0 / (40 * (24 + 12 + 10))));
  // samples 32..39 form the last, shorter tile
  counts[0][0] = 0;
  counts[0][39] = 1;
  CHECK(R.run(m).tile_cost == Approx(0.5 + 24.0 * 8 * 16 * 16 / high));
}

// ---------------------------------------------------------------------------
// precision ladders, static configurations, overflow-aware recomputation

TEST_CASE("a ladder whose middle level is the high format equals Algorithm 1 bit for bit", "[analysis][ladder]") {
  for (auto act : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = small_net(act, 41);
    const auto data = small_data(30, 42);
    auto cfg = as_stored();
    cfg.ladder = {cfg.high};  // e4m3-ieee < binary16 < binary16
    const analysis::mixed_runner R(net, data, 0, cfg, 1);
    for (double tau : {0.01, 0.3, 1.0}) {
      analysis::selection a1;
      a1.indicator = "kprime";
      a1.tau = tau;
      auto lad = a1;
      lad.ladder = true;
      const auto r1 = R.run(a1), r2 = R.run(lad);
      CHECK(same_bits(r1.logits, r2.logits));
      CHECK(r1.counts == r2.counts);
      CHECK(r1.weighted_cost == Approx(r2.weighted_cost));
      CHECK(r2.level_fraction.size() == 3);
      // and the ladder flag on a runner without a ladder is Algorithm 1 itself
      const analysis::mixed_runner R2(net, data, 0, as_stored(), 1);
      const auto r3 = R2.run(lad);
      CHECK(same_bits(r1.logits, r3.logits));
      CHECK(r1.tile_cost == Approx(r3.tile_cost));
    }
  }
}

TEST_CASE("ladder levels and costs on a hand-made layer", "[analysis][ladder]") {
  // one identity layer 4 -> 3, exact in e4m3: scores 0.5, 8, 100 from a fixed indicator
  analysis::register_indicator({"test-fixed-scores",
                                [](const analysis::layer_view& lv, std::vector<double>& score) {
                                  for (std::size_t t = 0; t < score.size(); ++t)
                                    score[t] = std::vector<double>{0.5, 8, 100}[t % lv.n_out];
                                },
                                [](const analysis::layer_view&) { return 0.0; }});
  auto net = nn::make_mlp({4, 3}, {sim::activation::identity}, {sim::activation::identity});
  net.layers[0].W = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
  net.layers[0].b = {0, 0, 0};
  io::dataset d;
  d.rows = 2;
  d.cols = 4;
  d.x = {1, 2, 3, 4, 1, 1, 1, 1};
  d.y = {0, 1};
  auto cfg = as_stored();
  cfg.ladder = {sim::formats::bfloat16};  // u: e4m3-ieee 2^-4, bfloat16 2^-8 (scale 1/16), binary16 2^-11
  cfg.term_cost = {{"e4m3-ieee", 8}, {"bfloat16", 12}, {"binary16", 16}};
  const analysis::mixed_runner R(net, d, 0, cfg, 1);
  analysis::selection s;
  s.indicator = "test-fixed-scores";
  s.tau = 1;
  s.ladder = true;
  s.keep_trace = true;
  const auto r = R.run(s);
  // 0.5 <= 1: low; 8 / 16 = 0.5 <= 1: bfloat16; 100 / 16 > 1: binary16
  CHECK(r.trace[0].level == std::vector<std::uint8_t>{0, 1, 2, 0, 1, 2});
  REQUIRE(r.level_fraction.size() == 3);
  CHECK(r.level_fraction[1] == Approx(1.0 / 3));
  // per term: all 6 components x 4 terms at 8, plus 2 at 12 and 2 at 16 (x 4 terms), over 6 x 4 x 16
  CHECK(r.weighted_cost == Approx((6 * 4 * 8 + 2 * 4 * 12 + 2 * 4 * 16) / (6.0 * 4 * 16)));
  // one tile (16 x 16) holds the whole layer: it pays for each level present
  CHECK(r.tile_cost == Approx((6 * 4 * 8 + 6 * 4 * 12 + 6 * 4 * 16) / (6.0 * 4 * 16)));
  // a static run of the same levels pays no low pass and no estimate
  std::vector<std::vector<std::uint8_t>> levels = {{0, 1, 2}};
  analysis::selection st;
  st.type = analysis::selection::kind::static_map;
  st.ladder = true;
  st.static_levels = &levels;
  const auto rs = R.run(st);
  CHECK(same_bits(rs.logits, r.logits));
  CHECK(rs.weighted_cost == Approx((2 * 4 * 8 + 2 * 4 * 12 + 2 * 4 * 16) / (6.0 * 4 * 16)));
}

TEST_CASE("a static map calibrated with the max on one sample reproduces the dynamic run; as a precision config",
          "[analysis][static]") {
  for (auto act : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = small_net(act, 51);
    const auto data = small_data(25, 52);
    auto cfg = as_stored();
    cfg.ladder = {sim::formats::bfloat16};
    for (bool ladder : {false, true}) {
      analysis::selection dyn;
      dyn.indicator = "kprime-companion";
      dyn.tau = 0.3;
      dyn.ladder = ladder;
      dyn.keep_trace = true;
      for (std::size_t sample = 0; sample < 3; ++sample) {
        io::dataset one = data;  // the sample alone
        one.rows = 1;
        one.x.assign(data.x.begin() + static_cast<std::ptrdiff_t>(sample * 16),
                     data.x.begin() + static_cast<std::ptrdiff_t>((sample + 1) * 16));
        one.y = {data.y[sample]};
        const analysis::mixed_runner R1(net, one, 0, cfg, 1);
        const auto levels = analysis::calibrate_levels(R1, dyn, 1.0);
        const auto d = R1.run(dyn);
        for (std::size_t k = 0; k < levels.size(); ++k) CHECK(levels[k] == d.trace[k].level);
        analysis::selection st;
        st.type = analysis::selection::kind::static_map;
        st.ladder = ladder;
        st.static_levels = &levels;
        CHECK(same_bits(R1.run(st).logits, d.logits));
      }
      // on all samples: the static run equals nn::simulate with the calibrated configuration
      const analysis::mixed_runner R(net, data, 0, cfg, 1);
      for (double q : {0.5, 0.9, 1.0}) {
        const auto levels = analysis::calibrate_levels(R, dyn, q);
        analysis::selection st;
        st.type = analysis::selection::kind::static_map;
        st.ladder = ladder;
        st.static_levels = &levels;
        const auto p = analysis::static_precision(cfg, levels, ladder);
        const auto back = nn::parse_precision_json(p.to_json());  // and it survives its JSON form
        CHECK(back == p);
        const auto pass = nn::simulate(net, {data.x.data(), data.rows, data.cols}, back, 1);
        CHECK(same_bits(R.run(st).logits, pass.back().y));
      }
      // a larger quantile never lowers a component's level
      const auto l50 = analysis::calibrate_levels(R, dyn, 0.5), l100 = analysis::calibrate_levels(R, dyn, 1.0);
      for (std::size_t k = 0; k < l50.size(); ++k)
        for (std::size_t i = 0; i < l50[k].size(); ++i) CHECK(l50[k][i] <= l100[k][i]);
    }
  }
}

TEST_CASE("overflow-aware runs recompute exactly the components whose low pass overflowed", "[analysis][overflow]") {
  // inputs scaled so that e4m3-ieee accumulators (largest finite 240) overflow on some outputs
  const auto net = small_net(sim::activation::relu, 61);
  auto data = small_data(20, 62);
  for (auto& x : data.x) x *= 200;
  auto cfg = as_stored();
  cfg.precision.saturate = true;
  const analysis::mixed_runner R(net, data, 0, cfg, 1);
  analysis::selection s;
  s.indicator = "kprime";
  s.tau = std::numeric_limits<double>::infinity();  // the indicator recomputes nothing
  s.overflow_aware = true;
  s.keep_trace = true;
  const auto r = R.run(s);
  REQUIRE(r.overflow_recomputed > 0);
  // layer by layer: recomputed exactly where sim::dot on the same inputs flags an overflow or saturation
  std::vector<double> in(data.x.begin(), data.x.end());
  for (auto& x : in) x = sim::round(x, cfg.precision.inputs);
  std::size_t flagged = 0;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& l = net.layers[k];
    sim::accumulation a = cfg.precision.layer_spec(k).base;
    std::vector<double> out(data.rows * l.n_out);
    for (std::size_t smp = 0; smp < data.rows; ++smp)
      for (std::size_t i = 0; i < l.n_out; ++i) {
        const auto d = sim::dot({l.row(i), l.n_in}, {in.data() + smp * l.n_in, l.n_in}, l.b[i], a);
        const bool over = (d.flags & (sim::flag::overflow | sim::flag::saturated)) != 0;
        const std::size_t t = smp * l.n_out + i;
        CHECK(r.trace[k].recomputed[t] == (over ? 1 : 0));
        CHECK(test::same(r.trace[k].v_low[t], d.value));
        flagged += over;
        out[t] = over ? r.trace[k].v_high[t] : d.value;
      }
    nn::apply_activation(l, cfg.precision.act, out, 1);
    in.swap(out);
  }
  CHECK(flagged == r.overflow_recomputed);
  // without the option, the same run recomputes nothing
  s.overflow_aware = false;
  CHECK(R.run(s).fraction == 0);
}

TEST_CASE("recomputing only the selected components gives the bits of the whole high pass", "[analysis][algorithm1]") {
  // A run without a trace computes layers 2.. in high precision only where the
  // level is the top one (prepared_dense::run_selected); with a trace, the whole
  // high pass. Every strategy must give the same logits, counts and costs both ways.
  using kind = analysis::selection::kind;
  for (auto a : {sim::activation::relu, sim::activation::tanh}) {
    const auto net = small_net(a, 41 + static_cast<std::uint64_t>(a));
    const auto data = small_data(37, 43);
    auto cfg = as_stored();
    cfg.ladder = {sim::formats::e5m2};
    cfg.precision.saturate = true;
    const analysis::mixed_runner R(net, data, 0, cfg, 2);
    analysis::selection t;
    t.type = kind::threshold;
    t.indicator = "kprime-companion";
    t.tau = 0.3;
    const auto a1 = R.run(t);
    REQUIRE(a1.fraction > 0.05);
    REQUIRE(a1.fraction < 0.95);
    std::vector<analysis::selection> sels;
    sels.push_back(t);
    auto lad = t;
    lad.ladder = true;
    sels.push_back(lad);
    for (auto b :
         {kind::random, kind::random_active, kind::smallest, kind::oracle_pre, kind::oracle_local, kind::oracle_gain}) {
      analysis::selection m;
      m.type = b;
      m.counts = &a1.counts;
      m.seed = 3;
      sels.push_back(m);
    }
    for (std::size_t q = 0; q < sels.size(); ++q) {
      auto traced = sels[q];
      traced.keep_trace = true;
      const auto x = R.run(sels[q]), y = R.run(traced);
      INFO("selection " << q);
      CHECK(same_bits(x.logits, y.logits));
      CHECK(x.counts == y.counts);
      CHECK(x.weighted_cost == y.weighted_cost);
      CHECK(x.tile_cost == y.tile_cost);
      CHECK(x.rel_hidden.q99 == y.rel_hidden.q99);
    }
  }
}

TEST_CASE("the oracles' binary64 values: four partial sums per inner product, bit for bit, any size", "[analysis]") {
  // the documented sums: a_r takes the terms j = r mod 4 of the first 4 floor(n/4),
  // a_0 starts at b and takes the tail, then (a_0 + a_1) + (a_2 + a_3)
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u(-1, 1);
  // the AVX2 clone where the processor has it, then the baseline one (forced)
  for (const bool baseline : {false, true}) {
    std::optional<test::forced_kernel> force;
    if (baseline) force.emplace(sim::dense_kernel::portable);
    for (std::size_t n_in : {1, 2, 3, 4, 5, 7, 8, 9, 13, 64})
      for (std::size_t batch : {1, 2, 3, 4, 5, 6, 9}) {
        nn::dense_layer l;
        l.n_in = n_in;
        l.n_out = 3;
        for (std::size_t t = 0; t < l.n_out * n_in; ++t)
          l.W.push_back(u(rng) * std::ldexp(1.0, static_cast<int>(t % 40) - 20));
        for (std::size_t i = 0; i < l.n_out; ++i) l.b.push_back(u(rng));
        std::vector<double> x;
        for (std::size_t t = 0; t < batch * n_in; ++t)
          x.push_back(u(rng) * std::ldexp(1.0, static_cast<int>(t % 30) - 15));
        std::vector<double> v;
        analysis::detail::true_values(l, x, batch, v, 2);
        REQUIRE(v.size() == batch * l.n_out);
        std::size_t bad = 0;
        for (std::size_t s = 0; s < batch; ++s)
          for (std::size_t i = 0; i < l.n_out; ++i) {
            double a[4] = {l.b[i], 0, 0, 0};
            const std::size_t main = n_in / 4 * 4;
            for (std::size_t j = 0; j < main; ++j) {
              // a product, then a sum (volatile: never contracted to an FMA)
              const volatile double p = l.W[i * n_in + j] * x[s * n_in + j];
              a[j % 4] += p;
            }
            for (std::size_t j = main; j < n_in; ++j) {
              const volatile double p = l.W[i * n_in + j] * x[s * n_in + j];
              a[0] += p;
            }
            bad += !test::same((a[0] + a[1]) + (a[2] + a[3]), v[s * l.n_out + i]);
          }
        INFO("n_in " << n_in << " batch " << batch << " baseline " << baseline);
        CHECK(bad == 0);
      }
  }
}
