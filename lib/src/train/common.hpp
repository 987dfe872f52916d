// SPDX-License-Identifier: MIT
// Internal to the train module (not installed): what MLP training (train.cpp)
// and CNN training (cnn.cpp) share, so that each piece exists once: the
// OpenBLAS GEMM overloads, the activations forward and backward, the layer
// with parameters (weights, biases, their rounded copies, momentum, gradients,
// the dense forward and backward pass), the rounding of the forward weights
// for quantization-aware training, SGD with momentum, softmax cross-entropy,
// the shuffle, the epoch loop and native evaluation. Every function performs
// exactly the operations, in the order, that both trainers performed before
// they shared it: training stays reproducible bit for bit for a seed.
#pragma once

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mpacc/io/data.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/train/train.hpp"

namespace mpacc::train::detail {

// C = op(A) op(B), row-major (beta = 0)
inline void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
                 const float* B, std::size_t ldb, float* C, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), 0.0f,
              C, static_cast<int>(ldc));
}
inline void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
                 const double* B, std::size_t ldb, double* C, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0, A, static_cast<int>(lda), B, static_cast<int>(ldb), 0.0, C,
              static_cast<int>(ldc));
}

// phi(v) in precision T
template <class T>
T act_value(const sim::activation_fn& f, T v) {
  switch (f.kind) {
    case sim::activation::identity:
      return v;
    case sim::activation::relu:
      return v > 0 ? v : T(0);
    case sim::activation::leaky_relu:
      return v > 0 ? v : static_cast<T>(f.slope) * v;
    case sim::activation::tanh:
      return std::tanh(v);
    default:
      return static_cast<T>(sim::apply(f, static_cast<double>(v)));
  }
}

// phi'(z) from the pre-activation z. tanh (like every smooth activation) goes to
// sim::derivative: recomputing t = tanh(z) here and forming 1 - t^2 would cancel
// (0 past |z| = 19 in double, 9 in float). The backward passes do not call this
// for tanh: they use 1 - A^2 of the stored activation A, the derivative of the
// forward value that was actually computed and used.
template <class T>
T act_derivative(const sim::activation_fn& f, T z) {
  switch (f.kind) {
    case sim::activation::identity:
      return 1;
    case sim::activation::relu:
      return z > 0 ? T(1) : T(0);
    case sim::activation::leaky_relu:
      return z > 0 ? T(1) : static_cast<T>(f.slope);
    default:
      return static_cast<T>(sim::derivative(f, static_cast<double>(z)));
  }
}

// dLoss/dZ from dLoss/dA in place (the CNN's form): identity leaves G, ReLU
// selects (G or +0), tanh multiplies by 1 - A^2 of the stored output, the
// others by phi'(Z) of the pre-activation. The MLP multiplies by phi'(Z) for
// ReLU too (G * 0 is -0 for a negative G, NaN for an infinite one), so it keeps
// its own two-line chain on act_derivative.
template <class T>
void act_backward(const sim::activation_fn& f, const std::vector<T>& Z, const std::vector<T>& A, T* G, std::size_t n) {
  switch (f.kind) {
    case sim::activation::identity:
      return;
    case sim::activation::relu:
      for (std::size_t t = 0; t < n; ++t) G[t] = Z[t] > 0 ? G[t] : T(0);
      return;
    case sim::activation::tanh:
      for (std::size_t t = 0; t < n; ++t) G[t] *= 1 - A[t] * A[t];
      return;
    default:  // leaky ReLU and the smooth activations
      for (std::size_t t = 0; t < n; ++t) G[t] *= act_derivative(f, Z[t]);
  }
}

// The rounding of weights to a storage format: nearest-even, saturating.
inline sim::round_spec storage_spec(const sim::format& f) { return {f, sim::rounding::nearest_even, true, 0}; }

// Rounds a layer's stored (binary64) weights and biases in place.
inline void round_params(std::vector<double>& W, std::vector<double>& b, const sim::round_spec& spec) {
  sim::round_array(W, W, spec);
  sim::round_array(b, b, spec);
}

// PyTorch's default initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in
// binary32, the weights then the biases.
inline void init_uniform(std::vector<double>& W, std::vector<double>& b, std::size_t fan_in, sim::random_stream& rng) {
  const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
  for (auto& w : W) w = static_cast<float>((rng.uniform() * 2 - 1) * bound);
  for (auto& x : b) x = static_cast<float>((rng.uniform() * 2 - 1) * bound);
}

// A layer with parameters in precision T with its forward/backward buffers for
// a batch (n_in, n_out per sample). Layers without parameters leave W, b empty.
template <class T>
struct param_layer {
  std::size_t n_in = 0, n_out = 0;
  sim::activation_fn act;
  std::vector<T> W, b, Wq, bq, vW, vb, dW, db;  // master, rounded, momentum, gradient
  std::vector<T> Z, A;                          // batch x n_out

  void load(const std::vector<double>& W0, const std::vector<double>& b0) {
    W.assign(W0.begin(), W0.end());
    b.assign(b0.begin(), b0.end());
    Wq = W;
    bq = b;
    vW.assign(W.size(), 0);
    vb.assign(b.size(), 0);
    dW.assign(W.size(), 0);
    db.assign(b.size(), 0);
  }
  void store(std::vector<double>& W0, std::vector<double>& b0) const {
    W0.assign(W.begin(), W.end());
    b0.assign(b.begin(), b.end());
  }

  // Wq, bq: W, b rounded to f (or copied)
  void quantize(const std::optional<sim::format>& f, std::vector<double>& buf) {
    if (!f) {
      Wq = W;
      bq = b;
      return;
    }
    const sim::round_spec spec = storage_spec(*f);
    auto q = [&](const std::vector<T>& src, std::vector<T>& dst) {
      buf.assign(src.begin(), src.end());
      sim::round_array(buf, buf, spec, 0, 1);  // one thread: OpenBLAS owns the cores
      std::copy(buf.begin(), buf.end(), dst.begin());
    };
    q(W, Wq);
    q(b, bq);
  }

  // fully connected: Z = in Wq^T + bq, A = phi(Z)
  void dense_forward(const T* in, std::size_t B) {
    Z.resize(B * n_out);
    A.resize(B * n_out);
    gemm(false, true, B, n_out, n_in, in, n_in, Wq.data(), n_in, Z.data(), n_out);
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t i = 0; i < n_out; ++i) {
        T& z = Z[s * n_out + i];
        z += bq[i];
        A[s * n_out + i] = act_value(act, z);
      }
  }

  // fully connected, G = dLoss/dZ: fills dW, db; with need_input_grad G
  // becomes dLoss/d(in) (dIn is scratch)
  void dense_backward(const T* in, std::size_t B, std::vector<T>& G, std::vector<T>& dIn, bool need_input_grad) {
    gemm(true, false, n_out, n_in, B, G.data(), n_out, in, n_in, dW.data(), n_in);
    std::fill(db.begin(), db.end(), T(0));
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t i = 0; i < n_out; ++i) db[i] += G[s * n_out + i];
    if (need_input_grad) {
      dIn.resize(B * n_in);
      gemm(false, false, B, n_in, n_out, G.data(), n_out, Wq.data(), n_in, dIn.data(), n_in);
      G.swap(dIn);
    }
  }

  // SGD with momentum, PyTorch's convention (the first step takes the gradient)
  void step(T mu, T lr, bool first) {
    auto upd = [&](std::vector<T>& w, std::vector<T>& v, const std::vector<T>& g) {
      for (std::size_t k = 0; k < w.size(); ++k) {
        v[k] = first ? g[k] : mu * v[k] + g[k];
        w[k] -= lr * v[k];
      }
    };
    upd(W, vW, dW);
    upd(b, vb, db);
  }
};

// the layers' rounded copies for the next forward pass (layers without
// parameters are skipped: nothing to round)
template <class Layer>
void quantize_layers(std::vector<Layer>& L, const std::optional<sim::format>& f, std::vector<double>& buf) {
  for (auto& l : L)
    if (!l.W.empty() || !l.b.empty()) l.quantize(f, buf);
}

template <class Layer>
void sgd_step(std::vector<Layer>& L, double lr, double mu, bool first) {
  using T = typename decltype(Layer::W)::value_type;
  for (auto& l : L) l.step(static_cast<T>(mu), static_cast<T>(lr), first);
}

// the gradients of every layer (empty for layers without parameters)
template <class Layer>
void collect_gradients(const std::vector<Layer>& L, std::vector<std::vector<double>>& dW,
                       std::vector<std::vector<double>>& db) {
  dW.clear();
  db.clear();
  for (auto& l : L) {
    dW.push_back(l.dW);
    db.push_back(l.db);
  }
}

// the first index of the largest value
template <class T>
std::size_t argmax(const T* z, std::size_t n) {
  return static_cast<std::size_t>(std::max_element(z, z + n) - z);
}

// Softmax cross-entropy of B rows of C logits: returns the summed loss and the
// number correct; G = dLoss/dlogits of the mean loss.
template <class T>
std::pair<double, std::size_t> softmax_cross_entropy(const T* logits, const std::uint8_t* y, std::size_t B,
                                                     std::size_t C, std::vector<T>& G) {
  G.assign(B * C, 0);
  double loss = 0;
  std::size_t correct = 0;
  for (std::size_t s = 0; s < B; ++s) {
    const T* z = logits + s * C;
    const T mx = *std::max_element(z, z + C);
    double sum = 0;
    for (std::size_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(z[c] - mx));
    const double lse = std::log(sum) + static_cast<double>(mx);
    loss += lse - static_cast<double>(z[y[s]]);
    correct += argmax(z, C) == y[s];
    for (std::size_t c = 0; c < C; ++c)
      G[s * C + c] = static_cast<T>((std::exp(static_cast<double>(z[c]) - lse) - (c == y[s] ? 1.0 : 0.0)) /
                                    static_cast<double>(B));
  }
  return {loss, correct};
}

// uniform in [0, n) (Lemire's multiply-shift, no rejection)
inline std::uint64_t below(sim::random_stream& rng, std::uint64_t n) {
  __extension__ typedef unsigned __int128 u128;
  return static_cast<std::uint64_t>((static_cast<u128>(rng()) * n) >> 64);
}

// Fisher-Yates from the back
inline void shuffle(std::vector<std::size_t>& order, sim::random_stream& rng) {
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[below(rng, i)]);
}

// the checks both trainers make on their options (after their own checks of
// the architecture), and the OpenBLAS thread count
inline void check_options(std::size_t outputs, const train_options& opt) {
  if (outputs < 10) throw std::invalid_argument("the output layer needs at least 10 classes");
  if (opt.batch == 0 || opt.epochs == 0) throw std::invalid_argument("batch size and epochs must be positive");
  if (opt.threads > 0) openblas_set_num_threads(opt.threads);
}

// a network (nn::mlp or nn::cnn) that can run on the data
template <class Net>
void check_data(const Net& net, const io::dataset& data) {
  net.validate();
  if (net.inputs() != data.cols)
    throw std::invalid_argument("the network takes " + std::to_string(net.inputs()) + " inputs, the data has " +
                                std::to_string(data.cols) + " features");
}

// The epoch loop every trainer shares: per epoch, the rows shuffled with rng,
// then minibatches of opt.batch rows copied to binary32 (X, batch x data.cols)
// with their labels y, handed to step(X, y, b, e) -> {summed loss, correct};
// a progress line on standard error when it is a terminal (every
// progress_every batches); every epoch reported to log and opt.on_epoch.
template <class Step>
void epoch_loop(const io::dataset& data, const train_options& opt, sim::random_stream& rng,
                std::vector<epoch_report>* log, std::size_t progress_every, Step&& step) {
  const std::size_t N = data.rows, B = opt.batch;
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  std::vector<float> X(B * data.cols);
  std::vector<std::uint8_t> y(B);
  const bool tty = opt.progress && isatty(fileno(stderr));
  for (std::size_t e = 1; e <= opt.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    shuffle(order, rng);
    double loss = 0;
    std::size_t correct = 0;
    for (std::size_t start = 0; start < N; start += B) {
      const std::size_t b = std::min(B, N - start);
      for (std::size_t s = 0; s < b; ++s) {
        const double* src = data.row(order[start + s]);
        std::copy(src, src + data.cols, X.begin() + static_cast<std::ptrdiff_t>(s * data.cols));
        y[s] = data.y[order[start + s]];
      }
      const auto [l, c] = step(X.data(), y.data(), b, e);
      loss += l;
      correct += c;
      if (tty && (start / B) % progress_every == 0)
        std::fprintf(stderr, "\repoch %zu/%zu  %5.1f%%  loss %.4f", e, opt.epochs,
                     100.0 * static_cast<double>(start + b) / static_cast<double>(N),
                     loss / static_cast<double>(start + b));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    epoch_report rep{e, loss / static_cast<double>(N), static_cast<double>(correct) / static_cast<double>(N), secs};
    if (tty) std::fprintf(stderr, "\r%60s\r", "");
    if (log) log->push_back(rep);
    if (opt.on_epoch) opt.on_epoch(rep);
  }
}

// Minibatch SGD with momentum on m (a model in binary32 with layers L,
// forward(X, b) and backward(X, y, b) -> {summed loss, correct} through the
// callback) in the shared epoch loop, the forward pass on weights rounded to
// opt.storage; the learning rate is multiplied by lr_gamma after every epoch
// in lr_steps.
template <class Model, class Backward>
void run_epochs(Model& m, const io::dataset& data, const train_options& opt, const std::vector<std::size_t>& lr_steps,
                double lr_gamma, sim::random_stream& rng, std::vector<epoch_report>* log, Backward&& backward) {
  std::vector<double> qbuf;
  bool first = true;
  double lr = opt.lr;
  std::size_t lr_epoch = 1;  // the epoch lr belongs to
  epoch_loop(data, opt, rng, log, 50, [&](const float* X, const std::uint8_t* y, std::size_t b, std::size_t e) {
    for (; lr_epoch < e; ++lr_epoch)
      if (std::find(lr_steps.begin(), lr_steps.end(), lr_epoch) != lr_steps.end()) lr *= lr_gamma;
    quantize_layers(m.L, opt.storage, qbuf);
    m.forward(X, b);
    const auto res = backward(X, y, b);
    sgd_step(m.L, lr, opt.momentum, first);
    first = false;
    return res;
  });
}

// Accuracy (fraction in [0, 1]) of net on the data through Model<float>
// (single) or Model<double>, forward(X, b) in batches of B rows; the logits in
// L.back().A.
template <template <class> class Model, class Net>
double native_accuracy(const Net& net, const io::dataset& data, bool single, std::size_t B) {
  std::size_t correct = 0;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    Model<T> m(net);
    std::vector<T> X;
    for (std::size_t start = 0; start < data.rows; start += B) {
      const std::size_t b = std::min(B, data.rows - start);
      X.assign(data.x.begin() + static_cast<std::ptrdiff_t>(start * data.cols),
               data.x.begin() + static_cast<std::ptrdiff_t>((start + b) * data.cols));
      m.forward(X.data(), b);
      const auto& out = m.L.back();
      for (std::size_t s = 0; s < b; ++s)
        correct += argmax(out.A.data() + s * out.n_out, out.n_out) == data.y[start + s];
    }
  };
  if (single)
    run(float{});
  else
    run(double{});
  return static_cast<double>(correct) / static_cast<double>(data.rows);
}

}  // namespace mpacc::train::detail
