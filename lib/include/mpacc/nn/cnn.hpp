// SPDX-License-Identifier: MIT
// Convolutional networks (issue 14, phase 1): a simple description — a
// sequence of convolutions, pooling, flatten and dense layers. Training and
// native evaluation: train/cnn.hpp. The simulated and reference passes
// over it come with the generalized network description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/conv.hpp"

namespace mpacc::nn {

// y = phi(conv(x, W) + b): W in PyTorch's layout (c_out, c_in, kh, kw), b per c_out.
struct conv_layer {
  sim::conv2d_shape shape;
  std::vector<double> W, b;
  sim::activation_fn act;
};

// Max or average pooling (sim::max_pool2d, sim::avg_pool2d semantics).
struct pool_layer {
  enum class kind : std::uint8_t { max, avg } type = kind::max;
  sim::pool2d_shape shape;
};

// NCHW -> (c*h*w) per sample, PyTorch's order (no data movement).
struct flatten_layer {
  std::size_t c = 0, h = 0, w = 0;
};

using cnn_layer = std::variant<conv_layer, pool_layer, flatten_layer, dense_layer>;

// A network on c x h x w inputs (a dataset row is one image, NCHW order); the
// last layer is a dense layer whose outputs are the logits.
struct cnn {
  std::size_t c = 1, h = 28, w = 28;
  std::vector<cnn_layer> layers;

  [[nodiscard]] std::size_t inputs() const noexcept { return c * h * w; }
  [[nodiscard]] std::size_t outputs() const;
  // "conv1x6k5p2-relu,maxpool2,conv6x16k5-relu,maxpool2,flatten,dense400x120-relu,..."
  [[nodiscard]] std::string arch() const;
  // Throws std::invalid_argument naming the layer and the mismatch (shapes
  // that do not chain, weight and bias sizes, non-finite weights, a last layer
  // that is not dense).
  void validate() const;
};

// LeNet-5 as in most modern re-implementations: conv 1->6 5x5 pad 2, act, max
// pool 2; conv 6->16 5x5, act, max pool 2; flatten (400); dense 120, act; dense
// 84, act; dense `classes` (identity). Zero weights.
cnn make_lenet5(sim::activation_fn act, std::size_t classes = 10);

}  // namespace mpacc::nn
