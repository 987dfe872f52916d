// SPDX-License-Identifier: MIT
// Algorithm 1 (mixed-precision accumulation guided by condition numbers,
// docs/semantics.md §7), its indicators and its baselines, and the cost model.
//
// Layer by layer: compute every component with the low accumulator,
// estimate each component's indicator from that output, recompute the
// components whose indicator exceeds tau with the high accumulator, apply phi;
// the mixed output is the next layer's input.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/nn/data.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

struct mixed_config {
  sim::format low = sim::formats::e4m3_ieee;
  sim::format high = sim::formats::binary16;
  sim::accumulation model;  // mode, product model, order, saturation (acc ignored)
  sim::format input_format = sim::formats::binary32;
  sim::format act_format = sim::formats::binary32;
  // the inputs of the reference pass the logits are compared with: the stored
  // inputs (default) or the exact data
  reference_inputs ref_inputs = reference_inputs::stored;
  // cost of one accumulated term per format; default: the format's bit width
  std::map<std::string, double> term_cost;
  [[nodiscard]] double cost_of(const sim::format& f) const;
};

// What an indicator sees for one layer and one batch.
struct layer_view {
  std::size_t layer = 0;  // 0-based
  std::size_t batch = 0, n_in = 0, n_out = 0;
  const nn::dense_layer* weights = nullptr;
  const double* x = nullptr;      // the layer's (mixed) input, batch x n_in
  const double* v_low = nullptr;  // the low-precision pre-activations, batch x n_out
  const mixed_config* config = nullptr;
  // the low-precision accumulation of |W||x| + |b| (batch x n_out), computed on
  // first use (and then counted in the indicator's cost)
  std::function<const std::vector<double>&()> abs_numerator;
  // ||w_i||_2 per row (precomputed once per network)
  const std::vector<double>* row_norms = nullptr;
};

// An indicator: fills score (batch x n_out); components with score > tau are
// recomputed. `overhead` returns the extra cost (in accumulated terms, per
// sample and layer, at the low format's cost) of computing it.
struct indicator {
  std::string name;
  std::function<void(const layer_view&, std::vector<double>& score)> compute;
  std::function<double(const layer_view&)> overhead;
};

// The registry: "kappa", "kappa-norm", "kprime" are built in; add your own
// with register_indicator (see apps/examples/).
void register_indicator(const indicator& ind);
const indicator& find_indicator(const std::string& name);
std::vector<std::string> indicator_names();

// How the components to recompute are chosen in one run.
struct selection {
  enum class kind { uniform_low, uniform_high, threshold, random, smallest, oracle } type = kind::threshold;
  std::string indicator;  // threshold: which indicator
  double tau = 1;
  // matched baselines: the number of components to recompute per (layer, sample),
  // taken from a threshold run (layer-major: counts[layer][sample])
  const std::vector<std::vector<std::size_t>>* counts = nullptr;
  std::uint64_t seed = 1234;  // random selection
};

struct mixed_result {
  double accuracy = 0;
  std::vector<double> fraction_per_layer;  // recomputed fraction
  double fraction = 0;                     // overall (weighted by components)
  double weighted_cost = 0;                // relative to uniform high (estimation overhead included)
  double mean_relative_error = 0;          // mean over samples of max|logit error| / max|reference logit|
  std::vector<std::vector<std::size_t>> counts;  // recomputed per [layer][sample]
  std::vector<double> logits;              // batch x outputs
};

// Inputs shared by all runs on one network and data set: the first layer's
// low and high outputs do not depend on the strategy and are computed once.
class mixed_runner {
 public:
  mixed_runner(const nn::mlp& net, const nn::dataset& data, std::size_t samples, const mixed_config& cfg,
               int threads = 0);
  mixed_result run(const selection& sel) const;
  [[nodiscard]] std::size_t samples() const noexcept { return rows_; }
  // test accuracy of the binary64 (Dot2) reference pass the runner compares logits with
  [[nodiscard]] double reference_accuracy() const;

 private:
  const nn::mlp& net_;
  mixed_config cfg_;
  std::size_t rows_;
  int threads_;
  std::vector<double> x0_;           // stored inputs
  std::vector<std::uint8_t> labels_;
  std::vector<double> ref_logits_;   // binary64 (Dot2) reference logits
  std::vector<sim::prepared_dense> low_, high_, abs_low_;
  std::vector<std::vector<double>> row_norms_;
  // layer 0 shared results (high, true and |W||x| computed on first use; run()
  // is therefore not safe to call concurrently on one runner)
  std::vector<double> v0_low_;
  mutable std::vector<double> v0_high_, v0_true_, abs0_;
  mutable bool v0_high_done_ = false, v0_true_done_ = false, abs0_done_ = false;
};

}  // namespace mpacc::analysis
