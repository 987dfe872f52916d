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

void print_summary(const std::string& csv) {
  // the accuracy/cost table of Algorithm 1 at the paper's tolerances and the uniform baselines
  std::printf("%-22s %-18s %-11s %7s %9s %9s %8s\n", "network", "strategy", "indicator", "tau", "accuracy",
              "recomp.", "cost");
  std::size_t pos = csv.find('\n') + 1;
  while (pos < csv.size()) {
    const std::size_t end = csv.find('\n', pos);
    const std::string line = csv.substr(pos, end - pos);
    pos = end + 1;
    char net[64], strat[32], ind[32];
    double tau, acc, frac, cost;
    if (std::sscanf(line.c_str(), "%63[^,],%31[^,],%31[^,],%lf,%lf,%lf,%lf", net, strat, ind, &tau, &acc, &frac, &cost) != 7) {
      if (std::sscanf(line.c_str(), "%63[^,],%31[^,],,%lf,%lf,%lf,%lf", net, strat, &tau, &acc, &frac, &cost) == 6)
        std::printf("%-22s %-18s %-11s %7s %8.2f%% %8.1f%% %8.3f\n", net, strat, "", "", 100 * acc, 100 * frac, cost);
      continue;
    }
    const bool spec_tau = tau == 1 || tau == 0.5 || tau == 0.3 || tau == 0.1;
    if (std::string(strat) == "algorithm1" && spec_tau)
      std::printf("%-22s %-18s %-11s %7g %8.2f%% %8.1f%% %8.3f\n", net, strat, ind, tau, 100 * acc, 100 * frac, cost);
  }
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
  const auto csv = analysis::merge_sweep(cfg, secs);
  print_summary(csv);
  std::printf("results: %s/results.csv, manifest.json and figures (%.1f s)\n", cfg.out.string().c_str(), secs);
  return 0;
}

}  // namespace

command add_sweep_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub = app.add_subcommand("sweep", "Run Algorithm 1 and its baselines over a configuration (JSON, see apps/configs/)");
  sub->add_option("--config", o->config, "sweep configuration file")->required();
  sub->add_option("--shard", o->shard, "run only shard i of n (i/n); merge the shards with mpacc merge");
  sub->add_option("--samples", o->samples, "override the number of test images (0: all)")->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--out", o->out, "override the output folder");
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")->check(CLI::Range(0, 256));
  return [o] { return run(analysis::load_sweep_config(o->config), *o); };
}

command add_merge_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub = app.add_subcommand("merge", "Merge the shards of a sweep into results.csv, manifest.json and figures");
  sub->add_option("--config", o->config, "the sweep's configuration file (or 'quick' / 'full' for mpacc reproduce)")->required();
  sub->add_option("--out", o->out, "override the output folder");
  return [o] {
    auto cfg = o->config == "quick" || o->config == "full" ? analysis::reproduce_config(o->config == "full")
                                                           : analysis::load_sweep_config(o->config);
    if (!o->out.empty()) cfg.out = o->out;
    print_summary(analysis::merge_sweep(cfg, 0));
    std::printf("merged into %s/results.csv\n", cfg.out.string().c_str());
    return 0;
  };
}

command add_reproduce_command(CLI::App& app) {
  auto o = std::make_shared<sweep_cli>();
  auto* sub = app.add_subcommand(
      "reproduce",
      "The paper's experiment (docs/semantics.md §8): MNIST and Fashion-MNIST, ReLU and tanh MLPs (trained if absent, then cached),\n"
      "Algorithm 1 with every indicator against its baselines. --quick (default): 2 epochs on 20,000 images, 1,000\n"
      "test images; --full: 10 epochs, all images.");
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
