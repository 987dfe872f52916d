// SPDX-License-Identifier: MIT
// The componentwise analysis: zero deterministic violations through whole
// networks for every order, product model and accumulator; a constructed
// worst case reaches the bound within a small factor; probabilistic
// violations stay below the stated probability; summaries and reports.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "support.hpp"

#include <unistd.h>

using namespace mpacc;

namespace {

// a precision configuration that uses the weights and biases as they are
nn::precision_config as_stored() {
  nn::precision_config p;
  p.weights = p.biases = std::nullopt;
  return p;
}

}  // namespace

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

io::dataset synthetic_data(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  io::dataset d;
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
    const auto ref = analysis::compute_reference(net, data, opt, as_stored());
    for (const char* acc : {"e4m3-ieee", "e5m2", "bfloat16", "binary16", "e2m1"})
      for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}, sim::order{K::pairwise, 8}})
        for (int prod = 0; prod < 2; ++prod)
          for (auto mode : {sim::rounding::nearest_even, sim::rounding::toward_zero, sim::rounding::stochastic}) {
            nn::precision_config cfg = as_stored();
            cfg.acc = {sim::parse_format(acc)};
            cfg.order = ord;
            cfg.rounding = mode;
            cfg.saturate = true;
            if (prod) cfg.product = sim::formats::bfloat16;
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
    const double bound = analysis::deterministic_bound(w, x, 0.0, a);
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
      violations += err > analysis::accumulation_bound(w, x, 0.0, a, analysis::gamma_probabilistic, lambda);
    }
    const double u = analysis::unit_roundoff(f, a.mode);
    const double stated = 1 - analysis::probabilistic_confidence(n + 1, u, lambda);
    INFO(sim::to_string(f) << " violations " << violations << " of " << trials << ", stated failure probability "
                           << stated);
    CHECK(static_cast<double>(violations) / static_cast<double>(trials) <= stated);
    // and the probabilistic bound is much tighter than the deterministic one
    std::vector<double> w(n, 0.5), x(n, 0.5);
    CHECK(analysis::accumulation_bound(w, x, 0.0, a, analysis::gamma_probabilistic, lambda) <
          0.5 * analysis::deterministic_bound(w, x, 0.0, a));
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
  const auto ref = analysis::compute_reference(net, data, opt, as_stored());
  nn::precision_config cfg = as_stored();
  cfg.acc = {sim::formats::e4m3_ieee};
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

namespace {

// Validation options of the small tests: `csv` samples kept, a 128-bit reference.
analysis::validate_options options(std::size_t csv) {
  analysis::validate_options opt;
  opt.csv_samples = csv;
  opt.precision = 128;
  return opt;
}

nn::precision_config config_of(const char* acc, sim::order ord = {sim::order::kind::blocked, 8}) {
  nn::precision_config cfg = as_stored();
  cfg.acc = {sim::parse_format(acc)};
  cfg.order = ord;
  return cfg;
}

}  // namespace

TEST_CASE("non-finite values are uncovered with their cause, never silently bounded", "[analysis]") {
  // activations rounded to a format whose largest value is 0.75: large ReLU
  // outputs overflow to inf, and every later component depends on them
  const auto net = random_net({40, 32, 24, 10}, sim::activation::relu, 21);
  const auto data = synthetic_data(16, 40, 4);
  const auto opt = options(16);
  const auto ref = analysis::compute_reference(net, data, opt, as_stored());
  auto cfg = config_of("binary16");
  cfg.act = sim::parse_format("p=2,emin=-2,emax=-1");
  const auto r = analysis::validate(net, ref, cfg, opt);
  const auto& all = r.total();
  using C = analysis::uncovered_cause;
  CHECK(r.violations() == 0);
  CHECK(all.uncovered_by_cause[static_cast<std::size_t>(C::activation)] > 0);
  CHECK(all.uncovered_by_cause[static_cast<std::size_t>(C::inherited)] > 0);
  CHECK(all.uncovered == all.uncovered_by_cause[static_cast<std::size_t>(C::activation)] +
                             all.uncovered_by_cause[static_cast<std::size_t>(C::inherited)]);
  // every non-finite simulated output is uncovered, and carries the flags that explain it
  std::size_t nonfinite = 0;
  for (const auto& sample : r.csv_rows)
    for (const auto& c : sample) {
      if (!std::isfinite(c.y_sim)) {
        ++nonfinite;
        CHECK(!c.covered());
        CHECK(((c.flags_act | c.flags | c.flags_in) & sim::flag::overflow) != 0);
      }
      if (c.cause == static_cast<std::uint8_t>(C::activation)) CHECK((c.flags_act & sim::flag::overflow) != 0);
      if (!c.covered()) CHECK(std::isinf(c.bound_y));
    }
  CHECK(nonfinite > 0);

  // inputs that overflow their storage format: the stored reference is refused,
  // the exact one reports the first layer's components as uncovered (input)
  nn::precision_config narrow = config_of("binary16");
  narrow.inputs = sim::parse_format("p=4,emin=-4,emax=0");  // largest value 1.875; the data reach 2
  CHECK_THROWS_WITH(analysis::compute_reference(net, data, opt, narrow), Catch::Contains("is not finite once stored"));
  auto opt_exact = opt;
  opt_exact.ref_inputs = analysis::reference_inputs::exact;
  const auto ref_exact = analysis::compute_reference(net, data, opt_exact, narrow);
  const auto ri = analysis::validate(net, ref_exact, narrow, opt_exact);
  CHECK(ri.inputs_overflow > 0);
  CHECK(ri.layers[0].uncovered_by_cause[static_cast<std::size_t>(C::input)] > 0);
  CHECK(ri.violations() == 0);
  // a reference computed for other stored inputs is refused
  CHECK_THROWS_WITH(analysis::validate(net, ref, narrow, opt), Catch::Contains("stored in binary32"));
}

TEST_CASE("validate detects a wrong reference: violations and non-finite reference values", "[analysis]") {
  const auto net = random_net({40, 32, 10}, sim::activation::tanh, 22);
  const auto data = synthetic_data(8, 40, 5);
  const auto opt = options(0);
  const auto good = analysis::compute_reference(net, data, opt, as_stored());
  const auto cfg = config_of("bfloat16");
  REQUIRE(analysis::validate(net, good, cfg, opt).violations() == 0);
  auto shifted = good;  // one pre-activation off by far more than its bound
  shifted.ref.layers[0].v_hi[3] += 0.5;
  const auto rs = analysis::validate(net, shifted, cfg, opt);
  CHECK(rs.layers[0].violations_v == 1);
  CHECK(rs.violations() >= 1);
  auto nan_ref = good;
  nan_ref.ref.layers[1].y_hi[2] = std::numeric_limits<double>::quiet_NaN();
  const auto rn = analysis::validate(net, nan_ref, cfg, opt);
  CHECK(rn.layers[1].uncovered_by_cause[static_cast<std::size_t>(analysis::uncovered_cause::reference)] == 1);
}

TEST_CASE("per-inner-product checks: deterministic bound exact, probabilistic frequencies, vacuous bounds",
          "[analysis]") {
  const auto net = random_net({200, 64, 10}, sim::activation::relu, 23);
  const auto data = synthetic_data(60, 200, 6);
  const auto opt = options(0);
  const auto ref = analysis::compute_reference(net, data, opt, as_stored());
  using K = sim::order::kind;
  for (const char* acc : {"binary16", "bfloat16", "e4m3-ieee"})
    for (const auto& ord : {sim::order{K::recursive, 8}, sim::order{K::blocked, 8}}) {
      const auto r = analysis::validate(net, ref, config_of(acc, ord), opt);
      INFO(r.config);
      CHECK(r.violations() == 0);
      for (std::size_t k = 0; k < 2; ++k) {
        const auto& l = r.layers[k];
        CHECK(l.local_checked == l.components);
        REQUIRE(l.local.size() == 5);
        for (const auto& c : l.local) {
          INFO("layer " << l.layer << " lambda " << c.lambda);
          CHECK(c.checked == l.local_checked);
          // the stated probability is a bound: the measured frequency's interval starts below it
          CHECK(c.ci_low <= c.stated_failure);
          CHECK(c.ci_low <= c.frequency);
          CHECK(c.frequency <= c.ci_high);
        }
        // violations decrease with lambda
        for (std::size_t q = 1; q < l.local.size(); ++q) CHECK(l.local[q].violations <= l.local[q - 1].violations);
        // tightness quantiles are ordered and below 1 (no violation)
        const auto& t = l.err_over_bound_y;
        CHECK(t.q50 <= t.q90);
        CHECK(t.q90 <= t.q99);
        CHECK(t.q99 <= t.max);
        CHECK(t.max <= 1);
      }
      // e4m3 with the recursive order: (1 + 1/16)^201 - 1 ~ 2e5, every bound is vacuous
      if (std::string(acc) == "e4m3-ieee" && ord.type == K::recursive) {
        CHECK(r.layers[0].local_vacuous == r.layers[0].local_checked);
        CHECK(r.layers[0].local.back().vacuous == r.layers[0].local_checked);
      }
      if (std::string(acc) == "binary16") CHECK(r.layers[0].local_vacuous == 0);
      // the propagated probabilistic bound's probability: a union over upstream inner products
      REQUIRE(r.layers[0].prob_propagated_failure.has_value());
      if (r.layers[1].prob_propagated_failure) {
        CHECK(*r.layers[1].prob_propagated_failure > 64 * *r.layers[0].prob_propagated_failure);
      }
    }
}

TEST_CASE("reference inputs: stored by default, exact on request; binary64 accumulators through MPFR", "[analysis]") {
  const auto net = random_net({40, 32, 10}, sim::activation::sigmoid, 24);
  const auto data = synthetic_data(10, 40, 7);
  analysis::validate_options opt;
  opt.csv_samples = 10;
  opt.precision = 160;
  auto cfg = config_of("binary64");
  cfg.inputs = sim::formats::binary16;
  const auto stored = analysis::compute_reference(net, data, opt, cfg);
  const auto rs = analysis::validate(net, stored, cfg, opt);
  auto opt_exact = opt;
  opt_exact.ref_inputs = analysis::reference_inputs::exact;
  const auto exact = analysis::compute_reference(net, data, opt_exact, cfg);
  const auto re = analysis::validate(net, exact, cfg, opt_exact);
  CHECK(rs.violations() == 0);
  CHECK(re.violations() == 0);
  CHECK(rs.total().uncovered == 0);
  // with stored inputs a binary64 accumulation is accurate to ~1e-16; against
  // the exact data the binary16 storage error (~1e-3) dominates
  double max_stored = 0, max_exact = 0;
  for (std::size_t s = 0; s < 10; ++s)
    for (std::size_t i = 0; i < 32; ++i) {
      const auto& a = rs.csv_rows[s][i];
      const auto& b = re.csv_rows[s][i];
      max_stored = std::max(max_stored, a.err_v / std::max(1.0, std::fabs(a.v_ref)));
      max_exact = std::max(max_exact, b.err_v / std::max(1.0, std::fabs(b.v_ref)));
      CHECK(a.v_sim == b.v_sim);  // the same simulation
    }
  CHECK(max_stored < 1e-14);
  CHECK(max_exact > 1e-5);
  CHECK(rs.layers[0].input_storage_term_max > 1e-5);
  // and the simulated binary64 pass equals the MPFR model component by component
  const auto run = nn::simulate(net, {data.x.data(), data.rows, data.cols}, cfg);
  std::vector<double> x0(data.x.begin(), data.x.begin() + 40);
  for (auto& x : x0) x = sim::round(x, sim::formats::binary16);
  sim::accumulation a = cfg.layer_spec(0).base;
  a.acc = sim::formats::binary64;
  for (std::size_t i = 0; i < 32; ++i) {
    const auto d = ref::dot_mpfr({net.layers[0].row(i), 40}, x0, net.layers[0].b[i], a);
    CHECK(test::same(run[0].v[i], d.value));
  }
}

TEST_CASE("figures: quoted titles, gnuplot failures reported, nothing half-written", "[analysis][plot]") {
  CHECK(analysis::gnuplot_quote("a'b`c\nd") == "'a''b`c?d'");
  CHECK(analysis::gnuplot_quote("") == "''");
  if (!analysis::gnuplot_available()) {
    WARN("gnuplot is not installed: drawing not tested");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("mpacc_plot_'`x`_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto marker = dir / "injected";
  // a title that would run a command if it reached a shell or a double-quoted gnuplot string
  analysis::draw_plot(dir, "ok",
                      "set title " + analysis::gnuplot_quote("`touch " + marker.string() + "`") + "\nplot sin(x)\n");
  CHECK(std::filesystem::file_size(dir / "ok.png") > 0);
  CHECK(std::filesystem::exists(dir / "ok.gp"));
  CHECK(!std::filesystem::exists(marker));
  // gnuplot fails: an error naming the figure and gnuplot's message, no image, no temporary
  CHECK_THROWS_WITH(analysis::draw_plot(dir, "bad", "plot 'no-such-file.dat'\n"),
                    Catch::Contains("bad.png: gnuplot failed") && Catch::Contains("no-such-file.dat"));
  CHECK(!std::filesystem::exists(dir / "bad.png"));
  CHECK(!std::filesystem::exists(dir / "bad.png.tmp"));
  // the validate report draws the figures it names
  const auto net = random_net({12, 8, 10}, sim::activation::tanh, 5);
  const auto data = synthetic_data(6, 12, 2);
  analysis::validate_options opt;
  opt.csv_samples = 3;
  const auto ref = analysis::compute_reference(net, data, opt, as_stored());
  const auto r = analysis::validate(net, ref, config_of("binary16"), opt);
  analysis::write_report(r, dir / "report", "{}", true);
  for (const char* f : {"err_vs_kappa", "kappa_hist", "ratio_hist"}) {
    INFO(f);
    CHECK(std::filesystem::file_size(dir / "report" / (std::string(f) + ".png")) > 0);
  }
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    CHECK(e.path().string().find(".tmp") == std::string::npos);
  std::filesystem::remove_all(dir);
}
