// SPDX-License-Identifier: MIT
// Training and native evaluation of convolutional networks (nn/cnn.hpp):
// convolutions as im2col + GEMM (OpenBLAS), forward and backward.
#include "mpacc/train/cnn.hpp"

#include <cblas.h>

#include <algorithm>
#include <stdexcept>

#include "common.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::train {

using namespace nn;
using namespace detail;

namespace {

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
  struct layer : param_layer<T> {  // n_in, n_out per sample; pooling and flatten without W, b
    int type = 0;                  // cnn_layer index: 0 conv, 1 pool, 2 flatten, 3 dense
    sim::conv2d_shape cs;
    pool_layer pl;
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
        m.load(c->W, c->b);
      } else if (const auto* p = std::get_if<pool_layer>(&v)) {
        m.pl = *p;
        m.n_out = p->shape.out_size();
      } else if (std::holds_alternative<flatten_layer>(v)) {
        m.n_out = cur;
      } else {
        const auto& d = std::get<dense_layer>(v);
        m.n_out = d.n_out;
        m.act = d.act;
        m.load(d.W, d.b);
      }
      cur = m.n_out;
      L.push_back(std::move(m));
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
        l.dense_forward(in, B);
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
    const auto result = softmax_cross_entropy(L.back().A.data(), y, B, L.back().n_out, G);
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
        l.dense_backward(in, B, G, dIn, need_input_grad);
      }
    }
    return result;
  }
};

template <class T>
void copy_back(cnn& net, const model<T>& m) {
  for (std::size_t k = 0; k < net.layers.size(); ++k)
    std::visit(
        [&](auto& l) {
          using L = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<L, conv_layer> || std::is_same_v<L, dense_layer>) m.L[k].store(l.W, l.b);
        },
        net.layers[k]);
}

}  // namespace

void train_cnn(cnn& net, const io::dataset& data, const cnn_train_options& opt, std::vector<epoch_report>* log) {
  check_data(net, data);
  check_options(net.outputs(), opt);
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
            init_uniform(l.W, l.b, fan_in, rng);
          }
        },
        v);
  model<float> m(net);
  std::vector<float> G, dIn, scratch;
  run_epochs(
      m, data, opt, opt.lr_steps, opt.lr_gamma, rng, log,
      [&](const float* X, const std::uint8_t* y, std::size_t b) { return m.backward(X, y, b, G, dIn, scratch); });
  copy_back(net, m);
  if (opt.storage) {
    const sim::round_spec spec = storage_spec(*opt.storage);
    for (auto& v : net.layers)
      std::visit(
          [&](auto& l) {
            using L = std::decay_t<decltype(l)>;
            if constexpr (std::is_same_v<L, conv_layer> || std::is_same_v<L, dense_layer>) round_params(l.W, l.b, spec);
          },
          v);
  }
}

double evaluate_cnn_native(const cnn& net, const io::dataset& data, bool single, int threads) {
  check_data(net, data);
  if (threads > 0) openblas_set_num_threads(threads);
  return native_accuracy<model>(net, data, single, 500);
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
  collect_gradients(m.L, dW, db);
  return loss / static_cast<double>(batch);
}

}  // namespace mpacc::train
