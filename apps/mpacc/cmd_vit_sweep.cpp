// SPDX-License-Identifier: MIT
// mpacc vit-sweep: Algorithm 1, its matched baselines and the "one layer kind
// in high" runs on a vision transformer (analysis/vit_algorithm1.hpp,
// docs/attention.md "Algorithm 1 on the vision transformer"). Writes
// results.csv rows in the format of mpacc sweep, its report.md (with a table
// of the layer-kind runs), manifest.json and figures, and prints a table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "network_sweep.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/analysis/vit_algorithm1.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

namespace {

struct vit_sweep_cli : network_sweep::options {
  std::vector<std::string> kinds_high = {"scores", "mix", "q+k+v", "proj", "fc1+fc2", "embed+head"};
};

// The figures' layer groups (at most six series): their names and, per
// inner-product layer, the group it belongs to.
const std::vector<std::string> kGroups = {"embed+head", "q/k/v", "scores", "mix", "proj", "fc1/fc2"};
std::size_t group_of(const std::string& kind) {
  if (kind == "embed" || kind == "head") return 0;
  if (kind == "q" || kind == "k" || kind == "v") return 1;
  if (kind == "scores") return 2;
  if (kind == "mix") return 3;
  if (kind == "proj") return 4;
  return 5;
}

// components per sample of inner-product layer k
double components(const nn::vit& net, const std::string& kind) {
  const auto T = static_cast<double>(net.tokens()), d = static_cast<double>(net.d);
  if (kind == "embed") return static_cast<double>(net.patches()) * d;
  if (kind == "head") return static_cast<double>(net.classes);
  if (kind == "scores") return static_cast<double>(net.heads) * T * T;
  if (kind == "fc1") return T * static_cast<double>(net.hidden);
  return T * d;
}

// the row with its per-layer fractions merged into the groups (weighted by components)
analysis::result_row grouped(const nn::vit& net, analysis::result_row r) {
  if (r.fraction_per_layer.size() != net.product_layers()) return r;
  std::vector<double> f(kGroups.size(), 0), n(kGroups.size(), 0);
  for (std::size_t k = 0; k < net.product_layers(); ++k) {
    const auto kind = analysis::vit_layer_kind(net, k);
    const double c = components(net, kind);
    f[group_of(kind)] += r.fraction_per_layer[k] * c;
    n[group_of(kind)] += c;
  }
  for (std::size_t g = 0; g < f.size(); ++g) f[g] /= n[g];
  r.fraction_per_layer = f;
  return r;
}

std::string pct_interval(std::size_t k, std::size_t n) {
  const auto ci = analysis::wilson(k, n);
  char b[96];
  std::snprintf(b, sizeof b, "%.2f %% [%.2f, %.2f]", 100.0 * static_cast<double>(k) / static_cast<double>(n),
                100 * ci.lo, 100 * ci.hi);
  return b;
}

int run(const vit_sweep_cli& o) {
  namespace ns = network_sweep;
  ns::check_lists(o, {{"--kinds-high", &o.kinds_high}});
  analysis::mixed_config cfg;
  cfg.precision = option_value("--precision", [&] { return nn::parse_precision(o.precision); });
  cfg.high = option_value("--high", [&] { return sim::parse_format(o.high); });
  std::vector<analysis::selection::kind> baselines;
  for (const auto& b : o.baselines) {
    const auto k = option_value("--baselines", [&] { return analysis::parse_baseline(b); });
    if (k == analysis::selection::kind::oracle_gain)
      throw usage_error("--baselines: oracle-gain is not supported on vision transformers");
    baselines.push_back(k);
  }
  for (const auto& ind : o.indicators) option_value("--indicators", [&] { return analysis::find_vit_indicator(ind); });
  // the layer-kind groups: kinds joined by '+'
  std::vector<std::vector<std::string>> kinds;
  const std::vector<std::string> known = {"embed", "q", "k", "v", "scores", "mix", "proj", "fc1", "fc2", "head"};
  for (const auto& g : o.kinds_high) {
    std::vector<std::string> ks;
    std::stringstream ss(g);
    for (std::string k; std::getline(ss, k, '+');) {
      if (std::find(known.begin(), known.end(), k) == known.end())
        throw usage_error("--kinds-high: '" + k +
                          "' is not a layer kind (embed, q, k, v, scores, mix, proj, fc1, fc2, head)");
      ks.push_back(k);
    }
    if (ks.empty()) throw usage_error("--kinds-high: an empty group");
    kinds.push_back(ks);
  }
  if (!std::filesystem::exists(o.model)) throw usage_error("--model: " + o.model + ": no such file");
  if (!io::is_vit_model(o.model))
    throw usage_error("--model: " + o.model + " is not a vision-transformer model file (mpacc train --arch vit)");
  const auto net = io::load_vit(o.model);
  ns::table tb;
  std::chrono::steady_clock::time_point t0;
  const auto R = ns::start_run<analysis::vit_mixed_runner>(net, o, cfg, "reference pass (binary64)", tb, t0);
  const auto low = ns::uniform_runs(R, tb);
  // one layer kind (group) in high, the rest low: in results.csv and the table, reported
  // in their own section of report.md (not in the cost-error figures)
  std::vector<analysis::result_row> kind_rows;
  for (const auto& ks : kinds) {
    const auto t = std::chrono::steady_clock::now();
    std::string label = "high:";
    for (std::size_t j = 0; j < ks.size(); ++j) label += (j ? "+" : "") + ks[j];
    const auto r = R.run_kinds_high(ks);
    auto krow = analysis::row_of(tb.name, tb.order, label, "", 0, 0, r);
    analysis::pair_with(krow, r, "uniform-low", low);
    tb.csv += analysis::to_csv(krow);
    ns::print_row(krow, ns::seconds_since(t));
    kind_rows.push_back(krow);
  }
  ns::threshold_runs(R, o, baselines, low, tb);
  const double wall = ns::seconds_since(t0);
  const std::filesystem::path out(o.out);
  analysis::write_atomic(out / "results.csv", tb.csv);
  // report.md and the figures of mpacc sweep, from a configuration that describes
  // this run, with the per-layer fractions merged into the six layer groups
  const auto c = ns::report_config(o, "vit-sweep", tb.name, kGroups, cfg, R.samples());
  std::vector<analysis::result_row> report_rows;
  report_rows.reserve(tb.rows.size());
  for (const auto& r : tb.rows) report_rows.push_back(grouped(R.network(), r));
  auto m = ns::manifest(o, "vit-sweep", net.arch(), cfg, R.samples(), wall);
  m["reference"] = "binary64 (train::vit_forward_native) on the stored network and inputs";
  m["kinds_high"] = o.kinds_high;
  m["layers"] = net.product_layer_names();
  analysis::write_atomic(out / "manifest.json", m.dump(2) + "\n");
  analysis::write_sweep_report(c, report_rows, wall);
  // the layer-kind runs, appended to the report
  {
    std::string md =
        "\n## One layer kind in high\n\nUniform " + sim::to_string(cfg.precision.accumulator(0)) +
        " except the listed inner-product layers (every block), computed entirely in " + sim::to_string(cfg.high) +
        ". Disagreement: argmax different from the binary64 reference; McNemar against uniform low.\n\n"
        "| layers in high | accuracy [95 % Wilson] | disagreement [95 % Wilson] | KL mean | KL q99 | fraction | "
        "cost per term | McNemar b/c, p vs uniform low |\n|---|---|---|---|---|---|---|---|\n";
    auto line = [&](const analysis::result_row& r, const std::string& label) {
      char b[320];
      std::snprintf(b, sizeof b, "| %s | %s | %s | %.3g | %.3g | %.4f | %.4f | %s |\n", label.c_str(),
                    pct_interval(r.correct, r.samples).c_str(), pct_interval(r.disagreements, r.samples).c_str(),
                    r.kl_mean, r.kl_q99, r.fraction, r.weighted_cost,
                    r.paired_with.empty() ? "-"
                                          : (std::to_string(r.mcnemar_b) + "/" + std::to_string(r.mcnemar_c) + ", " +
                                             (std::ostringstream() << r.mcnemar_p).str())
                                                .c_str());
      md += b;
    };
    line(tb.rows[0], "none (uniform low)");
    for (const auto& r : kind_rows) line(r, r.strategy.substr(5));
    line(tb.rows[1], "all (uniform high)");
    std::ofstream f(out / "report.md", std::ios::app);
    f << md;
    if (!f) throw std::runtime_error("cannot append to " + (out / "report.md").string());
  }
  std::printf("\nresults: %s/results.csv, report.md, manifest.json and the figures (%.1f s in all)\n", o.out.c_str(),
              wall);
  return 0;
}

}  // namespace

command add_vit_sweep_command(CLI::App& app) {
  auto o = std::make_shared<vit_sweep_cli>();
  o->out = "results/vit-sweep";
  o->indicators = {"kappa-row-norm", "lamp"};
  auto* sub = app.add_subcommand(
      "vit-sweep",
      "Algorithm 1 and its matched baselines on a vision transformer (docs/attention.md): uniform low and high, "
      "each layer kind alone in high, a threshold run per indicator and tau, each with its baselines; results.csv in "
      "mpacc sweep's row format and a table on stdout");
  network_sweep::add_options(sub, *o, "vision-transformer model file (mpacc train --arch vit)",
                             "the low pass (compact form, docs/semantics.md; acc: one accumulator or one per "
                             "inner-product layer, 2 + 8 blocks)");
  sub->get_option("--indicators")
      ->description("indicators (comma-separated: kappa, kappa-row, kappa-row-norm, kappa-scores, lamp)");
  sub->get_option("--baselines")
      ->description("matched baselines (comma-separated: random, random-active, smallest, oracle-pre, oracle-local)");
  sub->add_option("--kinds-high", o->kinds_high,
                  "layer-kind runs (comma-separated groups of kinds joined by '+': embed, q, k, v, scores, mix, proj, "
                  "fc1, fc2, head); each group alone in high")
      ->delimiter(',')
      ->capture_default_str();
  return [o] { return run(*o); };
}

}  // namespace mpacc::app
