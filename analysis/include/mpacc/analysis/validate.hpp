// Numerical validation of the componentwise analysis on a network and data
// set: simulated and reference passes, per-component errors and bounds,
// summaries, CSV/JSON/plots (`mpacc validate`).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/nn/data.hpp"
#include "mpacc/nn/reference.hpp"

namespace mpacc::analysis {

struct validate_options {
  std::size_t samples = 0;       // first N images (0: all)
  std::size_t csv_samples = 20;  // per-component rows written for the first N samples
  double lambda = 5.0;           // probabilistic bound parameter
  mpfr_prec_t precision = 200;   // reference precision
  int threads = 0;
};

// Summary of one layer (or of all layers when layer == 0) over all samples.
struct layer_summary {
  std::size_t layer = 0;  // 1-based; 0 = all layers
  std::size_t components = 0, uncovered = 0;     // uncovered: overflow or saturation (no bound)
  std::size_t violations_v = 0, violations_y = 0;  // deterministic bound violated (must be 0)
  std::size_t prob_violations_v = 0, prob_violations_y = 0;
  double prob_confidence_min = 1;  // smallest stated probability of the probabilistic bound
  double ratio_q50 = 0, ratio_q90 = 0, ratio_q99 = 0, ratio_max = 0;  // quantiles of err_y / bound_y
  double prob_ratio_max = 0;
  double spearman = 0;  // rank correlation of relative error of v with kappa_dot * kappa_act
  std::size_t spearman_n = 0;
  double kappa_dot_median = 0, kappa_dot_max = 0;
};

struct validation_result {
  std::string config;  // "acc=e4m3-ieee order=blocked:8 ..."
  std::vector<layer_summary> layers;  // per layer, then the total (layer 0)
  std::vector<std::vector<component_result>> csv_rows;  // [sample][component over layers]
  std::vector<std::size_t> layer_sizes;
  std::vector<double> layer_u, layer_gamma;  // accumulator unit roundoff and (1+u)^kmax - 1 (first format)
  double u_act = 0;
  double seconds_simulation = 0, seconds_bounds = 0;
};

// The reference pass for a data set, computed once and shared by several
// configurations.
struct reference_data {
  nn::forward_result ref;
  std::vector<double> inputs;  // the exact inputs used (rows x cols)
  std::size_t rows = 0, cols = 0;
  double seconds = 0;
};
reference_data compute_reference(const nn::mlp& net, const nn::dataset& data, const validate_options& opt);

// Runs the simulation for `cfg` and checks every component against the reference.
validation_result validate(const nn::mlp& net, const reference_data& ref, const simulation_config& cfg,
                           const validate_options& opt);

// Writes <dir>/components.csv, <dir>/summary.json (with `manifest` merged in
// as "manifest") and the plots (PNG + .gp + data) of one configuration;
// every file through a temporary name renamed into place.
void write_report(const validation_result& r, const std::filesystem::path& dir, const std::string& manifest_json,
                  bool plots = true);

}  // namespace mpacc::analysis
