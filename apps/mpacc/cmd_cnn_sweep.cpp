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
#include "network_sweep.hpp"
#include "mpacc/analysis/cnn_algorithm1.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

namespace {

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

int run(const network_sweep::options& o) {
  namespace ns = network_sweep;
  ns::check_lists(o);
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
  ns::table tb;
  std::chrono::steady_clock::time_point t0;
  const auto R = ns::start_run<analysis::cnn_mixed_runner>(net, o, cfg, "reference pass", tb, t0);
  const auto low = ns::uniform_runs(R, tb);
  ns::threshold_runs(R, o, baselines, low, tb);
  const double wall = ns::seconds_since(t0);
  const std::filesystem::path out(o.out);
  analysis::write_atomic(out / "results.csv", tb.csv);
  // report.md and the figures of mpacc sweep, from a configuration that describes this run
  const auto c = ns::report_config(o, "cnn-sweep", tb.name, layer_names(net), cfg, R.samples());
  analysis::write_atomic(out / "manifest.json",
                         ns::manifest(o, "cnn-sweep", net.arch(), cfg, R.samples(), wall).dump(2) + "\n");
  analysis::write_sweep_report(c, tb.rows, wall);
  std::printf("\nresults: %s/results.csv, report.md, manifest.json and the figures (%.1f s in all)\n", o.out.c_str(),
              wall);
  return 0;
}

}  // namespace

command add_cnn_sweep_command(CLI::App& app) {
  auto o = std::make_shared<network_sweep::options>();
  o->out = "results/cnn-sweep";
  o->indicators = {"kprime-companion", "kappa-norm"};
  auto* sub = app.add_subcommand(
      "cnn-sweep",
      "Algorithm 1 and its matched baselines on a CNN (docs/cnn.md): uniform low and high, a threshold run per "
      "indicator and tau, each with its baselines; results.csv in mpacc sweep's row format and a table on stdout");
  network_sweep::add_options(
      sub, *o, "CNN model file (mpacc train --arch lenet5)",
      "the low pass (compact form, docs/semantics.md; acc: one accumulator or one per network layer)");
  return [o] { return run(*o); };
}

}  // namespace mpacc::app
