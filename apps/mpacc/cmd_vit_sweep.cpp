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
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/analysis/vit_algorithm1.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/version.hpp"

namespace mpacc::app {

namespace {

struct vit_sweep_cli {
  std::string model, dataset = "mnist", data, out = "results/vit-sweep", name;
  std::string precision = "acc=e4m3-ieee;order=blocked:8;saturate=on", high = "binary16";
  std::vector<double> taus = {1, 0.3, 0.1, 0.01};
  std::vector<std::string> indicators = {"kappa-row-norm", "lamp"};
  std::vector<std::string> baselines = {"random-active", "oracle-local"};
  std::vector<std::string> kinds_high = {"scores", "mix", "q+k+v", "proj", "fc1+fc2", "embed+head"};
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
  const bool no_tau = r.strategy.rfind("uniform", 0) == 0 || r.strategy.rfind("high:", 0) == 0;
  std::printf("| %s | %s | %s | %.2f %% [%.2f, %.2f] | %.2f %% | %.3g | %.4f | %.4f | %.4f | %.1f |\n",
              r.strategy.c_str(), r.indicator.empty() ? "-" : r.indicator.c_str(),
              no_tau ? "-" : (std::ostringstream() << r.tau).str().c_str(), 100.0 * static_cast<double>(r.correct) / n,
              100 * ci.lo, 100 * ci.hi, 100.0 * static_cast<double>(r.disagreements) / n, r.kl_mean, r.fraction,
              r.weighted_cost, r.tile_cost, secs);
  std::fflush(stdout);
}

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
  for (const auto* list : {&o.indicators, &o.baselines, &o.kinds_high})
    for (std::size_t k = 0; k < list->size(); ++k)
      if (std::find(list->begin(), list->begin() + static_cast<std::ptrdiff_t>(k), (*list)[k]) !=
          list->begin() + static_cast<std::ptrdiff_t>(k))
        throw usage_error(std::string(list == &o.indicators  ? "--indicators: "
                                      : list == &o.baselines ? "--baselines: "
                                                             : "--kinds-high: ") +
                          (*list)[k] + " is listed twice");
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
  const std::filesystem::path data_dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test = io::load_dataset(data_dir, o.dataset, false, o.samples);
  const std::string stem = std::filesystem::path(o.model).stem().string();
  const std::string name =
      !o.name.empty() ? o.name : (stem.rfind(o.dataset + "-", 0) == 0 ? stem : o.dataset + "-" + stem);
  const std::string order = sim::to_string(cfg.precision.order);
  analysis::ensure_writable_dir(o.out);
  const auto t0 = std::chrono::steady_clock::now();
  const analysis::vit_mixed_runner R(net, test, o.samples, cfg, o.threads);
  std::printf("%s: %zu test images, %s, high %s; reference pass (binary64) %.1f s, reference accuracy %.2f %%\n\n",
              name.c_str(), R.samples(), cfg.precision.to_string().c_str(), sim::to_string(cfg.high).c_str(),
              seconds_since(t0), 100 * R.reference_accuracy());
  std::printf(
      "| strategy | indicator | tau | accuracy [95 %% Wilson] | disagreement | KL mean | fraction recomputed | "
      "cost per term | tile cost | time (s) |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::string csv = analysis::csv_header();
  std::vector<analysis::result_row> rows, kind_rows;
  auto emit = [&](const analysis::result_row& r, double secs) {
    csv += analysis::to_csv(r);
    print_row(r, secs);
  };
  using K = analysis::selection::kind;
  analysis::selection s;
  auto t = std::chrono::steady_clock::now();
  s.type = K::uniform_low;
  const auto low = R.run(s);
  emit(analysis::row_of(name, order, "uniform-low", "", 0, 0, low), seconds_since(t));
  rows.push_back(analysis::row_of(name, order, "uniform-low", "", 0, 0, low));
  t = std::chrono::steady_clock::now();
  s.type = K::uniform_high;
  const auto high = R.run(s);
  auto hrow = analysis::row_of(name, order, "uniform-high", "", 0, 0, high);
  analysis::pair_with(hrow, high, "uniform-low", low);
  emit(hrow, seconds_since(t));
  rows.push_back(hrow);
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
  // one layer kind (group) in high, the rest low
  for (const auto& ks : kinds) {
    t = std::chrono::steady_clock::now();
    std::string label = "high:";
    for (std::size_t j = 0; j < ks.size(); ++j) label += (j ? "+" : "") + ks[j];
    const auto r = R.run_kinds_high(ks);
    auto krow = analysis::row_of(name, order, label, "", 0, 0, r);
    analysis::pair_with(krow, r, "uniform-low", low);
    emit(krow, seconds_since(t));
    kind_rows.push_back(krow);
  }
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
      rows.push_back(arow);
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
          rows.push_back(brow);
        }
      }
    }
  const double wall = seconds_since(t0);
  const std::filesystem::path out(o.out);
  analysis::write_atomic(out / "results.csv", csv);
  // report.md and the figures of mpacc sweep, from a configuration that describes
  // this run, with the per-layer fractions merged into the six layer groups
  analysis::sweep_config c;
  c.name = "vit-sweep: " + name;
  analysis::network_spec spec;
  spec.dataset = o.dataset;
  spec.act.clear();
  spec.model = o.model;
  spec.name = name;
  spec.layer_names = kGroups;
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
  std::vector<analysis::result_row> report_rows;
  report_rows.reserve(rows.size());
  for (const auto& r : rows) report_rows.push_back(grouped(R.network(), r));
  nlohmann::json m;
  m["command"] = "vit-sweep";
  m["mpacc_version"] = MPACC_VERSION;
  m["model"] = o.model;
  m["architecture"] = net.arch();
  m["dataset"] = o.dataset;
  m["samples"] = R.samples();
  m["precision"] = cfg.precision.to_string();
  m["high"] = sim::to_string(cfg.high);
  m["reference"] = "binary64 (train::vit_forward_native) on the stored network and inputs";
  m["taus"] = o.taus;
  m["indicators"] = o.indicators;
  m["baselines"] = o.baselines;
  m["kinds_high"] = o.kinds_high;
  m["seeds"] = o.seeds;
  m["seed"] = o.seed;
  m["threads"] = o.threads;
  m["wall_seconds"] = wall;
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
    line(rows[0], "none (uniform low)");
    for (const auto& r : kind_rows) line(r, r.strategy.substr(5));
    line(rows[1], "all (uniform high)");
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
  auto* sub = app.add_subcommand(
      "vit-sweep",
      "Algorithm 1 and its matched baselines on a vision transformer (docs/attention.md): uniform low and high, "
      "each layer kind alone in high, a threshold run per indicator and tau, each with its baselines; results.csv in "
      "mpacc sweep's row format and a table on stdout");
  sub->add_option("--model", o->model, "vision-transformer model file (mpacc train --arch vit)")->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--samples", o->samples, "first N test images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--precision", o->precision,
                  "the low pass (compact form, docs/semantics.md; acc: one accumulator or one per inner-product "
                  "layer, 2 + 8 blocks)")
      ->capture_default_str();
  sub->add_option("--high", o->high, "the accumulator recomputed components use")->capture_default_str();
  sub->add_option("--taus", o->taus, "tolerances (comma-separated)")->delimiter(',')->capture_default_str();
  sub->add_option("--indicators", o->indicators,
                  "indicators (comma-separated: kappa, kappa-row, kappa-row-norm, kappa-scores, lamp)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--baselines", o->baselines,
                  "matched baselines (comma-separated: random, random-active, smallest, oracle-pre, oracle-local)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--kinds-high", o->kinds_high,
                  "layer-kind runs (comma-separated groups of kinds joined by '+': embed, q, k, v, scores, mix, proj, "
                  "fc1, fc2, head); each group alone in high")
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
