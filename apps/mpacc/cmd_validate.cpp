// mpacc validate: the componentwise error analysis checked on a network and
// data set (SPEC §6), for one or several accumulator configurations.
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <mpfr.h>

#include "commands.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/nn/model_io.hpp"

namespace mpacc::app {

namespace {

struct validate_cli {
  std::string model, dataset = "mnist", act = "relu", data, out = "results/validate";
  std::string acc = "e4m3-ieee", order = "blocked:8", product = "exact", rounding = "nearest-even";
  std::string saturate = "off", input_format = "binary32", act_format = "binary32";
  std::size_t samples = 1000, csv_samples = 20;
  double lambda = 5;
  long precision = 200;
  bool no_plots = false;
  int threads = 0;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(item);
  return v;
}

std::string safe(const std::string& s) {
  std::string r;
  for (char c : s) r += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return r;
}

int run_validate(const validate_cli& o) {
  nn::mlp net = nn::load_any(o.model, {option_value("--act", [&] { return sim::parse_activation(o.act); }), 0.01});
  const auto dir = o.data.empty() ? nn::default_data_dir() : std::filesystem::path(o.data);
  const auto test_set = nn::load_dataset(dir, o.dataset, false, o.samples);
  analysis::validate_options opt;
  opt.samples = o.samples;
  opt.csv_samples = o.csv_samples;
  opt.lambda = o.lambda;
  opt.precision = o.precision;
  opt.threads = o.threads;
  std::vector<analysis::simulation_config> configs;
  std::vector<std::string> names;
  for (const auto& acc : split_list(o.acc))
    for (const auto& ord : split_list(o.order)) {
      analysis::simulation_config c;
      c.layer.acc = sim::precision_map::uniform(option_value("--acc", [&] { return sim::parse_format(acc); }));
      c.layer.base.ord = option_value("--order", [&] { return sim::parse_order(ord); });
      c.layer.base.mode = option_value("--rounding", [&] { return sim::parse_rounding(o.rounding); });
      if (o.product != "exact")
        c.layer.base.product = option_value("--product", [&] { return sim::parse_format(o.product); });
      c.input_format = option_value("--input-format", [&] { return sim::parse_format(o.input_format); });
      c.act_format = option_value("--act-format", [&] { return sim::parse_format(o.act_format); });
      c.layer.base.saturate = parse_switch("--saturate", o.saturate);
      configs.push_back(c);
      names.push_back(safe(acc) + "_" + safe(ord));
    }
  std::fprintf(stderr, "reference pass (MPFR, %ld bits) of %s on %zu %s images...\n", o.precision, net.arch().c_str(),
               test_set.rows, o.dataset.c_str());
  const auto ref = analysis::compute_reference(net, test_set, opt);
  std::fprintf(stderr, "reference: %.1f s\n", ref.seconds);
  std::size_t violations = 0;
  std::printf("%-28s %5s %9s %9s %7s %7s %12s %10s %9s %9s %9s %8s\n", "configuration", "layer", "comps",
              "uncovered", "viol_v", "viol_y", "prob_freq_y", "prob_stated", "q50", "q99", "max", "spearman");
  for (std::size_t c = 0; c < configs.size(); ++c) {
    const auto r = analysis::validate(net, ref, configs[c], opt);
    std::ostringstream manifest;
    manifest << "{\"model\":\"" << o.model << "\",\"dataset\":\"" << o.dataset << "\",\"samples\":" << ref.rows
             << ",\"reference_precision\":" << o.precision << ",\"lambda\":" << o.lambda
             << ",\"mpfr\":\"" << mpfr_get_version() << "\",\"compiler\":\"" << __VERSION__ << "\"}";
    analysis::write_report(r, std::filesystem::path(o.out) / names[c], manifest.str(), !o.no_plots);
    for (const auto& l : r.layers) {
      const double covered = static_cast<double>(l.components - l.uncovered);
      std::printf("%-28s %5s %9zu %9zu %7zu %7zu %12.3g %10.3g %9.3g %9.3g %9.3g %8.3f\n", names[c].c_str(),
                  l.layer ? std::to_string(l.layer).c_str() : "all", l.components, l.uncovered, l.violations_v,
                  l.violations_y, covered > 0 ? static_cast<double>(l.prob_violations_y) / covered : 0.0,
                  1 - l.prob_confidence_min, l.ratio_q50, l.ratio_q99, l.ratio_max, l.spearman);
      if (l.layer) violations += l.violations_v + l.violations_y;
    }
  }
  std::printf("reports in %s\n", o.out.c_str());
  if (violations) {
    std::fprintf(stderr, "mpacc: the deterministic bound was violated %zu times: this is a bug\n", violations);
    return 3;
  }
  return 0;
}

}  // namespace

command add_validate_command(CLI::App& app) {
  auto o = std::make_shared<validate_cli>();
  auto* sub = app.add_subcommand(
      "validate",
      "Check the componentwise error analysis: simulated vs MPFR reference pass, per-component errors,\n"
      "kappa_dot, kappa_act, deterministic and probabilistic bounds; CSV, JSON summary and plots per\n"
      "configuration. Exit status 3 if the deterministic bound is ever violated.");
  sub->add_option("--model", o->model, "model file (.mpnn or .npz)")->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--act", o->act, "hidden activation of an .npz model")->capture_default_str();
  sub->add_option("--samples", o->samples, "first N test images (0: all 10,000)")->capture_default_str();
  sub->add_option("--acc", o->acc, "accumulator format(s), comma-separated")->capture_default_str();
  sub->add_option("--order", o->order, "order(s), comma-separated: recursive, pairwise, blocked:B")->capture_default_str();
  sub->add_option("--product", o->product, "exact or a product format")->capture_default_str();
  sub->add_option("--rounding", o->rounding, "accumulator rounding mode")->capture_default_str();
  sub->add_option("--saturate", o->saturate, "on|off")->capture_default_str();
  sub->add_option("--input-format", o->input_format, "format the inputs are stored in")->capture_default_str();
  sub->add_option("--act-format", o->act_format, "format activations are rounded to")->capture_default_str();
  sub->add_option("--lambda", o->lambda, "probabilistic bound parameter")->capture_default_str();
  sub->add_option("--precision", o->precision, "reference precision in bits")->capture_default_str();
  sub->add_option("--csv-samples", o->csv_samples, "samples written to components.csv and plotted")->capture_default_str();
  sub->add_option("--out", o->out, "output folder")->capture_default_str();
  sub->add_flag("--no-plots", o->no_plots, "skip the gnuplot figures");
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all)")->capture_default_str();
  return [o] { return run_validate(*o); };
}

}  // namespace mpacc::app
