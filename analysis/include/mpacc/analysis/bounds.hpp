// SPDX-License-Identifier: MIT
// Componentwise condition numbers and error bounds of a simulated MLP
// (docs/semantics.md §6, docs/error-bounds.md): kappa_dot, kappa_act, the deterministic bound of each
// accumulation model with stored-input errors, the probabilistic bound of
// Higham & Mary (2019), first-order and rigorous (mean-value) output bounds,
// propagated through all layers. Derivations: docs/error-bounds.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

// How a network is simulated: every layer with the same accumulation model
// (the precision map may differ per component), inputs stored in
// `input_format`, each activation evaluated in binary64 and rounded to
// `act_format` (docs/semantics.md §3-4). Hidden values keep their act_format precision.
struct simulation_config {
  sim::layer_spec layer;  // accumulator map, mode, product, order, saturation
  sim::format input_format = sim::formats::binary32;
  sim::format act_format = sim::formats::binary32;
};

// Which inputs the reference pass takes: the data as stored in the input
// format (the default: the reference then answers "what does the accumulation
// cost", and the storage error of the data is reported as a separate term),
// or the exact data (the bounds then include the storage error).
enum class reference_inputs { stored, exact };
std::string_view to_string(reference_inputs r) noexcept;
reference_inputs parse_reference_inputs(std::string_view text);  // "stored" | "exact"

// kappa_dot = (|w|^T|x| + |b|) / |w^T x + b|; `value` is w^T x + b (from the
// reference); +inf for an exact zero with a non-zero numerator, 1 for 0/0.
double kappa_dot(std::span<const double> w, std::span<const double> x, double b, double value) noexcept;

// An upper bound of sup |phi'(t)| for t in [lo, hi]: exact for identity and (leaky)
// ReLU; for tanh and sigmoid, whose derivatives peak at 0, phi' at the point nearest
// 0 times (1 + 2^-40) plus 2^-1074 (never 0, also where phi' underflows); the global
// constant for GELU and SiLU.
double max_derivative(const sim::activation_fn& f, double lo, double hi) noexcept;

// Probability with which the probabilistic bound of an inner product with
// `roundings` rounding errors of unit roundoff u holds:
// 1 - 2 roundings exp(-lambda^2 (1 - u)^2 / 2) (clamped at 0).
double probabilistic_confidence(std::size_t roundings, double u, double lambda) noexcept;

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

}  // namespace mpacc::analysis
