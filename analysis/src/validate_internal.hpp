// SPDX-License-Identifier: MIT
// The pieces of validate() shared by the MLP (validate.cpp) and the
// convolutional network (validate_cnn.cpp) validations: statistics helpers,
// the exact per-inner-product check, the per-thread statistics, the bound
// models of a layer, one inner product's component and the summaries. Not installed.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <memory>
#include <stdexcept>
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

// Exact counts of values >= 0 in buckets of relative width 2^-kBits: the
// bucket of x > 0 is the top 11 + kBits bits of its binary64 representation
// (monotone in x), zeros are counted apart, NaN above +inf. Memory: one block
// of 2^kBits counts per binade that received a value (8 KiB each). The counts
// do not depend on the order of the values, so merging histograms of pieces of
// a data set gives the counts of the whole. quantile(q) is the value of rank
// floor(q (n - 1)) (0-based, as quantile() below) to within its bucket: the
// bucket's midpoint clamped to [smallest positive, largest] value seen, so
// |reported - exact| <= 2^-(kBits+1) exact for a normal exact value; 0, +inf,
// NaN, the largest and the smallest positive value are exact. A negative
// value (not expected: every distribution here is of ratios >= 0) is counted
// as a zero.
class log_histogram {
 public:
  static constexpr int kBits = 10;
  static constexpr std::size_t kSlots = std::size_t{1} << kBits;
  void add(double x) {
    ++n_;
    if (std::isnan(x)) {
      ++nan_;
      return;
    }
    if (!(x > 0)) {
      ++zeros_;
      return;
    }
    const auto key = std::bit_cast<std::uint64_t>(x) >> (52 - kBits);
    auto& b = blocks_[key >> kBits];
    if (b.empty()) b.assign(kSlots, 0);
    ++b[key & (kSlots - 1)];
    min_pos_ = std::min(min_pos_, x);
    max_ = std::max(max_, x);
  }
  void merge(const log_histogram& o) {
    n_ += o.n_;
    zeros_ += o.zeros_;
    nan_ += o.nan_;
    min_pos_ = std::min(min_pos_, o.min_pos_);
    max_ = std::max(max_, o.max_);
    for (std::size_t e = 0; e < blocks_.size(); ++e) {
      if (o.blocks_[e].empty()) continue;
      auto& b = blocks_[e];
      if (b.empty()) b.assign(kSlots, 0);
      for (std::size_t i = 0; i < kSlots; ++i) b[i] += o.blocks_[e][i];
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  // the largest value (NaN when one was NaN; 0 when empty)
  [[nodiscard]] double max() const noexcept {
    return nan_ ? std::numeric_limits<double>::quiet_NaN() : (n_ > zeros_ ? max_ : 0.0);
  }
  [[nodiscard]] double quantile(double q) const {
    if (n_ == 0) return 0;
    auto k = static_cast<std::size_t>(q * static_cast<double>(n_ - 1));
    if (k < zeros_) return 0;
    k -= zeros_;
    for (std::size_t e = 0; e < blocks_.size(); ++e) {
      if (blocks_[e].empty()) continue;
      for (std::size_t i = 0; i < kSlots; ++i) {
        const std::uint64_t c = blocks_[e][i];
        if (k >= c) {
          k -= c;
          continue;
        }
        const std::uint64_t key = (e << kBits) | i;
        const double lo = std::bit_cast<double>(key << (52 - kBits));
        if (std::isinf(lo)) return lo;
        const double hi = std::bit_cast<double>((key + 1) << (52 - kBits));
        return std::clamp(lo + (hi - lo) / 2, min_pos_, max_);
      }
    }
    return std::numeric_limits<double>::quiet_NaN();  // rank among the NaNs
  }

 private:
  std::vector<std::vector<std::uint64_t>> blocks_ = std::vector<std::vector<std::uint64_t>>(2048);  // per binade
  std::size_t n_ = 0, zeros_ = 0, nan_ = 0;
  double min_pos_ = std::numeric_limits<double>::infinity(), max_ = 0;
};

// The values of one tightness distribution: all of them (exact quantiles), or
// in sketch mode (validate on a vit, bounded memory) a log_histogram.
class distribution {
 public:
  explicit distribution(bool sketch = false) : sketch_(sketch) {
    if (sketch_) h_.emplace();
  }
  void add(double x) {
    if (sketch_)
      h_->add(x);
    else
      v_.push_back(x);
  }
  // adds o's values and empties o
  void merge(distribution& o) {
    if (sketch_ != o.sketch_) throw std::logic_error("distribution: merging an exact one with a sketch");
    if (sketch_) {
      h_->merge(*o.h_);
      o.h_.emplace();
    } else {
      v_.insert(v_.end(), o.v_.begin(), o.v_.end());
      std::vector<double>().swap(o.v_);
    }
  }
  [[nodiscard]] std::size_t size() const noexcept { return sketch_ ? h_->size() : v_.size(); }
  double quantile(double q) { return sketch_ ? h_->quantile(q) : validate_detail::quantile(v_, q); }
  double max() {
    if (sketch_) return h_->max();
    return v_.empty() ? 0.0 : *std::max_element(v_.begin(), v_.end());
  }
  quantiles summary() {
    quantiles r;
    r.n = size();
    if (r.n == 0) return r;
    r.q50 = quantile(0.5);
    r.q90 = quantile(0.9);
    r.q99 = quantile(0.99);
    r.max = max();
    return r;
  }

 private:
  bool sketch_ = false;
  std::vector<double> v_;
  std::optional<log_histogram> h_;
};

// The pairs (relative error, kappa) of the rank correlation: all of them, or
// in sketch mode the kSample pairs whose ids (unique per component) have the
// smallest hashes (a bijective mix of the id): a pseudo-random sample that
// does not depend on the order in which the pairs arrive.
class pair_sample {
 public:
  static constexpr std::size_t kSample = 50000;
  explicit pair_sample(bool sketch = false) : sketch_(sketch) {}
  void add(std::uint64_t id, double a, double b) {
    if (!sketch_) {
      a_.push_back(a);
      b_.push_back(b);
      return;
    }
    push({mix(id), a, b});
  }
  void merge(pair_sample& o) {
    if (sketch_ != o.sketch_) throw std::logic_error("pair_sample: merging an exact one with a sketch");
    a_.insert(a_.end(), o.a_.begin(), o.a_.end());
    b_.insert(b_.end(), o.b_.begin(), o.b_.end());
    for (const auto& e : o.heap_) push(e);
    std::vector<double>().swap(o.a_);
    std::vector<double>().swap(o.b_);
    std::vector<entry>().swap(o.heap_);
  }
  [[nodiscard]] std::size_t size() const noexcept { return sketch_ ? heap_.size() : a_.size(); }
  [[nodiscard]] double correlation() const {
    if (!sketch_) return spearman(a_, b_);
    auto h = heap_;
    std::sort(h.begin(), h.end(), [](const entry& x, const entry& y) { return x.key < y.key; });
    std::vector<double> a, b;
    for (const auto& e : h) {
      a.push_back(e.a);
      b.push_back(e.b);
    }
    return spearman(a, b);
  }

 private:
  struct entry {
    std::uint64_t key;
    double a, b;
  };
  bool sketch_ = false;
  std::vector<double> a_, b_;
  std::vector<entry> heap_;                    // max-heap on key, at most kSample entries
  static std::uint64_t mix(std::uint64_t z) {  // splitmix64's finalizer: a bijection
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  void push(const entry& e) {
    auto less = [](const entry& x, const entry& y) { return x.key < y.key; };
    if (heap_.size() < kSample) {
      heap_.push_back(e);
      std::push_heap(heap_.begin(), heap_.end(), less);
    } else if (e.key < heap_.front().key) {
      std::pop_heap(heap_.begin(), heap_.end(), less);
      heap_.back() = e;
      std::push_heap(heap_.begin(), heap_.end(), less);
    }
  }
};

// per-thread accumulation of the summaries
struct layer_stats {
  std::size_t components = 0, uncovered = 0, viol_v = 0, viol_y = 0, pviol_v = 0, pviol_y = 0;
  std::array<std::size_t, uncovered_causes> causes{};
  std::size_t local_checked = 0, local_viol = 0, local_vacuous = 0, zero_v = 0, zero_y = 0, act_dom = 0;
  std::vector<std::size_t> lp_viol, lp_vacuous, lp_viol_nv;  // per lambda
  double pratio_max = 0, store_max = 0, store_rel_max = 0;
  bool sketch = false;   // bounded memory: histograms and a sampled rank correlation
  std::uint64_t id = 0;  // sketch mode: the unique id of the next recorded component
  distribution ratio_v, ratio_y, relb_v, relb_y, est_v, est_y, kdot;
  pair_sample rank_pairs;  // (relative error of y, kappa_dot kappa_act)
  explicit layer_stats(std::size_t lambdas = 0, bool sketch_mode = false)
      : lp_viol(lambdas),
        lp_vacuous(lambdas),
        lp_viol_nv(lambdas),
        sketch(sketch_mode),
        ratio_v(sketch_mode),
        ratio_y(sketch_mode),
        relb_v(sketch_mode),
        relb_y(sketch_mode),
        est_v(sketch_mode),
        est_y(sketch_mode),
        kdot(sketch_mode),
        rank_pairs(sketch_mode) {}
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
                            {&kdot, &o.kdot}})
      to->merge(*from);
    rank_pairs.merge(o.rank_pairs);
  }
  // zero counts, empty distributions (the same mode)
  void clear() {
    const std::size_t nl = lp_viol.size();
    *this = layer_stats(nl, sketch);
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
