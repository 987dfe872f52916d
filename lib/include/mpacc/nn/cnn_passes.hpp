// SPDX-License-Identifier: MIT
// The simulated and reference forward passes of a convolutional network
// (nn::cnn, docs/cnn.md "Passes over a network"): the MLP passes of
// nn/simulate.hpp and nn/reference.hpp, layer by layer, with the
// convolutions lowered onto the dense kernels (sim::prepared_conv2d) and the
// pooling of sim/conv.hpp.
#pragma once

#include <cstdint>
#include <vector>

#include "mpacc/nn/cnn.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"

namespace mpacc::nn {

// The network with the weights and biases of its convolutions and dense
// layers rounded to p's storage formats (nearest-even, no saturation).
cnn stored_network(const cnn& net, const precision_config& p);

// One layer of a simulated pass over a cnn: batch x (the layer's outputs per
// sample, NCHW for convolutions and pooling). For a convolution or dense
// layer, v are the pre-activations, y the outputs, flags each inner
// product's and act_flags each activation's flags; for average pooling v is
// the simulated window sum, y the rounded mean and flags those of both; for
// max pooling and flatten v = y and no flags. where: max pooling only, the
// index (within the sample's c x h x w input) of each output's chosen input.
struct simulated_cnn_layer : simulated_layer {
  std::vector<std::uint32_t> where;
};

// The simulated pass with every precision choice from p; layer k of the
// network (convolution, pooling, flatten or dense, counted alike) is
// accumulated as p.layer_spec(k) says: p.acc and p.maps have 1 or
// net.layers.size() entries (entries of max-pooling and flatten layers are
// unused). Convolutions: sim::prepared_conv2d with the map's index empty,
// per channel or per (channel, pixel); formats outside the fast path use
// the MPFR model on the im2col rows (same bits, same stochastic words; a
// per-pixel map then throws). Activations as nn::simulate (seed p.seed + k + 1).
// Average pooling: sim::avg_pool2d with p.layer_spec(k).base (its map must be
// uniform; the fast path is required). On an MLP-only network (dense layers
// on n x 1 x 1 inputs) this is nn::simulate(mlp, X, p) bit for bit.
std::vector<simulated_cnn_layer> simulate(const cnn& net, sim::matrix_view X, const precision_config& p,
                                          int threads = 0);

// The MPFR reference tier over a cnn, per sample and layer: every
// convolution output and dense pre-activation is its exact inner product
// (long accumulator or MPFR sums) rounded to P bits, activations as the MLP
// engine (ref::activate at P bits); max pooling takes the maximum of its
// window exactly (bound: the largest bound of the window), average pooling
// the window sum (v, rounded to P bits) and the quotient by the window size
// (y, rounded to P bits); flatten copies. Bounds (v_bound, y_bound) against
// exact real arithmetic on the same inputs, as for MLPs. opt.exact: exact
// values (piecewise-linear activations and average windows of 2^k terms only;
// bounds 0). Layer k of the result is layer k of the network.
forward_result reference_forward(const cnn& net, sim::matrix_view X, const reference_options& opt = {});

}  // namespace mpacc::nn
