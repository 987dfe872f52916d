// The simulated forward pass of an MLP (SPEC §4): inputs rounded to their
// storage format, every layer accumulated as a sim::layer_spec says, each
// activation evaluated in binary64 and rounded to the activation format.
#pragma once

#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::nn {

// y = round_act(phi(v)) in place, element by element (OpenMP; threads 0 = all).
void apply_activation(const dense_layer& l, const sim::format& act_format, std::vector<double>& v,
                      int threads = 0);

// Every layer's pre-activations v, outputs y and per-output flags (batch x n_out).
struct simulated_layer {
  std::vector<double> v, y;
  std::vector<unsigned> flags;
};

// X: the exact inputs (batch x n_in), rounded to input_format first. The last
// layer's y are the logits.
std::vector<simulated_layer> simulate(const mlp& net, sim::matrix_view X, const sim::layer_spec& spec,
                                      const sim::format& input_format, const sim::format& act_format,
                                      int threads = 0);

}  // namespace mpacc::nn
