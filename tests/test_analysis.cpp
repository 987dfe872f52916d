// The componentwise analysis: zero deterministic violations through whole
// networks for every order, product model and accumulator; a constructed
// worst case reaches the bound within a small factor; probabilistic
// violations stay below the stated probability; summaries and reports.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "mpacc/analysis/validate.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "support.hpp"

#include <unistd.h>

using namespace mpacc;

namespace {

nn::mlp random_net(const std::vector<std::size_t>& sizes, sim::activation a, std::uint64_t seed) {
  sim::random_stream rng(seed);
  auto net = nn::make_mlp(sizes, {a, 0.01}, {sim::activation::identity});
  for (auto& l : net.layers) {
    const double s = 2 / std::sqrt(static_cast<double>(l.n_in));
    for (auto& w : l.W) w = sim::round((rng.uniform() * 2 - 1) * s, sim::formats::e4m3_ieee);
    for (auto& b : l.b) b = sim::round((rng.uniform() * 2 - 1) * 0.2, sim::formats::e4m3_ieee);
  }
  return net;
}

nn::dataset synthetic_data(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  nn::dataset d;
  d.rows = rows;
  d.cols = cols;
  sim::random_stream rng(seed);
  for (std::size_t k = 0; k < rows * cols; ++k) d.x.push_back((rng.uniform() * 2 - 1) * 2);
  d.y.assign(rows, 0);
  return d;
}

}  // namespace

TEST_CASE("no deterministic violation through whole networks", "[analysis]") {
  using K = sim::order::kind;
  for (auto act : {sim::activation::relu, sim::activation::tanh, sim::activation::sigmoid, sim::activation::gelu}) {
    const auto net = random_net({40, 32, 24, 10}, act, 7 + static_cast<std::uint64_t>(act));
    const auto data = synthetic_data(24, 40, 3);
    analysis::validate_options opt;
    opt.csv_samples = 0;
    opt.precision = 128;
    const auto ref = analysis::compute_reference(net, data, opt);
    for (const char* acc : {"e4m3-ieee", "e5m2", "bfloat16", "binary16", "e2m1"})
      for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}, sim::order{K::pairwise, 8}})
        for (int prod = 0; prod < 2; ++prod)
          for (auto mode : {sim::rounding::nearest_even, sim::rounding::toward_zero, sim::rounding::stochastic}) {
            analysis::simulation_config cfg;
            cfg.layer.acc = sim::precision_map::uniform(sim::parse_format(acc));
            cfg.layer.base.ord = ord;
            cfg.layer.base.mode = mode;
            cfg.layer.base.saturate = true;
            if (prod) cfg.layer.base.product = sim::formats::bfloat16;
            const auto r = analysis::validate(net, ref, cfg, opt);
            const auto& all = r.layers.back();
            INFO(r.config << " act=" << sim::to_string(act));
            CHECK(all.components == 24 * (32 + 24 + 10));
            CHECK(all.violations_v == 0);
            CHECK(all.violations_y == 0);
          }
  }
}

TEST_CASE("a constructed worst case reaches the deterministic bound within a factor 1.3", "[analysis]") {
  // s = 1, then n tiny positive terms under upward rounding: every addition
  // rounds up by a whole ulp of 1, the largest error each step allows.
  for (int n : {10, 100, 400}) {
    std::vector<double> w(static_cast<std::size_t>(n) + 1, 1.0), x(static_cast<std::size_t>(n) + 1, 0x1p-40);
    x[0] = 1;
    sim::accumulation a;
    a.acc = sim::formats::binary16;
    a.mode = sim::rounding::upward;
    const auto r = sim::dot(w, x, 0.0, a);
    const double exact = 1 + n * 0x1p-40;
    const double err = r.value - exact;
    const double bound = sim::deterministic_bound(w, x, 0.0, a);
    INFO("n=" << n << " err=" << err << " bound=" << bound);
    CHECK(err <= bound);
    CHECK(err * 1.3 >= bound);  // the bound charges n + 2 roundings to the leading term, and (1+u)^k - 1 > k u
  }
}

TEST_CASE("probabilistic bound: violations on random data stay below the stated probability", "[analysis]") {
  sim::random_stream rng(11);
  const double lambda = 4;
  for (const auto& f : {sim::formats::binary16, sim::formats::bfloat16}) {
    sim::accumulation a;
    a.acc = f;
    const std::size_t n = 200, trials = 4000;
    std::size_t violations = 0;
    for (std::size_t t = 0; t < trials; ++t) {
      std::vector<double> w(n), x(n);
      for (std::size_t j = 0; j < n; ++j) {
        w[j] = sim::round(rng.uniform(), f);
        x[j] = sim::round(rng.uniform(), f);
      }
      const auto r = sim::dot(w, x, 0.0, a);
      const auto ex = ref::dot_exact(w, x, 0.0);
      ref::mpfr_float e(64);
      mpfr_sub_d(e.get(), ex.value.get(), r.value, MPFR_RNDN);
      const double err = std::fabs(mpfr_get_d(e.get(), MPFR_RNDU));
      violations += err > sim::accumulation_bound(w, x, 0.0, a, sim::gamma_probabilistic, lambda);
    }
    const double u = sim::unit_roundoff(f, a.mode);
    const double stated = 1 - analysis::probabilistic_confidence(n + 1, u, lambda);
    INFO(sim::to_string(f) << " violations " << violations << " of " << trials << ", stated failure probability " << stated);
    CHECK(static_cast<double>(violations) / static_cast<double>(trials) <= stated);
    // and the probabilistic bound is much tighter than the deterministic one
    std::vector<double> w(n, 0.5), x(n, 0.5);
    CHECK(sim::accumulation_bound(w, x, 0.0, a, sim::gamma_probabilistic, lambda) <
          0.5 * sim::deterministic_bound(w, x, 0.0, a));
  }
}

TEST_CASE("kappa, derivative bounds and reports", "[analysis]") {
  const std::vector<double> w = {1, -1, 0.5}, x = {2, 2, 1};
  CHECK(analysis::kappa_dot(w, x, 0.25, 0.75) == Approx(4.75 / 0.75).epsilon(1e-15));
  CHECK(std::isinf(analysis::kappa_dot(w, x, -0.5, 0.0)));
  CHECK(analysis::max_derivative({sim::activation::relu}, -2, -1) == 0);
  CHECK(analysis::max_derivative({sim::activation::relu}, -2, 1) == 1);
  CHECK(analysis::max_derivative({sim::activation::tanh}, 1, 2) >= 1 - std::tanh(1.0) * std::tanh(1.0));
  CHECK(analysis::max_derivative({sim::activation::tanh}, 1, 2) <= (1 - std::tanh(1.0) * std::tanh(1.0)) * (1 + 1e-10));
  CHECK(analysis::max_derivative({sim::activation::sigmoid}, -1, 3) == 0.25);
  // a report: CSV rows, JSON summary, plots (when gnuplot is installed)
  const auto net = random_net({12, 8, 10}, sim::activation::relu, 5);
  const auto data = synthetic_data(6, 12, 2);
  analysis::validate_options opt;
  opt.csv_samples = 3;
  const auto ref = analysis::compute_reference(net, data, opt);
  analysis::simulation_config cfg;
  cfg.layer.acc = sim::precision_map::uniform(sim::formats::e4m3_ieee);
  const auto r = analysis::validate(net, ref, cfg, opt);
  const auto dir = std::filesystem::temp_directory_path() / ("mpacc_report_" + std::to_string(::getpid()));
  analysis::write_report(r, dir, "{\"test\":true}", false);
  std::ifstream csv(dir / "components.csv");
  std::size_t lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  CHECK(lines == 1 + 3 * (8 + 10));
  std::ifstream js(dir / "summary.json");
  const std::string text((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Catch::Contains("\"violations_deterministic_y\": 0") && Catch::Contains("\"test\": true"));
  std::filesystem::remove_all(dir);
}
