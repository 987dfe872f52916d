// SPDX-License-Identifier: MIT
// Softmax and layer normalization: condition numbers, perturbation and rounding
// bounds. The theorems and their proofs: docs/attention-bounds.md. Every bound is
// evaluated in binary64 and then widened so that its own rounding errors cannot
// make it smaller than the quantity it bounds: a value computed from nonnegative
// operands with at most k roundings is within (1 + u)^k of the exact one, so it is
// multiplied by up(., k) = 1 + k 2^-52 >= (1 - u)^-k (and lower bounds by
// down(., k)); differences of bounds take an upper bound minus a lower bound.
#include "mpacc/analysis/attention_bounds.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

#include "mpacc/analysis/bounds.hpp"
#include "mpacc/sim/row_ops.hpp"

namespace mpacc::analysis {

namespace {

constexpr double u64 = 0x1p-53;  // unit roundoff of binary64 (round to nearest)
// libm's exp within 4 ulps, i.e. 8 u relative in the normal range (the allowance the
// activations' bounds use, docs/error-bounds.md); its error in the subnormal range is at
// most 4 quanta of 2^-1074 = 2^-1072.
constexpr double c_exp = 8;
constexpr double exp_abs = 0x1p-1072;
constexpr double inf = std::numeric_limits<double>::infinity();

double up(double x, double k) { return x * (1 + k * 0x1p-52); }
double down(double x, double k) { return x * (1 - k * 0x1p-52); }

// (1 + u)^k - 1 rounded up (bounds.hpp's gamma_deterministic).
double pow_gamma(std::size_t k) { return gamma_deterministic(static_cast<int>(k), u64, 0); }

// Half (nearest) or one (other modes) quantum of f's subnormal grid, or 2^(emin-1) / 2^emin
// without subnormals: the absolute error of one rounding to f below 2^emin.
double eta_of(const sim::format& f, sim::rounding mode) {
  const bool nearest = mode == sim::rounding::nearest_even || mode == sim::rounding::nearest_away;
  const int q = f.subnormals ? f.emin - f.p + 1 : f.emin;
  return std::ldexp(1.0, nearest ? q - 1 : q);
}

void check_sizes(std::size_t a, std::size_t b, const char* what) {
  if (a != b) {
    throw std::invalid_argument(std::string(what) + ": sizes differ (" + std::to_string(a) + " and " +
                                std::to_string(b) + ")");
  }
}

// ---------------------------------------------------------------------------
// Softmax

struct softmax_state {
  std::vector<double> t;    // fl(z_j - max z)
  std::vector<double> s;    // softmax_binary64(z)
  std::vector<double> rho;  // |s_j - exact_j| <= rho_j exact_j + softmax_binary64_abs_error
};

softmax_state softmax_eval(std::span<const double> z) {
  softmax_state st;
  const std::size_t n = z.size();
  if (n == 0) return st;
  st.t.resize(n);
  st.s.resize(n);
  sim::softmax_binary64(z, st.t, st.s);  // the kernel the simulated pass runs

  // Theorem 2: log(s_hat_j / s_j) lies in [-L_lo, L_hi] up to the absolute term, with
  // L_hi = phi_j + log((1 + cu)(1 + u)) - log(1 - cu - n 2^-1072) - (n - 1) log(1 - u)
  // L_lo = phi_j - log((1 - cu)(1 - u)) + log(1 + cu + n 2^-1072) + (n - 1) log(1 + u),
  // every term nonnegative: rho_j = max(expm1(L_hi), -expm1(-L_lo)).
  const double nd = static_cast<double>(n);
  const double cu = c_exp * u64;
  const double cpr = cu + nd * 0x1p-1072;
  const double lnn = up(std::log(nd), 4);
  const double hi_const = std::log1p(cu) + std::log1p(u64) - std::log1p(-cpr) - (nd - 1) * std::log1p(-u64);
  const double lo_const = -std::log1p(-cu) - std::log1p(-u64) + std::log1p(cpr) + (nd - 1) * std::log1p(u64);
  st.rho.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    // |t_j| <= |t_hat_j| / (1 - u): t_hat_j = t_j (1 + delta)
    const double phi = up(u64 * (std::fabs(st.t[j]) / (1 - u64) + lnn), 4);
    if (!std::isfinite(phi)) {
      st.rho[j] = inf;
      continue;
    }
    // libm's log1p/expm1 within an ulp each: 2^-40 covers them and the sums
    const double l_hi = (phi + hi_const) * (1 + 0x1p-40);
    const double l_lo = (phi + lo_const) * (1 + 0x1p-40);
    st.rho[j] = std::max(std::expm1(l_hi), -std::expm1(-l_lo)) * (1 + 0x1p-40);
  }
  return st;
}

// Theorem 1 at the center whose evaluation is st (s and its error bound).
std::vector<double> softmax_perturbation(const softmax_state& st, std::span<const double> eta) {
  const std::size_t n = st.s.size();
  constexpr double A = softmax_binary64_abs_error;
  // bounds of the exact softmax at the center
  std::vector<double> s_hi(n), s_lo(n);
  for (std::size_t j = 0; j < n; ++j) {
    s_hi[j] = up((st.s[j] + A) / (1 - st.rho[j]), 4);
    s_lo[j] = std::max(0.0, down((st.s[j] - A) / (1 + st.rho[j]), 4));
  }
  double eta_max = 0;
  for (const double e : eta) eta_max = std::max(eta_max, e);
  const double k = static_cast<double>(n) + 8;
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) {
    double D = 0;   // sum_{j != i} s_j (1 - e^-a_ij), upper
    double E = 0;   // s_i + sum_{j != i} s_j e^-a_ij, lower
    double Dp = 0;  // sum_{j != i} s_j (e^a_ij - 1), upper
    for (std::size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double a = up(eta[i] + eta[j], 1);
      D += s_hi[j] * std::min(1.0, -std::expm1(-a) * (1 + 0x1p-50));
      E += s_lo[j] * std::exp(-a) * (1 - 0x1p-50);
      if (s_hi[j] > 0) Dp += s_hi[j] * std::expm1(a) * (1 + 0x1p-50);
    }
    D = up(D, k);
    E = down(E + s_lo[i], k);
    const double upper = E > 0 ? up(D / E, 2) : inf;               // U_i - 1 = D / E (sum s = 1)
    const double lower = std::min(1.0, up(Dp / (1 + Dp), k + 2));  // 1 - L_i = D' / (1 + D')
    const double sharp = std::isnan(lower) ? upper : std::max(upper, lower);
    const double simple = up(std::expm1(up(eta[i] + eta_max, 1)), 4);  // exp(eta_i + max eta) - 1
    r[i] = std::min(sharp, simple);
  }
  return r;
}

// ---------------------------------------------------------------------------
// Layer normalization

struct layer_norm_state {
  std::vector<double> d;    // fl(x_j - mu_hat)
  std::vector<double> xh;   // fl(d_j / sd): the computed normalized values
  std::vector<double> err;  // |xh_j - x_hat_j| <= err_j, x_hat the exact normalized values
  double sd = 0;            // the computed sqrt(v + eps)
  double sig_lo = 0;        // lower bound of the exact sigma_eps (<= 0: none known)
};

layer_norm_state layer_norm_eval(std::span<const double> x, double eps) {
  const std::size_t n = x.size();
  if (n < 2) throw std::invalid_argument("layer normalization: needs n >= 2 features, got " + std::to_string(n));
  if (!(eps >= 0x1p-900)) {
    throw std::invalid_argument("layer normalization: eps must be at least 2^-900, got " + std::to_string(eps));
  }
  const double nd = static_cast<double>(n);
  layer_norm_state st;
  double A = 0;
  for (const double v : x) A += std::fabs(v);
  st.d.resize(n);
  st.xh.resize(n);
  st.sd = sim::layer_norm_binary64(x, eps, st.d, st.xh);  // the kernel the simulated pass runs

  // Theorem 4, step by step (docs/attention-bounds.md §7).
  const double k = nd + 16;
  // (a) |mu_hat - mu| <= gamma_n mean|x| + 2^-1075
  const double e_mu = up(pow_gamma(n) * up(A / nd, k), 2) + 0x1p-1074;
  // (b) |d_hat_j - d_j| <= E_j = e_mu + u |d_hat_j| / (1 - u)
  std::vector<double> E(n);
  double E2 = 0;
  for (std::size_t j = 0; j < n; ++j) {
    E[j] = up(e_mu + u64 * std::fabs(st.d[j]) / (1 - u64), 4);
    E2 += E[j] * E[j];
  }
  const double tau_e = up(std::sqrt(up(E2 / nd, k)), 2);
  // (c) sd = sqrt(V + eps) c with c in [1 - cl1, 1 + ch1], V = mean d_hat^2; and
  // |sqrt(V + eps) - sigma_eps| <= tau_e
  const double g = up(pow_gamma(n + 2) + 0x1p-1073 / eps * 2, 4);
  const double ch1 = up(g / 2 + u64 + u64 * g / 2, 4);  // sqrt(1 + g)(1 + u) - 1
  const double cl1 = up(g / 2 + g * g / 2 + u64, 4);    // 1 - sqrt(1 - g)(1 - u)
  st.sig_lo = down(down(st.sd / (1 + ch1), 4) - tau_e, 2);
  const double sig_hi = up(st.sd / (1 - cl1) + tau_e, 4);
  const double omega_c = up(std::max(sig_hi * ch1 + tau_e * (1 + ch1), sig_hi * cl1 + tau_e), 4);
  // (d) |xh_j - x_hat_j| <= (E_j + |x_hat_j| omega_c) / sd + u |d_hat_j| / sd + 2^-1075,
  // |x_hat_j| <= (|d_hat_j| / (1 - u) + e_mu) / sigma_lo
  st.err.resize(n);
  for (std::size_t j = 0; j < n; ++j) {
    if (!(st.sig_lo > 0)) {
      st.err[j] = inf;
      continue;
    }
    const double xa = up((std::fabs(st.d[j]) / (1 - u64) + e_mu) / st.sig_lo, 4);
    st.err[j] = up((E[j] + xa * omega_c) / st.sd + u64 * std::fabs(st.d[j]) / st.sd, 8) + 0x1p-1074;
  }
  return st;
}

std::vector<double> layer_norm_perturbation(const layer_norm_state& st, std::span<const double> gamma,
                                            std::span<const double> eta) {
  const std::size_t n = st.xh.size();
  const double nd = static_cast<double>(n);
  const double k = nd + 16;
  std::vector<double> out(n);
  const double global_factor = up(2 * std::sqrt(nd - 1), 2);  // |x_hat_i| < sqrt(n - 1)
  double eta2 = 0;
  double m = 0;     // sum |x_hat_j| eta_j (upper)
  double se = 0;    // sum e_j eta_j
  double sxe = 0;   // sum |xh_j| eta_j
  double seta = 0;  // sum eta_j
  for (std::size_t j = 0; j < n; ++j) {
    eta2 += eta[j] * eta[j];
    m += (std::fabs(st.xh[j]) + st.err[j]) * eta[j];
    se += st.err[j] * eta[j];
    sxe += std::fabs(st.xh[j]) * eta[j];
    seta += eta[j];
  }
  const double tau = up(std::sqrt(up(eta2 / nd, k)), 2);
  m = up(m / nd, k);
  se = up(se, k);
  sxe = up(sxe, k);
  seta = up(seta, k);
  const double sig = st.sig_lo;
  double omega = inf;
  if (sig > 0 && tau < sig) omega = std::min(tau, up((2 * sig * m + tau * tau) / down(2 * sig - tau, 2), 8));
  const bool local = sig > 0 && omega < sig && std::isfinite(se);
  for (std::size_t i = 0; i < n; ++i) {
    const double global = std::fabs(gamma[i]) * global_factor;
    if (!local) {
      out[i] = global;
      continue;
    }
    const double xi = std::fabs(st.xh[i]);
    const double ei = st.err[i];
    // F_i = sum_j |J_ij| eta_j with J from the computed values, plus what the errors e_j
    // of the normalized values and the rounding of J (4u per entry) can add
    double F = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const double J = (i == j ? 1.0 : 0.0) - 1 / nd - st.xh[i] * st.xh[j] / nd;
      F += std::fabs(J) * eta[j];
    }
    const double C = (xi * se + ei * sxe + ei * se) / nd + 4 * u64 * (seta * (1 + 1 / nd) + xi * sxe / nd);
    F = up(up(F, k) + C, 4);
    const double R = up((m * omega + tau * tau) / down(2 * sig - omega, 2), 4);
    const double b = up(std::fabs(gamma[i]) * (F + (xi + ei) * R) / down(sig - omega, 2), 8);
    out[i] = std::min(b, global);
  }
  return out;
}

// |y_hat_i - y_i| of layer_norm_binary64 (step (e) of Theorem 4) from the state and y_hat
std::vector<double> layer_norm_rounding(const layer_norm_state& st, std::span<const double> gamma,
                                        std::span<const double> y) {
  const std::size_t n = st.xh.size();
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double p = std::fabs(gamma[i] * st.xh[i]);  // |fl(gamma_i xh_i)|
    out[i] =
        up(std::fabs(gamma[i]) * st.err[i] + u64 * (p + 0x1p-1074) / (1 - u64) + u64 * std::fabs(y[i]) / (1 - u64), 8) +
        0x1p-1074;
  }
  return out;
}

std::vector<double> layer_norm_values(const layer_norm_state& st, std::span<const double> gamma,
                                      std::span<const double> beta) {
  std::vector<double> y(st.xh.size());
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = gamma[i] * st.xh[i] + beta[i];
  return y;
}

}  // namespace

// ---------------------------------------------------------------------------

std::vector<double> softmax_binary64(std::span<const double> z) { return softmax_eval(z).s; }

std::vector<double> softmax_kappa_rel(std::span<const double> z) {
  const auto s = softmax_binary64(z);
  const std::size_t n = z.size();
  std::vector<double> k(n);
  for (std::size_t i = 0; i < n; ++i) {
    // |z_i| (1 - s_i) + sum_{j != i} s_j |z_j|, with 1 - s_i as sum_{j != i} s_j (no cancellation)
    double rest = 0;
    double others = 0;
    for (std::size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      rest += s[j];
      others += s[j] * std::fabs(z[j]);
    }
    k[i] = std::fabs(z[i]) * rest + others;
  }
  return k;
}

std::vector<double> softmax_kappa_abs(std::span<const double> z) {
  const auto s = softmax_binary64(z);
  const std::size_t n = z.size();
  std::vector<double> k(n);
  for (std::size_t i = 0; i < n; ++i) {
    double rest = 0;
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) rest += s[j];
    k[i] = 2 * rest;
  }
  return k;
}

std::vector<double> softmax_logit_sensitivity(std::span<const double> z) {
  const auto s = softmax_binary64(z);
  const std::size_t n = z.size();
  std::vector<double> c(n);
  for (std::size_t j = 0; j < n; ++j) {
    double rest = 0;  // 1 - s_j without cancellation
    for (std::size_t i = 0; i < n; ++i)
      if (i != j) rest += s[i];
    c[j] = 2 * s[j] * rest;
  }
  return c;
}

std::vector<double> softmax_perturbation_bound(std::span<const double> z, std::span<const double> eta) {
  check_sizes(z.size(), eta.size(), "softmax_perturbation_bound");
  return softmax_perturbation(softmax_eval(z), eta);
}

std::vector<double> softmax_binary64_error(std::span<const double> z) { return softmax_eval(z).rho; }

std::vector<double> softmax_output_bound(std::span<const double> z_hat, std::span<const double> eta,
                                         const sim::format& f, sim::rounding mode) {
  check_sizes(z_hat.size(), eta.size(), "softmax_output_bound");
  const auto st = softmax_eval(z_hat);
  const auto r = softmax_perturbation(st, eta);
  const double uf = unit_roundoff(f, mode);
  const double ef = eta_of(f, mode);
  constexpr double A = softmax_binary64_abs_error;
  std::vector<double> b(st.s.size());
  for (std::size_t i = 0; i < b.size(); ++i) {
    // the exact softmax at z_hat, s*_i <= (s_hat_i + A) / (1 - rho_i)
    const double s_star = up((st.s[i] + A) / (1 - st.rho[i]), 4);
    b[i] = up(uf * st.s[i] + ef + st.rho[i] * s_star + A + r[i] * s_star, 8);
  }
  return b;
}

std::vector<double> layer_norm_binary64(std::span<const double> x, std::span<const double> gamma,
                                        std::span<const double> beta, double eps) {
  check_sizes(x.size(), gamma.size(), "layer_norm_binary64 (x, gamma)");
  check_sizes(x.size(), beta.size(), "layer_norm_binary64 (x, beta)");
  return layer_norm_values(layer_norm_eval(x, eps), gamma, beta);
}

std::vector<double> layer_norm_kappa_rel(std::span<const double> x, std::span<const double> gamma,
                                         std::span<const double> beta, double eps) {
  check_sizes(x.size(), gamma.size(), "layer_norm_kappa_rel (x, gamma)");
  check_sizes(x.size(), beta.size(), "layer_norm_kappa_rel (x, beta)");
  const auto st = layer_norm_eval(x, eps);
  const auto y = layer_norm_values(st, gamma, beta);
  const std::size_t n = x.size();
  const double nd = static_cast<double>(n);
  std::vector<double> k(n);
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const double J = (i == j ? 1.0 : 0.0) - 1 / nd - st.xh[i] * st.xh[j] / nd;
      sum += std::fabs(J) * std::fabs(x[j]);
    }
    const double num = std::fabs(gamma[i]) * sum / st.sd;
    k[i] = y[i] == 0 ? (num == 0 ? 0.0 : inf) : num / std::fabs(y[i]);
  }
  return k;
}

std::vector<double> layer_norm_sensitivity_abs(std::span<const double> x, std::span<const double> gamma, double eps) {
  check_sizes(x.size(), gamma.size(), "layer_norm_sensitivity_abs");
  const auto st = layer_norm_eval(x, eps);
  const std::size_t n = x.size();
  const double nd = static_cast<double>(n);
  std::vector<double> a(n);
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (std::size_t j = 0; j < n; ++j) sum += std::fabs((i == j ? 1.0 : 0.0) - 1 / nd - st.xh[i] * st.xh[j] / nd);
    a[i] = std::fabs(gamma[i]) * sum / st.sd;
  }
  return a;
}

std::vector<double> layer_norm_input_sensitivity(std::span<const double> x, std::span<const double> gamma, double eps) {
  check_sizes(x.size(), gamma.size(), "layer_norm_input_sensitivity");
  const auto st = layer_norm_eval(x, eps);
  const std::size_t n = x.size();
  const double nd = static_cast<double>(n);
  std::vector<double> c(n);
  for (std::size_t j = 0; j < n; ++j) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i)
      sum += std::fabs(gamma[i]) * std::fabs((i == j ? 1.0 : 0.0) - 1 / nd - st.xh[i] * st.xh[j] / nd);
    c[j] = sum / st.sd;
  }
  return c;
}

std::vector<double> layer_norm_perturbation_bound(std::span<const double> x, std::span<const double> gamma, double eps,
                                                  std::span<const double> eta) {
  check_sizes(x.size(), gamma.size(), "layer_norm_perturbation_bound (x, gamma)");
  check_sizes(x.size(), eta.size(), "layer_norm_perturbation_bound (x, eta)");
  return layer_norm_perturbation(layer_norm_eval(x, eps), gamma, eta);
}

std::vector<double> layer_norm_binary64_error(std::span<const double> x, std::span<const double> gamma,
                                              std::span<const double> beta, double eps) {
  check_sizes(x.size(), gamma.size(), "layer_norm_binary64_error (x, gamma)");
  check_sizes(x.size(), beta.size(), "layer_norm_binary64_error (x, beta)");
  const auto st = layer_norm_eval(x, eps);
  return layer_norm_rounding(st, gamma, layer_norm_values(st, gamma, beta));
}

std::vector<double> layer_norm_output_bound(std::span<const double> x_hat, std::span<const double> eta,
                                            std::span<const double> gamma, std::span<const double> beta, double eps,
                                            const sim::format& f, sim::rounding mode) {
  check_sizes(x_hat.size(), gamma.size(), "layer_norm_output_bound (x, gamma)");
  check_sizes(x_hat.size(), beta.size(), "layer_norm_output_bound (x, beta)");
  check_sizes(x_hat.size(), eta.size(), "layer_norm_output_bound (x, eta)");
  const auto st = layer_norm_eval(x_hat, eps);
  const auto y = layer_norm_values(st, gamma, beta);
  const auto rnd = layer_norm_rounding(st, gamma, y);
  const auto pert = layer_norm_perturbation(st, gamma, eta);
  const double uf = unit_roundoff(f, mode);
  const double ef = eta_of(f, mode);
  std::vector<double> b(y.size());
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = up(rnd[i] + pert[i] + uf * std::fabs(y[i]) + ef, 4);
  return b;
}

}  // namespace mpacc::analysis
