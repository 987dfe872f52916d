// SPDX-License-Identifier: MIT
#include "mpacc/train/train.hpp"

#include <cblas.h>

#include <stdexcept>
#include <string>

#include "common.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::train {

using namespace detail;
using nn::make_mlp;
using nn::mlp;

namespace {

// An MLP in precision T with forward/backward buffers for a batch.
template <class T>
struct model {
  std::vector<param_layer<T>> L;

  explicit model(const mlp& net) {
    for (const auto& l : net.layers) {
      param_layer<T> m;
      m.n_in = l.n_in;
      m.n_out = l.n_out;
      m.act = l.act;
      m.load(l.W, l.b);
      L.push_back(std::move(m));
    }
  }

  // logits of the last layer in L.back().A (identity output: = Z)
  void forward(const T* X, std::size_t B) {
    const T* in = X;
    for (auto& l : L) {
      l.dense_forward(in, B);
      in = l.A.data();
    }
  }

  // softmax cross-entropy: returns the summed loss and the number correct;
  // fills the gradients dW, db (of the mean loss)
  std::pair<double, std::size_t> backward(const T* X, const std::uint8_t* y, std::size_t B, std::vector<T>& G,
                                          std::vector<T>& dA) {
    const auto result = softmax_cross_entropy(L.back().A.data(), y, B, L.back().n_out, G);
    // G holds dLoss/dA of the last layer; chain through its activation
    for (std::size_t k = L.size(); k-- > 0;) {
      auto& l = L[k];
      if (l.act.kind == sim::activation::tanh) {
        for (std::size_t t = 0; t < B * l.n_out; ++t) G[t] *= 1 - l.A[t] * l.A[t];  // tanh' = 1 - tanh^2
      } else {
        for (std::size_t t = 0; t < B * l.n_out; ++t) G[t] *= act_derivative(l.act, l.Z[t]);
      }
      l.dense_backward(k == 0 ? X : L[k - 1].A.data(), B, G, dA, k > 0);
    }
    return result;
  }
};

}  // namespace

void round_weights(mlp& net, const sim::format& f) {
  const sim::round_spec spec = storage_spec(f);
  for (auto& l : net.layers) round_params(l.W, l.b, spec);
}

nn::mlp fit(const std::vector<std::size_t>& sizes, sim::activation_fn hidden, const io::dataset& data,
            const train_options& opt, std::vector<epoch_report>* log) {
  if (sizes.empty() || sizes.front() != data.cols)
    throw std::invalid_argument("architecture input size " + std::to_string(sizes.empty() ? 0 : sizes.front()) +
                                " does not match the data's " + std::to_string(data.cols) + " features");
  check_options(sizes.back(), opt);
  mlp net = make_mlp(sizes, hidden, {sim::activation::identity});
  sim::random_stream rng(opt.seed);
  for (auto& l : net.layers) init_uniform(l.W, l.b, l.n_in, rng);
  model<float> m(net);
  std::vector<float> G, dA;
  run_epochs(m, data, opt, {}, 1.0, rng, log,
             [&](const float* X, const std::uint8_t* y, std::size_t b) { return m.backward(X, y, b, G, dA); });
  // the trained network holds the values inference uses
  for (std::size_t k = 0; k < net.layers.size(); ++k) m.L[k].store(net.layers[k].W, net.layers[k].b);
  if (opt.storage) round_weights(net, *opt.storage);
  return net;
}

double evaluate_native(const mlp& net, const io::dataset& data, bool single, int threads) {
  check_data(net, data);
  if (threads > 0) openblas_set_num_threads(threads);
  return native_accuracy<model>(net, data, single, 1000);
}

double detail::loss_and_gradients(const mlp& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                                  std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db) {
  model<double> m(net);
  std::vector<double> G, dA;
  m.forward(X, batch);
  const auto [loss, correct] = m.backward(X, labels, batch, G, dA);
  (void)correct;
  collect_gradients(m.L, dW, db);
  return loss / static_cast<double>(batch);
}

}  // namespace mpacc::train
