// SPDX-License-Identifier: MIT
// Training and native evaluation of vision transformers (nn/vit.hpp): a
// hand-written backward pass, AdamW, OpenBLAS GEMMs for the linear maps,
// quantization-aware as train::fit for MLPs (docs/attention.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpacc/io/data.hpp"
#include "mpacc/nn/vit.hpp"
#include "mpacc/train/train.hpp"

namespace mpacc::train {

// train_options with AdamW in place of SGD with momentum (train_options'
// momentum is unused). The learning rate rises linearly from 0 over
// warmup_steps steps, then follows a cosine from lr down to 0 at the last
// step. Weight decay (decoupled, AdamW's) applies to the weight matrices of
// the linear maps only, not to biases, layer-norm gains and shifts, the class
// token or the position embedding. storage (e4m3-ieee by default, as for MLPs
// and CNNs) rounds the weights and biases of the linear maps in every forward
// pass (straight-through gradients on the binary32 master copy); the
// elementwise parameters stay binary32.
struct vit_train_options : train_options {
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double weight_decay = 0.05;
  std::size_t warmup_steps = 200;
  vit_train_options() {
    lr = 2e-3;
    batch = 128;
    epochs = 8;
  }
};

// Trains the network in place (its sizes are kept; every parameter is
// re-initialized from opt.seed: linear maps as PyTorch's nn.Linear,
// U(+-1/sqrt(n_in)) for weights and biases; class token and position
// embedding U(+-0.02 sqrt 3), i.e. standard deviation 0.02; layer-norm gains
// 1, shifts 0). Softmax cross-entropy, minibatches of opt.batch shuffled every
// epoch. The trained network holds the rounded linear maps when opt.storage
// is set. Reproducible for a seed and thread count.
void train_vit(nn::vit& net, const io::dataset& data, const vit_train_options& opt,
               std::vector<epoch_report>* log = nullptr);

// Test accuracy (fraction in [0, 1]) of the network as stored, in binary32
// (single) or binary64.
double evaluate_vit_native(const nn::vit& net, const io::dataset& data, bool single, int threads = 0);

// Logits (batch x classes) of a batch of data-set rows, in binary64, as stored.
std::vector<double> vit_forward_native(const nn::vit& net, const double* X, std::size_t batch);

namespace detail {
// Mean cross-entropy of the batch and its gradient with respect to every
// parameter, in binary64, no rounding, written into `grad` (a copy of the
// network's shape whose every value is the derivative of the loss with
// respect to that parameter): for the finite-difference tests.
double vit_loss_and_gradients(const nn::vit& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                              nn::vit& grad);

// Each layer alone, in binary64 (the code the training runs, instantiated
// for double), for the finite-difference tests: the forward value and, when
// dy (the gradient of some loss with respect to the output) is given, the
// gradients of that loss with respect to the inputs and parameters.
// Layer norm of x.size() / d rows of d values.
std::vector<double> vit_layer_norm(const std::vector<double>& x, std::size_t d, const nn::layer_norm& n, double eps,
                                   const std::vector<double>* dy = nullptr, std::vector<double>* dx = nullptr,
                                   nn::layer_norm* dn = nullptr);
// Multi-head attention of `batch` samples of `tokens` rows of 3 d values (q,
// k, v stacked, as the training's fused projection gives them): the
// batch * tokens x d output P V with P = softmax(Q K^T / sqrt(d / heads)).
std::vector<double> vit_attention(const std::vector<double>& qkv, std::size_t batch, std::size_t tokens, std::size_t d,
                                  std::size_t heads, const std::vector<double>* dy = nullptr,
                                  std::vector<double>* dqkv = nullptr);
// GELU (x Phi(x)) elementwise.
std::vector<double> vit_gelu(const std::vector<double>& x, const std::vector<double>* dy = nullptr,
                             std::vector<double>* dx = nullptr);
}  // namespace detail

}  // namespace mpacc::train
