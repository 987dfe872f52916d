// SPDX-License-Identifier: MIT
// Convolutional networks (issue 14, phase 1): a simple description — a
// sequence of convolutions, pooling, flatten and dense layers — with native
// training (OpenBLAS sgemm through im2col, quantization-aware as nn::train)
// and native evaluation. The simulated and reference passes over it come
// with the generalized network description.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "mpacc/nn/data.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/nn/train.hpp"
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

// Trains the network in place from PyTorch's default initialization
// (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = c_in*kh*kw
// or n_in, drawn from opt.seed): minibatch SGD with momentum, softmax
// cross-entropy, the forward pass on weights and biases rounded to
// opt.storage (straight-through gradients on a binary32 master copy), exactly
// as nn::train does for MLPs; the trained network holds the rounded values.
// Convolutions are im2col + OpenBLAS sgemm forward and backward.
// Reproducible for a seed and thread count.
// The options of nn::train and a step schedule of the learning rate.
struct cnn_train_options : train_options {
  // after each epoch listed (1-based), the learning rate is multiplied by lr_gamma
  std::vector<std::size_t> lr_steps;
  double lr_gamma = 0.1;
};
void train_cnn(cnn& net, const dataset& data, const cnn_train_options& opt, std::vector<epoch_report>* log = nullptr);

// Test accuracy (fraction in [0, 1]) of the network as stored, in binary32
// (single) or binary64.
double evaluate_cnn_native(const cnn& net, const dataset& data, bool single, int threads = 0);

// Logits of a batch (rows of data-set layout) in binary64, as stored.
std::vector<double> cnn_forward_native(const cnn& net, const double* X, std::size_t batch);

namespace detail {
// Mean cross-entropy of the batch and its gradients with respect to every
// weight and bias (dW[k], db[k] for layer k; empty for layers without
// weights), in binary64, no rounding: for the finite-difference tests.
double cnn_loss_and_gradients(const cnn& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                              std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db);
}  // namespace detail

}  // namespace mpacc::nn
