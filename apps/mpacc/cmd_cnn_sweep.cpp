// SPDX-License-Identifier: MIT
// mpacc cnn-sweep: Algorithm 1 and its matched baselines on a convolutional
// network (analysis/cnn_algorithm1.hpp, docs/cnn.md "Algorithm 1 on
// convolutional networks"). Writes results.csv rows in the format of mpacc
// sweep, its report.md, manifest.json and figures, and prints a table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "mpacc/analysis/cnn_algorithm1.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

namespace {

struct cnn_sweep_cli {
  std::string model, dataset = "mnist", data, out = "results/cnn-sweep", name;
  std::string precision = "acc=e4m3-ieee;order=blocked:8;saturate=on", high = "binary16";
  std::vector<double> taus = {1, 0.3, 0.1, 0.01};
  std::vector<std::string> indicators = {"kprime-companion", "kappa-norm"};
  std::vector<std::string> baselines = {"random-active", "oracle-local"};
  std::size_t samples = 2000, seeds = 3;
  std::uint64_t seed = 1234;
  int threads = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void print_row(const analysis::result_row& r, double secs) {
  const auto ci = analysis::wilson(r.correct, r.samples);
  const double n = static_cast<double>(r.samples);
  std::printf("| %s | %s | %s | %.2f %% [%.2f, %.2f] | %.2f %% | %.3g | %.4f | %.4f | %.4f | %.1f |\n",
              r.strategy.c_str(), r.indicator.empty() ? "-" : r.indicator.c_str(),
              r.strategy.rfind("uniform", 0) == 0 ? "-" : (std::ostringstream() << r.tau).str().c_str(),
              100.0 * static_cast<double>(r.correct) / n, 100 * ci.lo, 100 * ci.hi,
              100.0 * static_cast<double>(r.disagreements) / n, r.kl_mean, r.fraction, r.weighted_cost, r.tile_cost,
              secs);
  std::fflush(stdout);
}

// a name per network layer for the figures: conv1, conv2, ..., dense1, ...;
// pooling and flatten (never recomputed) unnamed
std::vector<std::string> layer_names(const nn::cnn& net) {
  std::vector<std::string> v;
  std::size_t conv = 0, dense = 0;
  for (const auto& l : net.layers) {
    if (std::holds_alternative<nn::conv_layer>(l))
      v.push_back("conv" + std::to_string(++conv));
    else if (std::holds_alternative<nn::dense_layer>(l))
      v.push_back("dense" + std::to_string(++dense));
    else
      v.emplace_back();
  }
  return v;
}

int run(const cnn_sweep_cli& o) {
  // the tolerances as a sweep configuration takes them: finite, >= 0, each once
  for (std::size_t k = 0; k < o.taus.size(); ++k) {
    const double t = o.taus[k];
    if (!(t >= 0) || !std::isfinite(t))
      throw usage_error("--taus: tolerance " + (std::ostringstream() << t).str() + " must be a finite number >= 0");
    if (std::find(o.taus.begin(), o.taus.begin() + static_cast<std::ptrdiff_t>(k), t) !=
        o.taus.begin() + static_cast<std::ptrdiff_t>(k))
      throw usage_error("--taus: tolerance " + (std::ostringstream() << t).str() + " is listed twice");
  }
  if (o.taus.empty()) throw usage_error("--taus: at least one tolerance");
  for (const auto* list : {&o.indicators, &o.baselines})
    for (std::size_t k = 0; k < list->size(); ++k)
      if (std::find(list->begin(), list->begin() + static_cast<std::ptrdiff_t>(k), (*list)[k]) !=
          list->begin() + static_cast<std::ptrdiff_t>(k))
        throw usage_error(std::string(list == &o.indicators ? "--indicators: " : "--baselines: ") + (*list)[k] +
                          " is listed twice");
  if (!std::filesystem::exists(o.model)) throw usage_error("--model: " + o.model + ": no such file");
  if (!io::is_cnn_model(o.model))
    throw usage_error("--model: " + o.model +
                      " is not a CNN model file (mpacc train --arch lenet5); for MLPs use mpacc sweep");
  analysis::mixed_config cfg;
  cfg.precision = option_value("--precision", [&] { return nn::parse_precision(o.precision); });
  cfg.high = option_value("--high", [&] { return sim::parse_format(o.high); });
  std::vector<analysis::selection::kind> baselines;
  for (const auto& b : o.baselines)
    baselines.push_back(option_value("--baselines", [&] { return analysis::parse_baseline(b); }));
  for (const auto& ind : o.indicators) option_value("--indicators", [&] { return analysis::find_indicator(ind); });
  const auto net = io::load_cnn(o.model);
  const std::filesystem::path data_dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test = io::load_dataset(data_dir, o.dataset, false, o.samples);
  // default: the model file's stem, prefixed with the data set unless it starts with it
  const std::string stem = std::filesystem::path(o.model).stem().string();
  const std::string name =
      !o.name.empty() ? o.name : (stem.rfind(o.dataset + "-", 0) == 0 ? stem : o.dataset + "-" + stem);
  const std::string order = sim::to_string(cfg.precision.order);
  analysis::ensure_writable_dir(o.out);
  const auto t0 = std::chrono::steady_clock::now();
  const analysis::cnn_mixed_runner R(net, test, o.samples, cfg, o.threads);
  std::printf("%s: %zu test images, %s, high %s; reference pass %.1f s, reference accuracy %.2f %%\n\n", name.c_str(),
              R.samples(), cfg.precision.to_string().c_str(), sim::to_string(cfg.high).c_str(), seconds_since(t0),
              100 * R.reference_accuracy());
  std::printf(
      "| strategy | indicator | tau | accuracy [95 %% Wilson] | disagreement | KL mean | fraction recomputed | "
      "cost per term | tile cost | time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::string csv = analysis::csv_header();
  std::vector<analysis::result_row> rows;
  auto emit = [&](const analysis::result_row& r, double secs) {
    csv += analysis::to_csv(r);
    rows.push_back(r);
    print_row(r, secs);
  };
  using K = analysis::selection::kind;
  analysis::selection s;
  auto t = std::chrono::steady_clock::now();
  s.type = K::uniform_low;
  const auto low = R.run(s);
  emit(analysis::row_of(name, order, "uniform-low", "", 0, 0, low), seconds_since(t));
  t = std::chrono::steady_clock::now();
  s.type = K::uniform_high;
  const auto high = R.run(s);
  auto hrow = analysis::row_of(name, order, "uniform-high", "", 0, 0, high);
  analysis::pair_with(hrow, high, "uniform-low", low);
  emit(hrow, seconds_since(t));
  analysis::result_row e;  // the reference pass (as mpacc sweep's "exact" row)
  e.network = name;
  e.order = order;
  e.strategy = "exact";
  e.samples = R.samples();
  e.correct = static_cast<std::size_t>(std::llround(R.reference_accuracy() * static_cast<double>(R.samples())));
  e.fraction = 1;
  e.weighted_cost = e.tile_cost = std::nan("");
  e.fraction_per_layer.assign(low.fraction_per_layer.size(), 1.0);
  csv += analysis::to_csv(e);
  rows.push_back(e);
  for (const auto& ind : o.indicators)
    for (double tau : o.taus) {
      t = std::chrono::steady_clock::now();
      analysis::selection a;
      a.indicator = ind;
      a.tau = tau;
      const auto a1 = R.run(a);
      auto arow = analysis::row_of(name, order, "algorithm1", ind, tau, 0, a1);
      analysis::pair_with(arow, a1, "uniform-low", low);
      emit(arow, seconds_since(t));
      for (auto b : baselines) {
        const bool random = b == K::random || b == K::random_active;
        for (std::size_t sd = 0; sd < (random ? o.seeds : 1); ++sd) {
          t = std::chrono::steady_clock::now();
          analysis::selection m;
          m.type = b;
          m.counts = &a1.counts;
          m.seed = o.seed + 7919 * (sd + 1);  // as mpacc sweep
          const auto r = R.run(m);
          auto brow = analysis::row_of(name, order, std::string(analysis::to_string(b)), ind, tau, sd, r);
          analysis::pair_with(brow, r, "algorithm1", a1);
          emit(brow, seconds_since(t));
        }
      }
    }
  const double wall = seconds_since(t0);
  const std::filesystem::path out(o.out);
  analysis::write_atomic(out / "results.csv", csv);
  // report.md and the figures of mpacc sweep, from a configuration that describes this run
  analysis::sweep_config c;
  c.name = "cnn-sweep: " + name;
  analysis::network_spec spec;
  spec.dataset = o.dataset;
  spec.act.clear();
  spec.model = o.model;
  spec.name = name;
  spec.layer_names = layer_names(net);
  c.networks = {spec};
  c.samples = R.samples();
  c.taus = o.taus;
  c.indicators = o.indicators;
  c.baselines = o.baselines;
  c.seeds = o.seeds;
  c.seed = o.seed;
  c.orders = {cfg.precision.order};
  c.mix = cfg;
  c.out = out;
  c.threads = o.threads;
  c.diagnostics = false;
  nlohmann::json m;
  m["command"] = "cnn-sweep";
  m["mpacc_version"] = MPACC_VERSION;
  m["model"] = o.model;
  m["architecture"] = net.arch();
  m["dataset"] = o.dataset;
  m["samples"] = R.samples();
  m["precision"] = cfg.precision.to_string();
  m["high"] = sim::to_string(cfg.high);
  m["taus"] = o.taus;
  m["indicators"] = o.indicators;
  m["baselines"] = o.baselines;
  m["seeds"] = o.seeds;
  m["seed"] = o.seed;
  m["threads"] = o.threads;
  m["wall_seconds"] = wall;
  analysis::write_atomic(out / "manifest.json", m.dump(2) + "\n");
  analysis::write_sweep_report(c, rows, wall);
  std::printf("\nresults: %s/results.csv, report.md, manifest.json and the figures (%.1f s in all)\n", o.out.c_str(),
              wall);
  return 0;
}

}  // namespace

command add_cnn_sweep_command(CLI::App& app) {
  auto o = std::make_shared<cnn_sweep_cli>();
  auto* sub = app.add_subcommand(
      "cnn-sweep",
      "Algorithm 1 and its matched baselines on a CNN (docs/cnn.md): uniform low and high, a threshold run per "
      "indicator and tau, each with its baselines; results.csv in mpacc sweep's row format and a table on stdout");
  sub->add_option("--model", o->model, "CNN model file (mpacc train --arch lenet5)")->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--samples", o->samples, "first N test images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--precision", o->precision,
                  "the low pass (compact form, docs/semantics.md; acc: one accumulator or one per network layer)")
      ->capture_default_str();
  sub->add_option("--high", o->high, "the accumulator recomputed components use")->capture_default_str();
  sub->add_option("--taus", o->taus, "tolerances (comma-separated)")->delimiter(',')->capture_default_str();
  sub->add_option("--indicators", o->indicators, "indicators (comma-separated)")->delimiter(',')->capture_default_str();
  sub->add_option("--baselines", o->baselines,
                  "matched baselines (comma-separated: random, random-active, smallest, oracle-pre, oracle-local, "
                  "oracle-gain)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--seeds", o->seeds, "seeds of each random baseline")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--seed", o->seed, "base seed of the random baselines")->capture_default_str();
  sub->add_option(
      "--name", o->name,
      "network name in the rows (default: the model file stem, prefixed with <dataset>- unless it starts with it)");
  sub->add_option("--out", o->out, "output folder (results.csv)")->capture_default_str();
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")->check(CLI::Range(0, 256));
  return [o] { return run(*o); };
}

}  // namespace mpacc::app
