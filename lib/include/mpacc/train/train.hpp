// SPDX-License-Identifier: MIT
// Training (minibatch SGD with momentum, cross-entropy, quantization-aware
// forward pass with straight-through gradients) and native evaluation.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "mpacc/io/data.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/sim/format.hpp"

namespace mpacc::train {

struct epoch_report {
  std::size_t epoch = 0;  // 1-based
  double loss = 0;        // mean cross-entropy over the epoch
  double train_accuracy = 0;
  double seconds = 0;  // wall time of the epoch
};

struct train_options {
  std::size_t epochs = 10;
  std::size_t batch = 64;
  double lr = 0.05;
  double momentum = 0.9;  // PyTorch convention: buf = momentum buf + grad; w -= lr buf
  std::uint64_t seed = 1234;
  // Weights and biases are rounded to this format in every forward pass
  // (straight-through gradients update the binary32 master copy); the trained
  // network holds the rounded values. nullopt: plain binary32 training.
  std::optional<sim::format> storage = sim::formats::e4m3_ieee;
  int threads = 0;                                    // OpenBLAS and OpenMP threads (0: all)
  bool progress = true;                               // a progress line on standard error when it is a terminal
  std::function<void(const epoch_report&)> on_epoch;  // called after every epoch
};

// Trains an MLP of the given sizes with `hidden` on every hidden layer and an
// identity output (logits), initialized as PyTorch's Linear (U(-1/sqrt(n_in),
// 1/sqrt(n_in)) for weights and biases) from the seed. Reproducible for a seed
// and thread count (OpenBLAS's summation order may depend on the thread count).
nn::mlp fit(const std::vector<std::size_t>& sizes, sim::activation_fn hidden, const io::dataset& data,
            const train_options& opt, std::vector<epoch_report>* log = nullptr);

// Test accuracy (fraction in [0, 1]) of the network as stored, evaluated in
// binary32 (single = true, OpenBLAS sgemm) or binary64 (dgemm).
double evaluate_native(const nn::mlp& net, const io::dataset& data, bool single, int threads = 0);

// Rounds every weight and bias of net to f (nearest-even, saturating).
void round_weights(nn::mlp& net, const sim::format& f);

namespace detail {
// Mean cross-entropy of the batch and its gradients with respect to every
// weight and bias (same layout as the network's), in binary64, no rounding:
// for the finite-difference tests.
double loss_and_gradients(const nn::mlp& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                          std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db);
}  // namespace detail

}  // namespace mpacc::train
