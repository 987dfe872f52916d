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
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

struct mixed_config {
  // The low pass in full (docs/semantics.md §2-4): storage formats of weights,
  // biases and inputs, the low accumulator of each layer (precision.acc: one,
  // or one per layer), rounding mode, product model, order, saturation, the
  // double rounding `via`, the stochastic seed, and the activations' format,
  // rounding and saturation. No per-component maps (Algorithm 1 makes them).
  // Default: e4m3-ieee accumulators, weights and biases stored in e4m3-ieee.
  nn::precision_config precision = [] {
    nn::precision_config p;
    p.acc = {sim::formats::e4m3_ieee};
    return p;
  }();
  // The accumulator the selected components are recomputed in (every layer);
  // everything else as in `precision`.
  sim::format high = sim::formats::binary16;
  // A precision ladder: intermediate accumulators between the low and the high
  // one, cheapest first (e.g. {bfloat16} for e4m3-ieee < bfloat16 < binary16).
  // Runs with selection::ladder use levels {low, ladder..., high}; the others
  // ignore it. docs/extensions.md.
  std::vector<sim::format> ladder;
  // the low accumulator of layer k
  [[nodiscard]] const sim::format& low(std::size_t layer) const { return precision.accumulator(layer); }
  // the inputs of the reference pass the outputs are compared with: the stored
  // inputs (default) or the exact data
  reference_inputs ref_inputs = reference_inputs::stored;
  // cost of one accumulated term per format; default: the format's bit width
  std::map<std::string, double> term_cost;
  // the tile-granular cost: recomputing any component of a tile of
  // tile_rows output components x tile_samples samples pays for the whole tile
  std::size_t tile_rows = 16, tile_samples = 16;
  [[nodiscard]] double cost_of(const sim::format& f) const;
};

// What an indicator sees for one layer and one batch.
struct layer_view {
  std::size_t layer = 0, layers = 0;  // 0-based index, and the network's layer count
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
  [[nodiscard]] bool last() const noexcept { return layer + 1 == layers; }
};

// An indicator: fills score (batch x n_out); components with score > tau are
// recomputed (a NaN score too). `overhead` returns the extra cost (in
// accumulated terms, per sample and layer, at the low format's cost) of
// computing it.
struct indicator {
  std::string name;
  std::function<void(const layer_view&, std::vector<double>& score)> compute;
  std::function<double(const layer_view&)> overhead;
};

// The registry (docs/semantics.md §7). Built in:
//   kappa             kappa_dot(v_low) kappa_act(v_low) u_low, kappa_dot from the low
//                     accumulation of |W||x| + |b|;
//   kappa-norm        the same with ||w_i||_2 ||x||_2 + |b_i| as the numerator;
//   kprime            kappa_act(v_low) / |v_low|;
//   kprime-companion  kprime times 1{v_low >= 0} on the last layer too (negative
//                     logits stay low), the rule of the paper's companion code.
// In every built-in indicator a ReLU component with v_low = 0 (where kappa_act
// is not defined) scores +inf and is recomputed; so does any v_low = 0 whose
// kappa_act is not 0. Add your own with register_indicator (see apps/examples/).
// The registry is a process-wide table: register before starting threads;
// lookups may run concurrently.
void register_indicator(const indicator& ind);
const indicator& find_indicator(const std::string& name);
std::vector<std::string> indicator_names();

// How the components to recompute are chosen in one run.
struct selection {
  enum class kind {
    uniform_low,
    uniform_high,
    threshold,  // Algorithm 1: recompute where indicator > tau
    // matched baselines: as many components per (layer, sample) as a threshold run recomputed
    random,         // uniformly among all components
    random_active,  // uniformly among the components that can matter: kappa_act(v_low) > 0 or
                    // v_low = 0 (for ReLU the active units); never an inactive one
    smallest,       // smallest |v_low| first
    oracle_pre,     // greedy per layer: largest pre-activation error |v_low - v| first
    oracle_local,   // greedy per layer: largest output error |phi(v_low) - phi(v)| first
    oracle_gain,    // greedy per layer: largest gain |phi(v_low) - phi(v)| - |phi(v_high) - phi(v)| first
    // a static (calibrated) configuration: every sample computes component i of
    // layer k at level static_levels[k][i]; no low pass, no estimation cost
    static_map
  } type = kind::threshold;
  std::string indicator;  // threshold: which indicator
  double tau = 1;
  // matched baselines: the number of components to recompute per (layer, sample),
  // taken from a threshold run (layer-major: counts[layer][sample])
  const std::vector<std::vector<std::size_t>>* counts = nullptr;
  std::uint64_t seed = 1234;  // random selections
  bool keep_trace = false;    // fill mixed_result::trace (tests, analyses of single runs)
  // threshold: the levels are {low, mixed_config::ladder..., high}; a component
  // gets the cheapest level l whose scaled indicator score * u_l / u_low is <= tau
  // (u: the level's unit roundoff in the rounding mode), the top level otherwise.
  // Without a ladder (or with an empty one) this is Algorithm 1 bit for bit.
  // static_map: the levels static_levels refers to.
  bool ladder = false;
  // Overflow-aware (threshold and static runs): a component whose low-precision
  // inner product overflowed or saturated (sim::flag::overflow | saturated) is
  // recomputed at the top level whatever its indicator says.
  bool overflow_aware = false;
  // static_map: per layer, the level of each component (0 = low)
  const std::vector<std::vector<std::uint8_t>>* static_levels = nullptr;
};
// "uniform-low", "uniform-high", "algorithm1", "random", "random-active",
// "smallest", "oracle-pre", "oracle-local", "oracle-gain".
std::string_view to_string(selection::kind k) noexcept;
// Inverse for the baselines (random, random-active, smallest, oracle-*);
// throws std::invalid_argument naming the token and the choices.
selection::kind parse_baseline(std::string_view text);

// The nearest-rank p-quantile of v (the value of rank ceil(p n); p = 0: the
// smallest), NaN counting as +inf; 0 for an empty v. Reorders v.
double nearest_rank(std::vector<double>& v, double p);
// Quantiles of a set of non-negative values (the struct of validate.hpp).
// Nearest-rank quantiles (q = the value of rank ceil(q n)); NaN sorts last
// (as +inf). Reorders `values`.
quantiles quantiles_of(std::vector<double>& values);

// The metrics of one run against the reference pass (docs/experiments.md, "Metrics").
struct mixed_result {
  std::size_t samples = 0;
  std::size_t correct = 0;        // argmax = label
  std::size_t disagreements = 0;  // argmax != argmax of the reference pass
  double accuracy = 0;
  double kl_mean = 0, kl_q99 = 0;  // KL(softmax(reference) || softmax(mixed)) per sample, in nats
  // componentwise |y - y_ref| / |y_ref| over the components with y_ref != 0:
  // all hidden layers' outputs together, and the logits
  quantiles rel_hidden, rel_logits;
  double mean_relative_error = 0;                   // mean over samples of max|logit error| / max|reference logit|
  std::vector<double> fraction_per_layer;           // recomputed fraction
  std::vector<double> level_fraction;               // fraction of components at each level (0 = low)
  std::size_t overflow_recomputed = 0;              // components moved to the top level for an overflow
  double fraction = 0;                              // overall (weighted by components)
  double weighted_cost = 0;                         // per term, relative to uniform high (estimation overhead included)
  double tile_cost = 0;                             // tile-granular, relative to uniform high (overhead included)
  std::vector<std::vector<std::size_t>> counts;     // recomputed per [layer][sample]
  std::vector<std::uint8_t> is_correct, disagrees;  // per sample
  std::vector<double> logits;                       // batch x outputs
  // with selection::keep_trace, per layer (batch x n_out): which components were
  // recomputed, the low and high pre-activations of this run's inputs (empty
  // when not computed) and the binary64 values the oracles rank by (oracles only)
  struct layer_trace {
    std::vector<std::uint8_t> recomputed;
    std::vector<std::uint8_t> level;  // the level of each component (0 = low)
    std::vector<double> v_low, v_high, v_true;
    std::vector<double> score;  // threshold runs: the indicator's score
  };
  std::vector<layer_trace> trace;
};

// KL(softmax(zp) || softmax(zq)) of two logit vectors of length C, in nats,
// through log-softmax (no overflow for any finite logits); +inf when zq holds
// a non-finite value.
double kl_softmax(const double* zp, const double* zq, std::size_t C);

// Wilson score interval (95 %: z = 1.959964) for k successes in n trials.
struct interval {
  double lo = 0, hi = 0;
};
interval wilson(std::size_t k, std::size_t n, double z = 1.959963984540054);
// McNemar's exact test on paired binary outcomes: b = pairs where only the
// first is 1, c = only the second; two-sided p-value of the binomial(b + c, 1/2).
double mcnemar_p(std::size_t b, std::size_t c);

// A static configuration calibrated on the runner's samples (docs/extensions.md):
// the threshold run `dynamic` (an indicator, tau, optionally the ladder) is
// run with its trace; per layer and component, the q-quantile (nearest rank,
// NaN as +inf) of the score over the samples is mapped to a level by the same
// rule as the dynamic run. q = 1 (the maximum) gives every component the
// highest level any calibration sample needed.
// threads: -1 = the runner's.
std::vector<std::vector<std::uint8_t>> calibrate_levels(const class mixed_runner& runner, const selection& dynamic,
                                                        double q, int threads = -1);
// The levels as a precision configuration (the low pass's choices, with a
// per-component accumulator map per layer) that nn::simulate, mpacc eval and
// mpacc validate accept.
nn::precision_config static_precision(const mixed_config& cfg, const std::vector<std::vector<std::uint8_t>>& levels,
                                      bool ladder);

// Per layer, per component of a uniform-low pass: kappa_dot and kappa_act at
// the true pre-activation of the same (low) inputs, and the relative local
// error |v_low - v| / |v| of the inner product (the data of the error-vs-kappa
// figures). At most `max_points` components per layer, evenly spaced.
struct layer_diagnostics {
  std::vector<double> kappa_dot, kappa_act, rel_error;
};

// Inputs shared by all runs on one network and data set: the first layer's
// low and high outputs do not depend on the strategy and are computed once.
// run() may be called from several threads at once (the shared layer-0
// results are computed once, on first use, under std::call_once).
class mixed_runner {
 public:
  // The network is stored as cfg.precision says (nn::stored_network) and kept
  // by the runner. `reference`: the reference outputs per layer (samples x n_out) when they
  // are already known (e.g. from another runner on the same network, inputs
  // and input format: reference_outputs()); computed here otherwise.
  mixed_runner(const nn::mlp& net, const io::dataset& data, std::size_t samples, const mixed_config& cfg,
               int threads = 0, const std::vector<std::vector<double>>* reference = nullptr);
  [[nodiscard]] const std::vector<std::vector<double>>& reference_outputs() const noexcept { return ref_y_; }
  // threads: -1 = the runner's
  mixed_result run(const selection& sel, int threads = -1) const;

  [[nodiscard]] std::size_t samples() const noexcept { return rows_; }
  [[nodiscard]] const mixed_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const nn::mlp& network() const noexcept { return net_; }
  // test accuracy of the binary64 (Dot2) reference pass the runner compares with
  [[nodiscard]] double reference_accuracy() const;
  [[nodiscard]] std::vector<layer_diagnostics> diagnostics(std::size_t max_points = 20000) const;
  // Computes the shared layer-0 results now, with the runner's threads (else
  // the first run needing them does, e.g. inside a one-thread parallel job);
  // |W||x| only when `abs_numerator` (indicators that read it, like kappa).
  void precompute(bool abs_numerator) const;

 private:
  nn::mlp net_;  // as stored (cfg.precision's weight and bias formats)
  mixed_config cfg_;
  std::size_t rows_;
  int threads_;
  std::vector<double> x0_;  // stored inputs
  std::vector<std::uint8_t> labels_;
  std::vector<std::vector<double>> ref_y_;  // binary64 (Dot2) reference outputs per layer
  std::vector<sim::prepared_dense> low_, high_, abs_low_;
  std::vector<std::vector<sim::prepared_dense>> mid_;  // [ladder level][layer]
  std::vector<std::vector<double>> row_norms_;
  // layer 0 shared results: the low pass, and the rest computed once on first use
  std::vector<double> v0_low_;
  mutable std::vector<unsigned> v0_low_flags_;  // (the overflow-aware runs' flags)
  mutable std::vector<double> v0_high_, v0_true_, abs0_, y0_low_, y0_high_;
  mutable std::once_flag once_[6];
  const std::vector<double>& v0_high() const;
  const std::vector<double>& y0_low() const;
  const std::vector<double>& y0_high() const;
  const std::vector<double>& v0_true() const;
  const std::vector<double>& abs0() const;
  const std::vector<unsigned>& v0_low_flags() const;
  // phi of layer k, rounded to the activation format as cfg_.precision says
  void activate(std::size_t k, std::vector<double>& v, int threads) const;
};

}  // namespace mpacc::analysis
