// SPDX-License-Identifier: MIT
// Numerical validation of the componentwise analysis on a network and data
// set (`mpacc validate`): simulated and reference passes, per-component
// errors and bounds (propagated through the network, and per inner product on
// each layer's own inputs), what is not covered and why, tightness
// statistics, CSV/JSON/plots.
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/analysis/reference_inputs.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/nn/cnn.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/vit.hpp"

namespace mpacc::analysis {

// Per-component results of one simulated layer for one sample.
struct component_result {
  double v_ref = 0, v_sim = 0, y_ref = 0, y_sim = 0;  // reference (nearest binary64) and simulated
  double err_v = 0, err_y = 0;                        // |sim - ref| from the reference's double-double
  double kappa_dot = 0, kappa_act = 0;
  double bound_v = 0, bound_y = 0;            // deterministic, propagated (absolute); inf when uncovered
  double prob_bound_v = 0, prob_bound_y = 0;  // probabilistic (absolute)
  double first_order = 0;                     // kappa_act kappa_dot gamma_k(u) + u_act (relative, to first order)
  // per inner product, on the layer's own (simulated) inputs: |v_sim - w^T x_sim - b| (NaN when not checked)
  // and the deterministic accumulation bound
  double err_local = 0, bound_local = 0;
  unsigned flags = 0;          // sim::flag bits of the inner product (products and sums)
  unsigned flags_act = 0;      // evaluating phi and rounding it to the activation format
  unsigned flags_in = 0;       // everything upstream: the stored inputs, then every earlier layer (OR over the sample)
  std::uint8_t cause = 0;      // uncovered_cause (0: covered)
  bool act_dominated = false;  // the output bound is mostly the activation's evaluation and rounding
  [[nodiscard]] bool covered() const noexcept { return cause == 0; }
};

struct validate_options {
  std::size_t samples = 0;                        // first N images (0: all)
  std::size_t csv_samples = 20;                   // per-component rows written for the first N samples
  double lambda = 5.0;                            // probabilistic bound propagated through the network
  std::vector<double> lambdas = {1, 2, 3, 4, 5};  // per-inner-product probabilistic checks
  mpfr_prec_t precision = 200;                    // reference precision
  reference_inputs ref_inputs = reference_inputs::stored;
  int threads = 0;
  // vision transformers, validate(vit, data, configs, opt) only: samples per
  // chunk (0: all at once), and a call after each chunk (samples done, of total)
  std::size_t chunk = 0;
  std::function<void(std::size_t, std::size_t)> progress;
};

// Why a component has no bound ("uncovered"). A non-finite value without one
// of these causes is not uncovered: it is counted as a violation.
enum class uncovered_cause : std::uint8_t {
  none,
  input,         // an input of the first layer overflowed (or was NaN) when stored
  inherited,     // the component uses an upstream value that is uncovered
  accumulation,  // its inner product overflowed or saturated
  activation,    // phi(v) overflowed, or rounding it to the activation format did (inf or NaN)
  reference,     // the reference value is not finite
  bound,         // the bound itself overflowed binary64
};
inline constexpr std::size_t uncovered_causes = 7;
std::string_view to_string(uncovered_cause c) noexcept;

// Quantiles of a distribution (n values; all 0 when n = 0).
struct quantiles {
  std::size_t n = 0;
  double q50 = 0, q90 = 0, q99 = 0, max = 0;
};

// The probabilistic bound of Higham & Mary checked per inner product: the
// simulated v of each component against the exact inner product of the same
// weights and the layer's simulated (stored) inputs, so that nothing upstream
// enters and the stated probability applies to each check.
struct local_check {
  double lambda = 0;
  double stated_failure = 0;  // per inner product: min(1, 2 N exp(-lambda^2 (1-u)^2 / 2)), N its rounding steps
  std::size_t checked = 0, violations = 0;
  std::size_t vacuous = 0;                        // bound >= |w|^T|x| + |b|: it says nothing
  std::size_t violations_non_vacuous = 0;         // violations among the other components
  double frequency = 0, ci_low = 0, ci_high = 0;  // violations / checked, Clopper-Pearson 95 %
};

// Summary of one layer (or of all layers when layer == 0) over all samples.
struct layer_summary {
  std::size_t layer = 0;  // 1-based; 0 = all layers
  std::size_t components = 0, uncovered = 0;
  std::array<std::size_t, uncovered_causes> uncovered_by_cause{};
  // deterministic bound propagated through the network (must be 0)
  std::size_t violations_v = 0, violations_y = 0;
  // deterministic bound per inner product on the layer's own inputs (must be 0)
  std::size_t local_checked = 0, local_violations = 0, local_vacuous = 0;
  // probabilistic bound (lambda of the options) propagated through the network
  std::size_t prob_violations_v = 0, prob_violations_y = 0;
  double prob_ratio_max = 0;
  // failure probability of the propagated probabilistic bound of a component of
  // this layer (union over every inner product it depends on); empty where it is >= 1
  std::optional<double> prob_propagated_failure;
  std::vector<local_check> local;  // one per lambda of the options
  // tightness, covered components: error / bound, bound / |exact| (exact != 0), and
  // the first-order estimate (kappa u |exact|) over the measured error (error != 0)
  quantiles err_over_bound_v, err_over_bound_y, bound_over_exact_v, bound_over_exact_y;
  quantiles estimate_over_error_v, estimate_over_error_y;
  std::size_t zero_error_v = 0, zero_error_y = 0;
  // output bounds dominated by the activation's evaluation and rounding (among those
  // that the pre-activation's error reaches: max |phi'| > 0 on the interval)
  std::size_t act_dominated = 0;
  double spearman = 0;  // rank correlation of the relative error of y with kappa_dot * kappa_act
  std::size_t spearman_n = 0;
  double kappa_dot_median = 0, kappa_dot_max = 0;
  // layer 1: the storage error of the inputs, max over components of sum_j |w_ij| |x_j - stored x_j|
  // relative to the deterministic bound of v (a term the bounds include only with exact reference inputs)
  double input_storage_term_max = 0, input_storage_term_over_bound_max = 0;
};

struct validation_result {
  std::string config;                                   // the precision in its compact form
  nn::precision_config precision;                       // the configuration, in full
  std::vector<layer_summary> layers;                    // per layer, then the total (layer 0)
  std::vector<std::vector<component_result>> csv_rows;  // [sample][component over layers]
  std::vector<std::size_t> layer_sizes;
  std::vector<std::string> layer_kinds;      // convolutional networks: conv, maxpool, avgpool, flatten, dense
  std::vector<double> layer_u, layer_gamma;  // accumulator unit roundoff and (1+u)^kmax - 1 (first format)
  std::vector<int> layer_kmax;               // largest rounding count of a term, bias rounding included
  std::vector<std::uint64_t> layer_steps;    // rounding steps of one inner product
  double u_act = 0;
  reference_inputs ref_inputs = reference_inputs::stored;
  std::size_t inputs_stored = 0, inputs_inexact = 0, inputs_overflow = 0;  // the data rounded to the input format
  double seconds_simulation = 0, seconds_bounds = 0;
  double seconds_reference = 0;  // vit: the reference pass it used (shared by the configurations that share it)
  [[nodiscard]] const layer_summary& total() const { return layers.back(); }
  [[nodiscard]] std::size_t violations() const;  // deterministic, propagated and per inner product, all layers
};

// The reference pass for a data set, computed once and shared by several
// configurations with the same input format.
struct reference_data {
  nn::forward_result ref;
  std::vector<double> inputs;  // the exact data (rows x cols)
  std::size_t rows = 0, cols = 0;
  reference_inputs kind = reference_inputs::stored;
  sim::format input_format = sim::formats::binary32;  // the storage format (kind == stored)
  std::optional<sim::format> weights, biases;         // the network's storage formats
  std::optional<sim::format> act;  // vit: the format of its elementwise parameters (p.act; unset for MLPs and CNNs)
  double seconds = 0;
};
// The first `rows` samples of the data as stored in input_format (the
// reference's inputs by default); throws std::invalid_argument naming the
// first value that is not finite once stored.
std::vector<double> stored_reference_inputs(const io::dataset& data, std::size_t rows, const sim::format& input_format);
// Throws std::invalid_argument when kind == stored and a stored input is not
// finite (the reference of an overflowed input is undefined).
// The reference is computed on the network as stored (nn::stored_network with
// p's weight and bias formats) and on the inputs stored in p.inputs; it serves
// every configuration with the same three formats.
reference_data compute_reference(const nn::mlp& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p);

// Runs the simulated pass nn::simulate(model, X, p) and checks every component
// against the reference (computed by compute_reference with the same storage
// formats of weights, biases and inputs; std::invalid_argument otherwise).
// Every field of p is honoured: per-layer accumulators and component maps,
// product model, mode, order, saturation, via, seed, and the activations'
// format, rounding mode and saturation (which enter the output bounds).
validation_result validate(const nn::mlp& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt);

// The same for a convolutional network (docs/cnn.md, "Validation"): the
// reference pass nn::reference_forward(cnn) on the stored network, and the
// simulated pass nn::simulate(cnn, X, p) checked per layer and component
// (conv: per output channel and pixel, NCHW order; pooling and flatten
// layers too). Convolution and dense components are bounded exactly as the
// MLP's neurons (the patch's terms, padded positions exact zeros); max
// pooling: |max x^ - max x| <= max |x^_i - x_i| (no rounding), kappa_dot =
// max |x_i| / |max x_i|; average pooling: the window sum's accumulation bound
// divided by the window size, plus one rounding of the quotient.
reference_data compute_reference(const nn::cnn& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p);
validation_result validate(const nn::cnn& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt);

// The same for a vision transformer (docs/attention.md, "Reference pass and
// validation"): the reference pass nn::reference_forward(vit) on the stored
// network, and the simulated pass nn::simulate(vit, X, p) checked on every
// value of every inner-product layer (vit::product_layer_names; v and y as
// in nn::simulated_vit_layer, y of scores the softmax, of proj and fc2 the
// residual stream). The deterministic bound is propagated through the
// blocks: accumulation bounds on the simulated operands plus the propagated
// errors of both operands (Q K^T, P V), Theorems 1-4 of
// docs/attention-bounds.md for softmax and layer norm, GELU's derivative
// bound, the residual additions and the roundings to p.act. The probabilistic
// bound is not propagated (its fields repeat the deterministic one); the
// per-inner-product probabilistic checks are made. Memory: the reference and
// the simulated pass of all samples are held, and every component's ratios
// (5.5 GB measured for 1000 images of the 2-block d-64 ViT): the form below
// on the data set runs in bounded memory.
reference_data compute_reference(const nn::vit& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p);
validation_result validate(const nn::vit& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt);
// The same for the first opt.samples rows of `data` (0: all) and several
// configurations, in chunks of opt.chunk samples (0: one chunk): per chunk one
// reference pass per distinct storage of weights, biases, inputs and
// elementwise parameters (the class token, position embedding and layer-norm
// parameters are stored in p.act, so the activation format is part of it; shared
// by the configurations with that storage), the simulated pass from the
// chunk's first sample (the bits of one run), the bounds; only the per-layer
// statistics are kept between chunks. Counts, violations, uncovered
// components, maxima and the CSV rows do not depend on the chunk size. The
// tightness quantiles come from exact histograms with buckets of relative
// width 2^-10 (log_histogram in validate_internal.hpp): each is within 2^-11
// relative of the exact quantile (the max and 0 exactly); the rank correlation
// is computed on a pseudo-random sample of at most 50,000 pairs per layer (the
// pairs with the smallest hashes of their component's index), spearman_n
// being the sample's size. The results do not depend on opt.chunk.
std::vector<validation_result> validate(const nn::vit& model, const io::dataset& data,
                                        const std::vector<nn::precision_config>& configs, const validate_options& opt);

// Writes <dir>/components.csv, <dir>/summary.json (with `manifest` merged in
// as "manifest") and the plots (PNG + .gp + data) of one configuration;
// every file through a temporary name renamed into place.
void write_report(const validation_result& r, const std::filesystem::path& dir, const std::string& manifest_json,
                  bool plots = true);

}  // namespace mpacc::analysis
