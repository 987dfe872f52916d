// SPDX-License-Identifier: MIT
// The simulated forward pass of an MLP (docs/semantics.md §3-4): inputs rounded to their
// storage format, every layer accumulated as a sim::layer_spec says, each
// activation evaluated in binary64 and rounded to the activation format.
// Every rounding's flags are kept, so an analysis can tell where an overflow,
// a saturation or a NaN came from.
#pragma once

#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::nn {

// y = round_act(phi(v)) in place, element by element (OpenMP; threads 0 = all).
// With `flags` (resized to v.size()), each element's flags: those of rounding
// phi(v) to the activation format, plus overflow | invalid when phi(v) itself
// is not finite although v is. Returns the OR of all flags.
// `mode` and `saturate` set the rounding to the activation format (default
// nearest-even without saturation); stochastic rounding of element t uses
// random_bits(seed, t).
unsigned apply_activation(const dense_layer& l, const sim::format& act_format, std::vector<double>& v, int threads = 0,
                          std::vector<unsigned>* flags = nullptr, sim::rounding mode = sim::rounding::nearest_even,
                          bool saturate = false, std::uint64_t seed = 0);
// The same for any activation (the layers of a convolutional network).
unsigned apply_activation(const sim::activation_fn& act, const sim::format& act_format, std::vector<double>& v,
                          int threads = 0, std::vector<unsigned>* flags = nullptr,
                          sim::rounding mode = sim::rounding::nearest_even, bool saturate = false,
                          std::uint64_t seed = 0);

// One layer of a simulated pass (batch x n_out, row-major).
struct simulated_layer {
  std::vector<double> v, y;         // pre-activations and outputs
  std::vector<unsigned> flags;      // per output: its inner product's roundings (products and sums)
  std::vector<unsigned> act_flags;  // per output: evaluating phi and rounding it to the activation format
  std::vector<unsigned> in_flags;   // first layer only: rounding each input to its storage format (batch x n_in)
};

// The stored inputs: X rounded to `input_format` (nearest-even, no saturation),
// with each value's flags when `flags` is given.
std::vector<double> store_inputs(sim::matrix_view X, const sim::format& input_format,
                                 std::vector<unsigned>* flags = nullptr);

// One simulated dense layer: Y = X W^T + b as `spec` says, with each output's
// flags. Uses sim::prepared_dense where the formats are on its exact fast
// path and the MPFR model (ref::dot_mpfr, same bits and stochastic stream)
// otherwise, e.g. binary64 accumulators.
void simulate_layer(const dense_layer& l, sim::matrix_view X, const sim::layer_spec& spec, std::vector<double>& Y,
                    std::vector<unsigned>& flags, int threads = 0);

// X: the exact inputs (batch x n_in), rounded to input_format first. The last
// layer's y are the logits.
std::vector<simulated_layer> simulate(const mlp& net, sim::matrix_view X, const sim::layer_spec& spec,
                                      const sim::format& input_format, const sim::format& act_format, int threads = 0);

// The same pass with every precision choice from one precision_config: the
// weights and biases rounded to their storage formats first, inputs stored in
// p.inputs, layer k accumulated as p.layer_spec(k) says, activations rounded
// to p.act with p.act_rounding and p.act_saturate (stochastic: seed p.seed + k + 1).
std::vector<simulated_layer> simulate(const mlp& net, sim::matrix_view X, const precision_config& p, int threads = 0);

}  // namespace mpacc::nn
