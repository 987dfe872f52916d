// SPDX-License-Identifier: MIT
// validate() for vision transformers (docs/attention.md, "Reference pass and
// validation"): every value of every inner-product layer of the simulated
// pass (nn/vit_passes.hpp) against the reference pass (nn/vit_reference.hpp)
// with a deterministic bound on |simulated - exact|, propagated through the
// network: the accumulation bound of each inner product on its simulated
// operands, the propagated errors of both operands (|dW||x| + |W||dx| +
// |dW||dx| for Q K^T and P V), the rounding and perturbation bounds of the
// binary64 softmax and layer norm (analysis/attention_bounds.hpp), GELU's
// derivative bound, the residual additions and every rounding to the
// activation format. The probabilistic bound is not propagated through a vit:
// the probabilistic columns repeat the deterministic bound, with a stated failure
// probability of 0 (the per-inner-product probabilistic checks are done as for MLPs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>

#include "mpacc/analysis/attention_bounds.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/nn/vit_reference.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/threads.hpp"
#include "validate_internal.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::analysis {

using namespace validate_detail;

namespace {

double up(double x, double k) { return x * (1 + k * 0x1p-52); }

// the bounds of one component against the exact value (inf: none)
struct exact_bounds {
  double v = kInf, y = kInf;
};

// Everything one sample's bounds need, shared by the threads.
struct vit_context {
  const nn::vit& net;
  const nn::simulated_vit& run;
  const nn::forward_result& R;
  const std::vector<sim::layer_spec>& specs;
  const std::vector<layer_models>& models;
  const nn::precision_config& p;
  act_model A;
  std::size_t NL, NLayers;  // lambdas, inner-product layers
  bool others_ok;           // no overflow in the class-token row and layer-norm roundings
  const std::vector<double>& x_stored;
  const std::vector<unsigned>& in_flags;
  const std::vector<double>& x_exact;
  bool exact_inputs;
};

// One sample's pass over the layers (bounds against the exact values, every
// component recorded in the per-layer statistics st).
class sample_pass {
 public:
  // sample s of the chunk, g of the data set
  sample_pass(const vit_context& c, std::size_t s, std::size_t g, std::vector<layer_stats>& st,
              std::vector<component_result>* csv)
      : c_(c), s_(s), g_(g), st_(st), csv_(csv) {}

  void run() {
    const auto& net = c_.net;
    const std::size_t T = net.tokens(), d = net.d;
    std::vector<double> ex(T * d, kInf);  // the stream's bounds
    embed(ex);
    for (std::size_t j = 0; j < d; ++j) {
      const double x = c_.run.cls_row[s_ * d + j];
      const double a = std::fabs(net.cls[j]) + std::fabs(net.pos[j]);
      ex[j] = c_.others_ok && std::isfinite(x) ? up(kU64 * a + round_act(x), 4) : kInf;
    }
    for (std::size_t b = 0; b < net.blocks.size(); ++b) {
      const auto& B = net.blocks[b];
      const std::size_t k0 = 1 + 8 * b;
      // ln1: the rows of the stream (block 0: the class-token row and the embedding's y)
      const std::vector<double> xs = stream(b, k0);
      const auto eh = layer_norm(xs, ex, T, B.ln1);
      std::vector<double> eq, ek, ev;
      eq = linear(k0, B.q, eh, T, identity_y);
      ek = linear(k0 + 1, B.k, eh, T, identity_y);
      ev = linear(k0 + 2, B.v, eh, T, identity_y);
      const auto ep = scores(k0 + 3, eq, ek);
      const auto em = mix(k0 + 4, ep, ev);
      ex = linear(k0 + 5, B.proj, em, T, [&](double v, double y, double bv, std::size_t t) {
        const double x = xs[t];
        return up(ex[t] + bv + kU64 * (std::fabs(x) + std::fabs(v)) + round_act(y), 4);
      });
      const std::vector<double> xs2 = slice(c_.run.layers[k0 + 5].y, T * d);
      const auto eh2 = layer_norm(xs2, ex, T, B.ln2);
      const auto eg = linear(k0 + 6, B.fc1, eh2, T, [&](double v, double y, double bv, std::size_t) {
        const double phi = sim::apply(B.fc1.act, v);
        const double pre = max_derivative(B.fc1.act, v - bv, v + bv) * bv;
        return up(pre + 8 * kU64 * std::fabs(phi) + 0x1p-1073 + round_act(y), 4);
      });
      const std::vector<double> ex_mid = ex;
      ex = linear(k0 + 7, B.fc2, eg, T, [&](double v, double y, double bv, std::size_t t) {
        const double x = xs2[t];
        return up(ex_mid[t] + bv + kU64 * (std::fabs(x) + std::fabs(v)) + round_act(y), 4);
      });
    }
    // the final norm of the class token, then the head
    const std::size_t kl = c_.net.blocks.size() * 8;  // the last block's fc2
    const std::vector<double> xl = slice(c_.run.layers[kl].y, T * d);
    const std::vector<double> x0(xl.begin(), xl.begin() + static_cast<std::ptrdiff_t>(d));
    const std::vector<double> e0(ex.begin(), ex.begin() + static_cast<std::ptrdiff_t>(d));
    const auto ez = layer_norm(x0, e0, 1, net.ln_f);
    linear(net.product_layers() - 1, net.head, ez, 1, identity_y);
  }

 private:
  const vit_context& c_;
  std::size_t s_, g_;
  std::vector<layer_stats>& st_;
  std::vector<component_result>* csv_;
  std::vector<double> gw_, gew_, gx_, gex_;  // one inner product's gathered operands

  // |round(a) - a| from the rounded value y (activation format, its mode)
  [[nodiscard]] double round_act(double y) const { return c_.A.u_act / (1 - c_.A.u_act) * std::fabs(y) + c_.A.eta_act; }
  std::function<double(double, double, double, std::size_t)> identity_y =
      [this](double, double y, double bv, std::size_t) { return up(bv + round_act(y), 2); };

  // this sample's n values of a layer's array
  [[nodiscard]] std::vector<double> slice(const std::vector<double>& a, std::size_t n) const {
    return {a.begin() + static_cast<std::ptrdiff_t>(s_ * n), a.begin() + static_cast<std::ptrdiff_t>((s_ + 1) * n)};
  }

  // the stream before block b (its rows x d)
  [[nodiscard]] std::vector<double> stream(std::size_t b, std::size_t k0) const {
    const std::size_t T = c_.net.tokens(), d = c_.net.d;
    if (b > 0) return slice(c_.run.layers[k0 - 1].y, T * d);
    std::vector<double> x = slice(c_.run.cls_row, d);
    const auto e = slice(c_.run.layers[0].y, (T - 1) * d);
    x.insert(x.end(), e.begin(), e.end());
    return x;
  }

  // Theorem 3 + 4 (layer_norm_output_bound) per row: the bound of each output
  // against the layer norm of the exact stream; inf for a row with a
  // non-finite value or when a layer-norm rounding overflowed.
  [[nodiscard]] std::vector<double> layer_norm(const std::vector<double>& x, const std::vector<double>& e,
                                               std::size_t rows, const nn::layer_norm& ln) const {
    const std::size_t d = c_.net.d;
    std::vector<double> out(rows * d, kInf);
    for (std::size_t r = 0; r < rows; ++r) {
      const std::span<const double> xr{x.data() + r * d, d}, er{e.data() + r * d, d};
      bool ok = c_.others_ok;
      for (std::size_t j = 0; j < d; ++j) ok = ok && std::isfinite(xr[j]);
      if (!ok) continue;
      const auto b = layer_norm_output_bound(xr, er, ln.gamma, ln.beta, c_.net.ln_eps, c_.p.act, c_.p.act_rounding);
      std::copy(b.begin(), b.end(), out.begin() + static_cast<std::ptrdiff_t>(r * d));
    }
    return out;
  }

  // An inner product on the gathered operands gw_ (with bounds gew_, empty for
  // exact weights) and gx_ (bounds gex_), its accumulation bound with the
  // layer's model, the propagated operand errors, and the per-inner-product
  // checks. Returns the bound of v against the exact value (inf when an
  // operand's bound is).
  double dot_bound(std::size_t k, std::size_t fmt, double b, double v_sim, unsigned flags, bool in_finite,
                   component_result& c, double& an) {
    const auto& M = c_.models[k];
    const auto& D = M.det[fmt];
    const std::size_t n = gx_.size();
    double sd = 0, prop = 0;
    std::vector<double> sl(c_.NL, 0.0);
    an = std::fabs(b);
    for (std::size_t j = 0; j < n; ++j) {
      const double t = std::fabs(gw_[j] * gx_[j]);
      if (t != 0) {
        sd += t * D.theta[j];
        for (std::size_t q = 0; q < c_.NL; ++q) sl[q] += t * M.lprob[fmt][q].theta[j];
        an += t;
      }
      // |w^ x^ - w x| <= |w^| e_x + e_w (|x^| + e_x)
      // (zero factors skipped: never 0 * inf)
      const double ew = gew_.empty() ? 0.0 : gew_[j];
      if (gw_[j] != 0) prop += std::fabs(gw_[j]) * gex_[j];
      if (ew != 0) prop += ew * (std::fabs(gx_[j]) + gex_[j]);
    }
    c.bound_local = (sd + std::fabs(b) * D.bias_coef + D.eta) * D.margin;
    c.err_local = kNaN;
    if (in_finite && std::isfinite(v_sim) && !(flags & (sim::flag::overflow | sim::flag::saturated))) {
      local_error le(gw_.data(), gx_.data(), n, b, v_sim, an);
      c.err_local = le.approx();
      auto& st = st_[k];
      ++st.local_checked;
      if (le.exceeds(c.bound_local)) ++st.local_viol;
      if (c.bound_local >= an) ++st.local_vacuous;
      for (std::size_t q = 0; q < c_.NL; ++q) {
        const auto& Mq = M.lprob[fmt][q];
        const double bq = (sl[q] + std::fabs(b) * Mq.bias_coef + Mq.eta) * Mq.margin;
        const bool vac = bq >= an, viol = le.exceeds(bq);
        st.lp_vacuous[q] += vac;
        st.lp_viol[q] += viol;
        st.lp_viol_nv[q] += viol && !vac;
      }
    }
    const double infl = 1 + 4 * (static_cast<double>(n) + 2) * kU64;
    return c.bound_local + prop * infl;
  }

  // Fills component `at` of layer k from the simulated and reference values,
  // its cause, records it; returns the bound of y to propagate (inf when uncovered).
  double record(std::size_t k, std::size_t at, component_result& c, exact_bounds eb, bool in_finite, double an) {
    const auto& L = c_.run.layers[k];
    const auto& R = c_.R.layers[k];
    const std::size_t ga = s_ * R.n + at;  // index in the batch arrays
    c.v_ref = R.v_hi[ga];
    c.y_ref = R.y_hi[ga];
    c.v_sim = L.v[ga];
    c.y_sim = L.y[ga];
    c.flags = L.flags[ga];
    c.flags_act = L.act_flags[ga];
    c.err_v = dd_error(c.v_sim, R.v_hi[ga], R.v_lo[ga]);
    c.err_y = dd_error(c.y_sim, R.y_hi[ga], R.y_lo[ga]);
    c.kappa_dot = kappa_ratio(an, c.v_ref);
    c.kappa_act = 1;
    auto cause = uncovered_cause::none;
    bool unexplained = false;
    {
      if (c.flags & (sim::flag::overflow | sim::flag::saturated))
        cause = uncovered_cause::accumulation;
      else if (!std::isfinite(c.v_sim)) {
        if (!in_finite || (c.flags & sim::flag::invalid))
          cause = uncovered_cause::inherited;
        else
          unexplained = true;
      } else if ((c.flags_act & kOutOfRange) || !std::isfinite(c.y_sim)) {
        if (c.flags_act & kOutOfRange)
          cause = uncovered_cause::activation;
        else if (!std::isfinite(eb.y))
          cause = uncovered_cause::inherited;
        else
          unexplained = true;
      } else if (!std::isfinite(eb.v) || !std::isfinite(eb.y))
        cause = uncovered_cause::inherited;
      else if (!std::isfinite(c.v_ref) || !std::isfinite(c.y_ref))
        cause = uncovered_cause::reference;
    }
    if (cause == uncovered_cause::none && !unexplained) {
      c.bound_v = up(eb.v + R.v_bound[ga], 2);
      c.bound_y = up(eb.y + R.y_bound[ga], 2);
      c.prob_bound_v = c.bound_v;
      c.prob_bound_y = c.bound_y;
      c.first_order = kInf;
    } else {
      c.bound_v = c.bound_y = c.prob_bound_v = c.prob_bound_y = c.first_order = kInf;
    }
    c.cause = static_cast<std::uint8_t>(cause);
    const std::size_t fmt = 0;
    st_[k].id = ((static_cast<std::uint64_t>(g_) * c_.NLayers + k) << 32) | at;  // unique: at < 2^32
    record_component(c, cause, unexplained, c_.models[k].u_acc[fmt], c_.A.u_act, an, nullptr, st_[k]);
    if (csv_) csv_->push_back(c);
    return cause == uncovered_cause::none && !unexplained ? eb.y : kInf;
  }

  [[nodiscard]] std::size_t format_of(std::size_t k, std::size_t col) const {
    const auto& idx = c_.specs[k].acc.index;
    return idx.empty() ? 0 : idx[col];
  }

  // A linear map (layer k) on `rows` rows of its simulated operands L.in with
  // bounds e; y_bound(v, y, bound_v, index in the rows x n_out outputs) is the
  // bound of y. Returns the bounds of y.
  template <class F>
  std::vector<double> linear(std::size_t k, const nn::dense_layer& l, const std::vector<double>& e, std::size_t rows,
                             F&& y_bound) {
    const auto& L = c_.run.layers[k];
    std::vector<double> out(rows * l.n_out, kInf);
    gew_.clear();
    for (std::size_t r = 0; r < rows; ++r) {
      const double* x = L.in.data() + (s_ * rows + r) * l.n_in;
      gx_.assign(x, x + l.n_in);
      gex_.assign(e.begin() + static_cast<std::ptrdiff_t>(r * l.n_in),
                  e.begin() + static_cast<std::ptrdiff_t>((r + 1) * l.n_in));
      bool in_finite = true;
      for (std::size_t j = 0; j < l.n_in; ++j) in_finite = in_finite && std::isfinite(gx_[j]);
      for (std::size_t i = 0; i < l.n_out; ++i) {
        const std::size_t at = r * l.n_out + i, ga = s_ * rows * l.n_out + at;
        gw_.assign(l.row(i), l.row(i) + l.n_in);
        component_result c;
        double an = 0;
        exact_bounds eb;
        eb.v = dot_bound(k, format_of(k, i), l.b[i], L.v[ga], L.flags[ga], in_finite, c, an);
        eb.y = std::isfinite(eb.v) ? y_bound(L.v[ga], L.y[ga], eb.v, at) : kInf;
        out[at] = record(k, at, c, eb, in_finite, an);
      }
    }
    return out;
  }

  // embedding: rows the patches of the sample; y = round(v + pos)
  void embed(std::vector<double>& ex) {
    const auto& net = c_.net;
    const std::size_t NP = net.patches(), d = net.d, ps = net.patch, per = net.image / ps;
    // the bounds of the stored pixels, gathered as the patches are
    std::vector<double> e(NP * ps * ps, 0.0);
    for (std::size_t q = 0; q < NP; ++q)
      for (std::size_t t = 0; t < ps * ps; ++t) {
        const std::size_t pix = ((q / per) * ps + t / ps) * net.image + (q % per) * ps + t % ps;
        const std::size_t g = s_ * net.inputs() + pix;
        double b = 0;
        if ((c_.in_flags[g] & kOutOfRange) || !std::isfinite(c_.x_stored[g]))
          b = kInf;
        else if (c_.exact_inputs)
          b = up(c_.p.inputs.unit_roundoff() * std::fabs(c_.x_exact[g]) + c_.p.inputs.min_positive() / 2, 2);
        e[q * ps * ps + t] = b;
      }
    const auto ey = linear(0, net.embed, e, NP, [&](double v, double y, double bv, std::size_t at) {
      const double pos = net.pos[(1 + at / d) * d + at % d];
      return up(bv + kU64 * (std::fabs(v) + std::fabs(pos)) + round_act(y), 4);
    });
    std::copy(ey.begin(), ey.end(), ex.begin() + static_cast<std::ptrdiff_t>(d));
  }

  // scores (layer k): rows (head, query), cols keys; y the softmax row
  std::vector<double> scores(std::size_t k, const std::vector<double>& eq, const std::vector<double>& ek) {
    const auto& net = c_.net;
    const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
    const auto& L = c_.run.layers[k];
    const std::size_t k0 = k - 3;
    const auto Q = slice(c_.run.layers[k0].y, T * d), K = slice(c_.run.layers[k0 + 1].y, T * d);
    const double scale = 1 / std::sqrt(static_cast<double>(dh));  // as the simulated pass
    std::vector<double> out(H * T * T, kInf), z(T), eta(T), bv(T), an(T);
    std::vector<component_result> cs(T);
    std::vector<int> fin(T);
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t i = 0; i < T; ++i) {
        const std::size_t row = (h * T + i) * T;
        bool row_ok = true;
        for (std::size_t j = 0; j < T; ++j) {
          const std::size_t ga = s_ * H * T * T + row + j;
          gw_.assign(K.begin() + static_cast<std::ptrdiff_t>(j * d + h * dh),
                     K.begin() + static_cast<std::ptrdiff_t>(j * d + h * dh + dh));
          gew_.assign(ek.begin() + static_cast<std::ptrdiff_t>(j * d + h * dh),
                      ek.begin() + static_cast<std::ptrdiff_t>(j * d + h * dh + dh));
          gx_.assign(Q.begin() + static_cast<std::ptrdiff_t>(i * d + h * dh),
                     Q.begin() + static_cast<std::ptrdiff_t>(i * d + h * dh + dh));
          gex_.assign(eq.begin() + static_cast<std::ptrdiff_t>(i * d + h * dh),
                      eq.begin() + static_cast<std::ptrdiff_t>(i * d + h * dh + dh));
          bool f = true;
          for (std::size_t c = 0; c < dh; ++c) f = f && std::isfinite(gw_[c]) && std::isfinite(gx_[c]);
          fin[j] = f ? 1 : 0;
          cs[j] = {};
          bv[j] = dot_bound(k, format_of(k, j), 0.0, L.v[ga], L.flags[ga], f, cs[j], an[j]);
          const double v = L.v[ga];
          z[j] = v * scale;
          // |z^_j - z_j| <= bv scale (1 + 2.01 u) + 4 u |v^_j| scale + 2^-1074 (the scaling's roundings)
          eta[j] = up(bv[j] * scale * (1 + 3 * kU64) + 4 * kU64 * std::fabs(v) * scale + 0x1p-1074, 4);
          row_ok = row_ok && std::isfinite(eta[j]) && std::isfinite(z[j]) &&
                   !(L.flags[ga] & (sim::flag::overflow | sim::flag::saturated));
        }
        std::vector<double> by(T, kInf);
        if (row_ok) by = softmax_output_bound(z, eta, c_.p.act, c_.p.act_rounding);
        for (std::size_t j = 0; j < T; ++j) {
          exact_bounds eb;
          eb.v = bv[j];
          eb.y = by[j];
          out[row + j] = record(k, row + j, cs[j], eb, fin[j] != 0, an[j]);
        }
      }
    return out;
  }

  // mix (layer k): rows tokens, cols d; (i, h d_head + c) = V^h column c . P row (h, i)
  std::vector<double> mix(std::size_t k, const std::vector<double>& ep, const std::vector<double>& ev) {
    const auto& net = c_.net;
    const std::size_t T = net.tokens(), H = net.heads, dh = net.d_head(), d = net.d;
    const auto& L = c_.run.layers[k];
    const auto P = slice(c_.run.layers[k - 1].y, H * T * T), V = slice(c_.run.layers[k - 2].y, T * d);
    std::vector<double> out(T * d, kInf);
    for (std::size_t i = 0; i < T; ++i)
      for (std::size_t col = 0; col < d; ++col) {
        const std::size_t h = col / dh, at = i * d + col, ga = s_ * T * d + at;
        gw_.resize(T);
        gew_.resize(T);
        for (std::size_t j = 0; j < T; ++j) {
          gw_[j] = V[j * d + col];
          gew_[j] = ev[j * d + col];
        }
        const std::size_t prow = (h * T + i) * T;
        gx_.assign(P.begin() + static_cast<std::ptrdiff_t>(prow), P.begin() + static_cast<std::ptrdiff_t>(prow + T));
        gex_.assign(ep.begin() + static_cast<std::ptrdiff_t>(prow), ep.begin() + static_cast<std::ptrdiff_t>(prow + T));
        bool f = true;
        for (std::size_t j = 0; j < T; ++j) f = f && std::isfinite(gw_[j]) && std::isfinite(gx_[j]);
        component_result c;
        double an = 0;
        exact_bounds eb;
        eb.v = dot_bound(k, format_of(k, col), 0.0, L.v[ga], L.flags[ga], f, c, an);
        eb.y = std::isfinite(eb.v) ? up(eb.v + round_act(L.y[ga]), 2) : kInf;
        out[at] = record(k, at, c, eb, f, an);
      }
    return out;
  }
};

// the network as stored in p, after checking both
nn::vit checked_stored(const nn::vit& model, const nn::precision_config& p) {
  model.validate();
  p.check(model.product_layers());
  return nn::stored_network(model, p);
}

// The validation of one configuration, fed a chunk of samples at a time; only
// the per-layer statistics are kept between chunks.
class vit_validator {
 public:
  vit_validator(const nn::vit& model, const nn::precision_config& p, const validate_options& opt, bool sketch,
                std::size_t csv_n)
      : model_(model),
        net_(checked_stored(model, p)),
        p_(p),
        opt_(opt),
        L_(model.product_layers()),
        NL_(opt.lambdas.size()),
        sketch_(sketch),
        nt_(sim::thread_count(opt.threads)) {
    res_.config = p.to_string();
    res_.precision = p;
    res_.ref_inputs = opt.ref_inputs;
    // bound models per inner-product layer (terms: n_in, d_head for scores, tokens for mix)
    specs_.resize(L_);
    models_.resize(L_);
    fail_prop_.assign(L_, 0);
    fail_local_.resize(L_);
    const auto names = model.product_layer_names();
    for (std::size_t k = 0; k < L_; ++k) {
      specs_[k] = p.layer_spec(k).resolved();
      std::size_t terms = net_.d;
      if (k == 0) terms = net_.patch * net_.patch;
      const std::size_t kind = k == 0 || k == L_ - 1 ? 99 : (k - 1) % 8;
      if (kind == 3) terms = net_.d_head();
      if (kind == 4) terms = net_.tokens();
      if (kind == 7) terms = net_.hidden;
      models_[k] = make_layer_models(terms, specs_[k], opt);
      // the "probabilistic" bound propagated through a vit is the deterministic one: it fails with probability 0
      fail_prop_[k] = 0;
      fail_local_[k] = models_[k].fail_local;
      res_.layer_kinds.push_back(names[k]);
      res_.layer_u.push_back(models_[k].u0);
      res_.layer_gamma.push_back(models_[k].gamma0);
      res_.layer_kmax.push_back(models_[k].kmax0);
      res_.layer_steps.push_back(models_[k].steps0);
    }
    A_ = make_act_model(p);
    res_.u_act = A_.u_act;
    res_.csv_rows.assign(csv_n, {});
    stats_.assign(static_cast<std::size_t>(nt_), std::vector<layer_stats>(L_, layer_stats(NL_, sketch_)));
    total_.assign(1, std::vector<layer_stats>(L_, layer_stats(NL_, sketch_)));
  }

  // The samples of refd (its reference and exact inputs), which are samples
  // first, first + 1, ... of the data set.
  void add(const reference_data& refd, std::size_t first) {
    check_reference(refd, p_, model_.inputs());
    if (refd.ref.layers.size() != L_) throw std::invalid_argument("validate: the reference is of another network");
    if (refd.kind != res_.ref_inputs) throw std::invalid_argument("validate: the reference inputs' kind changed");
    if (!refd.act || !(*refd.act == p_.act))
      throw std::invalid_argument(
          "validate: the reference was computed on a vit whose elementwise parameters are stored in " +
          (refd.act ? sim::to_string(*refd.act) : std::string("another network's format")) +
          ", the configuration stores them in its activation format " + sim::to_string(p_.act));
    const std::size_t rows = refd.rows;
    if (res_.layer_sizes.empty())
      for (std::size_t k = 0; k < L_; ++k) res_.layer_sizes.push_back(refd.ref.layers[k].n);
    const auto t0 = std::chrono::steady_clock::now();
    const auto run = nn::simulate(model_, {refd.inputs.data(), rows, refd.cols}, p_, opt_.threads, first);
    std::vector<unsigned> in_flags;
    validation_result counts;
    const std::vector<double> xin = stored_inputs(refd, p_, counts, in_flags);
    res_.inputs_stored += counts.inputs_stored;
    res_.inputs_inexact += counts.inputs_inexact;
    res_.inputs_overflow += counts.inputs_overflow;
    res_.seconds_simulation += seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    const vit_context ctx{net_,        run,
                          refd.ref,    specs_,
                          models_,     p_,
                          A_,          NL_,
                          L_,          (run.other_flags & kOutOfRange) == 0,
                          xin,         in_flags,
                          refd.inputs, refd.kind == reference_inputs::exact};
    const std::size_t csv_n = res_.csv_rows.size();
    std::string error;
    const auto nrows = static_cast<std::ptrdiff_t>(rows);
#pragma omp parallel for num_threads(nt_) schedule(dynamic, 1)
    for (std::ptrdiff_t si = 0; si < nrows; ++si) {
#ifdef _OPENMP
      auto& my = stats_[static_cast<std::size_t>(omp_get_thread_num())];
#else
      auto& my = stats_[0];
#endif
      const auto s = static_cast<std::size_t>(si), g = first + s;
      try {
        sample_pass(ctx, s, g, my, g < csv_n ? &res_.csv_rows[g] : nullptr).run();
      } catch (const std::exception& e) {
#pragma omp critical(vit_validate_error)
        if (error.empty()) error = "sample " + std::to_string(g) + ": " + e.what();
      }
    }
    if (!error.empty()) throw std::runtime_error("validate: " + error);
    // keep only the statistics: the threads' into the running total
    for (auto& t : stats_)
      for (std::size_t k = 0; k < L_; ++k) {
        total_[0][k].merge(t[k]);
        t[k].clear();
      }
    res_.seconds_bounds += seconds_since(t1);
  }

  validation_result finish(double seconds_reference) {
    const auto t0 = std::chrono::steady_clock::now();
    summarize(total_, fail_prop_, fail_local_, res_.layer_sizes, opt_, res_);
    res_.seconds_bounds += seconds_since(t0);
    res_.seconds_reference = seconds_reference;
    return std::move(res_);
  }

 private:
  const nn::vit& model_;
  nn::vit net_;  // as stored
  nn::precision_config p_;
  validate_options opt_;
  std::size_t L_, NL_;
  bool sketch_;
  int nt_;
  std::vector<sim::layer_spec> specs_;
  std::vector<layer_models> models_;
  std::vector<double> fail_prop_;
  std::vector<std::vector<double>> fail_local_;
  act_model A_;
  validation_result res_;
  std::vector<std::vector<layer_stats>> stats_, total_;  // per thread; the running total (one "thread")
};

}  // namespace

reference_data compute_reference(const nn::vit& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p) {
  auto r = compute_reference_with(data, opt, p, [&](sim::matrix_view X, const nn::reference_options& ro) {
    return nn::reference_forward(nn::stored_network(net, p), X, ro);
  });
  r.act = p.act;  // the class token, position embedding and layer norms are stored in p.act
  return r;
}

validation_result validate(const nn::vit& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt) {
  validate_options o = opt;
  o.ref_inputs = refd.kind;
  vit_validator v(model, p, o, false, std::min(opt.csv_samples, refd.rows));
  v.add(refd, 0);
  return v.finish(refd.seconds);
}

std::vector<validation_result> validate(const nn::vit& model, const io::dataset& data,
                                        const std::vector<nn::precision_config>& configs, const validate_options& opt) {
  const std::size_t rows = opt.samples > 0 ? std::min(opt.samples, data.rows) : data.rows;
  const std::size_t chunk = opt.chunk > 0 ? opt.chunk : rows;
  const std::size_t csv_n = std::min(opt.csv_samples, rows);
  std::vector<std::unique_ptr<vit_validator>> vs;
  vs.reserve(configs.size());
  for (const auto& p : configs) vs.push_back(std::make_unique<vit_validator>(model, p, opt, true, csv_n));
  // one reference per distinct storage of weights, biases, inputs and elementwise parameters (p.act), per chunk
  std::vector<std::size_t> ref_of(configs.size());
  std::vector<std::size_t> firsts;  // the first configuration of each reference
  for (std::size_t c = 0; c < configs.size(); ++c) {
    ref_of[c] = firsts.size();
    for (std::size_t r = 0; r < firsts.size(); ++r) {
      const auto& q = configs[firsts[r]];
      if (q.inputs == configs[c].inputs && q.weights == configs[c].weights && q.biases == configs[c].biases &&
          q.act == configs[c].act) {
        ref_of[c] = r;
        break;
      }
    }
    if (ref_of[c] == firsts.size()) firsts.push_back(c);
  }
  std::vector<double> ref_seconds(firsts.size(), 0.0);
  validate_options ro = opt;
  ro.samples = 0;
  io::dataset piece;
  piece.name = data.name;
  piece.cols = data.cols;
  for (std::size_t first = 0; first < rows; first += chunk) {
    const std::size_t n = std::min(chunk, rows - first);
    piece.rows = n;
    piece.x.assign(data.x.begin() + static_cast<std::ptrdiff_t>(first * data.cols),
                   data.x.begin() + static_cast<std::ptrdiff_t>((first + n) * data.cols));
    piece.y.clear();
    if (data.y.size() >= first + n)
      piece.y.assign(data.y.begin() + static_cast<std::ptrdiff_t>(first),
                     data.y.begin() + static_cast<std::ptrdiff_t>(first + n));
    for (std::size_t r = 0; r < firsts.size(); ++r) {
      const reference_data refd = compute_reference(model, piece, ro, configs[firsts[r]]);
      ref_seconds[r] += refd.seconds;
      for (std::size_t c = 0; c < configs.size(); ++c)
        if (ref_of[c] == r) vs[c]->add(refd, first);
    }
    if (opt.progress) opt.progress(first + n, rows);
  }
  std::vector<validation_result> out;
  out.reserve(configs.size());
  for (std::size_t c = 0; c < configs.size(); ++c) out.push_back(vs[c]->finish(ref_seconds[ref_of[c]]));
  return out;
}

}  // namespace mpacc::analysis
