// SPDX-License-Identifier: MIT
#include "mpacc/nn/reference.hpp"
#include "mpacc/sim/threads.hpp"

#include <gmp.h>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <memory>
#include <stdexcept>

#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/fixed_point.hpp"
#include "mpacc/ref/long_accumulator.hpp"
#include "reference_internal.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::nn {

namespace {

constexpr double kU = 0x1p-53;

// zero-filled per-layer arrays for a batch of `rows`
forward_result allocate_result(const mlp& net, std::size_t rows) {
  forward_result r;
  r.batch = rows;
  for (const auto& l : net.layers) {
    layer_values lv;
    lv.n = l.n_out;
    for (auto* vec : {&lv.v_hi, &lv.v_lo, &lv.y_hi, &lv.y_lo, &lv.v_bound, &lv.y_bound})
      vec->assign(rows * l.n_out, 0.0);
    r.layers.push_back(std::move(lv));
  }
  return r;
}

void check_input(const mlp& net, std::span<const double> x, const reference_options& opt) {
  net.validate();
  if (x.size() != net.inputs())
    throw std::invalid_argument("input has " + std::to_string(x.size()) + " values, the network takes " +
                                std::to_string(net.inputs()));
  for (double v : x)
    if (!std::isfinite(v)) throw std::invalid_argument("input holds a non-finite value");
  if (opt.exact)
    for (std::size_t k = 0; k < net.layers.size(); ++k)
      if (!sim::piecewise_linear(net.layers[k].act))
        throw std::invalid_argument("exact reference pass: layer " + std::to_string(k + 1) + " uses " +
                                    std::string(sim::to_string(net.layers[k].act.kind)) +
                                    ", which is not piecewise linear");
  if (!opt.exact && (opt.precision < 64 || opt.precision > 100000))
    throw std::invalid_argument("reference precision " + std::to_string(opt.precision) +
                                " is out of range [64, 100000]");
}

}  // namespace

namespace detail {

bool split(const ref::mpfr_float& y, std::vector<double>& parts) {
  parts.clear();
  if (mpfr_zero_p(y.get())) {
    parts.push_back(mpfr_signbit(y.get()) ? -0.0 : 0.0);
    return true;
  }
  ref::mpfr_float r = y;
  for (int k = 0; k < 64 && !mpfr_zero_p(r.get()); ++k) {
    const double d = mpfr_get_d(r.get(), MPFR_RNDN);
    if (!std::isfinite(d) || (d != 0 && std::fabs(d) < 0x1p-1000)) return false;
    parts.push_back(d);
    mpfr_sub_d(r.get(), r.get(), d, MPFR_RNDN);  // exact: r's low bits
  }
  return mpfr_zero_p(r.get());
}

double scaled_abs_up(const ref::mpfr_float& x, mpfr_prec_t P) {
  if (mpfr_zero_p(x.get())) return 0;
  ref::mpfr_float t(x.precision());
  mpfr_abs(t.get(), x.get(), MPFR_RNDN);
  mpfr_mul_2si(t.get(), t.get(), -static_cast<long>(P), MPFR_RNDN);  // exact
  return mpfr_get_d(t.get(), MPFR_RNDU);
}

void reference_dot(ref::mpfr_float& vi, const double* w, std::size_t n, const std::vector<double>* const* parts,
                   const ref::mpfr_float* const* vals, bool use_parts, double b, bool exact,
                   ref::long_accumulator& acc) {
  bool ok = use_parts;
  if (ok) {
    acc.clear();
    for (std::size_t j = 0; j < n && ok; ++j)
      if (parts[j])
        for (double p : *parts[j]) ok = ok && acc.add_product(w[j], p);
    acc.add(b);
  }
  if (ok) {
    if (exact)
      acc.exact_to(vi);
    else
      acc.round_to(vi);
    return;
  }
  // slow exact path: MPFR products (exact at their precision) and mpfr_sum
  std::vector<ref::mpfr_float> terms;
  terms.reserve(n + 1);
  mpfr_prec_t need = 64;
  long emax = LONG_MIN, lsbmin = LONG_MAX;
  for (std::size_t j = 0; j < n; ++j) {
    if (!vals[j]) continue;
    const ref::mpfr_float& yj = *vals[j];
    ref::mpfr_float t(yj.precision() + 53);
    mpfr_mul_d(t.get(), yj.get(), w[j], MPFR_RNDN);  // exact
    if (!mpfr_zero_p(t.get())) {
      emax = std::max<long>(emax, mpfr_get_exp(t.get()));
      lsbmin = std::min<long>(lsbmin, mpfr_get_exp(t.get()) - t.precision());
    }
    terms.push_back(std::move(t));
  }
  ref::mpfr_float bt(53, b);
  if (b != 0) {
    emax = std::max<long>(emax, mpfr_get_exp(bt.get()));
    lsbmin = std::min<long>(lsbmin, mpfr_get_exp(bt.get()) - 53);
  }
  terms.push_back(std::move(bt));
  if (emax != LONG_MIN) need = static_cast<mpfr_prec_t>(emax - lsbmin + 64);
  std::vector<mpfr_ptr> ptrs;
  ptrs.reserve(terms.size());
  for (auto& t : terms) ptrs.push_back(t.get());
  if (exact) mpfr_set_prec(vi.get(), std::max<mpfr_prec_t>(need, 2));
  mpfr_sum(vi.get(), ptrs.data(), ptrs.size(), MPFR_RNDN);
}

void double_double(const ref::mpfr_float& val, double& hi, double& lo, ref::mpfr_float& scratch) {
  hi = mpfr_get_d(val.get(), MPFR_RNDN);
  mpfr_set_prec(scratch.get(), val.precision() + 64);
  mpfr_sub_d(scratch.get(), val.get(), hi, MPFR_RNDN);
  lo = mpfr_get_d(scratch.get(), MPFR_RNDN);
}

}  // namespace detail

struct reference_engine::impl {
  const mlp* net = nullptr;
  std::vector<ref::int_weights> iw;
};

reference_engine::reference_engine(const mlp& net) : p_(std::make_shared<impl>()) {
  net.validate();
  p_->net = &net;
  for (const auto& l : net.layers) p_->iw.push_back(ref::make_int_weights(l.W));
}

reference_sample reference_forward_sample(const mlp& net, std::span<const double> x, const reference_options& opt) {
  return reference_engine(net).sample(x, opt);
}

reference_sample reference_engine::sample(std::span<const double> x, const reference_options& opt) const {
  const mlp& net = *p_->net;
  check_input(net, x, opt);
  const auto widest = ref::exponent_range_guard::widest();
  reference_sample out;
  // reserved up front: in_values points into out.y across iterations
  out.v.reserve(net.layers.size());
  out.y.reserve(net.layers.size());
  out.v_bound.reserve(net.layers.size());
  out.y_bound.reserve(net.layers.size());
  // the current layer's input: binary64 parts of each component (exact), or
  // MPFR values when a component does not split
  std::vector<std::vector<double>> parts(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) parts[j] = {x[j]};
  // the current layer's input as MPFR values (for the slow exact path)
  std::vector<ref::mpfr_float> x_mpfr;
  x_mpfr.reserve(x.size());
  for (double v : x) x_mpfr.emplace_back(53, v);
  const std::vector<ref::mpfr_float>* in_values = &x_mpfr;
  bool split_ok = true;
  std::vector<double> in_bound(x.size(), 0.0);
  ref::long_accumulator acc;
  for (std::size_t li = 0; li < net.layers.size(); ++li) {
    const auto& layer = net.layers[li];
    std::vector<ref::mpfr_float> v, y;
    std::vector<double> vb(layer.n_out), yb(layer.n_out);
    v.reserve(layer.n_out);
    y.reserve(layer.n_out);
    const double L = sim::lipschitz(layer.act);
    const double fa = ref::activation_rounding_factor(layer.act);
    const ref::int_weights& IW = p_->iw[li];
    const ref::int_inputs IX = IW.ok ? ref::make_int_inputs(*in_values) : ref::int_inputs{};
    const bool int_path = IW.ok && IX.ok;
    std::vector<const std::vector<double>*> part_ptrs(layer.n_in);
    std::vector<const ref::mpfr_float*> val_ptrs(layer.n_in);
    for (std::size_t j = 0; j < layer.n_in; ++j) {
      part_ptrs[j] = &parts[j];
      val_ptrs[j] = &(*in_values)[j];
    }
    std::vector<mp_limb_t> pos, negacc;
    mpz_t z;
    mpz_init(z);
    for (std::size_t i = 0; i < layer.n_out; ++i) {
      const double* w = layer.row(i);
      ref::mpfr_float vi(opt.exact ? 2 : opt.precision);
      if (int_path)
        ref::int_dot(vi, IW, IX, i, layer.n_in, layer.b[i], opt.exact, pos, negacc, z);
      else
        detail::reference_dot(vi, w, layer.n_in, part_ptrs.data(), val_ptrs.data(), split_ok, layer.b[i], opt.exact,
                              acc);
      // bound: propagated input errors + one rounding at P bits
      double prop = 0;
      for (std::size_t j = 0; j < layer.n_in; ++j) prop += std::fabs(w[j]) * in_bound[j];
      prop *= 1 + static_cast<double>(layer.n_in + 2) * kU * 2;
      vb[i] = prop + (opt.exact ? 0.0 : detail::scaled_abs_up(vi, opt.precision));
      // activation
      ref::mpfr_float yi(opt.exact ? vi.precision() + 54 : opt.precision);
      ref::activate(yi, vi, layer.act);
      yb[i] = (L * vb[i]) * (1 + 4 * kU) + (opt.exact ? 0.0 : detail::scaled_abs_up(yi, opt.precision) * fa);
      v.push_back(std::move(vi));
      y.push_back(std::move(yi));
    }
    mpz_clear(z);
    // next layer's input
    split_ok = true;
    parts.assign(layer.n_out, {});
    for (std::size_t i = 0; i < layer.n_out && split_ok; ++i) split_ok = detail::split(y[i], parts[i]);
    in_bound = yb;
    out.v.push_back(std::move(v));
    out.y.push_back(std::move(y));
    in_values = &out.y.back();
    out.v_bound.push_back(std::move(vb));
    out.y_bound.push_back(std::move(yb));
  }
  return out;
}

forward_result reference_forward(const mlp& net, sim::matrix_view X, const reference_options& opt) {
  return reference_engine(net).forward(X, opt);
}

forward_result reference_engine::forward(sim::matrix_view X, const reference_options& opt) const {
  const mlp& net = *p_->net;
  if (X.cols != net.inputs())
    throw std::invalid_argument("inputs have " + std::to_string(X.cols) + " columns, the network takes " +
                                std::to_string(net.inputs()));
  forward_result r = allocate_result(net, X.rows);
  const int nt = sim::thread_count(opt.threads);
  const auto batch = static_cast<std::ptrdiff_t>(X.rows);
  std::string error;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 4)
  for (std::ptrdiff_t s = 0; s < batch; ++s) {
    try {
      const auto one = sample({X.row(static_cast<std::size_t>(s)), X.cols}, opt);
      const auto widest = ref::exponent_range_guard::widest();
      for (std::size_t k = 0; k < net.layers.size(); ++k) {
        auto& lv = r.layers[k];
        ref::mpfr_float t(1);
        for (std::size_t i = 0; i < lv.n; ++i) {
          const std::size_t at = static_cast<std::size_t>(s) * lv.n + i;
          auto dd = [&](const ref::mpfr_float& val, double& hi, double& lo) { detail::double_double(val, hi, lo, t); };
          dd(one.v[k][i], lv.v_hi[at], lv.v_lo[at]);
          dd(one.y[k][i], lv.y_hi[at], lv.y_lo[at]);
          lv.v_bound[at] = one.v_bound[k][i];
          lv.y_bound[at] = one.y_bound[k][i];
        }
      }
    } catch (const std::exception& e) {
#pragma omp critical
      if (error.empty()) error = "sample " + std::to_string(s) + ": " + e.what();
    }
  }
  if (!error.empty()) throw std::invalid_argument(error);
  return r;
}

namespace {

// One layer of the binary64 tier for up to kFastGroup samples, 8 output
// components at a time (Wt: W^T in strips of 8 components, strip i0 / 8 holding
// n_in rows of 8 values contiguously, so that a strip streams from memory
// in order: the layout of one array of n_in x ldw values, column i = row i of
// W, read with a stride of ldw values missed the cache on every row) so the Dot2
// recurrences of the 8 components run side by side in SIMD lanes, and each
// strip of W^T read from memory serves every sample of the group (one sample
// at a time streamed the whole W per sample). Sample r's arithmetic is the same
// sequence of operations whatever the group size, so its bits are too
// (tests/test_reference.cpp compares a batch with its rows run one by one).
// in[r], in_bound[r]: n_in values; v[r], vb[r]: ldw values. Compiled for
// x86-64-v4, v3 and the baseline (hardware FMA in the first two) on x86-64;
// for the baseline elsewhere.
constexpr std::size_t kFastGroup = 4;
#if defined(__x86_64__)
#define MPACC_FAST_LAYER_CLONES [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
#else
#define MPACC_FAST_LAYER_CLONES
#endif
MPACC_FAST_LAYER_CLONES void fast_layer(const double* Wt, const double* bias, std::size_t n_in, std::size_t n_out,
                                        std::size_t ns, const double* const* in, const double* const* in_bound,
                                        double* const* v, double* const* vb) {
  const double n1 = static_cast<double>(n_in + 1);
  const double g = n1 * kU / (1 - n1 * kU);
  const double infl = 1 + 2 * (n1 + 2) * kU;
  for (std::size_t i0 = 0; i0 < n_out; i0 += 8) {
    double p[kFastGroup][8] = {}, c[kFastGroup][8] = {}, absum[kFastGroup][8] = {}, prop[kFastGroup][8] = {};
    for (std::size_t j = 0; j < n_in; ++j) {
      const double* w = Wt + i0 * n_in + j * 8;
      for (std::size_t r = 0; r < kFastGroup; ++r) {
        if (r >= ns) break;
        const double xj = in[r][j], bj = in_bound[r][j];
#pragma omp simd
        for (int k = 0; k < 8; ++k) {
          const double h = w[k] * xj;
          const double e = std::fma(w[k], xj, -h);
          const double s = p[r][k] + h;
          const double bb = s - p[r][k];
          const double q = (p[r][k] - (s - bb)) + (h - bb);
          p[r][k] = s;
          c[r][k] += q + e;
          absum[r][k] += std::fabs(h);
          prop[r][k] += std::fabs(w[k]) * bj;
        }
      }
    }
    for (std::size_t r = 0; r < ns; ++r)
      for (int k = 0; k < 8 && i0 + static_cast<std::size_t>(k) < n_out; ++k) {
        const std::size_t i = i0 + static_cast<std::size_t>(k);
        const double s = p[r][k] + bias[i];
        const double bb = s - p[r][k];
        const double q = (p[r][k] - (s - bb)) + (bias[i] - bb);
        const double val = s + (c[r][k] + q);
        v[r][i] = val;
        // |v - exact(in)| <= (u|v| + gamma^2 S) / (1 - u) + propagated input bounds;
        // S and prop are computed in binary64: inflate by (1 + 2(n+2)u)
        const double S = absum[r][k] + std::fabs(bias[i]);
        vb[r][i] = ((kU * std::fabs(val) + g * g * S * (1 + 2 * kU)) / (1 - kU) + prop[r][k]) * infl;
      }
  }
}

}  // namespace

forward_result fast_forward(const mlp& net, sim::matrix_view X, int threads) {
  net.validate();
  if (X.cols != net.inputs())
    throw std::invalid_argument("inputs have " + std::to_string(X.cols) + " columns, the network takes " +
                                std::to_string(net.inputs()));
  forward_result r = allocate_result(net, X.rows);
  // W^T per layer, padded to a multiple of 8 components
  std::vector<std::vector<double>> Wt, B;
  std::vector<std::size_t> ldw;
  for (const auto& l : net.layers) {
    const std::size_t ld = (l.n_out + 7) / 8 * 8;
    std::vector<double> t(l.n_in * ld, 0.0), b(ld, 0.0);
    for (std::size_t i = 0; i < l.n_out; ++i) {
      for (std::size_t j = 0; j < l.n_in; ++j) t[(i / 8) * 8 * l.n_in + j * 8 + i % 8] = l.row(i)[j];
      b[i] = l.b[i];
    }
    Wt.push_back(std::move(t));
    B.push_back(std::move(b));
    ldw.push_back(ld);
  }
  const int nt = sim::thread_count(threads);
  const std::size_t groups = (X.rows + kFastGroup - 1) / kFastGroup;
  const auto groups_s = static_cast<std::ptrdiff_t>(groups);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (std::ptrdiff_t gs = 0; gs < groups_s; ++gs) {
    const std::size_t s0 = static_cast<std::size_t>(gs) * kFastGroup;
    const std::size_t ns = std::min(kFastGroup, X.rows - s0);
    std::vector<double> in[kFastGroup], in_bound[kFastGroup], v[kFastGroup], vb[kFastGroup];
    for (std::size_t q = 0; q < ns; ++q) {
      in[q].assign(X.row(s0 + q), X.row(s0 + q) + X.cols);
      in_bound[q].assign(X.cols, 0.0);
    }
    for (std::size_t k = 0; k < net.layers.size(); ++k) {
      const auto& layer = net.layers[k];
      auto& lv = r.layers[k];
      const double* inp[kFastGroup] = {};
      const double* inb[kFastGroup] = {};
      double* vp[kFastGroup] = {};
      double* vbp[kFastGroup] = {};
      for (std::size_t q = 0; q < ns; ++q) {
        v[q].assign(ldw[k], 0.0);
        vb[q].assign(ldw[k], 0.0);
        inp[q] = in[q].data();
        inb[q] = in_bound[q].data();
        vp[q] = v[q].data();
        vbp[q] = vb[q].data();
      }
      fast_layer(Wt[k].data(), B[k].data(), layer.n_in, layer.n_out, ns, inp, inb, vp, vbp);
      const double L = sim::lipschitz(layer.act);
      const auto kind = layer.act.kind;
      for (std::size_t q = 0; q < ns; ++q) {
        std::vector<double> out(layer.n_out), out_bound(layer.n_out);
        for (std::size_t i = 0; i < layer.n_out; ++i) {
          const std::size_t at = (s0 + q) * lv.n + i;
          const double y = sim::apply(layer.act, v[q][i]);
          // identity and ReLU are exact; leaky ReLU rounds slope * v once;
          // libm functions: 4 ulps assumed (8u|y|)
          const double act_err = (kind == sim::activation::identity || kind == sim::activation::relu) ? 0.0
                                 : kind == sim::activation::leaky_relu ? kU * std::fabs(y)
                                                                       : 8 * kU * std::fabs(y);
          const double yb = (L * vb[q][i] + act_err) * (1 + 4 * kU);
          lv.v_hi[at] = v[q][i];
          lv.v_bound[at] = vb[q][i];
          lv.y_hi[at] = y;
          lv.y_bound[at] = yb;
          out[i] = y;
          out_bound[i] = yb;
        }
        in[q] = std::move(out);
        in_bound[q] = std::move(out_bound);
      }
    }
  }
  return r;
}

std::vector<ref::mpfr_float> softmax(const std::vector<ref::mpfr_float>& logits) {
  const auto widest = ref::exponent_range_guard::widest();
  std::vector<ref::mpfr_float> out;
  if (logits.empty()) return out;
  const mpfr_prec_t P = logits.front().precision();
  const mpfr_prec_t G = P + 64;
  ref::mpfr_float mx(G), sum(G), t(G);
  mpfr_set(mx.get(), logits.front().get(), MPFR_RNDN);
  for (const auto& l : logits) mpfr_max(mx.get(), mx.get(), l.get(), MPFR_RNDN);
  std::vector<ref::mpfr_float> e;
  mpfr_set_zero(sum.get(), 1);
  for (const auto& l : logits) {
    ref::mpfr_float x(G);
    mpfr_sub(x.get(), l.get(), mx.get(), MPFR_RNDN);
    mpfr_exp(x.get(), x.get(), MPFR_RNDN);
    mpfr_add(sum.get(), sum.get(), x.get(), MPFR_RNDN);
    e.push_back(std::move(x));
  }
  for (auto& x : e) {
    ref::mpfr_float o(P);
    mpfr_div(t.get(), x.get(), sum.get(), MPFR_RNDN);
    mpfr_set(o.get(), t.get(), MPFR_RNDN);
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace mpacc::nn
