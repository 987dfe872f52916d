// SPDX-License-Identifier: MIT
// Training and native evaluation of convolutional networks (nn/cnn.hpp):
// OpenBLAS GEMMs through im2col, quantization-aware as train::fit for MLPs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpacc/nn/cnn.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/train/train.hpp"

namespace mpacc::train {

// The options of train::fit and a step schedule of the learning rate.
struct cnn_train_options : train_options {
  // after each epoch listed (1-based), the learning rate is multiplied by lr_gamma
  std::vector<std::size_t> lr_steps;
  double lr_gamma = 0.1;
};
// Trains the network in place from PyTorch's default initialization
// (weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = c_in*kh*kw
// or n_in, drawn from opt.seed): minibatch SGD with momentum, softmax
// cross-entropy, the forward pass on weights and biases rounded to
// opt.storage (straight-through gradients on a binary32 master copy), exactly
// as train::fit does for MLPs; the trained network holds the rounded values.
// Convolutions are im2col + OpenBLAS sgemm forward and backward.
// Reproducible for a seed and thread count.
void train_cnn(nn::cnn& net, const io::dataset& data, const cnn_train_options& opt,
               std::vector<epoch_report>* log = nullptr);

// Test accuracy (fraction in [0, 1]) of the network as stored, in binary32
// (single) or binary64.
double evaluate_cnn_native(const nn::cnn& net, const io::dataset& data, bool single, int threads = 0);

// Logits of a batch (rows of data-set layout) in binary64, as stored.
std::vector<double> cnn_forward_native(const nn::cnn& net, const double* X, std::size_t batch);

namespace detail {
// Mean cross-entropy of the batch and its gradients with respect to every
// weight and bias (dW[k], db[k] for layer k; empty for layers without
// weights), in binary64, no rounding: for the finite-difference tests.
double cnn_loss_and_gradients(const nn::cnn& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                              std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db);
}  // namespace detail

}  // namespace mpacc::train
