// SPDX-License-Identifier: MIT
// The reference pass of a vision transformer (nn/vit_reference.hpp). Every
// bound is an absolute bound on |value - exact|, evaluated in binary64 and
// widened by up(., k) = x (1 + k 2^-52) for its own k roundings; the unit
// roundoffs 2^-P and 2^-(P+64) are clamped below at 2^-1074 so that they stay
// upper bounds for any P.
#include "mpacc/nn/vit_reference.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "mpacc/ref/activation.hpp"
#include "mpacc/ref/long_accumulator.hpp"
#include "mpacc/sim/threads.hpp"
#include "reference_internal.hpp"

namespace mpacc::nn {

namespace {

using ref::mpfr_float;

double up(double x, double k) { return x * (1 + k * 0x1p-52); }
double down(double x, double k) { return x * (1 - k * 0x1p-52); }

// |x| rounded up to binary64
double abs_up(const mpfr_float& x) { return std::fabs(mpfr_get_d(x.get(), MPFR_RNDA)); }

// a matrix of P-bit values with their bounds, row-major
struct values {
  std::vector<mpfr_float> x;
  std::vector<double> e;
};

class pass {
 public:
  pass(const vit& net, mpfr_prec_t P)
      : net_(net),
        P_(P),
        P2_(P + 64),
        uP_(std::max(std::ldexp(1.0, -static_cast<int>(std::min<mpfr_prec_t>(P, 1100))), 0x1p-1074)),
        u2_(std::max(std::ldexp(1.0, -static_cast<int>(std::min<mpfr_prec_t>(P + 64, 1100))), 0x1p-1074)) {}

  vit_reference_sample run(std::span<const double> img) {
    const std::size_t T = net_.tokens(), NP = net_.patches(), d = net_.d, pp = net_.patch * net_.patch;
    const std::size_t per = net_.image / net_.patch;
    out_.v.resize(net_.product_layers());
    out_.y.resize(net_.product_layers());
    out_.v_bound.resize(net_.product_layers());
    out_.y_bound.resize(net_.product_layers());
    // patches, exact binary64 inputs
    values patches;
    for (std::size_t py = 0; py < per; ++py)
      for (std::size_t px = 0; px < per; ++px)
        for (std::size_t ky = 0; ky < net_.patch; ++ky)
          for (std::size_t kx = 0; kx < net_.patch; ++kx)
            patches.x.emplace_back(53, img[(py * net_.patch + ky) * net_.image + px * net_.patch + kx]);
    patches.e.assign(NP * pp, 0.0);
    values emb = linear(net_.embed, patches, NP);
    values y0;
    for (std::size_t t = 0; t < NP * d; ++t) {
      y0.x.emplace_back(P_);
      y0.e.push_back(add(y0.x.back(), emb.x[t], emb.e[t], net_.pos[(1 + t / d) * d + t % d]));
    }
    store(0, emb, y0);
    // the stream: the class-token row, then the patch tokens
    values x;
    for (std::size_t j = 0; j < d; ++j) {
      mpfr_float c(53, net_.cls[j]);
      x.x.emplace_back(P_);
      x.e.push_back(add(x.x.back(), c, 0.0, net_.pos[j]));
    }
    for (std::size_t t = 0; t < NP * d; ++t) {
      x.x.push_back(out_.y[0][t]);
      x.e.push_back(out_.y_bound[0][t]);
    }
    for (std::size_t b = 0; b < net_.blocks.size(); ++b) {
      const auto& B = net_.blocks[b];
      const std::size_t k0 = 1 + 8 * b;
      const values h = layer_norm_rows(x, T, B.ln1);
      const values q = linear(B.q, h, T), kk = linear(B.k, h, T), vv = linear(B.v, h, T);
      store(k0, q, q);
      store(k0 + 1, kk, kk);
      store(k0 + 2, vv, vv);
      values s, p;
      attention_scores(q, kk, s, p);
      store(k0 + 3, s, p);
      const values m = attention_mix(p, vv);
      store(k0 + 4, m, m);
      const values pr = linear(B.proj, m, T);
      x = residual(x, pr);
      store(k0 + 5, pr, x);
      const values h2 = layer_norm_rows(x, T, B.ln2);
      const values f1 = linear(B.fc1, h2, T);
      values g;
      for (std::size_t t = 0; t < f1.x.size(); ++t) {
        g.x.emplace_back(P_);
        ref::activate(g.x.back(), f1.x[t], B.fc1.act);
        g.e.push_back(up(sim::lipschitz(B.fc1.act) * f1.e[t], 4) +
                      up(detail::scaled_abs_up(g.x.back(), P_) * ref::activation_rounding_factor(B.fc1.act), 2));
      }
      store(k0 + 6, f1, g);
      const values f2 = linear(B.fc2, g, T);
      x = residual(x, f2);
      store(k0 + 7, f2, x);
    }
    values cls;
    for (std::size_t j = 0; j < d; ++j) {
      cls.x.push_back(x.x[j]);
      cls.e.push_back(x.e[j]);
    }
    const values z = layer_norm_rows(cls, 1, net_.ln_f);
    const values logits = linear(net_.head, z, 1);
    store(net_.product_layers() - 1, logits, logits);
    return std::move(out_);
  }

 private:
  const vit& net_;
  mpfr_prec_t P_, P2_;
  double uP_, u2_;
  ref::long_accumulator acc_;
  vit_reference_sample out_;

  void store(std::size_t k, const values& v, const values& y) {
    out_.v[k] = v.x;
    out_.v_bound[k] = v.e;
    out_.y[k] = y.x;
    out_.y_bound[k] = y.e;
  }

  // r = round_P(a + c) for a binary64 c: |r - exact| <= e_a + 2^-P |r|
  double add(mpfr_float& r, const mpfr_float& a, double ea, double c) const {
    mpfr_add_d(r.get(), a.get(), c, MPFR_RNDN);
    return up(ea, 1) + detail::scaled_abs_up(r, P_);
  }

  // x + v, the residual stream after a block's half
  values residual(const values& x, const values& v) const {
    values r;
    for (std::size_t t = 0; t < x.x.size(); ++t) {
      r.x.emplace_back(P_);
      mpfr_add(r.x.back().get(), x.x[t].get(), v.x[t].get(), MPFR_RNDN);
      r.e.push_back(up(x.e[t] + v.e[t], 2) + detail::scaled_abs_up(r.x.back(), P_));
    }
    return r;
  }

  // Y = X W^T + b on `rows` rows of X: each output the exact inner product of
  // the P-bit inputs rounded once to P bits; the bound adds sum |w_j| e_j.
  values linear(const dense_layer& l, const values& X, std::size_t rows) {
    values Y;
    Y.x.reserve(rows * l.n_out);
    Y.e.reserve(rows * l.n_out);
    std::vector<std::vector<double>> parts(l.n_in);
    std::vector<const std::vector<double>*> pp(l.n_in);
    std::vector<const mpfr_float*> vp(l.n_in);
    for (std::size_t r = 0; r < rows; ++r) {
      bool split_ok = true;
      for (std::size_t j = 0; j < l.n_in; ++j) {
        const mpfr_float& xj = X.x[r * l.n_in + j];
        split_ok = split_ok && detail::split(xj, parts[j]);
        pp[j] = &parts[j];
        vp[j] = &xj;
      }
      for (std::size_t i = 0; i < l.n_out; ++i) {
        const double* w = l.row(i);
        Y.x.emplace_back(P_);
        detail::reference_dot(Y.x.back(), w, l.n_in, pp.data(), vp.data(), split_ok, l.b[i], false, acc_);
        double prop = 0;
        for (std::size_t j = 0; j < l.n_in; ++j) prop += std::fabs(w[j]) * X.e[r * l.n_in + j];
        Y.e.push_back(up(prop, 2 * static_cast<double>(l.n_in) + 4) + detail::scaled_abs_up(Y.x.back(), P_));
      }
    }
    return Y;
  }

  // round_P(sum_j a_j c_j) of two computed vectors (a at stride sa, c at sc):
  // |sum a^ c^ - sum a c| <= sum e_a |c^| + (|a^| + e_a) e_c.
  double dot2(mpfr_float& out, const values& A, std::size_t a0, std::size_t sa, const values& C, std::size_t c0,
              std::size_t sc, std::size_t n) const {
    std::vector<mpfr_float> prods;
    prods.reserve(n);
    std::vector<mpfr_ptr> ptr(n);
    double prop = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const mpfr_float& a = A.x[a0 + j * sa];
      const mpfr_float& c = C.x[c0 + j * sc];
      prods.emplace_back(a.precision() + c.precision());
      mpfr_mul(prods.back().get(), a.get(), c.get(), MPFR_RNDN);  // exact
      ptr[j] = prods.back().get();
      const double ea = A.e[a0 + j * sa], ec = C.e[c0 + j * sc];
      prop += ea * abs_up(c) + (abs_up(a) + ea) * ec;
    }
    mpfr_sum(out.get(), ptr.data(), n, MPFR_RNDN);  // correctly rounded
    return up(prop, 4 * static_cast<double>(n) + 4) + detail::scaled_abs_up(out, P_);
  }

  // scores (rows (head, query), cols keys): v = q_i^h . k_j^h; y = softmax(v / sqrt(d_head))
  void attention_scores(const values& q, const values& k, values& s, values& p) const {
    const std::size_t T = net_.tokens(), H = net_.heads, dh = net_.d_head(), d = net_.d;
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t i = 0; i < T; ++i) {
        const std::size_t row = s.x.size();
        for (std::size_t j = 0; j < T; ++j) {
          s.x.emplace_back(P_);
          s.e.push_back(dot2(s.x.back(), q, i * d + h * dh, 1, k, j * d + h * dh, 1, dh));
        }
        softmax_row(s, row, p);
      }
  }

  // Softmax of the T logits v_j / sqrt(d_head) (v = s.x[row..row+T)), appended to p.
  // At P2 bits: z_j = v_j / r (r = sqrt(d_head) rounded), t_j = z_j - max z, exp,
  // the sum, the quotients, each rounded to nearest; then to P bits. The logit
  // errors (the input bounds / sqrt(d_head), the roundings of z_j and t_j) are
  // eta_j; by Theorem 1 of docs/attention-bounds.md (simple form) the exact
  // softmax of the exact logits is within expm1(eta_j + max eta) of the exact
  // softmax of t; exp, sum and quotient add 3 relative roundings.
  void softmax_row(const values& s, std::size_t row, values& p) const {
    const std::size_t T = net_.tokens();
    const double dh = static_cast<double>(net_.d_head());
    mpfr_float r(P2_);
    mpfr_set_d(r.get(), dh, MPFR_RNDN);
    mpfr_sqrt(r.get(), r.get(), MPFR_RNDN);
    const double inv_up = up(1 / std::sqrt(dh), 4);
    std::vector<mpfr_float> z, e;
    std::vector<double> eta(T);
    std::size_t imax = 0;
    for (std::size_t j = 0; j < T; ++j) {
      z.emplace_back(P2_);
      mpfr_div(z.back().get(), s.x[row + j].get(), r.get(), MPFR_RNDN);
      if (mpfr_greater_p(z[j].get(), z[imax].get())) imax = j;
    }
    const mpfr_float m = z[imax];
    double eta_max = 0;
    std::vector<mpfr_ptr> ptr(T);
    for (std::size_t j = 0; j < T; ++j) {
      const double z_abs = abs_up(z[j]);
      mpfr_sub(z[j].get(), z[j].get(), m.get(), MPFR_RNDN);  // t_j
      eta[j] = up(s.e[row + j] * inv_up + 3 * u2_ * z_abs + 2 * u2_ * abs_up(z[j]), 6);
      eta_max = std::max(eta_max, eta[j]);
      e.emplace_back(P2_);
      mpfr_exp(e.back().get(), z[j].get(), MPFR_RNDN);
    }
    for (std::size_t j = 0; j < T; ++j) ptr[j] = e[j].get();  // after the vector's last move
    mpfr_float S(P2_);
    mpfr_sum(S.get(), ptr.data(), T, MPFR_RNDN);
    for (std::size_t j = 0; j < T; ++j) {
      mpfr_div(e[j].get(), e[j].get(), S.get(), MPFR_RNDN);
      // the exact softmax of t_hat is at most s2_j / (1 - 3.01 u2)
      const double s_up = up(abs_up(e[j]) * (1 + 4 * u2_), 2);
      const double a = up(eta[j] + eta_max, 1);
      const double rel = up(3.01 * u2_ + std::expm1(a) * (1 + 0x1p-40), 2);
      p.x.emplace_back(P_);
      mpfr_set(p.x.back().get(), e[j].get(), MPFR_RNDN);
      p.e.push_back(up(rel * s_up, 2) + detail::scaled_abs_up(p.x.back(), P_));
    }
  }

  // mix (rows tokens, cols d): token i, feature h d_head + c = sum_j P^h_ij V_j,(h d_head + c)
  values attention_mix(const values& p, const values& v) const {
    const std::size_t T = net_.tokens(), dh = net_.d_head(), d = net_.d;
    values m;
    m.x.reserve(T * d);
    for (std::size_t i = 0; i < T; ++i)
      for (std::size_t col = 0; col < d; ++col) {
        const std::size_t h = col / dh;
        m.x.emplace_back(P_);
        m.e.push_back(dot2(m.x.back(), p, (h * T + i) * T, 1, v, col, d, T));
      }
    return m;
  }

  // Layer norm of `rows` rows of d values. At P2 bits (nearest): the mean
  // (correctly rounded sum, then / n), d_j = x_j - mean, the correctly rounded
  // sum of the exact squares / n + eps, its square root s, x_j = d_j / s,
  // gamma x_j + beta; then to P bits. Evaluation error (Theorem 4's steps
  // with u2 = 2^-P2 and one rounding per sum): |mean^ - mean| <= e_mu = 2.01 u2 A
  // (A = mean |x|), |d^_j - d_j| <= E_j = e_mu + u2 |d^_j|, |s - sigma_eps| <=
  // omega = 4 u2 s + max E, |x^_j - d_j / sigma_eps| <= (E_j + sqrt(n - 1) omega) / s
  // + u2 |x^_j|. Input bounds e (max E_in): |Delta y_i| <= |gamma_i| E_in
  // (2 + sqrt(n - 1)) / (sigma_lo - E_in) (the proof of Theorem 3 with
  // |(P Delta)_i| <= 2 E_in and |sigma'_eps - sigma_eps| <= E_in).
  values layer_norm_rows(const values& X, std::size_t rows, const layer_norm& ln) const {
    const std::size_t n = net_.d;
    const double nd = static_cast<double>(n);
    const double sq = up(std::sqrt(nd - 1), 2);
    values Y;
    std::vector<mpfr_ptr> ptr(n);
    std::vector<mpfr_float> dv, sqr;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t at = r * n;
      double A = 0, E_in = 0;
      for (std::size_t j = 0; j < n; ++j) {
        // mpfr_sum only reads its operands
        ptr[j] = const_cast<mpfr_ptr>(X.x[at + j].get());  // NOLINT(cppcoreguidelines-pro-type-const-cast)
        A += abs_up(X.x[at + j]);
        E_in = std::max(E_in, X.e[at + j]);
      }
      A = up(A / nd, nd + 2);
      mpfr_float mu(P2_);
      mpfr_sum(mu.get(), ptr.data(), n, MPFR_RNDN);
      mpfr_div_ui(mu.get(), mu.get(), static_cast<unsigned long>(n), MPFR_RNDN);
      const double e_mu = up(2.01 * u2_ * A, 2);
      dv.clear();
      sqr.clear();
      std::vector<double> E(n);
      double E_max = 0;
      for (std::size_t j = 0; j < n; ++j) {
        dv.emplace_back(P2_);
        mpfr_sub(dv.back().get(), X.x[at + j].get(), mu.get(), MPFR_RNDN);
        E[j] = up(e_mu + u2_ * abs_up(dv.back()), 2);
        E_max = std::max(E_max, E[j]);
        sqr.emplace_back(2 * P2_);
        mpfr_sqr(sqr.back().get(), dv.back().get(), MPFR_RNDN);  // exact
      }
      for (std::size_t j = 0; j < n; ++j) ptr[j] = sqr[j].get();  // after the vector's last move
      mpfr_float s(P2_);
      mpfr_sum(s.get(), ptr.data(), n, MPFR_RNDN);
      mpfr_div_ui(s.get(), s.get(), static_cast<unsigned long>(n), MPFR_RNDN);
      mpfr_add_d(s.get(), s.get(), net_.ln_eps, MPFR_RNDN);
      mpfr_sqrt(s.get(), s.get(), MPFR_RNDN);
      const double s_lo = mpfr_get_d(s.get(), MPFR_RNDD);
      const double omega = up(4 * u2_ * abs_up(s) + E_max, 2);
      const double sig_lo = down(down(s_lo * (1 - 4 * u2_), 2) - E_max, 2);
      if (!(sig_lo > 0) || !(E_in < sig_lo / 2))
        throw std::invalid_argument("reference pass: a layer norm's input bound " + std::to_string(E_in) +
                                    " is not small against its spread " + std::to_string(s_lo));
      for (std::size_t j = 0; j < n; ++j) {
        const double g = std::fabs(ln.gamma[j]);
        mpfr_float xh(P2_), t(P2_);
        mpfr_div(xh.get(), dv[j].get(), s.get(), MPFR_RNDN);
        mpfr_mul_d(t.get(), xh.get(), ln.gamma[j], MPFR_RNDN);
        const double t_abs = abs_up(t);
        mpfr_add_d(t.get(), t.get(), ln.beta[j], MPFR_RNDN);
        Y.x.emplace_back(P_);
        mpfr_set(Y.x.back().get(), t.get(), MPFR_RNDN);
        const double eval = g * (up((E[j] + sq * omega) / s_lo, 4) + u2_ * abs_up(xh)) + u2_ * t_abs + u2_ * abs_up(t);
        const double prop = g * E_in * up((2 + sq) / down(sig_lo - E_in, 1), 4);
        Y.e.push_back(up(eval + prop, 8) + detail::scaled_abs_up(Y.x.back(), P_));
      }
    }
    return Y;
  }
};

void check(const vit& net, std::size_t cols, const reference_options& opt) {
  net.validate();
  if (cols != net.inputs())
    throw std::invalid_argument("reference pass: the inputs have " + std::to_string(cols) +
                                " values, the network takes " + std::to_string(net.inputs()));
  if (opt.exact)
    throw std::invalid_argument(
        "reference pass: a vision transformer has no exact tier (softmax, layer norm and GELU are not piecewise "
        "linear)");
  if (opt.precision < 64 || opt.precision > 100000)
    throw std::invalid_argument("reference precision " + std::to_string(opt.precision) +
                                " is out of range [64, 100000]");
}

}  // namespace

vit_reference_sample reference_forward_sample(const vit& net, std::span<const double> x, const reference_options& opt) {
  check(net, x.size(), opt);
  for (double v : x)
    if (!std::isfinite(v)) throw std::invalid_argument("reference pass: an input is not finite");
  const auto widest = ref::exponent_range_guard::widest();
  return pass(net, opt.precision).run(x);
}

forward_result reference_forward(const vit& net, sim::matrix_view X, const reference_options& opt) {
  check(net, X.cols, opt);
  forward_result res;
  res.batch = X.rows;
  const std::size_t K = net.product_layers();
  res.layers.resize(K);
  // values per sample of each inner-product layer (simulated_vit's rows x cols)
  const std::size_t T = net.tokens(), d = net.d;
  for (std::size_t k = 0; k < K; ++k) {
    std::size_t n = T * d;
    if (k == 0) n = net.patches() * d;
    if (k == K - 1) n = net.classes;
    if (k > 0 && k < K - 1 && (k - 1) % 8 == 3) n = net.heads * T * T;
    if (k > 0 && k < K - 1 && (k - 1) % 8 == 6) n = T * net.hidden;
    auto& lv = res.layers[k];
    lv.n = n;
    for (auto* vec : {&lv.v_hi, &lv.v_lo, &lv.y_hi, &lv.y_lo, &lv.v_bound, &lv.y_bound}) vec->assign(X.rows * n, 0.0);
  }
  std::string error;
  const auto rows = static_cast<std::ptrdiff_t>(X.rows);
#pragma omp parallel for num_threads(sim::thread_count(opt.threads)) schedule(dynamic, 1)
  for (std::ptrdiff_t si = 0; si < rows; ++si) {
    try {
      const auto s = static_cast<std::size_t>(si);
      const auto r = reference_forward_sample(net, {X.row(s), X.cols}, opt);
      mpfr_float scratch(2);
      for (std::size_t k = 0; k < K; ++k) {
        auto& lv = res.layers[k];
        for (std::size_t i = 0; i < lv.n; ++i) {
          const std::size_t at = s * lv.n + i;
          detail::double_double(r.v[k][i], lv.v_hi[at], lv.v_lo[at], scratch);
          detail::double_double(r.y[k][i], lv.y_hi[at], lv.y_lo[at], scratch);
          lv.v_bound[at] = r.v_bound[k][i];
          lv.y_bound[at] = r.y_bound[k][i];
        }
      }
    } catch (const std::exception& e) {
#pragma omp critical(vit_reference_error)
      if (error.empty()) error = "sample " + std::to_string(si) + ": " + e.what();
    }
  }
  if (!error.empty()) throw std::invalid_argument(error);
  return res;
}

}  // namespace mpacc::nn
