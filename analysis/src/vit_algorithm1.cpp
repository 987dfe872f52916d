// SPDX-License-Identifier: MIT
#include "mpacc/analysis/vit_algorithm1.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "algorithm1_internal.hpp"
#include "mpacc/analysis/bounds.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/row_ops.hpp"
#include "mpacc/sim/threads.hpp"
#include "mpacc/train/vit.hpp"

namespace mpacc::analysis {

std::string vit_layer_kind(const nn::vit& net, std::size_t k) {
  if (k >= net.product_layers())
    throw std::invalid_argument("vit_layer_kind: no inner-product layer " + std::to_string(k));
  if (k == 0) return "embed";
  if (k + 1 == net.product_layers()) return "head";
  return nn::vit_block_products[(k - 1) % 8];
}

// ---------------------------------------------------------------------------
// indicators

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// numerator / denominator, +inf for a zero denominator (0 when the numerator is 0 too)
double ratio(double num, double den) {
  if (den != 0) return num / std::fabs(den);
  return num == 0 ? 0.0 : inf;
}

// N(c) = sum |w_j x_j| + |b| of every component of the view's layer, in binary64
void abs_numerators(const vit_layer_view& lv, std::vector<double>& num) {
  const auto& L = lv.pass->layers[lv.layer];
  num.resize(L.rows * L.cols);
  const auto n = static_cast<std::ptrdiff_t>(L.rows);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t rr = 0; rr < n; ++rr) {
    std::vector<double> buffer;
    const auto r = static_cast<std::size_t>(rr);
    for (std::size_t c = 0; c < L.cols; ++c) {
      const auto op = nn::vit_component_operands(*lv.net, *lv.pass, lv.layer, r, c, buffer);
      double s = std::fabs(op.bias);
      for (std::size_t j = 0; j < op.w.size(); ++j) s += std::fabs(op.w[j] * op.x[j]);
      num[r * L.cols + c] = s;
    }
  }
}

// the Cauchy-Schwarz bound ||w||_2 ||x||_2 + |b| >= N of every component (binary64)
void norm_numerators(const vit_layer_view& lv, std::vector<double>& num) {
  const auto& L = lv.pass->layers[lv.layer];
  num.resize(L.rows * L.cols);
  const auto n = static_cast<std::ptrdiff_t>(L.rows);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t rr = 0; rr < n; ++rr) {
    std::vector<double> buffer;
    const auto r = static_cast<std::size_t>(rr);
    for (std::size_t c = 0; c < L.cols; ++c) {
      const auto op = nn::vit_component_operands(*lv.net, *lv.pass, lv.layer, r, c, buffer);
      double w2 = 0, x2 = 0;
      for (std::size_t j = 0; j < op.w.size(); ++j) {
        w2 += op.w[j] * op.w[j];
        x2 += op.x[j] * op.x[j];
      }
      num[r * L.cols + c] = std::sqrt(w2) * std::sqrt(x2) + std::fabs(op.bias);
    }
  }
}

// the binary64 softmax of each row of the scores' low logits z = v / sqrt(d_head)
void softmax_rows(const vit_layer_view& lv, std::vector<double>& z, std::vector<double>& s) {
  const auto& L = lv.pass->layers[lv.layer];
  const double scale = 1 / std::sqrt(static_cast<double>(lv.net->d_head()));
  z.resize(L.v.size());
  s.resize(L.v.size());
  std::vector<double> t(L.cols);
  for (std::size_t r = 0; r < L.rows; ++r) {
    for (std::size_t j = 0; j < L.cols; ++j) z[r * L.cols + j] = L.v[r * L.cols + j] * scale;
    sim::softmax_binary64({z.data() + r * L.cols, L.cols}, t, {s.data() + r * L.cols, L.cols});
  }
}

double low_u(const vit_layer_view& lv) {
  return unit_roundoff(lv.config->low(lv.layer), lv.config->precision.rounding);
}

// Our indicator on one layer (the header's formula per kind).
void kappa_compute(const vit_layer_view& lv, std::vector<double>& score, bool norm_bound = false) {
  const auto& L = lv.pass->layers[lv.layer];
  std::vector<double> num;
  if (norm_bound)
    norm_numerators(lv, num);
  else
    abs_numerators(lv, num);
  const double u = low_u(lv);
  if (lv.kind == "scores") {
    std::vector<double> z, s;
    softmax_rows(lv, z, s);
    const double scale = 1 / std::sqrt(static_cast<double>(lv.net->d_head()));
    for (std::size_t t = 0; t < score.size(); ++t) score[t] = 2 * s[t] * (1 - s[t]) * num[t] * scale * u;
    return;
  }
  sim::activation_fn gelu;
  gelu.kind = sim::activation::gelu;
  for (std::size_t t = 0; t < score.size(); ++t) {
    const double v = L.v[t];
    if (lv.addend) {
      score[t] = ratio(num[t] * u, (*lv.addend)[t] + v);
    } else if (lv.kind == "fc1") {
      const double ka = sim::kappa_act(gelu, v);
      score[t] = ka == 0 ? 0.0 : ratio(num[t] * u * ka, v);
    } else {
      score[t] = ratio(num[t] * u, v);
    }
  }
}

// kappa-row: the linear maps' first-order error N u |phi'(v)| relative to the
// root mean square of the layer's outputs phi(v) over the component's row; the
// scores as kappa
void kappa_row_compute(const vit_layer_view& lv, std::vector<double>& score, bool norm_bound = false) {
  if (lv.kind == "scores") {
    kappa_compute(lv, score, norm_bound);
    return;
  }
  const auto& L = lv.pass->layers[lv.layer];
  std::vector<double> num;
  if (norm_bound)
    norm_numerators(lv, num);
  else
    abs_numerators(lv, num);
  const double u = low_u(lv);
  sim::activation_fn gelu;
  gelu.kind = sim::activation::gelu;
  std::vector<double> y(L.cols), slope(L.cols);
  for (std::size_t r = 0; r < L.rows; ++r) {
    double sq = 0;
    for (std::size_t c = 0; c < L.cols; ++c) {
      const std::size_t t = r * L.cols + c;
      const double v = L.v[t];
      if (lv.addend) {
        y[c] = (*lv.addend)[t] + v;
        slope[c] = 1;
      } else if (lv.kind == "fc1") {
        // |phi'(v)| = kappa_act(v) |phi(v)| / |v|
        y[c] = sim::apply(gelu, v);
        slope[c] = v == 0 ? 0.5 : sim::kappa_act(gelu, v) * std::fabs(y[c]) / std::fabs(v);
      } else {
        y[c] = v;
        slope[c] = 1;
      }
      sq += y[c] * y[c];
    }
    const double rms = std::sqrt(sq / static_cast<double>(L.cols));
    for (std::size_t c = 0; c < L.cols; ++c) score[r * L.cols + c] = ratio(num[r * L.cols + c] * u * slope[c], rms);
  }
}

// the terms of one component of the view's layer (kappa's N costs as many)
double terms_per_component(const vit_layer_view& lv) {
  std::vector<double> buffer;
  return static_cast<double>(nn::vit_component_operands(*lv.net, *lv.pass, lv.layer, 0, 0, buffer).w.size());
}

std::map<std::string, vit_indicator>& vit_registry() {
  static std::map<std::string, vit_indicator> r = [] {
    std::map<std::string, vit_indicator> m;
    m["kappa"] = {"kappa", [](const vit_layer_view& lv, std::vector<double>& score) { kappa_compute(lv, score); },
                  terms_per_component};
    m["kappa-row"] = {"kappa-row",
                      [](const vit_layer_view& lv, std::vector<double>& score) { kappa_row_compute(lv, score); },
                      terms_per_component};
    // the norms of a row's operand vector and of the column's weight (or key,
    // value) vector, each shared by the components that use it: about
    // 2 n / cols + 1 terms per component (an overcount for the linear maps,
    // whose weight norms are computed once per network)
    m["kappa-row-norm"] = {
        "kappa-row-norm",
        [](const vit_layer_view& lv, std::vector<double>& score) { kappa_row_compute(lv, score, true); },
        [](const vit_layer_view& lv) {
          const auto& L = lv.pass->layers[lv.layer];
          return 2 * terms_per_component(lv) / static_cast<double>(L.cols) + 1;
        }};
    m["kappa-scores"] = {"kappa-scores",
                         [](const vit_layer_view& lv, std::vector<double>& score) {
                           if (lv.kind == "scores") kappa_compute(lv, score, false);
                         },
                         [](const vit_layer_view& lv) { return lv.kind == "scores" ? terms_per_component(lv) : 0.0; }};
    m["lamp"] = {"lamp",
                 [](const vit_layer_view& lv, std::vector<double>& score) {
                   if (lv.kind != "scores") return;
                   std::vector<double> z, s;
                   softmax_rows(lv, z, s);
                   for (std::size_t t = 0; t < score.size(); ++t) score[t] = 2 * s[t] * (1 - s[t]) * std::fabs(z[t]);
                 },
                 // the softmax of the low logits is formed anyway: one product per component
                 [](const vit_layer_view& lv) { return lv.kind == "scores" ? 1.0 : 0.0; }};
    return m;
  }();
  return r;
}

}  // namespace

void register_vit_indicator(const vit_indicator& ind) {
  if (ind.name.empty() || !ind.compute || !ind.overhead)
    throw std::invalid_argument("register_vit_indicator: an indicator needs a name, compute and overhead");
  vit_registry()[ind.name] = ind;
}

const vit_indicator& find_vit_indicator(const std::string& name) {
  const auto& r = vit_registry();
  const auto it = r.find(name);
  if (it == r.end()) {
    std::string known;
    for (const auto& [k, v] : r) known += (known.empty() ? "" : ", ") + k;
    throw std::invalid_argument("unknown indicator '" + name + "' (vision-transformer indicators: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> vit_indicator_names() {
  std::vector<std::string> v;
  for (const auto& [k, ind] : vit_registry()) v.push_back(k);
  return v;
}

// ---------------------------------------------------------------------------
// the runner

vit_mixed_runner::vit_mixed_runner(const nn::vit& net, const io::dataset& data, std::size_t samples,
                                   const mixed_config& cfg, int threads, std::size_t chunk)
    : cfg_(cfg), rows_(samples > 0 ? std::min(samples, data.rows) : data.rows), chunk_(chunk), threads_(threads) {
  net.validate();
  cfg.precision.check(net.product_layers());
  if (!cfg.precision.maps.empty())
    throw std::invalid_argument("Algorithm 1's low pass takes no per-component accumulator maps");
  if (net.inputs() != data.cols) throw std::invalid_argument("the network does not match the data's features");
  if (cfg.tile_rows == 0 || cfg.tile_samples == 0) throw std::invalid_argument("tile sizes must be >= 1");
  if (rows_ == 0) throw std::invalid_argument("the vision-transformer runner needs at least one sample");
  if (chunk_ == 0) throw std::invalid_argument("the runner's chunk must be >= 1 sample");
  net_ = nn::stored_network(net, cfg.precision);
  x0_ = nn::store_inputs({data.x.data(), rows_, data.cols}, cfg.precision.inputs);
  labels_.assign(data.y.begin(), data.y.begin() + static_cast<std::ptrdiff_t>(rows_));
  for (std::size_t k = 0; k < net_.product_layers(); ++k) {
    high_.emplace_back();
    const auto kind = vit_layer_kind(net_, k);
    if (kind == "scores" || kind == "mix") continue;
    const sim::layer_spec spec = detail::spec_for(cfg_, k, cfg_.high);
    sim::accumulation a = spec.base;
    a.acc = cfg_.high;
    if (!sim::fast_path_applies(a)) continue;
    const nn::dense_layer* l = nullptr;
    if (kind == "embed") {
      l = &net_.embed;
    } else if (kind == "head") {
      l = &net_.head;
    } else {
      const auto& B = net_.blocks[(k - 1) / 8];
      const nn::dense_layer* maps[8] = {&B.q, &B.k, &B.v, nullptr, nullptr, &B.proj, &B.fc1, &B.fc2};
      l = maps[(k - 1) % 8];
    }
    high_.back().emplace(sim::matrix_view{l->W.data(), l->n_out, l->n_in}, l->b, spec);
  }
  // the binary64 reference logits, in pieces
  const std::vector<double>& in =
      cfg.ref_inputs == reference_inputs::stored
          ? x0_
          : std::vector<double>(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(rows_ * data.cols));
  ref_logits_.reserve(rows_ * net_.classes);
  for (std::size_t s0 = 0; s0 < rows_; s0 += chunk_) {
    const std::size_t b = std::min(chunk_, rows_ - s0);
    const auto z = train::vit_forward_native(net_, in.data() + s0 * data.cols, b);
    ref_logits_.insert(ref_logits_.end(), z.begin(), z.end());
  }
}

double vit_mixed_runner::reference_accuracy() const {
  const std::size_t C = net_.classes;
  std::size_t correct = 0;
  for (std::size_t s = 0; s < rows_; ++s) correct += nn::argmax({ref_logits_.data() + s * C, C}) == labels_[s];
  return static_cast<double>(correct) / static_cast<double>(rows_);
}

mixed_result vit_mixed_runner::run(const selection& sel, int threads) const { return run_impl(sel, nullptr, threads); }

mixed_result vit_mixed_runner::run_kinds_high(const std::vector<std::string>& kinds, int threads) const {
  for (const auto& k : kinds) {
    bool known = false;
    for (std::size_t j = 0; j < net_.product_layers(); ++j) known = known || vit_layer_kind(net_, j) == k;
    if (!known) throw std::invalid_argument("no inner-product layer of kind '" + k + "'");
  }
  selection sel;
  sel.type = selection::kind::uniform_low;
  return run_impl(sel, &kinds, threads);
}

namespace {

// rows of inner-product layer k per sample
std::size_t rows_per_sample(const nn::vit& net, const std::string& kind) {
  if (kind == "embed") return net.patches();
  if (kind == "head") return 1;
  if (kind == "scores") return net.heads * net.tokens();
  return net.tokens();
}

// the binary64 value of every component of layer k of the pass (the oracles' truth)
void true_values(const nn::vit& net, const nn::simulated_vit& pass, std::size_t k, std::vector<double>& v,
                 int threads) {
  const auto& L = pass.layers[k];
  v.resize(L.rows * L.cols);
  const auto n = static_cast<std::ptrdiff_t>(L.rows);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
  for (std::ptrdiff_t rr = 0; rr < n; ++rr) {
    std::vector<double> buffer;
    const auto r = static_cast<std::size_t>(rr);
    for (std::size_t c = 0; c < L.cols; ++c) {
      const auto op = nn::vit_component_operands(net, pass, k, r, c, buffer);
      double s = op.bias;
      for (std::size_t j = 0; j < op.w.size(); ++j) s += op.w[j] * op.x[j];
      v[r * L.cols + c] = s;
    }
  }
}

}  // namespace

mixed_result vit_mixed_runner::run_impl(const selection& sel, const std::vector<std::string>* kinds,
                                        int threads) const {
  const int thr = threads >= 0 ? threads : threads_;
  using kind = selection::kind;
  const std::size_t K = net_.product_layers(), B = rows_, C = net_.classes;
  if (sel.type == kind::static_map || sel.type == kind::oracle_gain)
    throw std::invalid_argument("the vision-transformer runner does not support " + std::string(to_string(sel.type)) +
                                " selections");
  if (sel.ladder) throw std::invalid_argument("the vision-transformer runner does not support ladders");
  if (sel.overflow_aware) throw std::invalid_argument("the vision-transformer runner does not support overflow_aware");
  const vit_indicator* ind = sel.type == kind::threshold ? &find_vit_indicator(sel.indicator) : nullptr;
  const bool matched = sel.type != kind::uniform_low && sel.type != kind::uniform_high && sel.type != kind::threshold;
  const bool oracle = sel.type == kind::oracle_pre || sel.type == kind::oracle_local;
  std::vector<std::string> kind_of(K);
  std::vector<std::size_t> per(K);
  for (std::size_t k = 0; k < K; ++k) {
    kind_of[k] = vit_layer_kind(net_, k);
    per[k] = rows_per_sample(net_, kind_of[k]);
  }
  if (matched) {
    if (!sel.counts || sel.counts->size() != K)
      throw std::invalid_argument("a matched baseline needs the recomputation counts of a threshold run");
    for (std::size_t k = 0; k < K; ++k)
      if ((*sel.counts)[k].size() != B * per[k])
        throw std::invalid_argument("a matched baseline's counts must cover every row of every layer of the runner");
  }
  mixed_result res;
  res.samples = B;
  res.counts.resize(K);
  for (std::size_t k = 0; k < K; ++k) res.counts[k].assign(B * per[k], 0);
  res.fraction_per_layer.assign(K, 0);
  res.level_fraction.assign(2, 0);
  if (sel.keep_trace) res.trace.resize(K);
  std::vector<double> comps_per_layer(K, 0);
  const double c_high = cfg_.cost_of(cfg_.high);
  double cost = 0, tile_cost = 0, cost_high = 0, comps = 0, recomputed = 0;
  std::vector<double> logits;
  logits.reserve(B * C);
  const std::size_t T = net_.tokens(), d = net_.d;

  for (std::size_t c0 = 0; c0 < B; c0 += chunk_) {
    const std::size_t nb = std::min(chunk_, B - c0);
    std::vector<double> addend, score, v_true, v_low;
    auto hook = [&](std::size_t k, nn::simulated_vit& pass) {
      auto& L = pass.layers[k];
      const std::string& kd = kind_of[k];
      const std::size_t n = L.rows * L.cols;
      std::vector<double> buf;
      const double terms = static_cast<double>(nn::vit_component_operands(net_, pass, k, 0, 0, buf).w.size());
      const double c_low = cfg_.cost_of(cfg_.low(k));
      std::vector<std::uint8_t> mask(n, 0);
      double overhead = 0;  // terms per component
      const bool all_high =
          sel.type == kind::uniform_high || (kinds && std::find(kinds->begin(), kinds->end(), kd) != kinds->end());
      if (all_high) std::fill(mask.begin(), mask.end(), 1);
      // the value each output is added to: position embedding, residual stream
      addend.clear();
      if (kd == "embed") {
        addend.resize(n);
        for (std::size_t t = 0; t < n; ++t) addend[t] = net_.pos[(1 + (t / d) % net_.patches()) * d + t % d];
      } else if (kd == "proj" || kd == "fc2") {
        const std::size_t k0 = k - (kd == "proj" ? 6 : 8) + 1;  // the block's first layer
        if (kd == "fc2") {
          addend = pass.layers[k0 + 5].y;
        } else if (k0 > 1) {
          addend = pass.layers[k0 - 1].y;
        } else {
          // block 1: the class-token row, then the embedding's patch tokens
          addend.resize(n);
          for (std::size_t s = 0; s < nb; ++s)
            for (std::size_t j = 0; j < d; ++j) {
              addend[s * T * d + j] = pass.cls_row[s * d + j];
              for (std::size_t t = 1; t < T; ++t)
                addend[(s * T + t) * d + j] = pass.layers[0].y[(s * (T - 1) + t - 1) * d + j];
            }
        }
      }
      if (sel.type == kind::threshold) {
        vit_layer_view lv;
        lv.layer = k;
        lv.kind = kd;
        lv.net = &net_;
        lv.pass = &pass;
        lv.config = &cfg_;
        lv.addend = addend.empty() ? nullptr : &addend;
        score.assign(n, 0);
        ind->compute(lv, score);
        detail::threshold_levels(score, {1.0}, sel.tau, mask);
        overhead = ind->overhead(lv);
      }
      if (oracle) true_values(net_, pass, k, v_true, thr);
      if (matched) {
        const std::size_t first_row = c0 * per[k];
        sim::activation_fn act;
        act.kind = kd == "fc1" ? sim::activation::gelu : sim::activation::identity;
        const auto R = static_cast<std::ptrdiff_t>(L.rows);
        const double scale = 1 / std::sqrt(static_cast<double>(net_.d_head()));
#pragma omp parallel for num_threads(sim::thread_count(thr)) schedule(static)
        for (std::ptrdiff_t rr = 0; rr < R; ++rr) {
          const auto r = static_cast<std::size_t>(rr);
          const std::size_t g = first_row + r, want = std::min((*sel.counts)[k][g], L.cols);
          const double* v = L.v.data() + r * L.cols;
          std::uint8_t* m = mask.data() + r * L.cols;
          if (kd == "scores" && sel.type == kind::oracle_local) {
            // the exact L1 change of the probability row when logit j alone is corrected
            std::vector<double> z(L.cols), t(L.cols), s(L.cols), key(L.cols);
            for (std::size_t j = 0; j < L.cols; ++j) z[j] = v[j] * scale;
            sim::softmax_binary64(z, t, s);
            for (std::size_t j = 0; j < L.cols; ++j) {
              const double e = std::expm1((v_true[r * L.cols + j] - v[j]) * scale);
              key[j] = 2 * std::fabs(s[j] * (1 - s[j]) * e / (1 + s[j] * e));
            }
            detail::select_by_keys(sel, k, g, want, nullptr, key.data(), L.cols, m);
          } else {
            detail::select_matched(sel, k, g, want, act, v, oracle ? v_true.data() + r * L.cols : nullptr, nullptr,
                                   L.cols, m);
          }
        }
      }
      if (sel.keep_trace) v_low = L.v;
      // the selected components again, with the high accumulator
      std::size_t count = 0;
      for (auto x : mask) count += x;
      if (count > 0) {
        if (high_[k]) {
          std::vector<double> vh;
          std::vector<unsigned> fh;
          high_[k]->run_selected({L.in.data(), L.rows, L.in.size() / L.rows}, mask, vh, thr, &fh, c0 * per[k]);
          for (std::size_t t = 0; t < n; ++t)
            if (mask[t]) {
              L.v[t] = vh[t];
              L.flags[t] = fh[t];
            }
        } else {
          const sim::layer_spec spec = detail::spec_for(cfg_, k, cfg_.high);
          sim::accumulation a = spec.base;
          a.acc = cfg_.high;
          const auto R = static_cast<std::ptrdiff_t>(L.rows);
          // the values are read from `pass` (earlier layers) and written to this layer's v only
#pragma omp parallel for num_threads(sim::thread_count(thr)) schedule(static)
          for (std::ptrdiff_t rr = 0; rr < R; ++rr) {
            const auto r = static_cast<std::size_t>(rr);
            for (std::size_t c = 0; c < L.cols; ++c)
              if (mask[r * L.cols + c]) {
                const auto res_c = nn::vit_component(net_, pass, k, r, c, a, c0);
                L.v[r * L.cols + c] = res_c.value;
                L.flags[r * L.cols + c] = res_c.flags;
              }
          }
        }
      }
      // counts, fractions, costs
      for (std::size_t r = 0; r < L.rows; ++r) {
        std::size_t cr = 0;
        for (std::size_t c = 0; c < L.cols; ++c) cr += mask[r * L.cols + c];
        res.counts[k][c0 * per[k] + r] = cr;
      }
      const double all = static_cast<double>(n) * terms, hc = static_cast<double>(count);
      cost_high += all * c_high;
      res.fraction_per_layer[k] += hc;
      comps_per_layer[k] += static_cast<double>(n);
      recomputed += hc;
      comps += static_cast<double>(n);
      if (all_high) {
        // the layer computed in high only: no low pass, no estimate
        cost += all * c_high;
        tile_cost += all * c_high;
      } else {
        const double base = all * c_low + overhead * static_cast<double>(n) * c_low;
        cost += base + hc * terms * c_high;
        tile_cost += base;
        if (count > 0)
          tile_cost += detail::tiles_at(mask, L.rows, L.cols, cfg_.tile_rows, cfg_.tile_samples, 1) * terms * c_high;
      }
      if (sel.keep_trace) {
        auto& tr = res.trace[k];
        tr.recomputed.insert(tr.recomputed.end(), mask.begin(), mask.end());
        tr.level.insert(tr.level.end(), mask.begin(), mask.end());
        if (sel.type == kind::threshold) tr.score.insert(tr.score.end(), score.begin(), score.end());
        tr.v_low.insert(tr.v_low.end(), v_low.begin(), v_low.end());
        tr.v_high.insert(tr.v_high.end(), L.v.begin(), L.v.end());
        if (oracle) tr.v_true.insert(tr.v_true.end(), v_true.begin(), v_true.end());
      }
    };
    const auto pass =
        nn::simulate(net_, {x0_.data() + c0 * net_.inputs(), nb, net_.inputs()}, cfg_.precision, thr, c0, hook);
    logits.insert(logits.end(), pass.logits().begin(), pass.logits().end());
  }
  for (std::size_t k = 0; k < K; ++k) res.fraction_per_layer[k] /= comps_per_layer[k];
  res.fraction = recomputed / comps;
  res.level_fraction = {1 - res.fraction, res.fraction};
  res.weighted_cost = cost / cost_high;
  res.tile_cost = tile_cost / cost_high;
  std::vector<double> rel_logits;
  for (std::size_t t = 0; t < logits.size(); ++t)
    if (ref_logits_[t] != 0) rel_logits.push_back(std::fabs(logits[t] - ref_logits_[t]) / std::fabs(ref_logits_[t]));
  res.rel_logits = quantiles_of(rel_logits);
  detail::logit_metrics(res, std::move(logits), ref_logits_, labels_, C);
  return res;
}

}  // namespace mpacc::analysis
