// SPDX-License-Identifier: MIT
// Sweeps of Algorithm 1 and its baselines over networks, indicators and
// tolerances (docs/semantics.md §8): `mpacc sweep --config FILE`, `mpacc reproduce`,
// sharding and merging.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"

namespace mpacc::analysis {

struct network_spec {
  std::string dataset = "mnist";  // mnist | fashion-mnist
  std::string act = "relu";
  std::string model;  // a model file; empty: trained (and cached) from the training settings
};

struct sweep_config {
  std::string name = "sweep";
  std::vector<network_spec> networks;
  std::size_t samples = 1000;  // test images (0: all)
  std::vector<double> taus;
  std::vector<std::string> indicators = {"kappa", "kappa-norm", "kprime"};
  std::vector<std::string> baselines = {"random", "smallest", "oracle"};
  mixed_config mix;
  // training of networks that have no model file
  std::size_t epochs = 10, train_limit = 0, batch = 64;
  std::uint64_t seed = 1234;
  std::filesystem::path data_dir, models_dir = "results/models", out = "results/sweep";
  int threads = 0;
};

// The paper's experiment (docs/semantics.md §8): 4 networks (MNIST and Fashion-MNIST, ReLU and tanh),
// e4m3-ieee low / binary16 high accumulators, blocked:8, exact products,
// tau in {1, 0.5, 0.3, 0.1} plus a logarithmic sweep. quick: 2 epochs on
// 20,000 training images and 1,000 test images; full: 10 epochs, all images.
sweep_config reproduce_config(bool full);

// Reads a JSON config (keys as in sweep_config; see apps/configs/). Throws
// std::runtime_error naming the file and the key.
sweep_config load_sweep_config(const std::filesystem::path& file);
std::string to_json(const sweep_config& cfg);

// Runs jobs shard_index, shard_index + shard_count, ... of the sweep and
// writes <out>/shard-<i>-of-<n>.csv. Jobs are deterministic, so the merged
// result does not depend on the number of shards.
void run_sweep(const sweep_config& cfg, std::size_t shard_index = 0, std::size_t shard_count = 1);

// Merges every shard CSV of <out> into <out>/results.csv (canonical order),
// writes manifest.json and draws the figures. Returns the results table as text.
std::string merge_sweep(const sweep_config& cfg, double wall_seconds);

}  // namespace mpacc::analysis
