// SPDX-License-Identifier: MIT
// The simulated forward pass of a vision transformer (nn/vit_passes.hpp).
#include "mpacc/nn/vit_passes.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/row_ops.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::nn {

namespace {

// how the elementwise values are rounded to the activation format
struct act_rounding {
  sim::format fmt;
  sim::rounding mode;
  bool saturate;
};

// one rounding of a binary64 value (flags: overflow | invalid when the value
// is not finite although its operands were, as nn::apply_activation does)
double round_act(double x, bool operands_finite, const act_rounding& r, std::uint64_t seed, std::uint64_t index,
                 unsigned& fl) {
  if (operands_finite && !std::isfinite(x)) fl |= std::isnan(x) ? sim::flag::invalid : sim::flag::overflow;
  const std::uint64_t word = r.mode == sim::rounding::stochastic ? sim::random_bits(seed, index) : 0;
  return sim::round(x, r.fmt, r.mode, r.saturate, fl, word);
}

// every accumulator of the spec's map is on the fast path
bool fast(const sim::layer_spec& spec) {
  bool ok = true;
  for (const auto& f : spec.acc.formats) {
    sim::accumulation a = spec.base;
    a.acc = f;
    ok = ok && sim::fast_path_applies(a);
  }
  return ok;
}

// one inner product: sim::dot, or the MPFR model where sim::dot does not apply
sim::dot_result dot_any(std::span<const double> w, std::span<const double> x, double b, const sim::accumulation& a,
                        bool fast_path, std::uint64_t first_word) {
  if (fast_path) {
    const auto r = sim::dot(w, x, b, a, first_word);
    if (r.exact_model) return r;
  }
  return ref::dot_mpfr(w, x, b, a, first_word);
}

void check_map(const sim::layer_spec& spec, std::size_t cols, std::size_t k, const std::string& name) {
  if (!spec.acc.index.empty() && spec.acc.index.size() != cols)
    throw std::invalid_argument("simulate: inner-product layer " + std::to_string(k) + " (" + name + ") has a map of " +
                                std::to_string(spec.acc.index.size()) + " components, expected " +
                                std::to_string(cols));
  for (auto i : spec.acc.index)
    if (i >= spec.acc.formats.size())
      throw std::invalid_argument("simulate: inner-product layer " + std::to_string(k) + " (" + name +
                                  "): a map index is past its formats");
}

// Y = X W^T + b of a linear map, rows numbered from first_row for the stochastic stream
void run_linear(const dense_layer& l, const std::vector<double>& X, std::size_t rows, const sim::layer_spec& spec,
                std::size_t first_row, std::vector<double>& Y, std::vector<unsigned>& flags, int threads) {
  if (fast(spec)) {
    const sim::prepared_dense layer({l.W.data(), l.n_out, l.n_in}, l.b, spec);
    layer.run({X.data(), rows, l.n_in}, Y, threads, &flags, first_row);
    return;
  }
  Y.assign(rows * l.n_out, 0);
  flags.assign(rows * l.n_out, 0);
  const auto total = static_cast<std::ptrdiff_t>(rows * l.n_out);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(dynamic, 16)
  for (std::ptrdiff_t t = 0; t < total; ++t) {
    const auto at = static_cast<std::size_t>(t);
    const std::size_t r = at / l.n_out, i = at % l.n_out;
    sim::accumulation a = spec.base;
    a.acc = spec.acc.of(i);
    const auto res = ref::dot_mpfr({l.row(i), l.n_in}, {X.data() + r * l.n_in, l.n_in}, l.b[i], a,
                                   (first_row * l.n_out + at) * sim::words_per_dot(l.n_in, a));
    Y[at] = res.value;
    flags[at] = res.flags;
  }
}

// layer norm of `rows` rows of d values (at `stride`) in binary64, rounded
void layer_norm_rows(const double* X, std::size_t rows, std::size_t stride, std::size_t d, const layer_norm& n,
                     double eps, const act_rounding& r, std::uint64_t seed, std::uint64_t first_index,
                     std::vector<double>& Y, unsigned& flags) {
  Y.resize(rows * d);
  unsigned all = 0;
  std::vector<double> dev(d), xh(d);
  for (std::size_t row = 0; row < rows; ++row) {
    const double* x = X + row * stride;
    const double sigma = sim::layer_norm_binary64({x, d}, eps, dev, xh);
    bool finite = std::isfinite(sigma);
    for (std::size_t j = 0; j < d; ++j) {
      unsigned fl = 0;
      const double v = n.gamma[j] * xh[j] + n.beta[j];
      Y[row * d + j] = round_act(v, finite && std::isfinite(x[j]), r, seed, first_index + row * d + j, fl);
      all |= fl;
    }
  }
  flags |= all;
}

struct pass {
  const vit& net;
  const precision_config& p;
  int threads;
  std::size_t batch, first_sample;
  act_rounding ar;
  const vit_layer_hook& hook;
  simulated_vit out;

  // the hook's turn on layer k (v formed, y not yet)
  void before_y(std::size_t k) {
    if (hook) hook(k, out);
  }

  [[nodiscard]] std::uint64_t site_seed(std::size_t site) const { return p.seed + net.product_layers() + 1 + site; }

  // a linear map as inner-product layer k on operand rows `in`
  simulated_vit_layer& linear(std::size_t k, const dense_layer& l, std::vector<double> in, std::size_t rows,
                              std::size_t rows_per_sample) {
    auto& L = out.layers[k];
    const sim::layer_spec spec = p.layer_spec(k);
    check_map(spec, l.n_out, k, net.product_layer_names()[k]);
    L.rows = rows;
    L.cols = l.n_out;
    L.in = std::move(in);
    run_linear(l, L.in, rows, spec, first_sample * rows_per_sample, L.v, L.flags, threads);
    before_y(k);
    L.act_flags.assign(L.v.size(), 0);
    L.y.resize(L.v.size());
    return L;
  }

  // y = round(f(t, v[t])) for every output t of layer k
  template <class F>
  void finish(std::size_t k, std::size_t per_sample, F&& f) {
    auto& L = out.layers[k];
    const std::uint64_t seed = p.seed + k + 1, base = first_sample * per_sample;
    const auto n = static_cast<std::ptrdiff_t>(L.v.size());
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
    for (std::ptrdiff_t tt = 0; tt < n; ++tt) {
      const auto t = static_cast<std::size_t>(tt);
      unsigned fl = 0;
      const auto [value, finite] = f(t, L.v[t]);
      L.y[t] = round_act(value, finite, ar, seed, base + t, fl);
      L.act_flags[t] = fl;
    }
  }

  // scores (layer k) from the q and k layers' y
  void scores(std::size_t k, const std::vector<double>& Q, const std::vector<double>& K) {
    const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
    auto& L = out.layers[k];
    const sim::layer_spec spec = p.layer_spec(k);
    check_map(spec, T, k, net.product_layer_names()[k]);
    const bool fp = fast(spec);
    L.rows = batch * H * T;
    L.cols = T;
    L.v.assign(L.rows * T, 0);
    L.flags.assign(L.rows * T, 0);
    const auto rows = static_cast<std::ptrdiff_t>(L.rows);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
    for (std::ptrdiff_t rr = 0; rr < rows; ++rr) {
      const auto r = static_cast<std::size_t>(rr);
      const std::size_t s = r / (H * T), h = (r / T) % H, i = r % T;
      const std::span<const double> q{Q.data() + (s * T + i) * d + h * dh, dh};
      for (std::size_t j = 0; j < T; ++j) {
        sim::accumulation a = spec.base;
        a.acc = spec.acc.of(j);
        const std::uint64_t word = ((first_sample * H * T + r) * T + j) * sim::words_per_dot(dh, a);
        const auto res = dot_any({K.data() + (s * T + j) * d + h * dh, dh}, q, 0.0, a, fp, word);
        L.v[r * T + j] = res.value;
        L.flags[r * T + j] = res.flags;
      }
    }
    before_y(k);
    // softmax over the keys, in binary64
    L.y.resize(L.v.size());
    L.act_flags.assign(L.v.size(), 0);
    const double scale = 1 / std::sqrt(static_cast<double>(dh));
    const std::uint64_t seed = p.seed + k + 1, base = first_sample * H * T * T;
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
    for (std::ptrdiff_t rr = 0; rr < rows; ++rr) {
      const auto r = static_cast<std::size_t>(rr);
      const double* v = L.v.data() + r * T;
      // the logits z_j = fl(v_j scale), then the shared kernel (sim/row_ops.hpp)
      std::vector<double> z(T), t(T), e(T);
      bool finite = true;
      for (std::size_t j = 0; j < T; ++j) {
        z[j] = v[j] * scale;
        finite = finite && std::isfinite(v[j]);
      }
      sim::softmax_binary64(z, t, e);
      for (std::size_t j = 0; j < T; ++j) {
        unsigned fl = 0;
        L.y[r * T + j] = round_act(e[j], finite, ar, seed, base + r * T + j, fl);
        L.act_flags[r * T + j] = fl;
      }
    }
  }

  // mix (layer k) from the scores' y and the v layer's y
  void mix(std::size_t k, const std::vector<double>& P, const std::vector<double>& V) {
    const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
    auto& L = out.layers[k];
    const sim::layer_spec spec = p.layer_spec(k);
    check_map(spec, d, k, net.product_layer_names()[k]);
    const bool fp = fast(spec);
    L.rows = batch * T;
    L.cols = d;
    L.v.assign(L.rows * d, 0);
    L.flags.assign(L.rows * d, 0);
    const auto n = static_cast<std::ptrdiff_t>(batch * H);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
    for (std::ptrdiff_t sh = 0; sh < n; ++sh) {
      const std::size_t s = static_cast<std::size_t>(sh) / H, h = static_cast<std::size_t>(sh) % H;
      // V^h transposed: column c over the tokens
      std::vector<double> vt(dh * T);
      for (std::size_t j = 0; j < T; ++j)
        for (std::size_t c = 0; c < dh; ++c) vt[c * T + j] = V[(s * T + j) * d + h * dh + c];
      for (std::size_t i = 0; i < T; ++i) {
        const std::span<const double> prow{P.data() + ((s * H + h) * T + i) * T, T};
        for (std::size_t c = 0; c < dh; ++c) {
          const std::size_t col = h * dh + c, at = (s * T + i) * d + col;
          sim::accumulation a = spec.base;
          a.acc = spec.acc.of(col);
          const std::uint64_t word = (first_sample * T * d + at) * sim::words_per_dot(T, a);
          const auto res = dot_any({vt.data() + c * T, T}, prow, 0.0, a, fp, word);
          L.v[at] = res.value;
          L.flags[at] = res.flags;
        }
      }
    }
    before_y(k);
    L.y.resize(L.v.size());
    L.act_flags.assign(L.v.size(), 0);
    finish(k, T * d, [](std::size_t, double v) { return std::pair{v, true}; });
  }

  void run(sim::matrix_view X) {
    const std::size_t T = net.tokens(), P = net.patches(), d = net.d, pp = net.patch * net.patch;
    const std::size_t per = net.image / net.patch;
    out.layers.resize(net.product_layers());
    std::vector<unsigned> in_flags;
    const std::vector<double> img = store_inputs(X, p.inputs, &in_flags);
    // patch embedding: rows (sample, patch)
    std::vector<double> patches(batch * P * pp);
    for (std::size_t s = 0; s < batch; ++s)
      for (std::size_t py = 0; py < per; ++py)
        for (std::size_t px = 0; px < per; ++px)
          for (std::size_t ky = 0; ky < net.patch; ++ky)
            for (std::size_t kx = 0; kx < net.patch; ++kx)
              patches[((s * P) + py * per + px) * pp + ky * net.patch + kx] =
                  img[s * net.inputs() + (py * net.patch + ky) * net.image + px * net.patch + kx];
    {
      auto& L = linear(0, net.embed, std::move(patches), batch * P, P);
      L.in_flags = std::move(in_flags);
      finish(0, P * d, [&](std::size_t t, double v) {
        const double pos = net.pos[(1 + (t / d) % P) * d + t % d];
        return std::pair{v + pos, std::isfinite(v)};
      });
    }
    // the stream: the class-token row, then the patch tokens
    std::vector<double> x(batch * T * d);
    for (std::size_t s = 0; s < batch; ++s)
      for (std::size_t j = 0; j < d; ++j) {
        unsigned fl = 0;
        x[s * T * d + j] = round_act(net.cls[j] + net.pos[j], true, ar, site_seed(0), (first_sample + s) * d + j, fl);
        out.other_flags |= fl;
        out.cls_row.push_back(x[s * T * d + j]);
        for (std::size_t t = 1; t < T; ++t) x[(s * T + t) * d + j] = out.layers[0].y[(s * P + t - 1) * d + j];
      }
    const std::size_t rows = batch * T;
    const std::uint64_t stream_base = first_sample * T * d;
    for (std::size_t b = 0; b < net.blocks.size(); ++b) {
      const auto& B = net.blocks[b];
      const std::size_t k0 = 1 + 8 * b;
      std::vector<double> h;
      layer_norm_rows(x.data(), rows, d, d, B.ln1, net.ln_eps, ar, site_seed(1 + 2 * b), stream_base, h,
                      out.other_flags);
      const dense_layer* qkv[3] = {&B.q, &B.k, &B.v};
      for (std::size_t m = 0; m < 3; ++m) {
        linear(k0 + m, *qkv[m], h, rows, T);
        finish(k0 + m, T * d, [](std::size_t, double v) { return std::pair{v, true}; });
      }
      scores(k0 + 3, out.layers[k0].y, out.layers[k0 + 1].y);
      mix(k0 + 4, out.layers[k0 + 3].y, out.layers[k0 + 2].y);
      linear(k0 + 5, B.proj, out.layers[k0 + 4].y, rows, T);
      finish(k0 + 5, T * d, [&](std::size_t t, double v) { return std::pair{x[t] + v, std::isfinite(v)}; });
      x = out.layers[k0 + 5].y;
      layer_norm_rows(x.data(), rows, d, d, B.ln2, net.ln_eps, ar, site_seed(2 + 2 * b), stream_base, h,
                      out.other_flags);
      linear(k0 + 6, B.fc1, std::move(h), rows, T);
      finish(k0 + 6, T * net.hidden, [&](std::size_t, double v) {
        const double g = sim::apply(B.fc1.act, v);
        return std::pair{g, std::isfinite(v)};
      });
      linear(k0 + 7, B.fc2, out.layers[k0 + 6].y, rows, T);
      finish(k0 + 7, T * d, [&](std::size_t t, double v) { return std::pair{x[t] + v, std::isfinite(v)}; });
      x = out.layers[k0 + 7].y;
    }
    // the final norm of the class token, then the head
    std::vector<double> z;
    layer_norm_rows(x.data(), batch, T * d, d, net.ln_f, net.ln_eps, ar, site_seed(1 + 2 * net.blocks.size()),
                    first_sample * d, z, out.other_flags);
    const std::size_t kh = net.product_layers() - 1;
    linear(kh, net.head, std::move(z), batch, 1);
    finish(kh, net.classes, [](std::size_t, double v) { return std::pair{v, true}; });
  }
};

}  // namespace

vit stored_network(const vit& net, const precision_config& p) {
  vit out = net;
  const sim::round_spec rn_act{p.act, sim::rounding::nearest_even, false, 0};
  auto lin = [&](dense_layer& l) {
    if (p.weights) sim::round_array(l.W, l.W, {*p.weights, sim::rounding::nearest_even, false, 0});
    if (p.biases) sim::round_array(l.b, l.b, {*p.biases, sim::rounding::nearest_even, false, 0});
  };
  auto elem = [&](std::vector<double>& v) { sim::round_array(v, v, rn_act); };
  lin(out.embed);
  elem(out.cls);
  elem(out.pos);
  for (auto& b : out.blocks) {
    for (auto* l : {&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2}) lin(*l);
    for (auto* v : {&b.ln1.gamma, &b.ln1.beta, &b.ln2.gamma, &b.ln2.beta}) elem(*v);
  }
  elem(out.ln_f.gamma);
  elem(out.ln_f.beta);
  lin(out.head);
  return out;
}

simulated_vit simulate(const vit& net_in, sim::matrix_view X, const precision_config& p, int threads,
                       std::size_t first_sample, const vit_layer_hook& hook) {
  net_in.validate();
  p.check(net_in.product_layers());
  if (X.cols != net_in.inputs())
    throw std::invalid_argument("simulate: the inputs have " + std::to_string(X.cols) + " values, the network takes " +
                                std::to_string(net_in.inputs()));
  const vit net = stored_network(net_in, p);
  pass run{net, p, threads, X.rows, first_sample, {p.act, p.act_rounding, p.act_saturate}, hook, {}};
  run.run(X);
  return std::move(run.out);
}

namespace {

// the linear map of inner-product layer k, or nullptr for scores and mix
const dense_layer* linear_of(const vit& net, std::size_t k) {
  if (k == 0) return &net.embed;
  if (k + 1 == net.product_layers()) return &net.head;
  const auto& B = net.blocks[(k - 1) / 8];
  const dense_layer* maps[8] = {&B.q, &B.k, &B.v, nullptr, nullptr, &B.proj, &B.fc1, &B.fc2};
  return maps[(k - 1) % 8];
}

}  // namespace

vit_operands vit_component_operands(const vit& net, const simulated_vit& pass, std::size_t k, std::size_t row,
                                    std::size_t col, std::vector<double>& buffer) {
  if (k >= net.product_layers() || k >= pass.layers.size())
    throw std::invalid_argument("vit_component: no inner-product layer " + std::to_string(k));
  const auto& L = pass.layers[k];
  if (row >= L.rows || col >= L.cols)
    throw std::invalid_argument("vit_component: component (" + std::to_string(row) + ", " + std::to_string(col) +
                                ") outside layer " + std::to_string(k));
  const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
  if (const dense_layer* l = linear_of(net, k))
    return {{l->row(col), l->n_in}, {L.in.data() + row * l->n_in, l->n_in}, l->b[col]};
  if ((k - 1) % 8 == 3) {
    // scores: row (s, h, i), key j = col: k_j^h . q_i^h
    const std::size_t s = row / (H * T), h = (row / T) % H, i = row % T;
    const auto& Q = pass.layers[k - 3].y;
    const auto& K = pass.layers[k - 2].y;
    return {{K.data() + (s * T + col) * d + h * dh, dh}, {Q.data() + (s * T + i) * d + h * dh, dh}, 0.0};
  }
  // mix: row (s, i), feature col of head h = col / dh: V^h column over the tokens . P row (s, h, i)
  const std::size_t s = row / T, i = row % T, h = col / dh;
  const auto& P = pass.layers[k - 1].y;
  const auto& V = pass.layers[k - 2].y;
  buffer.resize(T);
  for (std::size_t j = 0; j < T; ++j) buffer[j] = V[(s * T + j) * d + col];
  return {{buffer.data(), T}, {P.data() + ((s * H + h) * T + i) * T, T}, 0.0};
}

sim::dot_result vit_component(const vit& net, const simulated_vit& pass, std::size_t k, std::size_t row,
                              std::size_t col, const sim::accumulation& a, std::size_t first_sample) {
  std::vector<double> buffer;
  const auto op = vit_component_operands(net, pass, k, row, col, buffer);
  const auto& L = pass.layers[k];
  // rows per sample of this layer: row `row` takes the stochastic words of row first_sample * per + row
  std::size_t per = 1;
  if (k == 0)
    per = net.patches();
  else if (k + 1 == net.product_layers())
    per = 1;
  else if ((k - 1) % 8 == 3)
    per = net.heads * net.tokens();
  else
    per = net.tokens();
  const std::uint64_t word = ((first_sample * per + row) * L.cols + col) * sim::words_per_dot(op.w.size(), a);
  return dot_any(op.w, op.x, op.bias, a, sim::fast_path_applies(a), word);
}

std::vector<std::size_t> simulate_predictions(const vit& net, sim::matrix_view X, const precision_config& p,
                                              int threads, std::size_t chunk) {
  std::vector<std::size_t> pred;
  pred.reserve(X.rows);
  for (std::size_t start = 0; start < X.rows; start += chunk) {
    const std::size_t b = std::min(chunk, X.rows - start);
    const auto r = simulate(net, {X.row(start), b, X.cols}, p, threads, start);
    for (std::size_t s = 0; s < b; ++s) pred.push_back(argmax({r.logits().data() + s * net.classes, net.classes}));
  }
  return pred;
}

}  // namespace mpacc::nn
