// SPDX-License-Identifier: MIT
// Training and native evaluation of vision transformers (nn/vit.hpp): the
// linear maps as OpenBLAS GEMMs over all tokens of a batch, attention, layer
// norm and GELU as plain loops (no OpenMP: its idle threads spin
// against OpenBLAS's on a loaded machine; measured 32 % of the time in libgomp), the backward pass written out
// layer by layer, AdamW.
#include "mpacc/train/vit.hpp"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "common.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::train {

using namespace nn;
using namespace detail;

namespace {

// C = op(A) op(B) + beta C, row-major
void gemm_beta(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const float* A, std::size_t lda,
               const float* B, std::size_t ldb, float beta, float* C, std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0f, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}
void gemm_beta(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
               const double* B, std::size_t ldb, double beta, double* C, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), 1.0, A, static_cast<int>(lda), B, static_cast<int>(ldb), beta,
              C, static_cast<int>(ldc));
}

// GELU, the exact form z Phi(z), and its derivative Phi(z) + z phi(z)
template <class T>
T gelu(T z) {
  return T(0.5) * z * (T(1) + std::erf(z * static_cast<T>(M_SQRT1_2)));
}
template <class T>
T gelu_derivative(T z) {
  const T Phi = T(0.5) * (T(1) + std::erf(z * static_cast<T>(M_SQRT1_2)));
  const T phi = static_cast<T>(0.5 * M_2_SQRTPI * M_SQRT1_2) * std::exp(T(-0.5) * z * z);
  return Phi + z * phi;
}

// One parameter tensor: master values, the copy the forward pass uses
// (rounded to the storage format for the linear maps), the gradient and
// Adam's moments.
template <class T>
struct param {
  std::vector<T> w, q, g, m, v;
  bool quantized = false;  // rounded to the storage format in the forward pass
  bool decayed = false;    // takes weight decay
  void set(const std::vector<double>& x) {
    w.assign(x.begin(), x.end());
    q = w;
    g.assign(w.size(), 0);
    m.assign(w.size(), 0);
    v.assign(w.size(), 0);
  }
  [[nodiscard]] std::vector<double> values() const { return {w.begin(), w.end()}; }
  [[nodiscard]] std::vector<double> grads() const { return {g.begin(), g.end()}; }
};

// a linear map Y = X Wq^T + bq on rows of n_in values
template <class T>
struct linear {
  std::size_t n_in = 0, n_out = 0;
  param<T> W, b;
  void set(const dense_layer& l) {
    n_in = l.n_in;
    n_out = l.n_out;
    W.set(l.W);
    b.set(l.b);
    W.quantized = b.quantized = true;
    W.decayed = true;
  }
  void forward(const T* X, std::size_t rows, T* Y) const {
    gemm(false, true, rows, n_out, n_in, X, n_in, W.q.data(), n_in, Y, n_out);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t i = 0; i < n_out; ++i) Y[r * n_out + i] += b.q[i];
  }
  // dW, db from dY (rows x n_out) and the forward input X; dX (when not null)
  // = dY Wq, added to dX's values when `accumulate`
  void backward(const T* X, const T* dY, std::size_t rows, T* dX, bool accumulate) {
    gemm(true, false, n_out, n_in, rows, dY, n_out, X, n_in, W.g.data(), n_in);
    std::fill(b.g.begin(), b.g.end(), T(0));
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t i = 0; i < n_out; ++i) b.g[i] += dY[r * n_out + i];
    if (dX) gemm_beta(false, false, rows, n_in, n_out, dY, n_out, W.q.data(), n_in, accumulate ? T(1) : T(0), dX, n_in);
  }
};

// layer norm over rows of d values
template <class T>
struct norm {
  std::size_t d = 0;
  T eps = 0;
  param<T> gamma, beta;
  void set(const layer_norm& n, std::size_t width, double e) {
    d = width;
    eps = static_cast<T>(e);
    gamma.set(n.gamma);
    beta.set(n.beta);
  }
  // Y = gamma xhat + beta; keeps xhat and 1/sigma per row
  void forward(const T* X, std::size_t rows, std::size_t stride, T* Y, T* xhat, T* rstd) const {
    const auto R = static_cast<std::ptrdiff_t>(rows);
    for (std::ptrdiff_t rr = 0; rr < R; ++rr) {
      const auto r = static_cast<std::size_t>(rr);
      const T* x = X + r * stride;
      T mean = 0;
      for (std::size_t j = 0; j < d; ++j) mean += x[j];
      mean /= static_cast<T>(d);
      T var = 0;
      for (std::size_t j = 0; j < d; ++j) var += (x[j] - mean) * (x[j] - mean);
      var /= static_cast<T>(d);
      const T rs = T(1) / std::sqrt(var + eps);
      rstd[r] = rs;
      for (std::size_t j = 0; j < d; ++j) {
        const T xh = (x[j] - mean) * rs;
        xhat[r * d + j] = xh;
        Y[r * d + j] = gamma.q[j] * xh + beta.q[j];
      }
    }
  }
  // dgamma, dbeta (assigned); dX (rows at `stride`) += the input gradient
  void backward(const T* dY, std::size_t rows, const T* xhat, const T* rstd, T* dX, std::size_t stride) {
    std::fill(gamma.g.begin(), gamma.g.end(), T(0));
    std::fill(beta.g.begin(), beta.g.end(), T(0));
    for (std::size_t r = 0; r < rows; ++r) {
      const T* dy = dY + r * d;
      const T* xh = xhat + r * d;
      T mean_dxh = 0, mean_dxh_xh = 0;
      for (std::size_t j = 0; j < d; ++j) {
        gamma.g[j] += dy[j] * xh[j];
        beta.g[j] += dy[j];
        const T dxh = dy[j] * gamma.q[j];
        mean_dxh += dxh;
        mean_dxh_xh += dxh * xh[j];
      }
      mean_dxh /= static_cast<T>(d);
      mean_dxh_xh /= static_cast<T>(d);
      T* dx = dX + r * stride;
      for (std::size_t j = 0; j < d; ++j) dx[j] += rstd[r] * (dy[j] * gamma.q[j] - mean_dxh - xh[j] * mean_dxh_xh);
    }
  }
};

// the sizes of the attention of a batch
struct attention_shape {
  std::size_t batch, tokens, d, heads;
  [[nodiscard]] std::size_t dh() const { return d / heads; }
};

// P = softmax(Q K^T / sqrt(dh)) per sample and head (B x heads x tokens x
// tokens), O = P V (rows x d, the heads concatenated), from QKV (rows x 3d:
// q, k, v stacked)
template <class T>
void attention_forward(const attention_shape& a, const T* qkv, T* Pout, T* Oout) {
  const std::size_t tokens = a.tokens, d = a.d, heads = a.heads, dh = a.dh(), ld = 3 * d;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  for (std::size_t sh = 0; sh < a.batch * heads; ++sh) {
    const std::size_t s = sh / heads, h = sh % heads;
    const T* base = qkv + s * tokens * ld;
    T* P = Pout + sh * tokens * tokens;
    for (std::size_t i = 0; i < tokens; ++i) {
      const T* q = base + i * ld + h * dh;
      T* p = P + i * tokens;
      T mx = -INFINITY;
      for (std::size_t j = 0; j < tokens; ++j) {
        const T* k = base + j * ld + d + h * dh;
        T acc = 0;
        for (std::size_t c = 0; c < dh; ++c) acc += q[c] * k[c];
        p[j] = acc * scale;
        mx = std::max(mx, p[j]);
      }
      T sum = 0;
      for (std::size_t j = 0; j < tokens; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += p[j];
      }
      for (std::size_t j = 0; j < tokens; ++j) p[j] /= sum;
      T* o = Oout + (s * tokens + i) * d + h * dh;
      for (std::size_t c = 0; c < dh; ++c) o[c] = 0;
      for (std::size_t j = 0; j < tokens; ++j) {
        const T* v = base + j * ld + 2 * d + h * dh;
        for (std::size_t c = 0; c < dh; ++c) o[c] += p[j] * v[c];
      }
    }
  }
}

// dQKV (rows x 3d, assigned) from dO (rows x d), the forward's QKV and P
template <class T>
void attention_backward(const attention_shape& a, const T* qkv, const T* Pin, const T* dO, T* dqkv) {
  const std::size_t tokens = a.tokens, d = a.d, heads = a.heads, dh = a.dh(), ld = 3 * d;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  std::fill(dqkv, dqkv + a.batch * tokens * ld, T(0));
  std::vector<T> dP(tokens);
  for (std::size_t sh = 0; sh < a.batch * heads; ++sh) {
    const std::size_t s = sh / heads, h = sh % heads;
    const T* base = qkv + s * tokens * ld;
    T* dbase = dqkv + s * tokens * ld;
    const T* P = Pin + sh * tokens * tokens;
    for (std::size_t i = 0; i < tokens; ++i) {
      const T* p = P + i * tokens;
      const T* go = dO + (s * tokens + i) * d + h * dh;
      T dot = 0;
      for (std::size_t j = 0; j < tokens; ++j) {
        const T* v = base + j * ld + 2 * d + h * dh;
        T* dv = dbase + j * ld + 2 * d + h * dh;
        T acc = 0;
        for (std::size_t c = 0; c < dh; ++c) {
          acc += go[c] * v[c];
          dv[c] += p[j] * go[c];
        }
        dP[j] = acc;
        dot += p[j] * acc;
      }
      const T* q = base + i * ld + h * dh;
      T* dq = dbase + i * ld + h * dh;
      for (std::size_t j = 0; j < tokens; ++j) {
        const T dS = p[j] * (dP[j] - dot) * scale;
        const T* k = base + j * ld + d + h * dh;
        T* dk = dbase + j * ld + d + h * dh;
        for (std::size_t c = 0; c < dh; ++c) {
          dq[c] += dS * k[c];
          dk[c] += dS * q[c];
        }
      }
    }
  }
}

// the activations of one block for a batch (rows = batch x tokens)
template <class T>
struct block_state {
  std::vector<T> x_in, xhat1, rstd1, h1, qkv, P, o, x_mid, xhat2, rstd2, h2, u, g;
};

template <class T>
struct block_params {
  norm<T> ln1, ln2;
  linear<T> qkv, proj, fc1, fc2;  // qkv: q, k, v stacked, 3d x d
};

// A vit in precision T with the forward and backward buffers of a batch.
template <class T>
struct model {
  std::size_t image, patch, d, heads, dh, hidden, classes, tokens, patches;
  linear<T> embed, head;
  param<T> cls, pos;
  std::vector<block_params<T>> blocks;
  norm<T> ln_f;
  // forward state
  std::size_t B = 0;
  std::vector<T> patch_rows, x0, x_last, xhat_f, rstd_f, z, logits;
  std::vector<block_state<T>> st;

  explicit model(const vit& net)
      : image(net.image),
        patch(net.patch),
        d(net.d),
        heads(net.heads),
        dh(net.d_head()),
        hidden(net.hidden),
        classes(net.classes),
        tokens(net.tokens()),
        patches(net.patches()) {
    embed.set(net.embed);
    head.set(net.head);
    cls.set(net.cls);
    pos.set(net.pos);
    for (const auto& b : net.blocks) {
      block_params<T> p;
      p.ln1.set(b.ln1, d, net.ln_eps);
      p.ln2.set(b.ln2, d, net.ln_eps);
      dense_layer stacked = b.q;
      stacked.n_out = 3 * d;
      stacked.W.insert(stacked.W.end(), b.k.W.begin(), b.k.W.end());
      stacked.W.insert(stacked.W.end(), b.v.W.begin(), b.v.W.end());
      stacked.b.insert(stacked.b.end(), b.k.b.begin(), b.k.b.end());
      stacked.b.insert(stacked.b.end(), b.v.b.begin(), b.v.b.end());
      p.qkv.set(stacked);
      p.proj.set(b.proj);
      p.fc1.set(b.fc1);
      p.fc2.set(b.fc2);
      blocks.push_back(std::move(p));
    }
    ln_f.set(net.ln_f, d, net.ln_eps);
    st.resize(blocks.size());
  }

  // every parameter tensor, in a fixed order
  template <class F>
  void each_param(F&& f) {
    f(embed.W);
    f(embed.b);
    f(cls);
    f(pos);
    for (auto& b : blocks)
      for (auto* p : {&b.ln1.gamma, &b.ln1.beta, &b.qkv.W, &b.qkv.b, &b.proj.W, &b.proj.b, &b.ln2.gamma, &b.ln2.beta,
                      &b.fc1.W, &b.fc1.b, &b.fc2.W, &b.fc2.b})
        f(*p);
    f(ln_f.gamma);
    f(ln_f.beta);
    f(head.W);
    f(head.b);
  }

  void store(vit& net) const {
    net.embed.W = embed.W.values();
    net.embed.b = embed.b.values();
    net.cls = cls.values();
    net.pos = pos.values();
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      const auto& p = blocks[k];
      auto& b = net.blocks[k];
      b.ln1 = {p.ln1.gamma.values(), p.ln1.beta.values()};
      b.ln2 = {p.ln2.gamma.values(), p.ln2.beta.values()};
      const auto W = p.qkv.W.values(), bias = p.qkv.b.values();
      const auto dd = static_cast<std::ptrdiff_t>(d * d), dn = static_cast<std::ptrdiff_t>(d);
      b.q.W.assign(W.begin(), W.begin() + dd);
      b.k.W.assign(W.begin() + dd, W.begin() + 2 * dd);
      b.v.W.assign(W.begin() + 2 * dd, W.end());
      b.q.b.assign(bias.begin(), bias.begin() + dn);
      b.k.b.assign(bias.begin() + dn, bias.begin() + 2 * dn);
      b.v.b.assign(bias.begin() + 2 * dn, bias.end());
      b.proj.W = p.proj.W.values();
      b.proj.b = p.proj.b.values();
      b.fc1.W = p.fc1.W.values();
      b.fc1.b = p.fc1.b.values();
      b.fc2.W = p.fc2.W.values();
      b.fc2.b = p.fc2.b.values();
    }
    net.ln_f = {ln_f.gamma.values(), ln_f.beta.values()};
    net.head.W = head.W.values();
    net.head.b = head.b.values();
  }

  // the patches of each image as rows of patch^2 pixels, (sample, patch) order
  void extract_patches(const T* X) {
    const std::size_t per = image / patch, pp = patch * patch;
    patch_rows.resize(B * patches * pp);
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t py = 0; py < per; ++py)
        for (std::size_t px = 0; px < per; ++px) {
          T* out = patch_rows.data() + ((s * patches) + py * per + px) * pp;
          for (std::size_t ky = 0; ky < patch; ++ky)
            for (std::size_t kx = 0; kx < patch; ++kx)
              out[ky * patch + kx] = X[s * image * image + (py * patch + ky) * image + px * patch + kx];
        }
  }

  void forward(const T* X, std::size_t batch) {
    B = batch;
    const std::size_t rows = B * tokens;
    extract_patches(X);
    std::vector<T> e(B * patches * d);
    embed.forward(patch_rows.data(), B * patches, e.data());
    x0.resize(rows * d);
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t t = 0; t < tokens; ++t)
        for (std::size_t j = 0; j < d; ++j)
          x0[(s * tokens + t) * d + j] = (t == 0 ? cls.q[j] : e[(s * patches + t - 1) * d + j]) + pos.q[t * d + j];
    const std::vector<T>* x = &x0;
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      auto& p = blocks[k];
      auto& S = st[k];
      S.x_in = *x;
      S.xhat1.resize(rows * d);
      S.rstd1.resize(rows);
      S.h1.resize(rows * d);
      p.ln1.forward(S.x_in.data(), rows, d, S.h1.data(), S.xhat1.data(), S.rstd1.data());
      S.qkv.resize(rows * 3 * d);
      p.qkv.forward(S.h1.data(), rows, S.qkv.data());
      S.P.resize(B * heads * tokens * tokens);
      S.o.resize(rows * d);
      attention_forward(attention_shape{B, tokens, d, heads}, S.qkv.data(), S.P.data(), S.o.data());
      S.x_mid.resize(rows * d);
      p.proj.forward(S.o.data(), rows, S.x_mid.data());
      for (std::size_t t = 0; t < rows * d; ++t) S.x_mid[t] += S.x_in[t];
      S.xhat2.resize(rows * d);
      S.rstd2.resize(rows);
      S.h2.resize(rows * d);
      p.ln2.forward(S.x_mid.data(), rows, d, S.h2.data(), S.xhat2.data(), S.rstd2.data());
      S.u.resize(rows * hidden);
      S.g.resize(rows * hidden);
      p.fc1.forward(S.h2.data(), rows, S.u.data());
      const auto n = static_cast<std::ptrdiff_t>(rows * hidden);
      for (std::ptrdiff_t t = 0; t < n; ++t) S.g[static_cast<std::size_t>(t)] = gelu(S.u[static_cast<std::size_t>(t)]);
      x_last.resize(rows * d);
      p.fc2.forward(S.g.data(), rows, x_last.data());
      for (std::size_t t = 0; t < rows * d; ++t) x_last[t] += S.x_mid[t];
      x = &x_last;
    }
    // the class token of every sample: rows at stride tokens * d
    xhat_f.resize(B * d);
    rstd_f.resize(B);
    z.resize(B * d);
    ln_f.forward(x_last.data(), B, tokens * d, z.data(), xhat_f.data(), rstd_f.data());
    logits.resize(B * classes);
    head.forward(z.data(), B, logits.data());
  }

  // G = dLoss/dlogits (B x classes); fills every parameter's gradient
  void backward(const std::vector<T>& G) {
    const std::size_t rows = B * tokens;
    std::vector<T> dz(B * d), dx(rows * d, T(0)), dh_(rows * hidden), dn(rows * d), dqkv(rows * 3 * d);
    head.backward(z.data(), G.data(), B, dz.data(), false);
    ln_f.backward(dz.data(), B, xhat_f.data(), rstd_f.data(), dx.data(), tokens * d);  // dx: d x_last
    for (std::size_t k = blocks.size(); k-- > 0;) {
      auto& p = blocks[k];
      auto& S = st[k];
      // x_out = x_mid + fc2(gelu(fc1(ln2(x_mid))))
      p.fc2.backward(S.g.data(), dx.data(), rows, dh_.data(), false);
      const auto n = static_cast<std::ptrdiff_t>(rows * hidden);
      for (std::ptrdiff_t t = 0; t < n; ++t)
        dh_[static_cast<std::size_t>(t)] *= gelu_derivative(S.u[static_cast<std::size_t>(t)]);
      p.fc1.backward(S.h2.data(), dh_.data(), rows, dn.data(), false);
      p.ln2.backward(dn.data(), rows, S.xhat2.data(), S.rstd2.data(), dx.data(), d);  // dx: d x_mid
      // x_mid = x_in + proj(attention(ln1(x_in)))
      p.proj.backward(S.o.data(), dx.data(), rows, dn.data(), false);  // dn: dO
      attention_backward(attention_shape{B, tokens, d, heads}, S.qkv.data(), S.P.data(), dn.data(), dqkv.data());
      p.qkv.backward(S.h1.data(), dqkv.data(), rows, dn.data(), false);               // dn: dh1
      p.ln1.backward(dn.data(), rows, S.xhat1.data(), S.rstd1.data(), dx.data(), d);  // dx: d x_in
    }
    // x0 = [cls; embed(patches)] + pos
    std::fill(cls.g.begin(), cls.g.end(), T(0));
    std::fill(pos.g.begin(), pos.g.end(), T(0));
    std::vector<T> de(B * patches * d);
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t t = 0; t < tokens; ++t)
        for (std::size_t j = 0; j < d; ++j) {
          const T g = dx[(s * tokens + t) * d + j];
          pos.g[t * d + j] += g;
          if (t == 0)
            cls.g[j] += g;
          else
            de[(s * patches + t - 1) * d + j] = g;
        }
    embed.backward(patch_rows.data(), de.data(), B * patches, nullptr, false);
  }
};

// the network's parameters drawn as train_vit documents
void initialize(vit& net, sim::random_stream& rng) {
  auto lin = [&](dense_layer& l) { init_uniform(l.W, l.b, l.n_in, rng); };
  auto small = [&](std::vector<double>& v) {
    for (auto& x : v) x = static_cast<float>((rng.uniform() * 2 - 1) * 0.02 * std::sqrt(3.0));
  };
  auto unit = [&](layer_norm& n) {
    std::fill(n.gamma.begin(), n.gamma.end(), 1.0);
    std::fill(n.beta.begin(), n.beta.end(), 0.0);
  };
  lin(net.embed);
  small(net.cls);
  small(net.pos);
  for (auto& b : net.blocks) {
    unit(b.ln1);
    for (auto* l : {&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2}) lin(*l);
    unit(b.ln2);
  }
  unit(net.ln_f);
  lin(net.head);
}

void check_vit_data(const vit& net, const io::dataset& data) {
  net.validate();
  if (net.inputs() != data.cols)
    throw std::invalid_argument("the network takes " + std::to_string(net.inputs()) + " inputs, the data has " +
                                std::to_string(data.cols) + " features");
}

}  // namespace

void train_vit(vit& net, const io::dataset& data, const vit_train_options& opt, std::vector<epoch_report>* log) {
  check_vit_data(net, data);
  check_options(net.outputs(), opt);
  if (!(opt.lr > 0) || !(opt.beta1 >= 0 && opt.beta1 < 1) || !(opt.beta2 >= 0 && opt.beta2 < 1) ||
      !(opt.adam_eps > 0) || !(opt.weight_decay >= 0))
    throw std::invalid_argument("AdamW needs lr > 0, betas in [0, 1), eps > 0 and weight decay >= 0");
  sim::random_stream rng(opt.seed);
  initialize(net, rng);
  model<float> m(net);
  const std::size_t steps_per_epoch = (data.rows + opt.batch - 1) / opt.batch, total = steps_per_epoch * opt.epochs;
  std::vector<float> G;
  std::vector<double> qbuf;
  const sim::round_spec spec = opt.storage ? storage_spec(*opt.storage) : sim::round_spec{};
  std::size_t step = 0;
  epoch_loop(data, opt, rng, log, 20, [&](const float* X, const std::uint8_t* y, std::size_t b, std::size_t) {
    // the forward copies: rounded to the storage format (linear maps) or the master values
    m.each_param([&](param<float>& p) {
      if (!p.quantized || !opt.storage) {
        p.q = p.w;
        return;
      }
      qbuf.assign(p.w.begin(), p.w.end());
      sim::round_array(qbuf, qbuf, spec, 0, 1);
      std::copy(qbuf.begin(), qbuf.end(), p.q.begin());
    });
    m.forward(X, b);
    const auto res = softmax_cross_entropy(m.logits.data(), y, b, m.classes, G);
    m.backward(G);
    // AdamW: warmup, then cosine decay to 0
    ++step;
    const double frac = static_cast<double>(step - std::min(step, opt.warmup_steps)) /
                        static_cast<double>(std::max<std::size_t>(1, total - std::min(total, opt.warmup_steps)));
    const double lr = step <= opt.warmup_steps
                          ? opt.lr * static_cast<double>(step) / static_cast<double>(opt.warmup_steps)
                          : opt.lr * 0.5 * (1 + std::cos(M_PI * std::min(1.0, frac)));
    const double c1 = 1 - std::pow(opt.beta1, static_cast<double>(step));
    const double c2 = 1 - std::pow(opt.beta2, static_cast<double>(step));
    const auto b1 = static_cast<float>(opt.beta1), b2 = static_cast<float>(opt.beta2);
    const auto a = static_cast<float>(lr / c1), inv_c2 = static_cast<float>(1 / c2);
    const auto eps = static_cast<float>(opt.adam_eps), wd = static_cast<float>(lr * opt.weight_decay);
    m.each_param([&](param<float>& p) {
      for (std::size_t k = 0; k < p.w.size(); ++k) {
        const float g = p.g[k];
        p.m[k] = b1 * p.m[k] + (1 - b1) * g;
        p.v[k] = b2 * p.v[k] + (1 - b2) * g * g;
        if (p.decayed) p.w[k] -= wd * p.w[k];
        p.w[k] -= a * p.m[k] / (std::sqrt(p.v[k] * inv_c2) + eps);
      }
    });
    return res;
  });
  m.store(net);
  if (opt.storage) {
    auto r = [&](dense_layer& l) { round_params(l.W, l.b, spec); };
    r(net.embed);
    for (auto& b : net.blocks)
      for (auto* l : {&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2}) r(*l);
    r(net.head);
  }
}

double evaluate_vit_native(const vit& net, const io::dataset& data, bool single, int threads) {
  check_vit_data(net, data);
  if (threads > 0) openblas_set_num_threads(threads);
  std::size_t correct = 0;
  constexpr std::size_t kBatch = 500;
  auto run = [&](auto tag) {
    using T = decltype(tag);
    model<T> m(net);
    std::vector<T> X;
    for (std::size_t start = 0; start < data.rows; start += kBatch) {
      const std::size_t b = std::min(kBatch, data.rows - start);
      X.assign(data.x.begin() + static_cast<std::ptrdiff_t>(start * data.cols),
               data.x.begin() + static_cast<std::ptrdiff_t>((start + b) * data.cols));
      m.forward(X.data(), b);
      for (std::size_t s = 0; s < b; ++s)
        correct += argmax(m.logits.data() + s * m.classes, m.classes) == data.y[start + s];
    }
  };
  if (single)
    run(float{});
  else
    run(double{});
  return static_cast<double>(correct) / static_cast<double>(data.rows);
}

std::vector<double> vit_forward_native(const vit& net, const double* X, std::size_t batch) {
  net.validate();
  model<double> m(net);
  m.forward(X, batch);
  return m.logits;
}

double detail::vit_loss_and_gradients(const vit& net, const double* X, const std::uint8_t* labels, std::size_t batch,
                                      vit& grad) {
  net.validate();
  model<double> m(net);
  m.forward(X, batch);
  std::vector<double> G;
  const auto [loss, correct] = softmax_cross_entropy(m.logits.data(), labels, batch, m.classes, G);
  (void)correct;
  m.backward(G);
  // the gradients in the network's layout: swap values and gradients, then store
  m.each_param([](param<double>& p) { p.w = p.g; });
  grad = net;
  m.store(grad);
  return loss / static_cast<double>(batch);
}

std::vector<double> detail::vit_layer_norm(const std::vector<double>& x, std::size_t d, const layer_norm& n, double eps,
                                           const std::vector<double>* dy, std::vector<double>* dx, layer_norm* dn) {
  if (d == 0 || x.size() % d != 0 || n.gamma.size() != d || n.beta.size() != d)
    throw std::invalid_argument("vit_layer_norm: sizes do not fit");
  const std::size_t rows = x.size() / d;
  norm<double> ln;
  ln.set(n, d, eps);
  std::vector<double> y(x.size()), xhat(x.size()), rstd(rows);
  ln.forward(x.data(), rows, d, y.data(), xhat.data(), rstd.data());
  if (dy && dx && dn) {
    dx->assign(x.size(), 0.0);
    ln.backward(dy->data(), rows, xhat.data(), rstd.data(), dx->data(), d);
    dn->gamma = ln.gamma.grads();
    dn->beta = ln.beta.grads();
  }
  return y;
}

std::vector<double> detail::vit_attention(const std::vector<double>& qkv, std::size_t batch, std::size_t tokens,
                                          std::size_t d, std::size_t heads, const std::vector<double>* dy,
                                          std::vector<double>* dqkv) {
  if (heads == 0 || d % heads != 0 || qkv.size() != batch * tokens * 3 * d)
    throw std::invalid_argument("vit_attention: sizes do not fit");
  const attention_shape a{batch, tokens, d, heads};
  std::vector<double> P(batch * heads * tokens * tokens), O(batch * tokens * d);
  attention_forward(a, qkv.data(), P.data(), O.data());
  if (dy && dqkv) {
    dqkv->assign(qkv.size(), 0.0);
    attention_backward(a, qkv.data(), P.data(), dy->data(), dqkv->data());
  }
  return O;
}

std::vector<double> detail::vit_gelu(const std::vector<double>& x, const std::vector<double>* dy,
                                     std::vector<double>* dx) {
  std::vector<double> y(x.size());
  for (std::size_t t = 0; t < x.size(); ++t) y[t] = gelu(x[t]);
  if (dy && dx) {
    dx->resize(x.size());
    for (std::size_t t = 0; t < x.size(); ++t) (*dx)[t] = (*dy)[t] * gelu_derivative(x[t]);
  }
  return y;
}

}  // namespace mpacc::train
