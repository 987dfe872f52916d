// SPDX-License-Identifier: MIT
// Multilayer perceptrons: the network description shared by the reference
// engine, the simulation, training and the analyses.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "mpacc/sim/activation.hpp"

namespace mpacc::nn {

// Limits on a layer, checked by mlp::validate, make_mlp and parse_arch (and the
// model readers): a width of at most 2^24, and at most 2^31 weights (16 GiB).
inline constexpr std::size_t max_layer_width = std::size_t{1} << 24;
inline constexpr std::size_t max_layer_weights = std::size_t{1} << 31;

// y = phi(W x + b), W row-major n_out x n_in (W[i * n_in + j] = w_ij).
struct dense_layer {
  std::size_t n_in = 0, n_out = 0;
  std::vector<double> W;  // n_out * n_in
  std::vector<double> b;  // n_out
  sim::activation_fn act;
  [[nodiscard]] const double* row(std::size_t i) const noexcept { return W.data() + i * n_in; }
};

// Layers in order; the last layer's outputs are the logits (its activation is
// usually identity; classification takes their argmax, probabilities their softmax).
struct mlp {
  std::vector<dense_layer> layers;
  [[nodiscard]] std::size_t inputs() const noexcept { return layers.empty() ? 0 : layers.front().n_in; }
  [[nodiscard]] std::size_t outputs() const noexcept { return layers.empty() ? 0 : layers.back().n_out; }
  // "784-784-128-10"
  [[nodiscard]] std::string arch() const;
  // Throws std::invalid_argument naming the layer and the mismatch (sizes,
  // chaining, non-finite weights).
  void validate() const;
};

// Zero weights with the given sizes ("784-784-128-10" as {784, 784, 128, 10}),
// `hidden` on every layer but the last, `output` on the last.
mlp make_mlp(const std::vector<std::size_t>& sizes, sim::activation_fn hidden, sim::activation_fn output = {});
// Parses "784-784-128-10"; throws std::invalid_argument naming the token.
std::vector<std::size_t> parse_arch(const std::string& text);

// Index of the largest value (the first one on ties).
std::size_t argmax(std::span<const double> v) noexcept;

}  // namespace mpacc::nn
