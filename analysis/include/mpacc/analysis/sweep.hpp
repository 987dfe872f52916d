// SPDX-License-Identifier: MIT
// Sweeps of Algorithm 1 and its baselines over networks, summation orders,
// indicators and tolerances (docs/semantics.md §7-8, docs/experiments.md):
// `mpacc sweep --config FILE`, `mpacc reproduce`, sharding and merging.
//
// Results travel as typed rows (result_row) from the runs to the shard files
// and back; the merge writes results.csv, manifest.json, report.md and the
// figures from them.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"

namespace mpacc::analysis {

struct network_spec {
  std::string dataset = "mnist";  // mnist | fashion-mnist
  std::string act = "relu";
  std::string model;  // a model file; empty: trained (and cached) from the training settings
  // hidden layer widths of a network trained here (the model file's own shape otherwise)
  std::vector<std::size_t> hidden = {784, 128};
  // the indicators swept on this network when not all of the sweep's (a subset)
  std::vector<std::string> indicators;
  // Set by mpacc cnn-sweep for its report, not read from configurations: the
  // network's name in the rows (empty: network_name's default) and a name per
  // entry of the rows' fraction_per_layer (empty entries, e.g. pooling, are not
  // drawn; no names: "layer 1", "layer 2", ...).
  std::string name;
  std::vector<std::string> layer_names;
};
// "mnist-relu" for the default shape, "mnist-relu-h784x128x128" otherwise; n.name when set.
std::string network_name(const network_spec& n);

struct sweep_config {
  std::string name = "sweep";
  std::vector<network_spec> networks;
  std::size_t samples = 0;  // test images (0: all)
  std::vector<double> taus;
  std::vector<std::string> indicators = {"kprime-companion", "kappa-norm"};
  // matched baselines (random, random-active, smallest, oracle-pre, oracle-local, oracle-gain)
  std::vector<std::string> baselines = {"random-active", "oracle-local"};
  std::size_t seeds = 5;  // seeds of each random baseline
  std::vector<sim::order> orders = {{sim::order::kind::blocked, 8}};
  // per order (by name, e.g. "recursive"), the indicators swept with it when
  // not all of `indicators` (a subset of them; empty: the uniform strategies only)
  std::map<std::string, std::vector<std::string>> order_indicators;
  // the indicators of `indicators` that both the order's and the network's
  // lists (where given) include, in the order of `indicators`
  [[nodiscard]] std::vector<std::string> indicators_for(const network_spec& n, const sim::order& o) const;
  // the low pass (mix.precision) and the high accumulator; mix.precision.order is
  // replaced by each of `orders`. Weights and biases are used as stored (the
  // trained models hold e4m3-ieee values) unless the configuration says otherwise.
  mixed_config mix = [] {
    mixed_config m;
    m.precision.weights = m.precision.biases = std::nullopt;
    return m;
  }();
  // Beyond Algorithm 1 (docs/extensions.md), per (indicator, tau) of the threshold jobs:
  //   mix.ladder non-empty: a "ladder" row (levels {low, ladder..., high});
  //   overflow_aware: an "overflow-aware" row (Algorithm 1, overflowed components to high);
  //   calibration_quantiles: a "static-q<q>" row per quantile, the static configuration
  //   calibrated on the first calibration_samples training images (with the ladder
  //   when calibration_ladder), evaluated on the test images.
  bool overflow_aware = false;
  std::size_t calibration_samples = 1000;
  std::vector<double> calibration_quantiles;
  bool calibration_ladder = false;
  // every input (test and calibration images) multiplied by this before it is
  // stored: unnormalized or scaled data for the overflow experiment
  double input_scale = 1;
  // training of networks that have no model file
  std::size_t epochs = 10, train_limit = 0, batch = 64;
  std::uint64_t seed = 1234;
  std::filesystem::path data_dir, models_dir = "results/models", out = "results/sweep";
  int threads = 0;
  bool diagnostics = true;  // the error-vs-kappa data and figures (one uniform-low pass per network)
};

// The experiment (docs/experiments.md). quick: MNIST ReLU and tanh trained 2
// epochs on 20,000 images, all 10,000 test images, kprime-companion and
// kappa-norm at tau in {1, 0.5, 0.3, 0.1, 0.01} with blocked:8, random-active
// (5 seeds) and the local oracle; the recursive order's uniform strategies. full: the four networks (MNIST and
// Fashion-MNIST, ReLU and tanh, 10 epochs) with kprime-companion, kappa-norm
// (and kappa on MNIST), random-active (5 seeds), the three oracles and
// smallest-|v|, both orders (recursive: kprime-companion); and MNIST MLPs with
// 2, 4 and 6 hidden layers of 128 (kprime-companion).
sweep_config reproduce_config(bool full);

// Reads a JSON config (keys as in sweep_config; see apps/configs/). Throws
// std::runtime_error naming the file and the key.
sweep_config load_sweep_config(const std::filesystem::path& file);
sweep_config parse_sweep_config(const std::string& text, const std::string& file);
std::string to_json(const sweep_config& cfg);

// One result: a network, an order, a strategy (uniform-low, uniform-high,
// uniform-binary32, exact, algorithm1 or a baseline) at an (indicator, tau),
// and its metrics (docs/experiments.md, "Metrics").
struct result_row {
  std::string network, order, strategy, indicator;
  double tau = 0;
  std::size_t seed = 0;  // random baselines: which seed (0 .. seeds-1)
  std::size_t samples = 0, correct = 0, disagreements = 0;
  double kl_mean = 0, kl_q99 = 0;
  quantiles rel_hidden, rel_logits;
  double mean_relative_error = 0, fraction = 0, weighted_cost = 0, tile_cost = 0;
  std::vector<double> fraction_per_layer;
  // the paired test of argmax disagreements with the reference against another strategy on the same images
  std::string paired_with;
  std::size_t mcnemar_b = 0, mcnemar_c = 0;  // only this row disagrees / only the other one
  double mcnemar_p = 1;
};
std::string csv_header();
// The row of run r (its metrics, fraction and costs), as the sweep writes it.
result_row row_of(const std::string& net, const std::string& order, const std::string& strategy,
                  const std::string& indicator, double tau, std::size_t seed, const mixed_result& r);
// Pairs row x (of run `mine`) with run `other` (named other_name) on the same
// images: McNemar's counts and p-value of their argmax disagreements.
void pair_with(result_row& x, const mixed_result& mine, const std::string& other_name, const mixed_result& other);
std::string to_csv(const result_row& r);
// Strict: every field present and well formed; throws std::runtime_error saying which.
result_row parse_csv_row(const std::string& line);

// Runs jobs shard, shard + shards, ... of the sweep and
// writes <out>/shard-<i>-of-<n>.csv. Jobs are deterministic, so the merged
// result does not depend on the number of shards.
void run_sweep(const sweep_config& c, std::size_t shard = 0, std::size_t shards = 1);

// Merges every shard CSV of <out> into <out>/results.csv (canonical order),
// writes manifest.json, report.md and the figures. Returns the rows.
std::vector<result_row> merge_sweep(const sweep_config& cfg, double wall_seconds);

// report.md and the figures (per network and order: the cost-error figure, the
// recomputed fraction per layer against tau and, when c.diagnostics and the
// sweep wrote them, the error-against-kappa figures) of the rows of sweep c, in
// c.out. merge_sweep calls it; mpacc cnn-sweep too, with a configuration that
// describes its run.
void write_sweep_report(const sweep_config& c, const std::vector<result_row>& rows, double wall_seconds);

// The printed findings: per network and order, Algorithm 1 against uniform low
// and high and against random-active at the same rate, with intervals.
std::string conclusions(const sweep_config& cfg, const std::vector<result_row>& rows);

}  // namespace mpacc::analysis
