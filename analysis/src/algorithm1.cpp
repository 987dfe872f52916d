// SPDX-License-Identifier: MIT
#include "mpacc/analysis/algorithm1.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::analysis {

double mixed_config::cost_of(const sim::format& f) const {
  const auto it = term_cost.find(sim::to_string(f));
  return it != term_cost.end() ? it->second : static_cast<double>(f.bit_width());
}

// ---------------------------------------------------------------------------
// indicators

namespace {

double kappa_score(const layer_view& lv, double numerator, double v) {
  const double ka = sim::kappa_act(lv.weights->act, v);
  if (ka == 0) return 0;  // e.g. an inactive ReLU: the output is exactly 0 nearby
  if (v == 0) return std::numeric_limits<double>::infinity();
  return numerator / std::fabs(v) * ka * lv.config->low.unit_roundoff();
}

std::map<std::string, indicator>& registry() {
  static std::map<std::string, indicator> r = [] {
    std::map<std::string, indicator> m;
    m["kappa"] = {"kappa",
                  [](const layer_view& lv, std::vector<double>& score) {
                    const auto& num = lv.abs_numerator();  // |w_i|^T|x| + |b_i| accumulated in low precision
                    for (std::size_t t = 0; t < lv.batch * lv.n_out; ++t) score[t] = kappa_score(lv, num[t], lv.v_low[t]);
                  },
                  [](const layer_view& lv) { return static_cast<double>(lv.n_out * lv.n_in); }};
    m["kappa-norm"] = {"kappa-norm",
                       [](const layer_view& lv, std::vector<double>& score) {
                         for (std::size_t s = 0; s < lv.batch; ++s) {
                           double xn = 0;
                           for (std::size_t j = 0; j < lv.n_in; ++j) xn += lv.x[s * lv.n_in + j] * lv.x[s * lv.n_in + j];
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
                     for (std::size_t t = 0; t < lv.batch * lv.n_out; ++t) {
                       const double v = lv.v_low[t];
                       const double ka = sim::kappa_act(lv.weights->act, v);
                       score[t] = ka == 0 ? 0.0 : (v == 0 ? std::numeric_limits<double>::infinity() : ka / std::fabs(v));
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
// the runner

namespace {

// plain binary64 inner products (the oracle's notion of the true value: its
// error is far below any low-precision accumulator's)
void true_values(const nn::dense_layer& l, const std::vector<double>& x, std::size_t batch, std::vector<double>& v,
                 int threads) {
  v.assign(batch * l.n_out, 0);
  const auto B = static_cast<std::ptrdiff_t>(batch);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
  for (std::ptrdiff_t s = 0; s < B; ++s)
    for (std::size_t i = 0; i < l.n_out; ++i) {
      double acc = l.b[i];
      const double* w = l.row(i);
      const double* xs = x.data() + static_cast<std::size_t>(s) * l.n_in;
      for (std::size_t j = 0; j < l.n_in; ++j) acc = std::fma(w[j], xs[j], acc);
      v[static_cast<std::size_t>(s) * l.n_out + i] = acc;
    }
}

sim::layer_spec spec_for(const mixed_config& cfg, const sim::format& f) {
  sim::layer_spec s;
  s.base = cfg.model;
  s.acc = sim::precision_map::uniform(f);
  return s;
}

}  // namespace

mixed_runner::mixed_runner(const nn::mlp& net, const nn::dataset& data, std::size_t samples, const mixed_config& cfg,
                           int threads)
    : net_(net), cfg_(cfg), rows_(samples > 0 ? std::min(samples, data.rows) : data.rows), threads_(threads) {
  net.validate();
  if (net.inputs() != data.cols) throw std::invalid_argument("the network does not match the data's features");
  x0_.assign(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(rows_ * data.cols));
  sim::round_array(x0_, x0_, {cfg.input_format, sim::rounding::nearest_even, false, 0});
  labels_.assign(data.y.begin(), data.y.begin() + static_cast<std::ptrdiff_t>(rows_));
  for (const auto& l : net.layers) {
    const sim::matrix_view W{l.W.data(), l.n_out, l.n_in};
    low_.emplace_back(W, l.b, spec_for(cfg, cfg.low));
    high_.emplace_back(W, l.b, spec_for(cfg, cfg.high));
    std::vector<double> aw(l.W.size()), ab(l.b.size());
    for (std::size_t t = 0; t < aw.size(); ++t) aw[t] = std::fabs(l.W[t]);
    for (std::size_t t = 0; t < ab.size(); ++t) ab[t] = std::fabs(l.b[t]);
    abs_low_.emplace_back(sim::matrix_view{aw.data(), l.n_out, l.n_in}, ab, spec_for(cfg, cfg.low));
    std::vector<double> norms(l.n_out);
    for (std::size_t i = 0; i < l.n_out; ++i) {
      double s = 0;
      for (std::size_t j = 0; j < l.n_in; ++j) s += l.row(i)[j] * l.row(i)[j];
      norms[i] = std::sqrt(s);
    }
    row_norms_.push_back(std::move(norms));
  }
  const sim::matrix_view X{x0_.data(), rows_, data.cols};
  low_[0].run(X, v0_low_, threads);  // the layer-0 high and true values are computed on first use
  const sim::matrix_view exact{data.x.data(), rows_, data.cols};
  const auto ref = nn::fast_forward(net, cfg.ref_inputs == reference_inputs::stored ? X : exact, threads);
  ref_logits_ = ref.layers.back().y_hi;
}

double mixed_runner::reference_accuracy() const {
  const std::size_t C = net_.outputs();
  std::size_t correct = 0;
  for (std::size_t s = 0; s < rows_; ++s) correct += nn::argmax({ref_logits_.data() + s * C, C}) == labels_[s];
  return static_cast<double>(correct) / static_cast<double>(rows_);
}

mixed_result mixed_runner::run(const selection& sel) const {
  const std::size_t L = net_.layers.size(), B = rows_;
  mixed_result res;
  res.counts.assign(L, std::vector<std::size_t>(B, 0));
  res.fraction_per_layer.assign(L, 0);
  const indicator* ind = sel.type == selection::kind::threshold ? &find_indicator(sel.indicator) : nullptr;
  if ((sel.type == selection::kind::random || sel.type == selection::kind::smallest ||
       sel.type == selection::kind::oracle) &&
      (!sel.counts || sel.counts->size() != L))
    throw std::invalid_argument("a matched baseline needs the recomputation counts of a threshold run");
  const double c_low = cfg_.cost_of(cfg_.low), c_high = cfg_.cost_of(cfg_.high);
  double cost = 0, cost_high = 0, comps = 0, recomputed = 0;
  std::vector<double> in = x0_, v_low, v_high, v_true, score, abs_in, abs_num;
  for (std::size_t k = 0; k < L; ++k) {
    const auto& l = net_.layers[k];
    const sim::matrix_view X{in.data(), B, l.n_in};
    const std::vector<double>* vl = &v0_low_;
    const std::vector<double>* vh = &v0_high_;
    if (k == 0 && sel.type != selection::kind::uniform_low && !v0_high_done_) {
      high_[0].run(X, v0_high_, threads_);
      v0_high_done_ = true;
    }
    if (k > 0) {
      if (sel.type != selection::kind::uniform_high) low_[k].run(X, v_low, threads_);
      if (sel.type != selection::kind::uniform_low) high_[k].run(X, v_high, threads_);
      vl = &v_low;
      vh = &v_high;
    }
    std::vector<char> mask(B * l.n_out, 0);
    double overhead = 0;
    switch (sel.type) {
      case selection::kind::uniform_low: break;
      case selection::kind::uniform_high: std::fill(mask.begin(), mask.end(), 1); break;
      case selection::kind::threshold: {
        layer_view lv;
        lv.layer = k;
        lv.batch = B;
        lv.n_in = l.n_in;
        lv.n_out = l.n_out;
        lv.weights = &l;
        lv.x = in.data();
        lv.v_low = vl->data();
        lv.config = &cfg_;
        lv.row_norms = &row_norms_[k];
        lv.abs_numerator = [&, k]() -> const std::vector<double>& {
          if (k == 0 && abs0_done_) return abs0_;
          abs_in.resize(in.size());
          for (std::size_t t = 0; t < in.size(); ++t) abs_in[t] = std::fabs(in[t]);
          abs_low_[k].run({abs_in.data(), B, l.n_in}, abs_num, threads_);
          if (k == 0) {
            abs0_ = abs_num;
            abs0_done_ = true;
          }
          return abs_num;
        };
        score.assign(B * l.n_out, 0);
        ind->compute(lv, score);
        for (std::size_t t = 0; t < score.size(); ++t) mask[t] = !(score[t] <= sel.tau);  // NaN recomputes
        overhead = ind->overhead(lv);
        break;
      }
      case selection::kind::random:
      case selection::kind::smallest:
      case selection::kind::oracle: {
        if (sel.type == selection::kind::oracle) {
          if (k == 0) {
            if (!v0_true_done_) {
              true_values(l, x0_, B, v0_true_, threads_);
              v0_true_done_ = true;
            }
            v_true = v0_true_;
          }
          else
            true_values(l, in, B, v_true, threads_);
        }
        std::vector<std::size_t> idx(l.n_out);
        for (std::size_t s = 0; s < B; ++s) {
          const std::size_t want = std::min((*sel.counts)[k][s], l.n_out);
          std::iota(idx.begin(), idx.end(), 0);
          const double* v = vl->data() + s * l.n_out;
          if (sel.type == selection::kind::random) {
            // the first `want` of a seeded Fisher-Yates shuffle, one stream per (layer, sample)
            sim::random_stream rng(sel.seed ^ (0x9e3779b97f4a7c15ULL * (k + 1)) ^ (s * 0xbf58476d1ce4e5b9ULL));
            for (std::size_t i = 0; i < want; ++i) {
              __extension__ typedef unsigned __int128 u128;
              const std::size_t j = i + static_cast<std::size_t>((static_cast<u128>(rng()) * (l.n_out - i)) >> 64);
              std::swap(idx[i], idx[j]);
            }
          } else if (sel.type == selection::kind::smallest) {
            std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(want), idx.end(),
                              [&](std::size_t a, std::size_t b) { return std::fabs(v[a]) < std::fabs(v[b]) || (std::fabs(v[a]) == std::fabs(v[b]) && a < b); });
          } else {
            const double* vt = v_true.data() + s * l.n_out;
            std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(want), idx.end(),
                              [&](std::size_t a, std::size_t b) {
                                const double ea = std::fabs(v[a] - vt[a]), eb = std::fabs(v[b] - vt[b]);
                                return ea > eb || (ea == eb && a < b);
                              });
          }
          for (std::size_t i = 0; i < want; ++i) mask[s * l.n_out + idx[i]] = 1;
        }
        break;
      }
    }
    // the mixed output, its cost, the counts
    std::vector<double> out(B * l.n_out);
    for (std::size_t s = 0; s < B; ++s) {
      std::size_t count = 0;
      for (std::size_t i = 0; i < l.n_out; ++i) {
        const std::size_t t = s * l.n_out + i;
        out[t] = mask[t] ? (*vh)[t] : (*vl)[t];
        count += mask[t] != 0;
      }
      res.counts[k][s] = count;
      const double terms = static_cast<double>(l.n_in);
      if (sel.type == selection::kind::uniform_high)
        cost += static_cast<double>(l.n_out) * terms * c_high;
      else
        cost += static_cast<double>(l.n_out) * terms * c_low + static_cast<double>(count) * terms * c_high +
                overhead * c_low;
      cost_high += static_cast<double>(l.n_out) * terms * c_high;
      recomputed += static_cast<double>(count);
      res.fraction_per_layer[k] += static_cast<double>(count);
    }
    res.fraction_per_layer[k] /= static_cast<double>(B * l.n_out);
    comps += static_cast<double>(B * l.n_out);
    nn::apply_activation(l, cfg_.act_format, out, threads_);
    in.swap(out);
  }
  res.fraction = recomputed / comps;
  res.weighted_cost = cost / cost_high;
  const std::size_t C = net_.outputs();
  std::size_t correct = 0;
  double err = 0;
  for (std::size_t s = 0; s < B; ++s) {
    const double* z = in.data() + s * C;
    const double* zr = ref_logits_.data() + s * C;
    correct += nn::argmax({z, C}) == labels_[s];
    double num = 0, den = 0;
    for (std::size_t c = 0; c < C; ++c) {
      num = std::max(num, std::fabs(z[c] - zr[c]));
      den = std::max(den, std::fabs(zr[c]));
    }
    err += den > 0 ? num / den : num;
  }
  res.accuracy = static_cast<double>(correct) / static_cast<double>(B);
  res.mean_relative_error = err / static_cast<double>(B);
  res.logits = std::move(in);
  return res;
}

}  // namespace mpacc::analysis
