// SPDX-License-Identifier: MIT
// Training and native evaluation of convolutional networks (nn/cnn.hpp):
// convolutions as im2col + GEMM (OpenBLAS), forward and backward.
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "mpacc/train/cnn.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::train {

using namespace nn;

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

// dLoss/dZ from dLoss/dA in place: tanh from the stored output (1 - A^2),
// the others from the pre-activation
template <class T>
void act_backward(const sim::activation_fn& f, const std::vector<T>& Z, const std::vector<T>& A, T* G, std::size_t n) {
  switch (f.kind) {
    case sim::activation::identity:
      return;
    case sim::activation::relu:
      for (std::size_t t = 0; t < n; ++t) G[t] = Z[t] > 0 ? G[t] : T(0);
      return;
    case sim::activation::leaky_relu:
      for (std::size_t t = 0; t < n; ++t) G[t] *= Z[t] > 0 ? T(1) : static_cast<T>(f.slope);
      return;
    case sim::activation::tanh:
      for (std::size_t t = 0; t < n; ++t) G[t] *= 1 - A[t] * A[t];
      return;
    default:
      for (std::size_t t = 0; t < n; ++t) G[t] *= static_cast<T>(sim::derivative(f, static_cast<double>(Z[t])));
  }
}

// im2col rows (s, oy, ox) x (ci, ky, kx) of a batch, +0 in the padding
template <class T>
void im2col_t(const sim::conv2d_shape& s, const T* X, std::size_t batch, T* cols) {
  const std::size_t oh = s.out_h(), ow = s.out_w(), K = s.patch();
  const auto H = static_cast<std::ptrdiff_t>(s.h), W = static_cast<std::ptrdiff_t>(s.w);
  for (std::size_t smp = 0; smp < batch; ++smp) {
    const T* img = X + smp * s.in_size();
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        T* out = cols + ((smp * oh + oy) * ow + ox) * K;
        const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
        const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
        for (std::size_t ci = 0; ci < s.c_in; ++ci)
          for (std::size_t ky = 0; ky < s.kh; ++ky) {
            const std::ptrdiff_t iy = y0 + static_cast<std::ptrdiff_t>(ky);
            for (std::size_t kx = 0; kx < s.kw; ++kx, ++out) {
              const std::ptrdiff_t ix = x0 + static_cast<std::ptrdiff_t>(kx);
              *out = iy < 0 || iy >= H || ix < 0 || ix >= W
                         ? T(0)
                         : img[(ci * s.h + static_cast<std::size_t>(iy)) * s.w + static_cast<std::size_t>(ix)];
            }
          }
      }
  }
}

// the adjoint: dX += the im2col rows' gradients at their positions
template <class T>
void col2im_t(const sim::conv2d_shape& s, const T* dcols, std::size_t batch, T* dX) {
  const std::size_t oh = s.out_h(), ow = s.out_w(), K = s.patch();
  const auto H = static_cast<std::ptrdiff_t>(s.h), W = static_cast<std::ptrdiff_t>(s.w);
  std::fill(dX, dX + batch * s.in_size(), T(0));
  for (std::size_t smp = 0; smp < batch; ++smp) {
    T* img = dX + smp * s.in_size();
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        const T* g = dcols + ((smp * oh + oy) * ow + ox) * K;
        const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
        const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
        for (std::size_t ci = 0; ci < s.c_in; ++ci)
          for (std::size_t ky = 0; ky < s.kh; ++ky) {
            const std::ptrdiff_t iy = y0 + static_cast<std::ptrdiff_t>(ky);
            for (std::size_t kx = 0; kx < s.kw; ++kx, ++g) {
              const std::ptrdiff_t ix = x0 + static_cast<std::ptrdiff_t>(kx);
              if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                img[(ci * s.h + static_cast<std::size_t>(iy)) * s.w + static_cast<std::size_t>(ix)] += *g;
            }
          }
      }
  }
}

// A network in precision T with forward/backward buffers for a batch.
template <class T>
struct model {
  struct layer {
    int type = 0;  // cnn_layer index: 0 conv, 1 pool, 2 flatten, 3 dense
    sim::conv2d_shape cs;
    pool_layer pl;
    std::size_t n_in = 0, n_out = 0;  // per sample
    sim::activation_fn act;
    std::vector<T> W, b, Wq, bq, vW, vb, dW, db;
    std::vector<T> Z, A;               // batch x n_out
    std::vector<T> cols, tmp;          // conv: im2col of the input; GEMM result (rows x c_out)
    std::vector<std::uint32_t> where;  // max pooling: the chosen input per output
  };
  std::vector<layer> L;
  std::size_t in_size = 0;

  explicit model(const cnn& net) : in_size(net.inputs()) {
    std::size_t cur = net.inputs();
    for (const auto& v : net.layers) {
      layer m;
      m.type = static_cast<int>(v.index());
      m.n_in = cur;
      if (const auto* c = std::get_if<conv_layer>(&v)) {
        m.cs = c->shape;
        m.n_out = c->shape.out_size();
        m.act = c->act;
        m.W.assign(c->W.begin(), c->W.end());
        m.b.assign(c->b.begin(), c->b.end());
      } else if (const auto* p = std::get_if<pool_layer>(&v)) {
        m.pl = *p;
        m.n_out = p->shape.out_size();
      } else if (std::holds_alternative<flatten_layer>(v)) {
        m.n_out = cur;
      } else {
        const auto& d = std::get<dense_layer>(v);
        m.n_out = d.n_out;
        m.act = d.act;
        m.W.assign(d.W.begin(), d.W.end());
        m.b.assign(d.b.begin(), d.b.end());
      }
      m.Wq = m.W;
      m.bq = m.b;
      m.vW.assign(m.W.size(), 0);
      m.vb.assign(m.b.size(), 0);
      m.dW.assign(m.W.size(), 0);
      m.db.assign(m.b.size(), 0);
      cur = m.n_out;
      L.push_back(std::move(m));
    }
  }

  void quantize(const std::optional<sim::format>& f, std::vector<double>& buf) {
    for (auto& l : L) {
      if (l.W.empty()) continue;
      if (!f) {
        l.Wq = l.W;
        l.bq = l.b;
        continue;
      }
      const sim::round_spec spec{*f, sim::rounding::nearest_even, true, 0};
      auto q = [&](const std::vector<T>& src, std::vector<T>& dst) {
        buf.assign(src.begin(), src.end());
        sim::round_array(buf, buf, spec, 0, 1);
        std::copy(buf.begin(), buf.end(), dst.begin());
      };
      q(l.W, l.Wq);
      q(l.b, l.bq);
    }
  }

  const T* output(std::size_t k, const T* X) const {
    // a flatten layer's output is its input
    while (L[k].type == 2) {
      if (k == 0) return X;
      --k;
    }
    return L[k].A.data();
  }
  const T* input(std::size_t k, const T* X) const { return k == 0 ? X : output(k - 1, X); }

  // the logits in L.back().A
  void forward(const T* X, std::size_t B) {
    for (std::size_t k = 0; k < L.size(); ++k) {
      auto& l = L[k];
      const T* in = input(k, X);
      if (l.type == 2) continue;
      l.A.resize(B * l.n_out);
      if (l.type == 0) {
        const auto& s = l.cs;
        const std::size_t ohw = s.out_h() * s.out_w(), K = s.patch(), C = s.c_out, rows = B * ohw;
        l.cols.resize(rows * K);
        l.tmp.resize(rows * C);
        im2col_t(s, in, B, l.cols.data());
        gemm(false, true, rows, C, K, l.cols.data(), K, l.Wq.data(), K, l.tmp.data(), C);
        l.Z.resize(B * l.n_out);
        for (std::size_t smp = 0; smp < B; ++smp)
          for (std::size_t c = 0; c < C; ++c)
            for (std::size_t p = 0; p < ohw; ++p) {
              const T z = l.tmp[(smp * ohw + p) * C + c] + l.bq[c];
              l.Z[(smp * C + c) * ohw + p] = z;
              l.A[(smp * C + c) * ohw + p] = act_value(l.act, z);
            }
      } else if (l.type == 1) {
        pool_forward(l, in, B);
      } else {
        l.Z.resize(B * l.n_out);
        gemm(false, true, B, l.n_out, l.n_in, in, l.n_in, l.Wq.data(), l.n_in, l.Z.data(), l.n_out);
        for (std::size_t smp = 0; smp < B; ++smp)
          for (std::size_t i = 0; i < l.n_out; ++i) {
            T& z = l.Z[smp * l.n_out + i];
            z += l.bq[i];
            l.A[smp * l.n_out + i] = act_value(l.act, z);
          }
      }
    }
  }

  static void pool_forward(layer& l, const T* in, std::size_t B) {
    const auto& s = l.pl.shape;
    const std::size_t oh = s.out_h(), ow = s.out_w();
    const auto H = static_cast<std::ptrdiff_t>(s.h), W = static_cast<std::ptrdiff_t>(s.w);
    const bool mx = l.pl.type == pool_layer::kind::max;
    if (mx) l.where.resize(B * l.n_out);
    const T inv = T(1) / static_cast<T>(s.window());
    for (std::size_t smp = 0; smp < B; ++smp)
      for (std::size_t c = 0; c < s.c; ++c) {
        const T* plane = in + smp * l.n_in + c * s.h * s.w;
        for (std::size_t oy = 0; oy < oh; ++oy)
          for (std::size_t ox = 0; ox < ow; ++ox) {
            const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
            const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
            T best = 0, sum = 0;
            std::ptrdiff_t at = -1;
            for (std::ptrdiff_t iy = std::max<std::ptrdiff_t>(y0, 0);
                 iy < std::min<std::ptrdiff_t>(y0 + static_cast<std::ptrdiff_t>(s.kh), H); ++iy)
              for (std::ptrdiff_t ix = std::max<std::ptrdiff_t>(x0, 0);
                   ix < std::min<std::ptrdiff_t>(x0 + static_cast<std::ptrdiff_t>(s.kw), W); ++ix) {
                const T v = plane[iy * W + ix];
                sum += v;
                if (at < 0 || v > best) {
                  best = v;
                  at = iy * W + ix;
                }
              }
            const std::size_t o = (smp * s.c + c) * oh * ow + oy * ow + ox;
            if (mx) {
              l.A[o] = best;
              l.where[o] = static_cast<std::uint32_t>(c * s.h * s.w + static_cast<std::size_t>(at));
            } else {
              l.A[o] = sum * inv;  // padded positions count as zeros (count_include_pad)
            }
          }
      }
  }

  static void pool_backward(const layer& l, const T* G, std::size_t B, T* dX) {
    const auto& s = l.pl.shape;
    const std::size_t oh = s.out_h(), ow = s.out_w();
    std::fill(dX, dX + B * l.n_in, T(0));
    if (l.pl.type == pool_layer::kind::max) {
      for (std::size_t smp = 0; smp < B; ++smp)
        for (std::size_t o = 0; o < l.n_out; ++o) dX[smp * l.n_in + l.where[smp * l.n_out + o]] += G[smp * l.n_out + o];
      return;
    }
    const auto H = static_cast<std::ptrdiff_t>(s.h), W = static_cast<std::ptrdiff_t>(s.w);
    const T inv = T(1) / static_cast<T>(s.window());
    for (std::size_t smp = 0; smp < B; ++smp)
      for (std::size_t c = 0; c < s.c; ++c) {
        T* plane = dX + smp * l.n_in + c * s.h * s.w;
        for (std::size_t oy = 0; oy < oh; ++oy)
          for (std::size_t ox = 0; ox < ow; ++ox) {
            const T g = G[(smp * s.c + c) * oh * ow + oy * ow + ox] * inv;
            const auto y0 = static_cast<std::ptrdiff_t>(oy * s.stride_h) - static_cast<std::ptrdiff_t>(s.pad_h);
            const auto x0 = static_cast<std::ptrdiff_t>(ox * s.stride_w) - static_cast<std::ptrdiff_t>(s.pad_w);
            for (std::ptrdiff_t iy = std::max<std::ptrdiff_t>(y0, 0);
                 iy < std::min<std::ptrdiff_t>(y0 + static_cast<std::ptrdiff_t>(s.kh), H); ++iy)
              for (std::ptrdiff_t ix = std::max<std::ptrdiff_t>(x0, 0);
                   ix < std::min<std::ptrdiff_t>(x0 + static_cast<std::ptrdiff_t>(s.kw), W); ++ix)
                plane[iy * W + ix] += g;
          }
      }
  }

  // softmax cross-entropy on the logits: returns the summed loss and the
  // number correct; fills dW, db (gradients of the mean loss)
  std::pair<double, std::size_t> backward(const T* X, const std::uint8_t* y, std::size_t B, std::vector<T>& G,
                                          std::vector<T>& dIn, std::vector<T>& scratch) {
    auto& out = L.back();
    const std::size_t C = out.n_out;
    G.assign(B * C, 0);
    double loss = 0;
    std::size_t correct = 0;
    for (std::size_t smp = 0; smp < B; ++smp) {
      const T* z = out.A.data() + smp * C;
      const T mx = *std::max_element(z, z + C);
      double sum = 0;
      for (std::size_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(z[c] - mx));
      const double lse = std::log(sum) + static_cast<double>(mx);
      loss += lse - static_cast<double>(z[y[smp]]);
      correct += static_cast<std::size_t>(std::max_element(z, z + C) - z) == y[smp];
      for (std::size_t c = 0; c < C; ++c)
        G[smp * C + c] = static_cast<T>((std::exp(static_cast<double>(z[c]) - lse) - (c == y[smp] ? 1.0 : 0.0)) /
                                        static_cast<double>(B));
    }
    // G holds dLoss/dA of layer k
    for (std::size_t k = L.size(); k-- > 0;) {
      auto& l = L[k];
      const T* in = input(k, X);
      const bool need_input_grad = k > 0;
      if (l.type == 2) continue;  // flatten: the same gradient
      if (l.type == 1) {
        dIn.resize(B * l.n_in);
        pool_backward(l, G.data(), B, dIn.data());
        G.swap(dIn);
        continue;
      }
      act_backward(l.act, l.Z, l.A, G.data(), B * l.n_out);
      if (l.type == 0) {
        const auto& s = l.cs;
        const std::size_t ohw = s.out_h() * s.out_w(), K = s.patch(), Cc = s.c_out, rows = B * ohw;
        // dZ as rows x c_out (the GEMM layout)
        scratch.resize(rows * Cc);
        std::fill(l.db.begin(), l.db.end(), T(0));
        for (std::size_t smp = 0; smp < B; ++smp)
          for (std::size_t c = 0; c < Cc; ++c)
            for (std::size_t p = 0; p < ohw; ++p) {
              const T g = G[(smp * Cc + c) * ohw + p];
              scratch[(smp * ohw + p) * Cc + c] = g;
              l.db[c] += g;
            }
        gemm(true, false, Cc, K, rows, scratch.data(), Cc, l.cols.data(), K, l.dW.data(), K);
        if (need_input_grad) {
          l.tmp.resize(rows * K);  // dcols
          gemm(false, false, rows, K, Cc, scratch.data(), Cc, l.Wq.data(), K, l.tmp.data(), K);
          dIn.resize(B * l.n_in);
          col2im_t(s, l.tmp.data(), B, dIn.data());
          G.swap(dIn);
        }
      } else {
        gemm(true, false, l.n_out, l.n_in, B, G.data(), l.n_out, in, l.n_in, l.dW.data(), l.n_in);
        std::fill(l.db.begin(), l.db.end(), T(0));
        for (std::size_t smp = 0; smp < B; ++smp)
          for (std::size_t i = 0; i < l.n_out; ++i) l.db[i] += G[smp * l.n_out + i];
        if (need_input_grad) {
          dIn.resize(B * l.n_in);
          gemm(false, false, B, l.n_in, l.n_out, G.data(), l.n_out, l.Wq.data(), l.n_in, dIn.data(), l.n_in);
          G.swap(dIn);
        }
      }
    }
    return {loss, correct};
  }

  void step(double lr, double mu, bool first) {
    const T m = static_cast<T>(mu), r = static_cast<T>(lr);
    for (auto& l : L) {
      auto upd = [&](std::vector<T>& w, std::vector<T>& v, const std::vector<T>& g) {
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

template <class T>
void copy_back(cnn& net, const model<T>& m) {
  for (std::size_t k = 0; k < net.layers.size(); ++k)
    std::visit(
        [&](auto& l) {
          using L = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<L, conv_layer> || std::is_same_v<L, dense_layer>) {
            l.W.assign(m.L[k].W.begin(), m.L[k].W.end());
            l.b.assign(m.L[k].b.begin(), m.L[k].b.end());
          }
        },
        net.layers[k]);
}

void check_data(const cnn& net, const io::dataset& data) {
  net.validate();
  if (net.inputs() != data.cols)
    throw std::invalid_argument("the network takes " + std::to_string(net.inputs()) + " inputs, the data has " +
                                std::to_string(data.cols) + " features");
}

}  // namespace

void train_cnn(cnn& net, const io::dataset& data, const cnn_train_options& opt, std::vector<epoch_report>* log) {
  check_data(net, data);
  if (net.outputs() < 10) throw std::invalid_argument("the output layer needs at least 10 classes");
  if (opt.batch == 0 || opt.epochs == 0) throw std::invalid_argument("batch size and epochs must be positive");
  if (opt.threads > 0) openblas_set_num_threads(opt.threads);
  sim::random_stream rng(opt.seed);
  for (auto& v : net.layers)
    std::visit(
        [&](auto& l) {
          using L = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<L, conv_layer> || std::is_same_v<L, dense_layer>) {
            std::size_t fan_in = 0;
            if constexpr (std::is_same_v<L, conv_layer>)
              fan_in = l.shape.patch();
            else
              fan_in = l.n_in;
            const double bound = 1 / std::sqrt(static_cast<double>(fan_in));
            for (auto& w : l.W) w = static_cast<float>((rng.uniform() * 2 - 1) * bound);
            for (auto& b : l.b) b = static_cast<float>((rng.uniform() * 2 - 1) * bound);
          }
        },
        v);
  model<float> m(net);
  const std::size_t N = data.rows, B = opt.batch;
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  std::vector<float> X(B * data.cols), G, dIn, scratch;
  std::vector<std::uint8_t> y(B);
  std::vector<double> qbuf;
  const bool tty = opt.progress && isatty(fileno(stderr));
  bool first = true;
  double lr = opt.lr;
  for (std::size_t e = 1; e <= opt.epochs; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    if (e > 1 && std::find(opt.lr_steps.begin(), opt.lr_steps.end(), e - 1) != opt.lr_steps.end()) lr *= opt.lr_gamma;
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
      const auto [l, c] = m.backward(X.data(), y.data(), b, G, dIn, scratch);
      loss += l;
      correct += c;
      m.step(lr, opt.momentum, first);
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
  copy_back(net, m);
  if (opt.storage) {
    const sim::round_spec spec{*opt.storage, sim::rounding::nearest_even, true, 0};
    for (auto& v : net.layers)
      std::visit(
          [&](auto& l) {
            using L = std::decay_t<decltype(l)>;
            if constexpr (std::is_same_v<L, conv_layer> || std::is_same_v<L, dense_layer>) {
              sim::round_array(l.W, l.W, spec);
              sim::round_array(l.b, l.b, spec);
            }
          },
          v);
  }
}

double evaluate_cnn_native(const cnn& net, const io::dataset& data, bool single, int threads) {
  check_data(net, data);
  if (threads > 0) openblas_set_num_threads(threads);
  std::size_t correct = 0;
  const std::size_t B = 500;
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

std::vector<double> cnn_forward_native(const cnn& net, const double* X, std::size_t batch) {
  net.validate();
  model<double> m(net);
  m.forward(X, batch);
  return m.L.back().A;
}

double detail::cnn_loss_and_gradients(const cnn& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                                      std::vector<std::vector<double>>& dW, std::vector<std::vector<double>>& db) {
  net.validate();
  model<double> m(net);
  std::vector<double> G, dIn, scratch;
  m.forward(X, batch);
  const auto [loss, correct] = m.backward(X, labels, batch, G, dIn, scratch);
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
