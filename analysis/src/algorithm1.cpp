// SPDX-License-Identifier: MIT
#include "mpacc/analysis/algorithm1.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <boost/math/distributions/binomial.hpp>

#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"
#include "algorithm1_internal.hpp"

namespace mpacc::analysis {

double mixed_config::cost_of(const sim::format& f) const {
  const auto it = term_cost.find(sim::to_string(f));
  return it != term_cost.end() ? it->second : static_cast<double>(f.bit_width());
}

// ---------------------------------------------------------------------------
// indicators

namespace {

// The activation factor of the built-in indicators at v: kappa_act(v), except
// where it is not defined (ReLU at v = 0), where it is 1 so that the component
// scores +inf and is recomputed (as the companion code's factor 1{v >= 0} does).
double act_factor(const layer_view& lv, double v) {
  if (v == 0 && lv.weights->act.kind == sim::activation::relu) return 1;
  return sim::kappa_act(lv.weights->act, v);
}

double kappa_score(const layer_view& lv, double numerator, double v) {
  const double ka = act_factor(lv, v);
  if (ka == 0) return 0;  // e.g. an inactive ReLU: the output is exactly 0 nearby
  if (v == 0) return std::numeric_limits<double>::infinity();
  return numerator / std::fabs(v) * ka * unit_roundoff(lv.config->low(lv.layer), lv.config->precision.rounding);
}

double kprime_score(const layer_view& lv, double v) {
  const double ka = act_factor(lv, v);
  if (ka == 0) return 0;
  return v == 0 ? std::numeric_limits<double>::infinity() : ka / std::fabs(v);
}

std::map<std::string, indicator>& registry() {
  static std::map<std::string, indicator> r = [] {
    std::map<std::string, indicator> m;
    m["kappa"] = {"kappa",
                  [](const layer_view& lv, std::vector<double>& score) {
                    const auto& num = lv.abs_numerator();  // |w_i|^T|x| + |b_i| accumulated in low precision
                    for (std::size_t t = 0; t < lv.batch * lv.n_out; ++t)
                      score[t] = kappa_score(lv, num[t], lv.v_low[t]);
                  },
                  [](const layer_view& lv) { return static_cast<double>(lv.n_out * lv.n_in); }};
    m["kappa-norm"] = {"kappa-norm",
                       [](const layer_view& lv, std::vector<double>& score) {
                         for (std::size_t s = 0; s < lv.batch; ++s) {
                           double xn = 0;
                           for (std::size_t j = 0; j < lv.n_in; ++j)
                             xn += lv.x[s * lv.n_in + j] * lv.x[s * lv.n_in + j];
                           xn = std::sqrt(xn);
                           for (std::size_t i = 0; i < lv.n_out; ++i) {
                             const double num = (*lv.row_norms)[i] * xn + std::fabs(lv.weights->b[i]);
                             score[s * lv.n_out + i] = kappa_score(lv, num, lv.v_low[s * lv.n_out + i]);
                           }
                         }
                       },
                       [](const layer_view& lv) { return static_cast<double>(lv.n_in + lv.n_out); }};
    m["kprime"] = {"kprime",
                   [](const layer_view& lv, std::vector<double>& score) {
                     for (std::size_t t = 0; t < lv.batch * lv.n_out; ++t) score[t] = kprime_score(lv, lv.v_low[t]);
                   },
                   [](const layer_view& lv) { return static_cast<double>(lv.n_out); }};
    m["kprime-companion"] = {"kprime-companion",
                             [](const layer_view& lv, std::vector<double>& score) {
                               for (std::size_t t = 0; t < lv.batch * lv.n_out; ++t) {
                                 const double v = lv.v_low[t];
                                 // the companion's factor 1{v >= 0} on the logits as well
                                 score[t] = lv.last() && v < 0 ? 0.0 : kprime_score(lv, v);
                               }
                             },
                             [](const layer_view& lv) { return static_cast<double>(lv.n_out); }};
    return m;
  }();
  return r;
}

}  // namespace

void register_indicator(const indicator& ind) {
  if (ind.name.empty() || !ind.compute || !ind.overhead)
    throw std::invalid_argument("register_indicator: an indicator needs a name, compute and overhead");
  registry()[ind.name] = ind;
}

const indicator& find_indicator(const std::string& name) {
  const auto& r = registry();
  const auto it = r.find(name);
  if (it == r.end()) {
    std::string known;
    for (const auto& [k, v] : r) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument("unknown indicator '" + name + "' (indicators: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> indicator_names() {
  std::vector<std::string> v;
  for (const auto& [k, ind] : registry()) v.push_back(k);
  return v;
}

// ---------------------------------------------------------------------------
// names, statistics

std::string_view to_string(selection::kind k) noexcept {
  switch (k) {
    case selection::kind::uniform_low:
      return "uniform-low";
    case selection::kind::uniform_high:
      return "uniform-high";
    case selection::kind::threshold:
      return "algorithm1";
    case selection::kind::random:
      return "random";
    case selection::kind::random_active:
      return "random-active";
    case selection::kind::smallest:
      return "smallest";
    case selection::kind::oracle_pre:
      return "oracle-pre";
    case selection::kind::oracle_local:
      return "oracle-local";
    case selection::kind::oracle_gain:
      return "oracle-gain";
    case selection::kind::static_map:
      return "static";
  }
  return "?";
}

selection::kind parse_baseline(std::string_view text) {
  for (auto k : {selection::kind::random, selection::kind::random_active, selection::kind::smallest,
                 selection::kind::oracle_pre, selection::kind::oracle_local, selection::kind::oracle_gain})
    if (text == to_string(k)) return k;
  throw std::invalid_argument("unknown baseline '" + std::string(text) +
                              "' (baselines: random, random-active, smallest, oracle-pre, oracle-local, oracle-gain)");
}

double nearest_rank(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  const std::size_t k = std::min(v.size() - 1, rank == 0 ? 0 : rank - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end(), [](double a, double b) {
    return (std::isnan(b) && !std::isnan(a)) || a < b;  // NaN last, as +inf
  });
  return std::isnan(v[k]) ? std::numeric_limits<double>::infinity() : v[k];
}

namespace {

// A key whose unsigned order is the order of the doubles (no NaN): the sign
// bit flipped for positive values, every bit for negative ones.
std::uint64_t order_key(double x) noexcept {
  const auto b = std::bit_cast<std::uint64_t>(x);
  return (b >> 63) != 0 ? ~b : b | 0x8000000000000000ULL;
}

}  // namespace

quantiles quantiles_of(std::vector<double>& v) {
  quantiles q;
  q.n = v.size();
  if (v.empty()) return q;
  for (auto& x : v)
    if (std::isnan(x)) x = std::numeric_limits<double>::infinity();
  const std::size_t n = v.size();
  auto rank_of = [n](double p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(n)));
    return std::min(n - 1, rank == 0 ? 0 : rank - 1);
  };
  const std::size_t ks[3] = {rank_of(0.5), rank_of(0.9), rank_of(0.99)};  // nearest ranks, ascending
  double* const out[3] = {&q.q50, &q.q90, &q.q99};
  if (n < (std::size_t{1} << 16)) {
    // each rank selected within the part of v that the previous selection
    // left above it (a rank's value does not depend on the order of the
    // others): about 1.6 n instead of 3 n
    std::size_t from = 0;
    for (int t = 0; t < 3; ++t) {
      std::nth_element(v.begin() + static_cast<std::ptrdiff_t>(from), v.begin() + static_cast<std::ptrdiff_t>(ks[t]),
                       v.end());
      from = ks[t];
      *out[t] = v[ks[t]];
    }
    q.max = *std::max_element(v.begin() + static_cast<std::ptrdiff_t>(from), v.end());
    return q;
  }
  // Many values (a sweep's hidden outputs: millions per run): a histogram of
  // the keys' top 16 bits (sign, exponent, 4 fraction bits) finds the bucket
  // of each rank; only those buckets' values are then selected among
  std::vector<std::size_t> hist(std::size_t{1} << 16, 0);
  q.max = v[0];
  for (const double x : v) {
    ++hist[order_key(x) >> 48];
    q.max = std::max(q.max, x);
  }
  std::size_t bucket[3] = {}, within[3] = {};
  std::size_t cum = 0;
  int t = 0;
  for (std::size_t b = 0; b < hist.size() && t < 3; cum += hist[b], ++b)
    for (; t < 3 && ks[t] < cum + hist[b]; ++t) {
      bucket[t] = b;
      within[t] = ks[t] - cum;
    }
  std::vector<double> part[3];  // part[t]: bucket[t]'s values, unless an earlier rank's bucket is the same
  for (int r = 0; r < 3; ++r)
    if (r == 0 || bucket[r] != bucket[r - 1]) part[r].reserve(hist[bucket[r]]);
  for (const double x : v) {
    const std::size_t b = order_key(x) >> 48;
    for (int r = 0; r < 3; ++r)
      if (b == bucket[r] && (r == 0 || bucket[r] != bucket[r - 1])) part[r].push_back(x);
  }
  for (int r = 0; r < 3; ++r) {
    int owner = r;
    while (owner > 0 && bucket[owner - 1] == bucket[r]) --owner;
    auto& p = part[owner];
    std::nth_element(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(within[r]), p.end());
    *out[r] = p[within[r]];
  }
  return q;
}

interval wilson(std::size_t k, std::size_t n, double z) {
  if (n == 0) return {0, 1};
  const double N = static_cast<double>(n), p = static_cast<double>(k) / N, z2 = z * z;
  const double centre = (p + z2 / (2 * N)) / (1 + z2 / N);
  const double half = z / (1 + z2 / N) * std::sqrt(p * (1 - p) / N + z2 / (4 * N * N));
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

double mcnemar_p(std::size_t b, std::size_t c) {
  const std::size_t n = b + c;
  if (n == 0) return 1;
  const boost::math::binomial_distribution<double> d(static_cast<double>(n), 0.5);
  return std::min(1.0, 2 * boost::math::cdf(d, static_cast<double>(std::min(b, c))));
}

// ---------------------------------------------------------------------------
// the runner

namespace {

// kappa_act(v) > 0 or v = 0 (random-active's candidates), without evaluating
// tanh's kappa_act (positive up to |v| = 400, where it underflows)
bool can_matter(const sim::activation_fn& f, double v) {
  switch (f.kind) {
    case sim::activation::relu:
      return v >= 0;
    case sim::activation::identity:
    case sim::activation::leaky_relu:
      return true;
    case sim::activation::tanh:
      return !(std::fabs(v) > 400);
    default:
      return v == 0 || sim::kappa_act(f, v) > 0;
  }
}

}  // namespace

namespace {

// Up to four samples' inner products with one row w: per sample, four partial
// sums in binary64 (a_r takes the terms j = r mod 4, a_0 starts at b and takes
// the tail), then (a_0 + a_1) + (a_2 + a_3). One vector of 4 lanes holds a
// sample's four sums, so the operations are those of the scalar loop, in the
// same order: a product, then a sum (no contraction to an FMA, which would
// change the bits). Compiled for AVX2 and for the baseline (true_values picks).
// (Neither clone may use an FMA: the AVX2 target does not include it, and GCC
// is told not to contract; clang contracts only within one expression, and only
// where the target has an FMA.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double v4d __attribute__((vector_size(32)));

#define MPACC_DOT4_BODY                                        \
  v4d acc[4];                                                  \
  for (int k = 0; k < 4; ++k) acc[k] = v4d{b, 0, 0, 0};        \
  std::size_t j = 0;                                           \
  for (; j + 4 <= n; j += 4) {                                 \
    v4d wv;                                                    \
    std::memcpy(&wv, w + j, sizeof wv);                        \
    for (int k = 0; k < 4; ++k) {                              \
      v4d xv;                                                  \
      std::memcpy(&xv, xs[k] + j, sizeof xv);                  \
      acc[k] += wv * xv;                                       \
    }                                                          \
  }                                                            \
  for (int k = 0; k < 4; ++k) {                                \
    double a0 = acc[k][0];                                     \
    for (std::size_t t = j; t < n; ++t) a0 += w[t] * xs[k][t]; \
    out[k] = (a0 + acc[k][1]) + (acc[k][2] + acc[k][3]);       \
  }

void dot4_base(const double* w, const double* const* xs, std::size_t n, double b, double* out) { MPACC_DOT4_BODY }
#if defined(__x86_64__)
__attribute__((target("avx2"))) void dot4_avx2(const double* w, const double* const* xs, std::size_t n, double b,
                                               double* out) {
  MPACC_DOT4_BODY
}
#endif
#undef MPACC_DOT4_BODY
#pragma GCC diagnostic pop
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace

namespace detail {

// plain binary64 inner products (the oracles' notion of the true value: its
// error is far below any low-precision accumulator's), four samples per pass
// over W
void true_values(const nn::dense_layer& l, const std::vector<double>& x, std::size_t batch, std::vector<double>& v,
                 int threads) {
  v.assign(batch * l.n_out, 0);
  auto* dot4 = dot4_base;
#if defined(__x86_64__)
  // the AVX2 clone, unless the layers' kernel choice forces the portable or
  // scalar path (MPACC_KERNEL: the tests run both clones on one machine)
  const std::string choice = sim::dense_kernel_choice();
  if (__builtin_cpu_supports("avx2") && choice != "portable" && choice != "scalar") dot4 = dot4_avx2;
#endif
  const auto G = static_cast<std::ptrdiff_t>((batch + 3) / 4);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
  for (std::ptrdiff_t g = 0; g < G; ++g) {
    const std::size_t s0 = static_cast<std::size_t>(g) * 4, ns = std::min<std::size_t>(4, batch - s0);
    const double* xs[4];
    for (std::size_t k = 0; k < 4; ++k) xs[k] = x.data() + (s0 + std::min(k, ns - 1)) * l.n_in;  // (repeats: unused)
    double out[4];
    for (std::size_t i = 0; i < l.n_out; ++i) {
      dot4(l.row(i), xs, l.n_in, l.b[i], out);
      for (std::size_t k = 0; k < ns; ++k) v[(s0 + k) * l.n_out + i] = out[k];
    }
  }
}

// layer k's accumulation with accumulator f (the low or the high format)
sim::layer_spec spec_for(const mixed_config& cfg, std::size_t k, const sim::format& f) {
  sim::layer_spec s = cfg.precision.layer_spec(k);
  s.base.acc = f;
  s.acc = sim::precision_map::uniform(f);
  return s;
}

void threshold_levels(const std::vector<double>& score, const std::vector<double>& scale, double tau,
                      std::vector<std::uint8_t>& mask) {
  const auto top = static_cast<std::uint8_t>(scale.size());
  mask.resize(score.size());
  for (std::size_t t = 0; t < score.size(); ++t) {
    std::uint8_t lvl = top;
    for (std::size_t j = 0; j < scale.size(); ++j)
      if (score[t] * scale[j] <= tau) {
        lvl = static_cast<std::uint8_t>(j);
        break;
      }
    mask[t] = lvl;
  }
}

void select_by_keys(const selection& sel, std::size_t k, std::size_t s, std::size_t want, const std::uint8_t* can,
                    const double* key, std::size_t n, std::uint8_t* mask) {
  using kind = selection::kind;
  std::vector<std::size_t> idx;
  idx.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    if (!can || can[i]) idx.push_back(i);
  const std::size_t take = std::min(want, idx.size());
  if (sel.type == kind::random || sel.type == kind::random_active) {
    // the first `take` of a seeded Fisher-Yates shuffle, one stream per (layer, sample)
    sim::random_stream rng(sel.seed ^ (0x9e3779b97f4a7c15ULL * (k + 1)) ^ (s * 0xbf58476d1ce4e5b9ULL));
    for (std::size_t i = 0; i < take; ++i) {
      __extension__ typedef unsigned __int128 u128;
      const std::size_t j = i + static_cast<std::size_t>((static_cast<u128>(rng()) * (idx.size() - i)) >> 64);
      std::swap(idx[i], idx[j]);
    }
  } else if (take > 0 && take < idx.size()) {
    // the `take` largest keys, ties by index (NaN as +inf): a set, so a
    // selection (linear time) rather than a sort gives it
    std::vector<double> kv(n);
    for (std::size_t i = 0; i < n; ++i) kv[i] = std::isnan(key[i]) ? std::numeric_limits<double>::infinity() : key[i];
    std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(take - 1), idx.end(),
                     [&](std::size_t a, std::size_t b) { return kv[a] > kv[b] || (kv[a] == kv[b] && a < b); });
  }
  for (std::size_t i = 0; i < take; ++i) mask[idx[i]] = 1;
}

void select_matched(const selection& sel, std::size_t k, std::size_t s, std::size_t want, const sim::activation_fn& act,
                    const double* v, const double* vt, const double* vh, std::size_t n, std::uint8_t* mask) {
  using kind = selection::kind;
  std::vector<std::uint8_t> can;
  if (sel.type == kind::random_active) {
    can.resize(n);
    for (std::size_t i = 0; i < n; ++i) can[i] = can_matter(act, v[i]) ? 1 : 0;
  }
  std::vector<double> key;
  if (sel.type != kind::random && sel.type != kind::random_active) {
    // a key per component
    key.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      switch (sel.type) {
        case kind::smallest:
          key[i] = -std::fabs(v[i]);
          break;
        case kind::oracle_pre:
          key[i] = std::fabs(v[i] - vt[i]);
          break;
        case kind::oracle_local:
          key[i] = std::fabs(sim::apply(act, v[i]) - sim::apply(act, vt[i]));
          break;
        default: {
          const double y = sim::apply(act, vt[i]);
          key[i] = std::fabs(sim::apply(act, v[i]) - y) - std::fabs(sim::apply(act, vh[i]) - y);
        }
      }
    }
  }
  select_by_keys(sel, k, s, want, can.empty() ? nullptr : can.data(), key.empty() ? nullptr : key.data(), n, mask);
}

double tiles_at(const std::vector<std::uint8_t>& mask, std::size_t batch, std::size_t n_out, std::size_t tile_rows,
                std::size_t tile_samples, std::uint8_t lvl) {
  double tiles = 0;
  const std::size_t R = tile_rows, T = tile_samples;
  for (std::size_t s0 = 0; s0 < batch; s0 += T)
    for (std::size_t i0 = 0; i0 < n_out; i0 += R) {
      const std::size_t s1 = std::min(batch, s0 + T), i1 = std::min(n_out, i0 + R);
      bool hit = false;
      for (std::size_t s = s0; s < s1 && !hit; ++s)
        for (std::size_t i = i0; i < i1 && !hit; ++i) hit = mask[s * n_out + i] == lvl;
      if (hit) tiles += static_cast<double>((s1 - s0) * (i1 - i0));
    }
  return tiles;
}

void logit_metrics(mixed_result& res, std::vector<double>&& z_all, const std::vector<double>& zr_all,
                   const std::vector<std::uint8_t>& labels, std::size_t C) {
  const std::size_t B = res.samples;
  double err = 0, kl_sum = 0;
  std::vector<double> kl(B);
  res.is_correct.assign(B, 0);
  res.disagrees.assign(B, 0);
  for (std::size_t s = 0; s < B; ++s) {
    const double* z = z_all.data() + s * C;
    const double* zr = zr_all.data() + s * C;
    const std::size_t a = nn::argmax({z, C});
    res.is_correct[s] = a == labels[s];
    res.disagrees[s] = a != nn::argmax({zr, C});
    res.correct += res.is_correct[s];
    res.disagreements += res.disagrees[s];
    double num = 0, den = 0;
    for (std::size_t c = 0; c < C; ++c) {
      num = std::max(num, std::fabs(z[c] - zr[c]));
      den = std::max(den, std::fabs(zr[c]));
    }
    err += den > 0 ? num / den : num;
    kl[s] = kl_softmax(zr, z, C);
    kl_sum += kl[s];
  }
  res.accuracy = static_cast<double>(res.correct) / static_cast<double>(B);
  res.mean_relative_error = err / static_cast<double>(B);
  res.kl_mean = kl_sum / static_cast<double>(B);
  res.kl_q99 = quantiles_of(kl).q99;
  res.logits = std::move(z_all);
}

}  // namespace detail

using detail::spec_for;
using detail::true_values;

double kl_softmax(const double* zp, const double* zq, std::size_t C) {
  auto lse = [C](const double* z) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < C; ++c) m = std::max(m, z[c]);
    double s = 0;
    for (std::size_t c = 0; c < C; ++c) s += std::exp(z[c] - m);
    return m + std::log(s);
  };
  for (std::size_t c = 0; c < C; ++c)
    if (!std::isfinite(zq[c])) return std::numeric_limits<double>::infinity();
  const double lp = lse(zp), lq = lse(zq);
  double kl = 0;
  for (std::size_t c = 0; c < C; ++c) {
    const double a = zp[c] - lp, b = zq[c] - lq;
    kl += std::exp(a) * (a - b);
  }
  return std::max(0.0, kl);
}

mixed_runner::mixed_runner(const nn::mlp& net, const io::dataset& data, std::size_t samples, const mixed_config& cfg,
                           int threads, const std::vector<std::vector<double>>* reference)
    : cfg_(cfg), rows_(samples > 0 ? std::min(samples, data.rows) : data.rows), threads_(threads) {
  net.validate();
  cfg.precision.check(net.layers.size());
  if (!cfg.precision.maps.empty())
    throw std::invalid_argument("Algorithm 1's low pass takes no per-component accumulator maps");
  net_ = nn::stored_network(net, cfg.precision);
  if (net.inputs() != data.cols) throw std::invalid_argument("the network does not match the data's features");
  if (cfg.tile_rows == 0 || cfg.tile_samples == 0) throw std::invalid_argument("tile sizes must be >= 1");
  x0_.assign(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(rows_ * data.cols));
  sim::round_array(x0_, x0_, {cfg.precision.inputs, sim::rounding::nearest_even, false, 0});
  labels_.assign(data.y.begin(), data.y.begin() + static_cast<std::ptrdiff_t>(rows_));
  for (std::size_t k = 0; k < net_.layers.size(); ++k) {
    const auto& l = net_.layers[k];
    const sim::matrix_view W{l.W.data(), l.n_out, l.n_in};
    low_.emplace_back(W, l.b, spec_for(cfg, k, cfg.low(k)));
    high_.emplace_back(W, l.b, spec_for(cfg, k, cfg.high));
    mid_.resize(cfg.ladder.size());
    for (std::size_t j = 0; j < cfg.ladder.size(); ++j) mid_[j].emplace_back(W, l.b, spec_for(cfg, k, cfg.ladder[j]));
    std::vector<double> aw(l.W.size()), ab(l.b.size());
    for (std::size_t t = 0; t < aw.size(); ++t) aw[t] = std::fabs(l.W[t]);
    for (std::size_t t = 0; t < ab.size(); ++t) ab[t] = std::fabs(l.b[t]);
    abs_low_.emplace_back(sim::matrix_view{aw.data(), l.n_out, l.n_in}, ab, spec_for(cfg, k, cfg.low(k)));
    std::vector<double> norms(l.n_out);
    for (std::size_t i = 0; i < l.n_out; ++i) {
      double s = 0;
      for (std::size_t j = 0; j < l.n_in; ++j) s += l.row(i)[j] * l.row(i)[j];
      norms[i] = std::sqrt(s);
    }
    row_norms_.push_back(std::move(norms));
  }
  const sim::matrix_view X{x0_.data(), rows_, data.cols};
  // the layer-0 values (flags, high and true values are computed on first use)
  low_[0].run_values(X, v0_low_, threads);
  const sim::matrix_view exact{data.x.data(), rows_, data.cols};
  if (reference) {
    if (reference->size() != net_.layers.size()) throw std::invalid_argument("reference outputs: one vector per layer");
    for (std::size_t k = 0; k < net_.layers.size(); ++k)
      if ((*reference)[k].size() != rows_ * net_.layers[k].n_out)
        throw std::invalid_argument("reference outputs: layer " + std::to_string(k + 1) + " has the wrong size");
    ref_y_ = *reference;
    return;
  }
  auto ref = nn::fast_forward(net_, cfg.ref_inputs == reference_inputs::stored ? X : exact, threads);
  for (auto& lv : ref.layers) ref_y_.push_back(std::move(lv.y_hi));
}

void mixed_runner::activate(std::size_t k, std::vector<double>& v, int threads) const {
  const auto& p = cfg_.precision;
  nn::apply_activation(net_.layers[k], p.act, v, threads, nullptr, p.act_rounding, p.act_saturate, p.seed + k + 1);
}

double mixed_runner::reference_accuracy() const {
  const std::size_t C = net_.outputs();
  std::size_t correct = 0;
  for (std::size_t s = 0; s < rows_; ++s) correct += nn::argmax({ref_y_.back().data() + s * C, C}) == labels_[s];
  return static_cast<double>(correct) / static_cast<double>(rows_);
}

// The shared layer-0 results, each computed once on first use (std::call_once:
// concurrent runs wait for the one computing it), with the runner's threads.
const std::vector<double>& mixed_runner::v0_high() const {
  std::call_once(once_[0], [&] { high_[0].run_values({x0_.data(), rows_, net_.layers[0].n_in}, v0_high_, threads_); });
  return v0_high_;
}
const std::vector<double>& mixed_runner::y0_low() const {
  std::call_once(once_[1], [&] {
    y0_low_ = v0_low_;
    activate(0, y0_low_, threads_);
  });
  return y0_low_;
}
const std::vector<double>& mixed_runner::y0_high() const {
  std::call_once(once_[2], [&] {
    y0_high_ = v0_high();
    activate(0, y0_high_, threads_);
  });
  return y0_high_;
}
const std::vector<double>& mixed_runner::v0_true() const {
  std::call_once(once_[3], [&] { true_values(net_.layers[0], x0_, rows_, v0_true_, threads_); });
  return v0_true_;
}
const std::vector<unsigned>& mixed_runner::v0_low_flags() const {
  std::call_once(once_[5], [&] {
    std::vector<double> v;  // the bits of v0_low_ (run_values)
    low_[0].run({x0_.data(), rows_, net_.layers[0].n_in}, v, threads_, &v0_low_flags_);
  });
  return v0_low_flags_;
}
const std::vector<double>& mixed_runner::abs0() const {
  std::call_once(once_[4], [&] {
    std::vector<double> abs_in(x0_.size());
    for (std::size_t t = 0; t < x0_.size(); ++t) abs_in[t] = std::fabs(x0_[t]);
    abs_low_[0].run_values({abs_in.data(), rows_, net_.layers[0].n_in}, abs0_, threads_);
  });
  return abs0_;
}

void mixed_runner::precompute(bool abs_numerator) const {
  (void)y0_low();
  (void)y0_high();
  (void)v0_true();
  if (abs_numerator) (void)abs0();
}

mixed_result mixed_runner::run(const selection& sel, int threads) const {
  const int thr = threads >= 0 ? threads : threads_;
  using kind = selection::kind;
  const std::size_t L = net_.layers.size(), B = rows_;
  mixed_result res;
  res.samples = B;
  res.counts.assign(L, std::vector<std::size_t>(B, 0));
  res.fraction_per_layer.assign(L, 0);
  const indicator* ind = sel.type == kind::threshold ? &find_indicator(sel.indicator) : nullptr;
  const bool is_static = sel.type == kind::static_map;
  const bool matched =
      sel.type != kind::uniform_low && sel.type != kind::uniform_high && sel.type != kind::threshold && !is_static;
  // the levels: {low, ladder..., high}
  const std::size_t M = sel.ladder && (sel.type == kind::threshold || is_static) ? cfg_.ladder.size() + 2 : 2;
  if (is_static) {
    if (!sel.static_levels || sel.static_levels->size() != L)
      throw std::invalid_argument("a static run needs one level map per layer");
    for (std::size_t k = 0; k < L; ++k) {
      if ((*sel.static_levels)[k].size() != net_.layers[k].n_out)
        throw std::invalid_argument("static level map of layer " + std::to_string(k + 1) + ": one level per component");
      for (auto lvl : (*sel.static_levels)[k])
        if (lvl >= M)
          throw std::invalid_argument("static level map: level " + std::to_string(lvl) + " of " + std::to_string(M));
    }
  }
  const bool overflow_aware = sel.overflow_aware && (sel.type == kind::threshold || is_static);
  res.level_fraction.assign(M, 0);
  if (matched && (!sel.counts || sel.counts->size() != L))
    throw std::invalid_argument("a matched baseline needs the recomputation counts of a threshold run");
  if (matched)
    for (std::size_t k = 0; k < L; ++k)
      if ((*sel.counts)[k].size() != B)
        throw std::invalid_argument("a matched baseline's counts must cover every sample of the runner");
  const bool oracle = sel.type == kind::oracle_pre || sel.type == kind::oracle_local || sel.type == kind::oracle_gain;
  const double c_high = cfg_.cost_of(cfg_.high);
  double cost = 0, tile_cost = 0, cost_high = 0, comps = 0, recomputed = 0;
  // the layer's inputs: x0_ itself for the first layer (not copied), then the
  // previous layer's mixed outputs
  std::vector<double> in, v_low, v_high, v_true, score, abs_in, abs_num, rel_hidden;
  std::size_t hidden_outputs = 0;
  for (std::size_t k = 0; k + 1 < L; ++k) hidden_outputs += B * net_.layers[k].n_out;
  rel_hidden.reserve(hidden_outputs);  // (no regrowth: these are millions of values)
  std::vector<unsigned> low_flags;
  std::vector<std::vector<double>> v_mid(M - 2), y_mid(M - 2);
  for (std::size_t k = 0; k < L; ++k) {
    const auto& l = net_.layers[k];
    const double c_low = cfg_.cost_of(cfg_.low(k));
    const sim::matrix_view X{k == 0 ? x0_.data() : in.data(), B, l.n_in};
    const std::vector<double>* vl = &v0_low_;
    const std::vector<double>* vh = k == 0 && sel.type != kind::uniform_low ? &v0_high() : &v0_high_;
    const std::vector<unsigned>* fl = k == 0 && overflow_aware ? &v0_low_flags() : nullptr;
    // Layers after the first: the high pass computes every component only
    // where all of them are used (uniform high; the oracle-gain key; a trace),
    // else only the components at the top level, once the levels are known
    // (prepared_dense::run_selected: the same bits)
    const bool high_whole = sel.type == kind::uniform_high || sel.type == kind::oracle_gain || sel.keep_trace;
    if (k > 0) {
      // (run_values: the same bits without the flags, cheaper on the binary32 kernel)
      if (sel.type != kind::uniform_high) {
        if (overflow_aware)
          low_[k].run(X, v_low, thr, &low_flags);
        else
          low_[k].run_values(X, v_low, thr);
      }
      if (sel.type != kind::uniform_low && high_whole) high_[k].run_values(X, v_high, thr);
      vl = &v_low;
      vh = &v_high;
      fl = &low_flags;
    }
    // the formats of the levels of this layer, and the intermediate levels' values
    std::vector<sim::format> level_fmt{cfg_.low(k)};
    for (std::size_t j = 0; j + 2 < M; ++j) {
      level_fmt.push_back(cfg_.ladder[j]);
      mid_[j][k].run_values(X, v_mid[j], thr);
      if (k == 0) {
        y_mid[j] = v_mid[j];
        activate(0, y_mid[j], thr);
      }
    }
    level_fmt.push_back(cfg_.high);
    // level of each component: 0 = low, M - 1 = high ("mask" for two levels)
    std::vector<std::uint8_t> mask(B * l.n_out, 0);
    const auto top = static_cast<std::uint8_t>(M - 1);
    double overhead = 0;
    if (sel.type == kind::uniform_high) std::fill(mask.begin(), mask.end(), top);
    if (is_static)
      for (std::size_t s = 0; s < B; ++s)
        std::copy((*sel.static_levels)[k].begin(), (*sel.static_levels)[k].end(),
                  mask.begin() + static_cast<std::ptrdiff_t>(s * l.n_out));
    if (sel.type == kind::threshold) {
      layer_view lv;
      lv.layer = k;
      lv.layers = L;
      lv.batch = B;
      lv.n_in = l.n_in;
      lv.n_out = l.n_out;
      lv.weights = &l;
      lv.x = X.data;
      lv.v_low = vl->data();
      lv.config = &cfg_;
      lv.row_norms = &row_norms_[k];
      lv.abs_numerator = [&, k]() -> const std::vector<double>& {
        if (k == 0) return abs0();
        abs_in.resize(in.size());
        for (std::size_t t = 0; t < in.size(); ++t) abs_in[t] = std::fabs(in[t]);
        abs_low_[k].run_values({abs_in.data(), B, l.n_in}, abs_num, thr);
        return abs_num;
      };
      score.assign(B * l.n_out, 0);
      ind->compute(lv, score);
      // the cheapest level whose scaled score is <= tau (NaN: the top level);
      // with two levels: recompute where !(score <= tau), Algorithm 1
      std::vector<double> scale(M - 1, 1.0);
      const double u0 = unit_roundoff(level_fmt[0], cfg_.precision.rounding);
      for (std::size_t j = 1; j + 1 < M; ++j) scale[j] = unit_roundoff(level_fmt[j], cfg_.precision.rounding) / u0;
      detail::threshold_levels(score, scale, sel.tau, mask);
      overhead = ind->overhead(lv);
    }
    if (matched) {
      if (oracle) {
        if (k == 0) {
          v_true = v0_true();
        } else {
          true_values(l, in, B, v_true, thr);
        }
      }
      const auto S = static_cast<std::ptrdiff_t>(B);
#pragma omp parallel for num_threads(sim::thread_count(thr)) schedule(static)
      for (std::ptrdiff_t ss = 0; ss < S; ++ss) {
        const auto s = static_cast<std::size_t>(ss);
        const std::size_t want = std::min((*sel.counts)[k][s], l.n_out);
        detail::select_matched(
            sel, k, s, want, l.act, vl->data() + s * l.n_out, oracle ? v_true.data() + s * l.n_out : nullptr,
            sel.type == kind::oracle_gain ? vh->data() + s * l.n_out : nullptr, l.n_out, mask.data() + s * l.n_out);
      }
    }
    if (overflow_aware)
      for (std::size_t t = 0; t < mask.size(); ++t)
        if (mask[t] == 0 && ((*fl)[t] & (sim::flag::overflow | sim::flag::saturated)) != 0) {
          mask[t] = top;
          ++res.overflow_recomputed;
        }
    if (k > 0 && sel.type != kind::uniform_low && !high_whole) {
      std::vector<std::uint8_t> need(mask.size());
      for (std::size_t t = 0; t < mask.size(); ++t) need[t] = mask[t] == top;
      high_[k].run_selected_values(X, need, v_high, thr);
    }
    // the mixed output, its costs, the counts; layer 0's activated low and
    // high outputs are shared by all runs (phi is applied element by element)
    std::vector<double> out(B * l.n_out);
    const std::vector<double>* yl = vl;
    const std::vector<double>* yh = vh;
    if (k == 0) {
      yl = &y0_low();
      yh = sel.type != kind::uniform_low ? &y0_high() : &y0_high_;
    }
    const double terms = static_cast<double>(l.n_in);
    std::vector<double> at_level(M, 0);  // components per level
    std::size_t above_low = 0;
    for (std::size_t s = 0; s < B; ++s) {
      std::size_t count = 0;
      for (std::size_t i = 0; i < l.n_out; ++i) {
        const std::size_t t = s * l.n_out + i;
        const std::uint8_t lvl = mask[t];
        out[t] = lvl == 0 ? (*yl)[t] : lvl == top ? (*yh)[t] : (k == 0 ? y_mid : v_mid)[lvl - 1][t];
        count += lvl != 0;
      }
      res.counts[k][s] = count;
      above_low += count;
      recomputed += static_cast<double>(count);
      res.fraction_per_layer[k] += static_cast<double>(count);
    }
    // per level (two levels: the low ones and the others)
    if (M == 2) {
      at_level[0] = static_cast<double>(B * l.n_out - above_low);
      at_level[1] = static_cast<double>(above_low);
    } else {
      std::vector<std::size_t> n_at(M, 0);
      for (const std::uint8_t lvl : mask) ++n_at[lvl];
      for (std::size_t j = 0; j < M; ++j) at_level[j] = static_cast<double>(n_at[j]);
    }
    const double all = static_cast<double>(B * l.n_out) * terms;
    cost_high += all * c_high;
    for (std::size_t j = 0; j < M; ++j) res.level_fraction[j] += at_level[j];
    // tiles of tile_rows components x tile_samples samples: a tile with any
    // component at level j pays for the whole tile at level j
    auto tiles_at = [&](std::uint8_t lvl) {
      return detail::tiles_at(mask, B, l.n_out, cfg_.tile_rows, cfg_.tile_samples, lvl);
    };
    if (sel.type == kind::uniform_high) {
      cost += all * c_high;
      tile_cost += all * c_high;
    } else if (is_static) {
      // every component computed once, at its level: no low pass, no estimate
      for (std::size_t j = 0; j < M; ++j) {
        const double c = cfg_.cost_of(level_fmt[j]);
        cost += at_level[j] * terms * c;
        if (at_level[j] > 0) tile_cost += tiles_at(static_cast<std::uint8_t>(j)) * terms * c;
      }
    } else {
      const double base = all * c_low + overhead * c_low * static_cast<double>(B);
      cost += base;
      tile_cost += base;
      for (std::size_t j = 1; j < M; ++j) {
        if (at_level[j] == 0) continue;
        const double c = cfg_.cost_of(level_fmt[j]);
        cost += at_level[j] * terms * c;
        tile_cost += tiles_at(static_cast<std::uint8_t>(j)) * terms * c;
      }
    }
    res.fraction_per_layer[k] /= static_cast<double>(B * l.n_out);
    comps += static_cast<double>(B * l.n_out);
    if (sel.keep_trace) {
      mixed_result::layer_trace tr;
      tr.recomputed.resize(mask.size());
      for (std::size_t t = 0; t < mask.size(); ++t) tr.recomputed[t] = mask[t] != 0;
      tr.level = mask;
      if (sel.type == kind::threshold) tr.score = score;
      if (sel.type != kind::uniform_high) tr.v_low = *vl;
      if (sel.type != kind::uniform_low) tr.v_high = *vh;
      if (oracle) tr.v_true = v_true;
      res.trace.push_back(std::move(tr));
    }
    if (k > 0) activate(k, out, thr);
    // componentwise relative errors against the reference outputs
    const auto& yr = ref_y_[k];
    std::vector<double> rel_logits;
    auto& rel = k + 1 < L ? rel_hidden : rel_logits;
    for (std::size_t t = 0; t < out.size(); ++t)
      if (yr[t] != 0) rel.push_back(std::fabs(out[t] - yr[t]) / std::fabs(yr[t]));
    if (k + 1 == L) res.rel_logits = quantiles_of(rel_logits);
    in.swap(out);
  }
  res.rel_hidden = quantiles_of(rel_hidden);
  res.fraction = recomputed / comps;
  for (auto& f : res.level_fraction) f /= comps;
  res.weighted_cost = cost / cost_high;
  res.tile_cost = tile_cost / cost_high;
  const std::size_t C = net_.outputs();
  detail::logit_metrics(res, std::move(in), ref_y_.back(), labels_, C);
  return res;
}

std::vector<layer_diagnostics> mixed_runner::diagnostics(std::size_t max_points) const {
  std::vector<layer_diagnostics> out;
  std::vector<double> in = x0_, v_low, v_true;
  const std::size_t B = rows_;
  for (std::size_t k = 0; k < net_.layers.size(); ++k) {
    const auto& l = net_.layers[k];
    if (k == 0)
      v_low = v0_low_;
    else
      low_[k].run_values({in.data(), B, l.n_in}, v_low, threads_);
    true_values(l, in, B, v_true, threads_);
    layer_diagnostics d;
    const std::size_t n = B * l.n_out;
    const std::size_t stride = max_points == 0 ? 1 : std::max<std::size_t>(1, (n + max_points - 1) / max_points);
    for (std::size_t t = 0; t < n; t += stride) {
      const std::size_t s = t / l.n_out, i = t % l.n_out;
      double num = std::fabs(l.b[i]);
      for (std::size_t j = 0; j < l.n_in; ++j) num += std::fabs(l.row(i)[j] * in[s * l.n_in + j]);
      const double v = v_true[t];
      d.kappa_dot.push_back(kappa_ratio(num, v));
      d.kappa_act.push_back(sim::kappa_act(l.act, v));
      d.rel_error.push_back(v != 0 ? std::fabs(v_low[t] - v) / std::fabs(v) : std::numeric_limits<double>::infinity());
    }
    out.push_back(std::move(d));
    activate(k, v_low, threads_);
    in.swap(v_low);
  }
  return out;
}

// ---------------------------------------------------------------------------
// static (calibrated) configurations

std::vector<std::vector<std::uint8_t>> calibrate_levels(const mixed_runner& runner, const selection& dynamic, double q,
                                                        int threads) {
  if (dynamic.type != selection::kind::threshold) throw std::invalid_argument("calibration needs a threshold run");
  if (!(q >= 0 && q <= 1)) throw std::invalid_argument("calibration quantile must be in [0, 1]");
  selection sel = dynamic;
  sel.keep_trace = true;
  sel.overflow_aware = false;
  const auto r = runner.run(sel, threads);
  const auto& cfg = runner.config();
  const auto& net = runner.network();
  const std::size_t B = r.samples, M = sel.ladder ? cfg.ladder.size() + 2 : 2;
  std::vector<std::vector<std::uint8_t>> levels(net.layers.size());
  std::vector<double> column(B);
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const std::size_t n = net.layers[k].n_out;
    std::vector<sim::format> fmt{cfg.low(k)};
    for (std::size_t j = 0; j + 2 < M; ++j) fmt.push_back(cfg.ladder[j]);
    const double u0 = unit_roundoff(fmt[0], cfg.precision.rounding);
    levels[k].assign(n, static_cast<std::uint8_t>(M - 1));
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t s = 0; s < B; ++s) column[s] = r.trace[k].score[s * n + i];
      const double sc = nearest_rank(column, q);
      for (std::size_t j = 0; j + 1 < M; ++j) {
        const double scale = j == 0 ? 1.0 : unit_roundoff(fmt[j], cfg.precision.rounding) / u0;
        if (sc * scale <= sel.tau) {
          levels[k][i] = static_cast<std::uint8_t>(j);
          break;
        }
      }
    }
  }
  return levels;
}

nn::precision_config static_precision(const mixed_config& cfg, const std::vector<std::vector<std::uint8_t>>& levels,
                                      bool ladder) {
  nn::precision_config p = cfg.precision;
  p.maps.clear();
  for (std::size_t k = 0; k < levels.size(); ++k) {
    sim::precision_map m;
    m.formats.push_back(cfg.low(k));
    if (ladder)
      for (const auto& f : cfg.ladder) m.formats.push_back(f);
    m.formats.push_back(cfg.high);
    for (auto lvl : levels[k]) {
      if (lvl >= m.formats.size()) throw std::invalid_argument("static_precision: a level beyond the ladder");
      m.index.push_back(lvl);
    }
    p.maps.push_back(std::move(m));
  }
  return p;
}

}  // namespace mpacc::analysis
