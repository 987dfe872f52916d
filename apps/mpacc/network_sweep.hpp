// SPDX-License-Identifier: MIT
// What mpacc cnn-sweep and mpacc vit-sweep share: their common options, the
// checks of the tolerance and name lists, the printed table, the runs of
// uniform low and high, the reference row, Algorithm 1 with its matched
// baselines, and the report configuration and manifest of a one-network run.
// The runner is analysis::cnn_mixed_runner or analysis::vit_mixed_runner (run,
// samples, reference_accuracy).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app::network_sweep {

struct options {
  std::string model, dataset = "mnist", data, out, name;
  std::string precision = "acc=e4m3-ieee;order=blocked:8;saturate=on", high = "binary16";
  std::vector<double> taus = {1, 0.3, 0.1, 0.01};
  std::vector<std::string> indicators;
  std::vector<std::string> baselines = {"random-active", "oracle-local"};
  std::size_t samples = 2000, seeds = 3;
  std::uint64_t seed = 1234;
  int threads = 0;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// the options both commands take (model_help and precision_help describe what differs)
inline void add_options(CLI::App* sub, options& o, const std::string& model_help, const std::string& precision_help) {
  sub->add_option("--model", o.model, model_help)->required();
  sub->add_option("--dataset", o.dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--data", o.data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--samples", o.samples, "first N test images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--precision", o.precision, precision_help)->capture_default_str();
  sub->add_option("--high", o.high, "the accumulator recomputed components use")->capture_default_str();
  sub->add_option("--taus", o.taus, "tolerances (comma-separated)")->delimiter(',')->capture_default_str();
  sub->add_option("--indicators", o.indicators, "indicators (comma-separated)")->delimiter(',')->capture_default_str();
  sub->add_option("--baselines", o.baselines,
                  "matched baselines (comma-separated: random, random-active, smallest, oracle-pre, oracle-local, "
                  "oracle-gain)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--seeds", o.seeds, "seeds of each random baseline")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--seed", o.seed, "base seed of the random baselines")->capture_default_str();
  sub->add_option(
      "--name", o.name,
      "network name in the rows (default: the model file stem, prefixed with <dataset>- unless it starts with it)");
  sub->add_option("--out", o.out, "output folder (results.csv)")->capture_default_str();
  sub->add_option("--threads", o.threads, "threads (0: all cores; at most 256)")->check(CLI::Range(0, 256));
}

// The tolerances as a sweep configuration takes them (finite, >= 0, each once),
// and no name twice in any of the lists (option name, list).
inline void check_lists(const options& o,
                        std::vector<std::pair<std::string, const std::vector<std::string>*>> more = {}) {
  for (std::size_t k = 0; k < o.taus.size(); ++k) {
    const double t = o.taus[k];
    if (!(t >= 0) || !std::isfinite(t))
      throw usage_error("--taus: tolerance " + (std::ostringstream() << t).str() + " must be a finite number >= 0");
    if (std::find(o.taus.begin(), o.taus.begin() + static_cast<std::ptrdiff_t>(k), t) !=
        o.taus.begin() + static_cast<std::ptrdiff_t>(k))
      throw usage_error("--taus: tolerance " + (std::ostringstream() << t).str() + " is listed twice");
  }
  if (o.taus.empty()) throw usage_error("--taus: at least one tolerance");
  more.insert(more.begin(), {{"--indicators", &o.indicators}, {"--baselines", &o.baselines}});
  for (const auto& [opt, list] : more)
    for (std::size_t k = 0; k < list->size(); ++k)
      if (std::find(list->begin(), list->begin() + static_cast<std::ptrdiff_t>(k), (*list)[k]) !=
          list->begin() + static_cast<std::ptrdiff_t>(k))
        throw usage_error(opt + ": " + (*list)[k] + " is listed twice");
}

// default: the model file's stem, prefixed with the data set unless it starts with it
inline std::string network_name(const options& o) {
  const std::string stem = std::filesystem::path(o.model).stem().string();
  return !o.name.empty() ? o.name : (stem.rfind(o.dataset + "-", 0) == 0 ? stem : o.dataset + "-" + stem);
}

// one row of the printed table (no tau for the uniform runs and the layer-kind runs "high:...")
inline void print_row(const analysis::result_row& r, double secs) {
  const auto ci = analysis::wilson(r.correct, r.samples);
  const double n = static_cast<double>(r.samples);
  const bool no_tau = r.strategy.rfind("uniform", 0) == 0 || r.strategy.rfind("high:", 0) == 0;
  std::printf("| %s | %s | %s | %.2f %% [%.2f, %.2f] | %.2f %% | %.3g | %.4f | %.4f | %.4f | %.1f |\n",
              r.strategy.c_str(), r.indicator.empty() ? "-" : r.indicator.c_str(),
              no_tau ? "-" : (std::ostringstream() << r.tau).str().c_str(), 100.0 * static_cast<double>(r.correct) / n,
              100 * ci.lo, 100 * ci.hi, 100.0 * static_cast<double>(r.disagreements) / n, r.kl_mean, r.fraction,
              r.weighted_cost, r.tile_cost, secs);
  std::fflush(stdout);
}

inline void print_header() {
  std::printf(
      "| strategy | indicator | tau | accuracy [95 %% Wilson] | disagreement | KL mean | fraction recomputed | "
      "cost per term | tile cost | time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n");
}

// The rows of a run: results.csv's text, the rows, the printed table.
struct table {
  std::string name, order, csv = analysis::csv_header();
  std::vector<analysis::result_row> rows;
  void emit(const analysis::result_row& r, double secs) {
    csv += analysis::to_csv(r);
    rows.push_back(r);
    print_row(r, secs);
  }
  // a row that is not printed (the reference pass)
  void add(const analysis::result_row& r) {
    csv += analysis::to_csv(r);
    rows.push_back(r);
  }
};

// The start of a run: the test images, the table's name and order, the output
// folder checked, the runner built (its reference pass timed from t0), the
// run's first line and the table's header printed. `reference` names the
// reference pass in that line.
template <class Runner, class Net>
Runner start_run(const Net& net, const options& o, const analysis::mixed_config& cfg, const char* reference, table& tb,
                 std::chrono::steady_clock::time_point& t0) {
  const std::filesystem::path data_dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test = io::load_dataset(data_dir, o.dataset, false, o.samples);
  tb.name = network_name(o);
  tb.order = sim::to_string(cfg.precision.order);
  analysis::ensure_writable_dir(o.out);
  t0 = std::chrono::steady_clock::now();
  Runner R(net, test, o.samples, cfg, o.threads);
  std::printf("%s: %zu test images, %s, high %s; %s %.1f s, reference accuracy %.2f %%\n\n", tb.name.c_str(),
              R.samples(), cfg.precision.to_string().c_str(), sim::to_string(cfg.high).c_str(), reference,
              seconds_since(t0), 100 * R.reference_accuracy());
  print_header();
  return R;
}

// Uniform low and high (McNemar against low) and the reference pass's row (as
// mpacc sweep's "exact"); returns uniform low's result.
template <class Runner>
analysis::mixed_result uniform_runs(const Runner& R, table& tb) {
  using K = analysis::selection::kind;
  analysis::selection s;
  auto t = std::chrono::steady_clock::now();
  s.type = K::uniform_low;
  auto low = R.run(s);
  tb.emit(analysis::row_of(tb.name, tb.order, "uniform-low", "", 0, 0, low), seconds_since(t));
  t = std::chrono::steady_clock::now();
  s.type = K::uniform_high;
  const auto high = R.run(s);
  auto hrow = analysis::row_of(tb.name, tb.order, "uniform-high", "", 0, 0, high);
  analysis::pair_with(hrow, high, "uniform-low", low);
  tb.emit(hrow, seconds_since(t));
  analysis::result_row e;
  e.network = tb.name;
  e.order = tb.order;
  e.strategy = "exact";
  e.samples = R.samples();
  e.correct = static_cast<std::size_t>(std::llround(R.reference_accuracy() * static_cast<double>(R.samples())));
  e.fraction = 1;
  e.weighted_cost = e.tile_cost = std::nan("");
  e.fraction_per_layer.assign(low.fraction_per_layer.size(), 1.0);
  tb.add(e);
  return low;
}

// Algorithm 1 per indicator and tau (McNemar against uniform low), each with
// its matched baselines (random ones once per seed; McNemar against Algorithm 1).
template <class Runner>
void threshold_runs(const Runner& R, const options& o, const std::vector<analysis::selection::kind>& baselines,
                    const analysis::mixed_result& low, table& tb) {
  using K = analysis::selection::kind;
  for (const auto& ind : o.indicators)
    for (double tau : o.taus) {
      auto t = std::chrono::steady_clock::now();
      analysis::selection a;
      a.indicator = ind;
      a.tau = tau;
      const auto a1 = R.run(a);
      auto arow = analysis::row_of(tb.name, tb.order, "algorithm1", ind, tau, 0, a1);
      analysis::pair_with(arow, a1, "uniform-low", low);
      tb.emit(arow, seconds_since(t));
      for (auto b : baselines) {
        const bool random = b == K::random || b == K::random_active;
        for (std::size_t sd = 0; sd < (random ? o.seeds : 1); ++sd) {
          t = std::chrono::steady_clock::now();
          analysis::selection m;
          m.type = b;
          m.counts = &a1.counts;
          m.seed = o.seed + 7919 * (sd + 1);  // as mpacc sweep
          const auto r = R.run(m);
          auto brow = analysis::row_of(tb.name, tb.order, std::string(analysis::to_string(b)), ind, tau, sd, r);
          analysis::pair_with(brow, r, "algorithm1", a1);
          tb.emit(brow, seconds_since(t));
        }
      }
    }
}

// The configuration that describes this run to analysis::write_sweep_report.
inline analysis::sweep_config report_config(const options& o, const std::string& label, const std::string& name,
                                            std::vector<std::string> layer_names, const analysis::mixed_config& cfg,
                                            std::size_t samples) {
  analysis::sweep_config c;
  c.name = label + ": " + name;
  analysis::network_spec spec;
  spec.dataset = o.dataset;
  spec.act.clear();
  spec.model = o.model;
  spec.name = name;
  spec.layer_names = std::move(layer_names);
  c.networks = {spec};
  c.samples = samples;
  c.taus = o.taus;
  c.indicators = o.indicators;
  c.baselines = o.baselines;
  c.seeds = o.seeds;
  c.seed = o.seed;
  c.orders = {cfg.precision.order};
  c.mix = cfg;
  c.out = o.out;
  c.threads = o.threads;
  c.diagnostics = false;
  return c;
}

// manifest.json's common part
inline nlohmann::json manifest(const options& o, const std::string& command, const std::string& arch,
                               const analysis::mixed_config& cfg, std::size_t samples, double wall) {
  nlohmann::json m;
  m["command"] = command;
  m["mpacc_version"] = MPACC_VERSION;
  m["model"] = o.model;
  m["architecture"] = arch;
  m["dataset"] = o.dataset;
  m["samples"] = samples;
  m["precision"] = cfg.precision.to_string();
  m["high"] = sim::to_string(cfg.high);
  m["taus"] = o.taus;
  m["indicators"] = o.indicators;
  m["baselines"] = o.baselines;
  m["seeds"] = o.seeds;
  m["seed"] = o.seed;
  m["threads"] = o.threads;
  m["wall_seconds"] = wall;
  return m;
}

}  // namespace mpacc::app::network_sweep
