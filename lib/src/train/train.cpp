// SPDX-License-Identifier: MIT
#include "mpacc/train/train.hpp"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::train {

using nn::dense_layer;
using nn::make_mlp;
using nn::mlp;

namespace {

void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
          const float* B, std::size_t ldb, float* C, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), 0.0f,
              C, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
          const double* B, std::size_t ldb, double* C, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0, A, static_cast<int>(lda), B, static_cast<int>(ldb), 0.0, C,
              static_cast<int>(ldc));
}

template <class T>
T act_apply(const sim::activation_fn& f, T v) {
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
// (0 past |z| = 19 in double, 9 in float). The backward pass does not call this
// for tanh: it uses 1 - A^2 of the stored activation A, the derivative of the
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

// A network in precision T with forward/backward buffers for a batch.
template <class T>
struct model {
  struct layer {
    std::size_t n_in, n_out;
    sim::activation_fn act;
    std::vector<T> W, b, Wq, bq, vW, vb, dW, db;
    std::vector<T> Z, A;  // batch x n_out
  };
  std::vector<layer> L;

  explicit model(const mlp& net) {
    for (const auto& l : net.layers) {
      layer m{l.n_in, l.n_out, l.act, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
      m.W.assign(l.W.begin(), l.W.end());
      m.b.assign(l.b.begin(), l.b.end());
      m.Wq = m.W;
      m.bq = m.b;
      m.vW.assign(m.W.size(), 0);
      m.vb.assign(m.b.size(), 0);
      m.dW.assign(m.W.size(), 0);
      m.db.assign(m.b.size(), 0);
      L.push_back(std::move(m));
    }
  }

  void quantize(const std::optional<sim::format>& f, std::vector<double>& buf) {
    for (auto& l : L) {
      if (!f) {
        l.Wq = l.W;
        l.bq = l.b;
        continue;
      }
      const sim::round_spec spec{*f, sim::rounding::nearest_even, true, 0};
      auto q = [&](const std::vector<T>& src, std::vector<T>& dst) {
        buf.assign(src.begin(), src.end());
        sim::round_array(buf, buf, spec, 0, 1);  // one thread: OpenBLAS owns the cores
        std::copy(buf.begin(), buf.end(), dst.begin());
      };
      q(l.W, l.Wq);
      q(l.b, l.bq);
    }
  }

  // logits of the last layer in L.back().Z
  void forward(const T* X, std::size_t B) {
    const T* in = X;
    for (auto& l : L) {
      l.Z.resize(B * l.n_out);
      l.A.resize(B * l.n_out);
      gemm(false, true, B, l.n_out, l.n_in, in, l.n_in, l.Wq.data(), l.n_in, l.Z.data(), l.n_out);
      for (std::size_t s = 0; s < B; ++s)
        for (std::size_t i = 0; i < l.n_out; ++i) {
          T& z = l.Z[s * l.n_out + i];
          z += l.bq[i];
          l.A[s * l.n_out + i] = act_apply(l.act, z);
        }
      in = l.A.data();
    }
  }

  // softmax cross-entropy: returns the summed loss and the number correct;
  // fills the gradients dW, db (of the mean loss)
  std::pair<double, std::size_t> backward(const T* X, const std::uint8_t* y, std::size_t B, std::vector<T>& G,
                                          std::vector<T>& dA) {
    auto& out = L.back();
    const std::size_t C = out.n_out;
    G.assign(B * C, 0);
    double loss = 0;
    std::size_t correct = 0;
    for (std::size_t s = 0; s < B; ++s) {
      const T* z = out.A.data() + s * C;
      const T mx = *std::max_element(z, z + C);
      double sum = 0;
      for (std::size_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(z[c] - mx));
      const double lse = std::log(sum) + static_cast<double>(mx);
      loss += lse - static_cast<double>(z[y[s]]);
      std::size_t best = 0;
      for (std::size_t c = 1; c < C; ++c)
        if (z[c] > z[best]) best = c;
      correct += best == y[s];
      for (std::size_t c = 0; c < C; ++c)
        G[s * C + c] = static_cast<T>((std::exp(static_cast<double>(z[c]) - lse) - (c == y[s] ? 1.0 : 0.0)) /
                                      static_cast<double>(B));
    }
    // G holds dLoss/dA of the last layer; chain through its activation
    for (std::size_t k = L.size(); k-- > 0;) {
      auto& l = L[k];
      if (l.act.kind == sim::activation::tanh) {
        for (std::size_t t = 0; t < B * l.n_out; ++t) G[t] *= 1 - l.A[t] * l.A[t];  // tanh' = 1 - tanh^2
      } else {
        for (std::size_t t = 0; t < B * l.n_out; ++t) G[t] *= act_derivative(l.act, l.Z[t]);
      }
      const T* Aprev = k == 0 ? X : L[k - 1].A.data();
      gemm(true, false, l.n_out, l.n_in, B, G.data(), l.n_out, Aprev, l.n_in, l.dW.data(), l.n_in);
      std::fill(l.db.begin(), l.db.end(), T(0));
      for (std::size_t s = 0; s < B; ++s)
        for (std::size_t i = 0; i < l.n_out; ++i) l.db[i] += G[s * l.n_out + i];
      if (k > 0) {
        dA.resize(B * l.n_in);
        gemm(false, false, B, l.n_in, l.n_out, G.data(), l.n_out, l.Wq.data(), l.n_in, dA.data(), l.n_in);
        G.swap(dA);
      }
    }
    return {loss, correct};
  }

  void step(double lr, double mu, bool first) {
    for (auto& l : L) {
      auto upd = [&](std::vector<T>& w, std::vector<T>& v, const std::vector<T>& g) {
        const T m = static_cast<T>(mu), r = static_cast<T>(lr);
        for (std::size_t k = 0; k < w.size(); ++k) {
          v[k] = first ? g[k] : m * v[k] + g[k];
          w[k] -= r * v[k];
        }
      };
      upd(l.W, l.vW, l.dW);
      upd(l.b, l.vb, l.db);
    }
  }
};

std::uint64_t below(sim::random_stream& rng, std::uint64_t n) {
  __extension__ typedef unsigned __int128 u128;
  return static_cast<std::uint64_t>((static_cast<u128>(rng()) * n) >> 64);
}

}  // namespace

void round_weights(mlp& net, const sim::format& f) {
  const sim::round_spec spec{f, sim::rounding::nearest_even, true, 0};
  for (auto& l : net.layers) {
    sim::round_array(l.W, l.W, spec);
    sim::round_array(l.b, l.b, spec);
  }
}

nn::mlp fit(const std::vector<std::size_t>& sizes, sim::activation_fn hidden, const io::dataset& data,
            const train_options& opt, std::vector<epoch_report>* log) {
  if (sizes.empty() || sizes.front() != data.cols)
    throw std::invalid_argument("architecture input size " + std::to_string(sizes.empty() ? 0 : sizes.front()) +
                                " does not match the data's " + std::to_string(data.cols) + " features");
  if (sizes.back() < 10) throw std::invalid_argument("the output layer needs at least 10 classes");
  if (opt.batch == 0 || opt.epochs == 0) throw std::invalid_argument("batch size and epochs must be positive");
  if (opt.threads > 0) openblas_set_num_threads(opt.threads);
  mlp net = make_mlp(sizes, hidden, {sim::activation::identity});
  sim::random_stream rng(opt.seed);
  for (auto& l : net.layers) {
    const double bound = 1 / std::sqrt(static_cast<double>(l.n_in));
    for (auto& w : l.W) w = static_cast<float>((rng.uniform() * 2 - 1) * bound);
    for (auto& b : l.b) b = static_cast<float>((rng.uniform() * 2 - 1) * bound);
  }
  model<float> m(net);
  const std::size_t N = data.rows, B = opt.batch;
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  std::vector<float> X(B * data.cols);
  std::vector<std::uint8_t> y(B);
  std::vector<float> G, dA;
  std::vector<double> qbuf;
  const bool tty = opt.progress && isatty(fileno(stderr));
  bool first = true;
  for (std::size_t e = 1; e <= opt.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = N; i > 1; --i) std::swap(order[i - 1], order[below(rng, i)]);
    double loss = 0;
    std::size_t correct = 0;
    for (std::size_t start = 0; start < N; start += B) {
      const std::size_t b = std::min(B, N - start);
      for (std::size_t s = 0; s < b; ++s) {
        const double* src = data.row(order[start + s]);
        std::copy(src, src + data.cols, X.begin() + static_cast<std::ptrdiff_t>(s * data.cols));
        y[s] = data.y[order[start + s]];
      }
      m.quantize(opt.storage, qbuf);
      m.forward(X.data(), b);
      const auto [l, c] = m.backward(X.data(), y.data(), b, G, dA);
      loss += l;
      correct += c;
      m.step(opt.lr, opt.momentum, first);
      first = false;
      if (tty && (start / B) % 50 == 0)
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
  // the trained network holds the values inference uses
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    net.layers[k].W.assign(m.L[k].W.begin(), m.L[k].W.end());
    net.layers[k].b.assign(m.L[k].b.begin(), m.L[k].b.end());
  }
  if (opt.storage) round_weights(net, *opt.storage);
  return net;
}

double evaluate_native(const mlp& net, const io::dataset& data, bool single, int threads) {
  net.validate();
  if (net.inputs() != data.cols)
    throw std::invalid_argument("the network takes " + std::to_string(net.inputs()) + " inputs, the data has " +
                                std::to_string(data.cols) + " features");
  if (threads > 0) openblas_set_num_threads(threads);
  std::size_t correct = 0;
  const std::size_t B = 1000;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    model<T> m(net);
    std::vector<T> X;
    for (std::size_t start = 0; start < data.rows; start += B) {
      const std::size_t b = std::min(B, data.rows - start);
      X.assign(data.x.begin() + static_cast<std::ptrdiff_t>(start * data.cols),
               data.x.begin() + static_cast<std::ptrdiff_t>((start + b) * data.cols));
      m.forward(X.data(), b);
      const auto& out = m.L.back();
      for (std::size_t s = 0; s < b; ++s) {
        const T* z = out.A.data() + s * out.n_out;
        correct += static_cast<std::size_t>(std::max_element(z, z + out.n_out) - z) == data.y[start + s];
      }
    }
  };
  if (single)
    run(float{});
  else
    run(double{});
  return static_cast<double>(correct) / static_cast<double>(data.rows);
}

double detail::loss_and_gradients(const mlp& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                                  std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db) {
  model<double> m(net);
  std::vector<double> G, dA;
  m.forward(X, batch);
  const auto [loss, correct] = m.backward(X, labels, batch, G, dA);
  (void)correct;
  dW.clear();
  db.clear();
  for (auto& l : m.L) {
    dW.push_back(l.dW);
    db.push_back(l.db);
  }
  return loss / static_cast<double>(batch);
}

}  // namespace mpacc::train
