// SPDX-License-Identifier: MIT
// The pieces of validate() shared by the MLP (validate.cpp) and the
// convolutional network (validate_cnn.cpp) validations: statistics helpers,
// the exact per-inner-product check, the per-thread statistics, the bound
// models of a layer, one inner product's component and the summaries. Not installed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <vector>

#include <boost/math/special_functions/beta.hpp>

#include "mpacc/analysis/validate.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/ref/accumulate.hpp"

namespace mpacc::analysis::validate_detail {

constexpr double kU64 = 0x1p-53;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr unsigned kOutOfRange = sim::flag::overflow | sim::flag::saturated | sim::flag::invalid;

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// |a - (hi + lo)|, the error of a binary64 value against a double-double
inline double dd_error(double a, double hi, double lo) {
  if (!std::isfinite(a)) return kInf;
  return std::fabs((a - hi) - lo);
}

// Average ranks (ties share their mean rank).
inline std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double mean = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = mean;
    i = j + 1;
  }
  return r;
}

inline double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 3) return 0;
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  const double mean = (n + 1) / 2;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

inline double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

inline quantiles quantiles_of(std::vector<double>& v) {
  quantiles q;
  q.n = v.size();
  if (v.empty()) return q;
  q.q50 = quantile(v, 0.5);
  q.q90 = quantile(v, 0.9);
  q.q99 = quantile(v, 0.99);
  q.max = *std::max_element(v.begin(), v.end());
  return q;
}

// Clopper-Pearson interval of a binomial proportion (95 %).
inline void binomial_interval(std::size_t k, std::size_t n, double& lo, double& hi) {
  lo = 0;
  hi = 1;
  if (n == 0) return;
  const double a = 0.05;
  const double kd = static_cast<double>(k), nd = static_cast<double>(n);
  if (k > 0) lo = boost::math::ibeta_inv(kd, nd - kd + 1, a / 2);
  if (k < n) hi = boost::math::ibeta_inv(kd + 1, nd - kd, 1 - a / 2);
}

// Dot2 (Ogita, Rump, Oishi 2005) of w and x plus b: the sum as hi + lo, with
// |hi + lo - exact| <= 2 gamma_{n+1}^2 sum |w_j x_j| + |b| (+ underflow terms,
// covered by the caller's tolerance).
struct dot2 {
  double hi = 0, lo = 0;
};
inline dot2 dot2_of(const double* w, const double* x, std::size_t n, double b) {
  double p = b, s = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const double h = w[j] * x[j];
    const double r = std::fma(w[j], x[j], -h);
    const double q = p + h;
    const double z = q - p;
    s += ((p - (q - z)) + (h - z)) + r;
    p = q;
  }
  return {p, s};
}

// Whether |v_sim - exact| > bound, decided exactly: from Dot2 where its error
// leaves no doubt, from the exact inner product (MPFR) otherwise.
class local_error {
 public:
  local_error(const double* w, const double* x, std::size_t n, double b, double v_sim, double abs_sum)
      : w_(w), x_(x), n_(n), b_(b), v_(v_sim) {
    const auto d = dot2_of(w, x, n, b);
    approx_ = std::fabs((v_sim - d.hi) - d.lo);
    const double g = static_cast<double>(n + 2) * kU64 / (1 - static_cast<double>(n + 2) * kU64);
    tol_ = 4 * g * g * abs_sum + 0x1p-50 * approx_ + static_cast<double>(4 * n + 8) * 0x1p-1074;
  }
  [[nodiscard]] double approx() const noexcept { return approx_; }
  bool exceeds(double bound) {
    if (approx_ - tol_ > bound) return true;
    if (approx_ + tol_ <= bound) return false;
    if (!exact_) {
      const auto e = ref::dot_exact({w_, n_}, {x_, n_}, b_);
      ref::mpfr_float d(mpfr_get_prec(e.value.get()) + 64);
      mpfr_sub_d(d.get(), e.value.get(), v_, MPFR_RNDN);  // exact: enough bits
      mpfr_abs(d.get(), d.get(), MPFR_RNDN);
      exact_.emplace(std::move(d));
    }
    return mpfr_cmp_d(exact_->get(), bound) > 0;
  }

 private:
  const double *w_, *x_;
  std::size_t n_;
  double b_, v_, approx_ = 0, tol_ = 0;
  std::optional<ref::mpfr_float> exact_;
};

// per-thread accumulation of the summaries
struct layer_stats {
  std::size_t components = 0, uncovered = 0, viol_v = 0, viol_y = 0, pviol_v = 0, pviol_y = 0;
  std::array<std::size_t, uncovered_causes> causes{};
  std::size_t local_checked = 0, local_viol = 0, local_vacuous = 0, zero_v = 0, zero_y = 0, act_dom = 0;
  std::vector<std::size_t> lp_viol, lp_vacuous, lp_viol_nv;  // per lambda
  double pratio_max = 0, store_max = 0, store_rel_max = 0;
  std::vector<double> ratio_v, ratio_y, relb_v, relb_y, est_v, est_y, rel_err, kappa, kdot;
  explicit layer_stats(std::size_t lambdas = 0) : lp_viol(lambdas), lp_vacuous(lambdas), lp_viol_nv(lambdas) {}
  void merge(layer_stats& o) {
    components += o.components;
    uncovered += o.uncovered;
    viol_v += o.viol_v;
    viol_y += o.viol_y;
    pviol_v += o.pviol_v;
    pviol_y += o.pviol_y;
    for (std::size_t c = 0; c < causes.size(); ++c) causes[c] += o.causes[c];
    local_checked += o.local_checked;
    local_viol += o.local_viol;
    local_vacuous += o.local_vacuous;
    zero_v += o.zero_v;
    zero_y += o.zero_y;
    act_dom += o.act_dom;
    lp_viol.resize(o.lp_viol.size());
    lp_vacuous.resize(o.lp_viol.size());
    lp_viol_nv.resize(o.lp_viol.size());
    for (std::size_t t = 0; t < o.lp_viol.size(); ++t) {
      lp_viol[t] += o.lp_viol[t];
      lp_vacuous[t] += o.lp_vacuous[t];
      lp_viol_nv[t] += o.lp_viol_nv[t];
    }
    pratio_max = std::max(pratio_max, o.pratio_max);
    store_max = std::max(store_max, o.store_max);
    store_rel_max = std::max(store_rel_max, o.store_rel_max);
    for (auto [to, from] : {std::pair{&ratio_v, &o.ratio_v},
                            {&ratio_y, &o.ratio_y},
                            {&relb_v, &o.relb_v},
                            {&relb_y, &o.relb_y},
                            {&est_v, &o.est_v},
                            {&est_y, &o.est_y},
                            {&rel_err, &o.rel_err},
                            {&kappa, &o.kappa},
                            {&kdot, &o.kdot}}) {
      to->insert(to->end(), from->begin(), from->end());
      std::vector<double>().swap(*from);
    }
  }
};

inline double ratio(double err, double bound) { return bound > 0 ? err / bound : (err > 0 ? kInf : 0.0); }

// compute_reference for a network whose reference pass is forward(X, options):
// the data as the reference takes them (stored in p.inputs, or exact), the
// storage formats recorded, the time measured.
template <class Forward>
reference_data compute_reference_with(const io::dataset& data, const validate_options& opt,
                                      const nn::precision_config& p, Forward&& forward) {
  const sim::format& input_format = p.inputs;
  const auto t0 = std::chrono::steady_clock::now();
  reference_data r;
  r.rows = opt.samples > 0 ? std::min(opt.samples, data.rows) : data.rows;
  r.cols = data.cols;
  r.kind = opt.ref_inputs;
  r.input_format = input_format;
  r.weights = p.weights;
  r.biases = p.biases;
  r.inputs.assign(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(r.rows * r.cols));
  std::vector<double> stored;
  const std::vector<double>* x = &r.inputs;
  if (r.kind == reference_inputs::stored) {
    stored = stored_reference_inputs(data, r.rows, input_format);
    x = &stored;
  }
  nn::reference_options ro;
  ro.precision = opt.precision;
  ro.threads = opt.threads;
  r.ref = forward(sim::matrix_view{x->data(), r.rows, r.cols}, ro);
  r.seconds = seconds_since(t0);
  return r;
}

// Throws std::invalid_argument unless refd was computed with p's weight, bias
// and input storage, on `inputs` inputs per sample.
void check_reference(const reference_data& refd, const nn::precision_config& p, std::size_t inputs);

// The reference inputs stored as p says, each one's rounding flags in
// in_flags; their count, inexact and out-of-range roundings go into res.
std::vector<double> stored_inputs(const reference_data& refd, const nn::precision_config& p, validation_result& res,
                                  std::vector<unsigned>& in_flags);

// The bound models of one layer whose inner products have n terms, per
// accumulator format of its map, and what the summaries report of it.
struct layer_models {
  std::vector<bound_model> det, prob;           // per format
  std::vector<std::vector<bound_model>> lprob;  // [format][lambda]
  std::vector<double> gamma_k, u_acc;           // per format
  double fail_prop = 0;                         // per-product failure at opt.lambda, worst format
  std::vector<double> fail_local;               // per lambda
  double u0 = 0, gamma0 = 0;                    // first format
  int kmax0 = 0;
  std::uint64_t steps0 = 0;
};
layer_models make_layer_models(std::size_t n, const sim::layer_spec& spec, const validate_options& opt);

// The activations' rounding and the inputs' storage, for the bounds.
struct act_model {
  double u_act = 0, eta_act = 0;
};
act_model make_act_model(const nn::precision_config& p);

// One component computed by an inner product (a dense layer's neuron, a
// convolution's output pixel) of sample s: its n terms' weights w, its
// simulated inputs x_sim with their propagated bounds eps and eps_p (against
// the exact values), the reference's inputs x_ref (the reference's previous
// outputs; in layer 1 the data as the reference takes it), and in layer 1 the
// exact data x_exact (for the storage term; null otherwise).
struct inner_operands {
  const double* w = nullptr;
  std::size_t n = 0;
  double b = 0;
  const double *x_sim = nullptr, *eps = nullptr, *eps_p = nullptr, *x_ref = nullptr, *x_exact = nullptr;
  bool in_finite = true;
  std::size_t format = 0;  // index of its accumulator in the layer's map
};
// Computes the component at index `at` of the layer (R: the reference's
// values, sim: the simulated layer), its bounds, cause and statistics (added
// to st), exactly as for a neuron of an MLP; NL: the number of local-bound lambdas.
component_result inner_component(const inner_operands& o, const layer_models& M, const act_model& A,
                                 const sim::activation_fn& act, const nn::layer_values& R,
                                 const nn::simulated_layer& sim_layer, std::size_t at, unsigned upstream,
                                 bool first_layer, std::size_t NL, layer_stats& st);

// Adds a component to the statistics: its violations or why it is uncovered,
// tightness, the first-order estimate (u: the accumulator's unit roundoff,
// u_act the activation's, kn = |w|^T|x| + |b| on the reference's inputs), the
// storage term of the data (layer 1 only, else null).
void record_component(const component_result& c, uncovered_cause cause, bool unexplained, double u, double u_act,
                      double kn, const double* st_term, layer_stats& st);

// The per-layer summaries and the total from the per-thread statistics
// stats[thread][layer]; per layer its bound models' failure probabilities and
// its components per sample (the union bound of the propagated probabilistic bound).
void summarize(std::vector<std::vector<layer_stats>>& stats, const std::vector<double>& fail_prop,
               const std::vector<std::vector<double>>& fail_local, const std::vector<std::size_t>& outputs,
               const validate_options& opt, validation_result& res);

}  // namespace mpacc::analysis::validate_detail
