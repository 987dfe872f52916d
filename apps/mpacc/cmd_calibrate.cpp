// SPDX-License-Identifier: MIT
// mpacc calibrate: a static mixed-precision configuration (docs/extensions.md).
// Algorithm 1 (optionally with a precision ladder) runs on calibration images
// of the training set; each component's level is the one its indicator's
// q-quantile over those images asks for; the result is a precision
// configuration with per-component accumulator maps that `mpacc eval
// --precision-file` and `mpacc validate --precision-file` take.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/io/model_io.hpp"

namespace mpacc::app {

namespace {

struct calibrate_cli {
  std::string model, dataset = "mnist", act = "relu", data, out = "static.json";
  std::string precision = "weights=none;biases=none;acc=e4m3-ieee;order=blocked:8;saturate=on";
  std::string high = "binary16", ladder, indicator = "kprime-companion";
  double tau = 0.3, quantile = 0.99;
  std::size_t samples = 1000;
  int threads = 0;
};

int run_calibrate(const calibrate_cli& o) {
  analysis::mixed_config cfg;
  cfg.precision = option_value("--precision", [&] { return nn::parse_precision(o.precision); });
  cfg.high = option_value("--high", [&] { return sim::parse_format(o.high); });
  std::stringstream ss(o.ladder);
  for (std::string f; std::getline(ss, f, ',');)
    if (!f.empty()) cfg.ladder.push_back(option_value("--ladder", [&] { return sim::parse_format(f); }));
  if (!(o.tau >= 0)) throw usage_error("--tau: must be a number >= 0");
  if (!(o.quantile >= 0 && o.quantile <= 1)) throw usage_error("--quantile: must be in [0, 1]");
  (void)option_value("--indicator", [&] { return analysis::find_indicator(o.indicator); });
  const auto act = option_value("--act", [&] { return sim::parse_activation(o.act); });
  const auto net = io::load_any(o.model, {act, 0.01});
  try {
    cfg.precision.check(net.layers.size());
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("--precision: ") + e.what());
  }
  const auto dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto calib = io::load_dataset(dir, o.dataset, true, o.samples);
  std::fprintf(stderr, "calibrating %s on %zu %s training images...\n", net.arch().c_str(), calib.rows,
               o.dataset.c_str());
  const analysis::mixed_runner R(net, calib, o.samples, cfg, o.threads);
  analysis::selection sel;
  sel.indicator = o.indicator;
  sel.tau = o.tau;
  sel.ladder = !cfg.ladder.empty();
  const auto levels = analysis::calibrate_levels(R, sel, o.quantile);
  const auto p = analysis::static_precision(cfg, levels, sel.ladder);
  auto j = nlohmann::json::parse(p.to_json());
  analysis::write_atomic(o.out, j.dump(2) + "\n");
  std::printf("static configuration: %s, tau %g, quantile %g of %zu calibration images\n", o.indicator.c_str(), o.tau,
              o.quantile, calib.rows);
  for (std::size_t k = 0; k < levels.size(); ++k) {
    std::printf("  layer %zu:", k + 1);
    const auto& m = p.maps[k];
    for (std::size_t lvl = 0; lvl < m.formats.size(); ++lvl) {
      std::size_t n = 0;
      for (auto x : levels[k]) n += x == lvl;
      std::printf(" %zu in %s", n, sim::to_string(m.formats[lvl]).c_str());
    }
    std::printf("\n");
  }
  std::printf("written to %s (mpacc eval/validate --precision-file %s)\n", o.out.c_str(), o.out.c_str());
  return 0;
}

}  // namespace

command add_calibrate_command(CLI::App& app) {
  auto o = std::make_shared<calibrate_cli>();
  auto* sub = app.add_subcommand(
      "calibrate",
      "Calibrate a static mixed-precision configuration: Algorithm 1 (or a precision ladder) on training\n"
      "images; each component's accumulator is the level its indicator's quantile over those images asks\n"
      "for; writes a precision configuration (JSON, per-component maps) for eval/validate --precision-file.");
  sub->add_option("--model", o->model, "model file (.mpnn or .npz)")->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist (its training images)")->capture_default_str();
  sub->add_option("--act", o->act, "hidden activation of an .npz model")->capture_default_str();
  sub->add_option("--samples", o->samples, "calibration images: the first N of the training set")
      ->check(CLI::Range(std::size_t{1}, std::size_t{60000}))
      ->capture_default_str();
  sub->add_option("--precision", o->precision, "the low pass, every precision choice in one line")
      ->capture_default_str();
  sub->add_option("--high", o->high, "the top level's accumulator")->capture_default_str();
  sub->add_option("--ladder", o->ladder, "intermediate accumulators, cheapest first, comma-separated (e.g. bfloat16)");
  sub->add_option("--indicator", o->indicator, "indicator (kappa, kappa-norm, kprime, kprime-companion, ...)")
      ->capture_default_str();
  sub->add_option("--tau", o->tau, "tolerance")->capture_default_str();
  sub->add_option("--quantile", o->quantile, "quantile of each component's score over the images (1: the maximum)")
      ->capture_default_str();
  sub->add_option("--out", o->out, "the configuration file written")->capture_default_str();
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  return [o] { return run_calibrate(*o); };
}

}  // namespace mpacc::app
