// SPDX-License-Identifier: MIT
#include "mpacc/nn/cnn_passes.hpp"

#include <bit>
#include <cmath>
#include <stdexcept>

#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/long_accumulator.hpp"
#include "mpacc/sim/conv.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"
#include "reference_internal.hpp"

namespace mpacc::nn {

namespace {

constexpr double kU = 0x1p-53;

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// the per-sample output size of layer l on inputs of `in` values
std::size_t out_size(const cnn_layer& layer, std::size_t in) {
  return std::visit(overloaded{[](const conv_layer& l) { return l.shape.out_size(); },
                               [](const pool_layer& l) { return l.shape.out_size(); },
                               [&](const flatten_layer&) { return in; }, [](const dense_layer& l) { return l.n_out; }},
                    layer);
}

// For output pixel t of a window operation: the input index of each window
// position (-1 for padding), row-major over (c, ky, kx) for convolutions and
// (ky, kx) within channel 0 for pooling (add ch * h * w).
struct window_table {
  std::size_t n = 0;  // positions per output pixel
  std::vector<std::int64_t> at;
};
window_table conv_table(const sim::conv2d_shape& s) {
  window_table t;
  t.n = s.patch();
  const std::size_t oh = s.out_h(), ow = s.out_w();
  t.at.reserve(oh * ow * t.n);
  for (std::size_t oy = 0; oy < oh; ++oy)
    for (std::size_t ox = 0; ox < ow; ++ox)
      for (std::size_t ci = 0; ci < s.c_in; ++ci)
        for (std::size_t ky = 0; ky < s.kh; ++ky)
          for (std::size_t kx = 0; kx < s.kw; ++kx) {
            const auto iy = static_cast<std::int64_t>(oy * s.stride_h + ky) - static_cast<std::int64_t>(s.pad_h);
            const auto ix = static_cast<std::int64_t>(ox * s.stride_w + kx) - static_cast<std::int64_t>(s.pad_w);
            const bool in =
                iy >= 0 && ix >= 0 && iy < static_cast<std::int64_t>(s.h) && ix < static_cast<std::int64_t>(s.w);
            t.at.push_back(in ? static_cast<std::int64_t>(ci * s.h * s.w) + iy * static_cast<std::int64_t>(s.w) + ix
                              : -1);
          }
  return t;
}
window_table pool_table(const sim::pool2d_shape& s) {
  sim::conv2d_shape c;
  c.c_in = 1;
  c.h = s.h;
  c.w = s.w;
  c.kh = s.kh;
  c.kw = s.kw;
  c.stride_h = s.stride_h;
  c.stride_w = s.stride_w;
  c.pad_h = s.pad_h;
  c.pad_w = s.pad_w;
  return conv_table(c);
}

}  // namespace

cnn stored_network(const cnn& net, const precision_config& p) {
  cnn out = net;
  auto store = [&](std::vector<double>& W, std::vector<double>& b) {
    if (p.weights) sim::round_array(W, W, {*p.weights, sim::rounding::nearest_even, false, 0});
    if (p.biases) sim::round_array(b, b, {*p.biases, sim::rounding::nearest_even, false, 0});
  };
  for (auto& layer : out.layers) {
    if (auto* c = std::get_if<conv_layer>(&layer)) store(c->W, c->b);
    if (auto* d = std::get_if<dense_layer>(&layer)) store(d->W, d->b);
  }
  return out;
}

std::vector<simulated_cnn_layer> simulate(const cnn& net_in, sim::matrix_view X, const precision_config& p,
                                          int threads) {
  net_in.validate();
  p.check(net_in.layers.size());
  if (X.cols != net_in.inputs())
    throw std::invalid_argument("simulate: the inputs have " + std::to_string(X.cols) + " values, the network takes " +
                                std::to_string(net_in.inputs()));
  const cnn net = stored_network(net_in, p);
  std::vector<simulated_cnn_layer> out(net.layers.size());
  std::vector<double> in = store_inputs(X, p.inputs, &out[0].in_flags);
  const std::size_t batch = X.rows;
  std::size_t cols = X.cols;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    auto& r = out[k];
    const std::size_t n_out = out_size(net.layers[k], cols);
    auto activate = [&](const sim::activation_fn& act) {
      r.y = r.v;
      apply_activation(act, p.act, r.y, threads, &r.act_flags, p.act_rounding, p.act_saturate, p.seed + k + 1);
    };
    auto no_flags = [&] {
      r.flags.assign(batch * n_out, 0);
      r.act_flags.assign(batch * n_out, 0);
    };
    std::visit(
        overloaded{[&](const conv_layer& l) {
                     const sim::layer_spec spec = p.layer_spec(k).resolved();
                     bool fast = true;
                     for (const auto& f : spec.acc.formats) {
                       sim::accumulation a = spec.base;
                       a.acc = f;
                       fast = fast && sim::fast_path_applies(a);
                     }
                     if (fast) {
                       sim::prepared_conv2d(l.shape, l.W, l.b, spec).run(in.data(), batch, r.v, threads, &r.flags);
                     } else {
                       // the MPFR model on the im2col rows: the dense layer's counter is conv_first_word's
                       const std::size_t C = l.shape.c_out, ohw = l.shape.out_h() * l.shape.out_w();
                       const std::size_t K = l.shape.patch();
                       if (spec.acc.index.size() > C)
                         throw std::invalid_argument("simulate: layer " + std::to_string(k + 1) +
                                                     ": a per-pixel accumulator map needs formats of the fast path");
                       std::vector<double> cols_mat, tmp;
                       std::vector<unsigned> tmp_flags;
                       sim::im2col(l.shape, in.data(), batch, cols_mat);
                       dense_layer d;
                       d.n_in = K;
                       d.n_out = C;
                       d.W = l.W;
                       d.b = l.b;
                       simulate_layer(d, {cols_mat.data(), batch * ohw, K}, spec, tmp, tmp_flags, threads);
                       r.v.resize(batch * C * ohw);
                       r.flags.resize(batch * C * ohw);
                       for (std::size_t s = 0; s < batch; ++s)
                         for (std::size_t pix = 0; pix < ohw; ++pix)
                           for (std::size_t c = 0; c < C; ++c) {
                             r.v[(s * C + c) * ohw + pix] = tmp[(s * ohw + pix) * C + c];
                             r.flags[(s * C + c) * ohw + pix] = tmp_flags[(s * ohw + pix) * C + c];
                           }
                     }
                     activate(l.act);
                   },
                   [&](const pool_layer& l) {
                     if (l.type == pool_layer::kind::max) {
                       sim::max_pool2d(l.shape, in.data(), batch, r.y, &r.where);
                       r.v = r.y;
                       no_flags();
                       return;
                     }
                     const sim::layer_spec spec = p.layer_spec(k).resolved();
                     if (spec.acc.formats.size() != 1)
                       throw std::invalid_argument("simulate: layer " + std::to_string(k + 1) +
                                                   " (average pooling) takes one accumulator, not a map");
                     sim::accumulation a = spec.base;
                     a.acc = spec.acc.formats[0];
                     if (!sim::fast_path_applies(a))
                       throw std::invalid_argument("simulate: layer " + std::to_string(k + 1) +
                                                   " (average pooling) needs an accumulator of the fast path, not " +
                                                   sim::to_string(a.acc));
                     no_flags();
                     sim::avg_pool2d(l.shape, in.data(), batch, a, r.y, threads, &r.flags);
                     r.v = r.y;
                   },
                   [&](const flatten_layer&) {
                     r.v = in;
                     r.y = in;
                     no_flags();
                   },
                   [&](const dense_layer& l) {
                     simulate_layer(l, {in.data(), batch, cols}, p.layer_spec(k), r.v, r.flags, threads);
                     activate(l.act);
                   }},
        net.layers[k]);
    in = r.y;
    cols = n_out;
  }
  return out;
}

// ---------------------------------------------------------------------------
// reference

forward_result reference_forward(const cnn& net, sim::matrix_view X, const reference_options& opt) {
  net.validate();
  if (X.cols != net.inputs())
    throw std::invalid_argument("inputs have " + std::to_string(X.cols) + " columns, the network takes " +
                                std::to_string(net.inputs()));
  for (double v : std::span<const double>(X.data, X.rows * X.cols))
    if (!std::isfinite(v)) throw std::invalid_argument("input holds a non-finite value");
  if (!opt.exact && (opt.precision < 64 || opt.precision > 100000))
    throw std::invalid_argument("reference precision " + std::to_string(opt.precision) +
                                " is out of range [64, 100000]");
  const std::size_t L = net.layers.size();
  std::vector<window_table> tables(L);
  std::vector<std::size_t> sizes(L);
  std::size_t cols = X.cols;
  for (std::size_t k = 0; k < L; ++k) {
    const std::string name = "layer " + std::to_string(k + 1);
    if (const auto* c = std::get_if<conv_layer>(&net.layers[k])) {
      tables[k] = conv_table(c->shape);
      if (opt.exact && !sim::piecewise_linear(c->act))
        throw std::invalid_argument("exact reference pass: " + name + " uses " +
                                    std::string(sim::to_string(c->act.kind)) + ", which is not piecewise linear");
    } else if (const auto* p = std::get_if<pool_layer>(&net.layers[k])) {
      tables[k] = pool_table(p->shape);
      if (opt.exact && p->type == pool_layer::kind::avg && !std::has_single_bit(p->shape.window()))
        throw std::invalid_argument("exact reference pass: " + name + " averages " + std::to_string(p->shape.window()) +
                                    " terms (a power of two is needed)");
    } else if (const auto* d = std::get_if<dense_layer>(&net.layers[k])) {
      if (opt.exact && !sim::piecewise_linear(d->act))
        throw std::invalid_argument("exact reference pass: " + name + " uses " +
                                    std::string(sim::to_string(d->act.kind)) + ", which is not piecewise linear");
    }
    sizes[k] = out_size(net.layers[k], cols);
    cols = sizes[k];
  }
  forward_result res;
  res.batch = X.rows;
  for (std::size_t k = 0; k < L; ++k) {
    layer_values lv;
    lv.n = sizes[k];
    for (auto* vec : {&lv.v_hi, &lv.v_lo, &lv.y_hi, &lv.y_lo, &lv.v_bound, &lv.y_bound})
      vec->assign(X.rows * sizes[k], 0.0);
    res.layers.push_back(std::move(lv));
  }
  const mpfr_prec_t P = opt.exact ? 2 : opt.precision;
  const auto batch = static_cast<std::ptrdiff_t>(X.rows);
  std::string error;
#pragma omp parallel for num_threads(sim::thread_count(opt.threads)) schedule(dynamic, 1)
  for (std::ptrdiff_t si = 0; si < batch; ++si) {
    try {
      const auto widest = ref::exponent_range_guard::widest();
      const auto s = static_cast<std::size_t>(si);
      const double* x = X.row(s);
      std::vector<ref::mpfr_float> vals;
      vals.reserve(X.cols);
      for (std::size_t j = 0; j < X.cols; ++j) vals.emplace_back(53, x[j]);
      std::vector<double> bnd(X.cols, 0.0);
      std::vector<std::vector<double>> parts(X.cols);
      for (std::size_t j = 0; j < X.cols; ++j) parts[j] = {x[j]};
      bool split_ok = true;
      ref::long_accumulator acc;
      ref::mpfr_float scratch(2);
      std::vector<const std::vector<double>*> pp;
      std::vector<const ref::mpfr_float*> vp;
      for (std::size_t k = 0; k < L; ++k) {
        const std::size_t n = sizes[k];
        std::vector<ref::mpfr_float> v, y;
        std::vector<double> vb(n, 0.0), yb(n, 0.0);
        v.reserve(n);
        y.reserve(n);
        // an inner product on the inputs at[0..m) (-1: padding) with weights w
        auto dot = [&](const double* w, const std::int64_t* at, std::size_t m, double b, ref::mpfr_float& vi,
                       double& bound, bool exact) {
          pp.assign(m, nullptr);
          vp.assign(m, nullptr);
          double prop = 0;
          for (std::size_t j = 0; j < m; ++j) {
            if (at[j] < 0) continue;
            const auto idx = static_cast<std::size_t>(at[j]);
            pp[j] = &parts[idx];
            vp[j] = &vals[idx];
            prop += std::fabs(w[j]) * bnd[idx];
          }
          detail::reference_dot(vi, w, m, pp.data(), vp.data(), split_ok, b, exact, acc);
          bound = prop * (1 + static_cast<double>(m + 2) * kU * 2) + (exact ? 0.0 : detail::scaled_abs_up(vi, P));
        };
        auto activate = [&](const sim::activation_fn& act, ref::mpfr_float&& vi, std::size_t i) {
          ref::mpfr_float yi(opt.exact ? vi.precision() + 54 : P);
          ref::activate(yi, vi, act);
          yb[i] = (sim::lipschitz(act) * vb[i]) * (1 + 4 * kU) +
                  (opt.exact ? 0.0 : detail::scaled_abs_up(yi, P) * ref::activation_rounding_factor(act));
          v.push_back(std::move(vi));
          y.push_back(std::move(yi));
        };
        std::visit(
            overloaded{
                [&](const conv_layer& l) {
                  const std::size_t ohw = l.shape.out_h() * l.shape.out_w(), K = l.shape.patch();
                  for (std::size_t c = 0; c < l.shape.c_out; ++c)
                    for (std::size_t pix = 0; pix < ohw; ++pix) {
                      const std::size_t i = c * ohw + pix;
                      ref::mpfr_float vi(P);
                      dot(l.W.data() + c * K, tables[k].at.data() + pix * K, K, l.b[c], vi, vb[i], opt.exact);
                      activate(l.act, std::move(vi), i);
                    }
                },
                [&](const dense_layer& l) {
                  std::vector<std::int64_t> all(l.n_in);
                  for (std::size_t j = 0; j < l.n_in; ++j) all[j] = static_cast<std::int64_t>(j);
                  for (std::size_t i = 0; i < l.n_out; ++i) {
                    ref::mpfr_float vi(P);
                    dot(l.row(i), all.data(), l.n_in, l.b[i], vi, vb[i], opt.exact);
                    activate(l.act, std::move(vi), i);
                  }
                },
                [&](const pool_layer& l) {
                  const auto& q = l.shape;
                  const std::size_t ohw = q.out_h() * q.out_w(), m = q.window(), hw = q.h * q.w;
                  const std::vector<double> ones(m, 1.0);
                  for (std::size_t c = 0; c < q.c; ++c)
                    for (std::size_t pix = 0; pix < ohw; ++pix) {
                      const std::size_t i = c * ohw + pix;
                      std::vector<std::int64_t> at(tables[k].at.begin() + static_cast<std::ptrdiff_t>(pix * m),
                                                   tables[k].at.begin() + static_cast<std::ptrdiff_t>((pix + 1) * m));
                      for (auto& a : at)
                        if (a >= 0) a += static_cast<std::int64_t>(c * hw);
                      if (l.type == pool_layer::kind::max) {
                        // the exact maximum; |max x~ - max x| <= max |x~_j - x_j|
                        std::size_t best = SIZE_MAX;
                        double b = 0;
                        for (auto a : at) {
                          if (a < 0) continue;
                          const auto idx = static_cast<std::size_t>(a);
                          if (best == SIZE_MAX || mpfr_greater_p(vals[idx].get(), vals[best].get())) best = idx;
                          b = std::max(b, bnd[idx]);
                        }
                        vb[i] = yb[i] = b;
                        v.push_back(vals[best]);
                        y.push_back(vals[best]);
                        continue;
                      }
                      // average: the exact window sum, then the quotient at P bits
                      ref::mpfr_float sum(2);
                      double sb = 0;
                      dot(ones.data(), at.data(), m, 0.0, sum, sb, true);
                      ref::mpfr_float yi(opt.exact ? sum.precision() : P);
                      if (opt.exact)
                        mpfr_div_2ui(yi.get(), sum.get(), static_cast<unsigned long>(std::countr_zero(m)), MPFR_RNDN);
                      else
                        mpfr_div_ui(yi.get(), sum.get(), static_cast<unsigned long>(m), MPFR_RNDN);
                      // sb: the propagated bounds of the window (the sum itself is exact)
                      yb[i] =
                          sb / static_cast<double>(m) * (1 + 2 * kU) + (opt.exact ? 0.0 : detail::scaled_abs_up(yi, P));
                      vb[i] = yb[i];
                      v.push_back(yi);
                      y.push_back(std::move(yi));
                    }
                },
                [&](const flatten_layer&) {
                  for (std::size_t i = 0; i < n; ++i) {
                    v.push_back(vals[i]);
                    y.push_back(vals[i]);
                    vb[i] = yb[i] = bnd[i];
                  }
                }},
            net.layers[k]);
        auto& lv = res.layers[k];
        for (std::size_t i = 0; i < n; ++i) {
          const std::size_t at = s * n + i;
          detail::double_double(v[i], lv.v_hi[at], lv.v_lo[at], scratch);
          detail::double_double(y[i], lv.y_hi[at], lv.y_lo[at], scratch);
          lv.v_bound[at] = vb[i];
          lv.y_bound[at] = yb[i];
        }
        // the next layer's inputs
        split_ok = true;
        parts.assign(n, {});
        for (std::size_t i = 0; i < n && split_ok; ++i) split_ok = detail::split(y[i], parts[i]);
        vals = std::move(y);
        bnd = std::move(yb);
      }
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = "sample " + std::to_string(si) + ": " + e.what();
    }
  }
  if (!error.empty()) throw std::invalid_argument(error);
  return res;
}

}  // namespace mpacc::nn
