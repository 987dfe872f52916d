// SPDX-License-Identifier: MIT
// mpacc sweep / mpacc merge / mpacc reproduce: Algorithm 1 and its baselines
// over networks, indicators and tolerances (docs/semantics.md §7-8).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"

namespace mpacc::app {

namespace {

struct sweep_cli {
  std::string config, shard, data, out;
  bool quick = false, full = false, no_merge = false;
  std::size_t samples = 0;
  int threads = 0;
};

void parse_shard(const std::string& s, std::size_t& i, std::size_t& n) {
  i = 0;
  n = 1;
  if (s.empty()) return;
  // exactly two unsigned decimal numbers: "1/-2" or "0/2/3" are errors, not 1/2^64-2 or 0/2
  const auto slash = s.find('/');
  auto number = [&](std::string_view t, std::size_t& v) {
    if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string_view::npos) return false;
    v = std::stoul(std::string(t));
    return true;
  };
  if (slash == std::string::npos || !number(std::string_view(s).substr(0, slash), i) ||
      !number(std::string_view(s).substr(slash + 1), n))
    throw usage_error("--shard: '" + s + "' is not of the form i/n (two numbers)");
  if (n == 0 || i >= n) throw usage_error("--shard: '" + s + "': i must be in [0, n)");
}

void print_summary(const analysis::sweep_config& cfg, const std::vector<analysis::result_row>& rows) {
  std::fputs(analysis::conclusions(cfg, rows).c_str(), stdout);
}

int run(analysis::sweep_config cfg, const sweep_cli& o) {
  if (!o.data.empty()) cfg.data_dir = o.data;
  if (!o.out.empty()) cfg.out = o.out;
  if (o.samples) cfg.samples = o.samples;
  cfg.threads = o.threads;
  std::size_t i = 0, n = 1;
  parse_shard(o.shard, i, n);
  analysis::ensure_writable_dir(cfg.out);
  const auto t0 = std::chrono::steady_clock::now();
  analysis::run_sweep(cfg, i, n);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (n > 1 || o.no_merge) {
    std::printf("shard %zu/%zu written to %s (%.1f s); merge with: mpacc merge --config ...\n", i, n,
                cfg.out.string().c_str(), secs);
    return 0;
  }
  const auto rows = analysis::merge_sweep(cfg, secs);
  print_summary(cfg, rows);
  std::printf("results: %s/report.md, results.csv, manifest.json and figures (%.1f s)\n", cfg.out.string().c_str(),
              secs);
  return 0;
}

}  // namespace

command add_sweep_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub =
      app.add_subcommand("sweep", "Run Algorithm 1 and its baselines over a configuration (JSON, see apps/configs/)");
  sub->add_option("--config", o->config, "sweep configuration file")->required();
  sub->add_option("--shard", o->shard, "run only shard i of n (i/n); merge the shards with mpacc merge");
  sub->add_option("--samples", o->samples, "override the number of test images (0: all)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--out", o->out, "override the output folder");
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")->check(CLI::Range(0, 256));
  return [o] { return run(analysis::load_sweep_config(o->config), *o); };
}

command add_merge_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub = app.add_subcommand("merge", "Merge the shards of a sweep into results.csv, manifest.json and figures");
  sub->add_option("--config", o->config, "the sweep's configuration file (or 'quick' / 'full' for mpacc reproduce)")
      ->required();
  sub->add_option("--out", o->out, "override the output folder");
  return [o] {
    auto cfg = o->config == "quick" || o->config == "full" ? analysis::reproduce_config(o->config == "full")
                                                           : analysis::load_sweep_config(o->config);
    if (!o->out.empty()) cfg.out = o->out;
    print_summary(cfg, analysis::merge_sweep(cfg, 0));
    std::printf("merged into %s/results.csv\n", cfg.out.string().c_str());
    return 0;
  };
}

command add_reproduce_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub = app.add_subcommand(
      "reproduce",
      "The experiment (docs/experiments.md): Algorithm 1 against uniform low/high/binary32 and against baselines at "
      "the\n"
      "same recomputation rates, on all 10,000 test images, with KL divergence, argmax disagreement (Wilson "
      "intervals,\n"
      "McNemar tests), componentwise errors and two cost models; prints its conclusions and writes report.md and\n"
      "figures. --quick (default, a few minutes): MNIST ReLU and tanh MLPs trained 2 epochs on 20,000 images,\n"
      "kprime-companion and kappa-norm at tau in {1, 0.5, 0.3, 0.1, 0.01}, random-active (5 seeds) and the local\n"
      "oracle, blocked:8 (and recursive for the uniform strategies). --full: MNIST and Fashion-MNIST (10 epochs),\n"
      "kprime-companion, kappa-norm (and kappa on MNIST), random-active (5 seeds), the oracles and smallest-|v|,\n"
      "both orders; and MNIST MLPs with 2, 4 and 6 hidden layers of 128. Networks are cached in results/models.");
  sub->add_flag("--quick", o->quick, "the quick experiment (default)");
  sub->add_flag("--full", o->full, "the full experiment");
  sub->add_option("--shard", o->shard, "run only shard i of n (i/n); merge with: mpacc merge --config quick|full");
  sub->add_option("--out", o->out, "override the output folder");
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")->check(CLI::Range(0, 256));
  return [o] {
    if (o->quick && o->full) throw usage_error("--quick and --full exclude each other");
    return run(analysis::reproduce_config(o->full), *o);
  };
}

}  // namespace mpacc::app
