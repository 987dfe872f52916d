// SPDX-License-Identifier: MIT
#include "mpacc/analysis/cnn_algorithm1.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <variant>

#include "algorithm1_internal.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/conv.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::analysis {

namespace {

// (sample, pixel, channel) -> (sample, channel, pixel): the dense pass on the
// im2col rows to the NCHW order of the components
template <class T>
void to_nchw(const std::vector<T>& pm, std::size_t batch, std::size_t pixels, std::size_t channels,
             std::vector<T>& out) {
  out.resize(pm.size());
  for (std::size_t s = 0; s < batch; ++s)
    for (std::size_t p = 0; p < pixels; ++p)
      for (std::size_t c = 0; c < channels; ++c)
        out[(s * channels + c) * pixels + p] = pm[(s * pixels + p) * channels + c];
}
template <class T>
void to_pm(const std::vector<T>& nchw, std::size_t batch, std::size_t pixels, std::size_t channels,
           std::vector<T>& out) {
  out.resize(nchw.size());
  for (std::size_t s = 0; s < batch; ++s)
    for (std::size_t c = 0; c < channels; ++c)
      for (std::size_t p = 0; p < pixels; ++p)
        out[(s * pixels + p) * channels + c] = nchw[(s * channels + c) * pixels + p];
}

// the per-sample output size of a layer on `in` values per sample
std::size_t out_size(const nn::cnn_layer& layer, std::size_t in) {
  if (const auto* c = std::get_if<nn::conv_layer>(&layer)) return c->shape.out_size();
  if (const auto* p = std::get_if<nn::pool_layer>(&layer)) return p->shape.out_size();
  if (const auto* d = std::get_if<nn::dense_layer>(&layer)) return d->n_out;
  return in;
}

// average pooling in binary64 (the reference): the window sum (padding as
// +0 terms, PyTorch's count_include_pad) divided by the window size
void avg_pool_binary64(const sim::pool2d_shape& s, const std::vector<double>& x, std::size_t batch,
                       std::vector<double>& y) {
  const std::size_t oh = s.out_h(), ow = s.out_w();
  y.assign(batch * s.out_size(), 0);
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t c = 0; c < s.c; ++c)
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox) {
          double sum = 0;
          for (std::size_t ky = 0; ky < s.kh; ++ky)
            for (std::size_t kx = 0; kx < s.kw; ++kx) {
              const auto iy = static_cast<std::ptrdiff_t>(oy * s.stride_h + ky) - static_cast<std::ptrdiff_t>(s.pad_h);
              const auto ix = static_cast<std::ptrdiff_t>(ox * s.stride_w + kx) - static_cast<std::ptrdiff_t>(s.pad_w);
              if (iy < 0 || ix < 0 || iy >= static_cast<std::ptrdiff_t>(s.h) || ix >= static_cast<std::ptrdiff_t>(s.w))
                continue;
              sum += x[((n * s.c + c) * s.h + static_cast<std::size_t>(iy)) * s.w + static_cast<std::size_t>(ix)];
            }
          y[((n * s.c + c) * oh + oy) * ow + ox] = sum / static_cast<double>(s.window());
        }
}

}  // namespace

cnn_mixed_runner::cnn_mixed_runner(const nn::cnn& net, const io::dataset& data, std::size_t samples,
                                   const mixed_config& cfg, int threads)
    : cfg_(cfg), rows_(samples > 0 ? std::min(samples, data.rows) : data.rows), threads_(threads) {
  net.validate();
  const std::size_t L = net.layers.size();
  cfg.precision.check(L);
  if (!cfg.precision.maps.empty())
    throw std::invalid_argument("Algorithm 1's low pass takes no per-component accumulator maps");
  if (net.inputs() != data.cols) throw std::invalid_argument("the network does not match the data's features");
  if (cfg.tile_rows == 0 || cfg.tile_samples == 0) throw std::invalid_argument("tile sizes must be >= 1");
  if (rows_ == 0) throw std::invalid_argument("the CNN runner needs at least one sample");
  net_ = nn::stored_network(net, cfg.precision);
  x0_ = nn::store_inputs({data.x.data(), rows_, data.cols}, cfg.precision.inputs);
  labels_.assign(data.y.begin(), data.y.begin() + static_cast<std::ptrdiff_t>(rows_));
  for (std::size_t k = 0; k < L; ++k) {
    nn::dense_layer d;
    if (const auto* c = std::get_if<nn::conv_layer>(&net_.layers[k])) {
      d.n_in = c->shape.patch();
      d.n_out = c->shape.c_out;
      d.W = c->W;
      d.b = c->b;
      d.act = c->act;
    } else if (const auto* dl = std::get_if<nn::dense_layer>(&net_.layers[k])) {
      d = *dl;
    } else {
      inner_.emplace_back();
      continue;
    }
    const sim::matrix_view W{d.W.data(), d.n_out, d.n_in};
    std::vector<double> aw(d.W.size()), ab(d.b.size()), norms(d.n_out);
    for (std::size_t t = 0; t < aw.size(); ++t) aw[t] = std::fabs(d.W[t]);
    for (std::size_t t = 0; t < ab.size(); ++t) ab[t] = std::fabs(d.b[t]);
    for (std::size_t i = 0; i < d.n_out; ++i) {
      double s = 0;
      for (std::size_t j = 0; j < d.n_in; ++j) s += d.row(i)[j] * d.row(i)[j];
      norms[i] = std::sqrt(s);
    }
    sim::prepared_dense low(W, d.b, detail::spec_for(cfg, k, cfg.low(k)));
    sim::prepared_dense high(W, d.b, detail::spec_for(cfg, k, cfg.high));
    sim::prepared_dense abs_low({aw.data(), d.n_out, d.n_in}, ab, detail::spec_for(cfg, k, cfg.low(k)));
    inner_.emplace_back(inner{std::move(d), std::move(low), std::move(high), std::move(abs_low), std::move(norms)});
  }
  // the binary64 reference, layer by layer
  std::vector<double> in =
      cfg.ref_inputs == reference_inputs::stored
          ? x0_
          : std::vector<double>(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(rows_ * data.cols));
  const std::size_t B = rows_;
  std::vector<double> cols;
  for (std::size_t k = 0; k < L; ++k) {
    std::vector<double> y;
    const auto& layer = net_.layers[k];
    if (const auto* p = std::get_if<nn::pool_layer>(&layer)) {
      if (p->type == nn::pool_layer::kind::max)
        sim::max_pool2d(p->shape, in.data(), B, y);
      else
        avg_pool_binary64(p->shape, in, B, y);
    } else if (std::holds_alternative<nn::flatten_layer>(layer)) {
      y = in;
    } else {
      const auto& d = inner_[k]->dense;
      nn::mlp one;
      one.layers.push_back(d);
      if (const auto* c = std::get_if<nn::conv_layer>(&layer)) {
        const std::size_t pix = c->shape.out_h() * c->shape.out_w();
        sim::im2col(c->shape, in.data(), B, cols);
        auto r = nn::fast_forward(one, {cols.data(), B * pix, d.n_in}, threads);
        to_nchw(r.layers[0].y_hi, B, pix, d.n_out, y);
      } else {
        auto r = nn::fast_forward(one, {in.data(), B, d.n_in}, threads);
        y = std::move(r.layers[0].y_hi);
      }
    }
    in = y;
    ref_y_.push_back(std::move(y));
  }
}

double cnn_mixed_runner::reference_accuracy() const {
  const std::size_t C = net_.outputs();
  std::size_t correct = 0;
  for (std::size_t s = 0; s < rows_; ++s) correct += nn::argmax({ref_y_.back().data() + s * C, C}) == labels_[s];
  return static_cast<double>(correct) / static_cast<double>(rows_);
}

mixed_result cnn_mixed_runner::run(const selection& sel, int threads) const {
  const int thr = threads >= 0 ? threads : threads_;
  using kind = selection::kind;
  const std::size_t L = net_.layers.size(), B = rows_;
  if (sel.type == kind::static_map) throw std::invalid_argument("static maps are not supported for CNNs");
  if (sel.ladder && sel.type == kind::threshold) throw std::invalid_argument("ladders are not supported for CNNs");
  mixed_result res;
  res.samples = B;
  res.counts.assign(L, std::vector<std::size_t>(B, 0));
  res.fraction_per_layer.assign(L, 0);
  res.level_fraction.assign(2, 0);
  const indicator* ind = sel.type == kind::threshold ? &find_indicator(sel.indicator) : nullptr;
  const bool matched = sel.type != kind::uniform_low && sel.type != kind::uniform_high && sel.type != kind::threshold;
  if (matched && (!sel.counts || sel.counts->size() != L))
    throw std::invalid_argument("a matched baseline needs the recomputation counts of a threshold run");
  if (matched)
    for (std::size_t k = 0; k < L; ++k)
      if ((*sel.counts)[k].size() != B)
        throw std::invalid_argument("a matched baseline's counts must cover every sample of the runner");
  const bool oracle = sel.type == kind::oracle_pre || sel.type == kind::oracle_local || sel.type == kind::oracle_gain;
  const bool overflow_aware = sel.overflow_aware && sel.type == kind::threshold;
  const double c_high = cfg_.cost_of(cfg_.high);
  const auto& p = cfg_.precision;
  double cost = 0, tile_cost = 0, cost_high = 0, comps = 0, recomputed = 0;
  std::vector<double> in = x0_, cols, abs_cols, abs_num, rel_hidden;
  std::vector<double> vl_pm, vh_pm, vt_pm, score_pm, v_low, v_high, v_true, score;
  std::vector<unsigned> fl_pm, low_flags;
  std::vector<std::uint8_t> mask, need_pm, need;
  std::size_t per_sample = net_.inputs();
  std::size_t last_inner = 0;
  for (std::size_t k = 0; k < L; ++k)
    if (inner_[k]) last_inner = k;
  res.trace.resize(sel.keep_trace ? L : 0);
  for (std::size_t k = 0; k < L; ++k) {
    const auto& layer = net_.layers[k];
    const std::size_t n_out = out_size(layer, per_sample);
    std::vector<double> out;
    if (const auto* pl = std::get_if<nn::pool_layer>(&layer)) {
      if (pl->type == nn::pool_layer::kind::max) {
        sim::max_pool2d(pl->shape, in.data(), B, out);
      } else {
        // as nn::simulate: the layer's own accumulation model
        const sim::layer_spec spec = p.layer_spec(k).resolved();
        sim::accumulation a = spec.base;
        a.acc = spec.acc.formats.at(0);
        if (!sim::fast_path_applies(a))
          throw std::invalid_argument("layer " + std::to_string(k + 1) +
                                      " (average pooling) needs an accumulator of the fast path");
        sim::avg_pool2d(pl->shape, in.data(), B, a, out, thr);
      }
    } else if (std::holds_alternative<nn::flatten_layer>(layer)) {
      out = in;
    } else {
      const auto& inn = *inner_[k];
      const auto& d = inn.dense;
      // rows of the dense pass: im2col rows (sample, pixel) for a convolution
      std::size_t pix = 1;
      const double* X = in.data();
      if (const auto* c = std::get_if<nn::conv_layer>(&layer)) {
        pix = c->shape.out_h() * c->shape.out_w();
        sim::im2col(c->shape, in.data(), B, cols);
        X = cols.data();
      }
      const std::size_t R = B * pix;  // rows
      const sim::matrix_view Xv{X, R, d.n_in};
      const bool high_whole = sel.type == kind::uniform_high || sel.type == kind::oracle_gain || sel.keep_trace;
      if (sel.type != kind::uniform_high) {
        if (overflow_aware)
          inn.low.run(Xv, vl_pm, thr, &fl_pm);
        else
          inn.low.run_values(Xv, vl_pm, thr);
        to_nchw(vl_pm, B, pix, d.n_out, v_low);
        if (overflow_aware) to_nchw(fl_pm, B, pix, d.n_out, low_flags);
      }
      if (high_whole) {
        inn.high.run_values(Xv, vh_pm, thr);
        to_nchw(vh_pm, B, pix, d.n_out, v_high);
      }
      mask.assign(B * n_out, 0);
      double overhead = 0;
      if (sel.type == kind::uniform_high) std::fill(mask.begin(), mask.end(), 1);
      if (sel.type == kind::threshold) {
        layer_view lv;
        lv.layer = k;
        lv.layers = L;
        lv.batch = R;
        lv.n_in = d.n_in;
        lv.n_out = d.n_out;
        lv.weights = &d;
        lv.x = X;
        lv.v_low = vl_pm.data();
        lv.config = &cfg_;
        lv.row_norms = &inn.row_norms;
        lv.abs_numerator = [&]() -> const std::vector<double>& {
          abs_cols.resize(R * d.n_in);
          for (std::size_t t = 0; t < abs_cols.size(); ++t) abs_cols[t] = std::fabs(X[t]);
          inn.abs_low.run_values({abs_cols.data(), R, d.n_in}, abs_num, thr);
          return abs_num;
        };
        score_pm.assign(R * d.n_out, 0);
        ind->compute(lv, score_pm);
        to_nchw(score_pm, B, pix, d.n_out, score);
        detail::threshold_levels(score, {1.0}, sel.tau, mask);
        overhead = ind->overhead(lv);  // per row
      }
      if (matched) {
        if (oracle) {
          detail::true_values(d, X == in.data() ? in : cols, R, vt_pm, thr);  // X is one of them
          to_nchw(vt_pm, B, pix, d.n_out, v_true);
        }
        const auto S = static_cast<std::ptrdiff_t>(B);
#pragma omp parallel for num_threads(sim::thread_count(thr)) schedule(static)
        for (std::ptrdiff_t ss = 0; ss < S; ++ss) {
          const auto s = static_cast<std::size_t>(ss);
          const std::size_t want = std::min((*sel.counts)[k][s], n_out);
          detail::select_matched(
              sel, k, s, want, d.act, v_low.data() + s * n_out, oracle ? v_true.data() + s * n_out : nullptr,
              sel.type == kind::oracle_gain ? v_high.data() + s * n_out : nullptr, n_out, mask.data() + s * n_out);
        }
      }
      if (overflow_aware)
        for (std::size_t t = 0; t < mask.size(); ++t)
          if (mask[t] == 0 && (low_flags[t] & (sim::flag::overflow | sim::flag::saturated)) != 0) {
            mask[t] = 1;
            ++res.overflow_recomputed;
          }
      if (sel.type != kind::uniform_low && !high_whole) {
        to_pm(mask, B, pix, d.n_out, need_pm);
        inn.high.run_selected_values(Xv, need_pm, vh_pm, thr);
        to_nchw(vh_pm, B, pix, d.n_out, v_high);
      }
      // the mixed pre-activations, the counts and costs
      out.resize(B * n_out);
      double high_count = 0;
      for (std::size_t s = 0; s < B; ++s) {
        std::size_t count = 0;
        for (std::size_t i = 0; i < n_out; ++i) {
          const std::size_t t = s * n_out + i;
          out[t] = mask[t] != 0 ? v_high[t] : v_low[t];
          count += mask[t] != 0;
        }
        res.counts[k][s] = count;
        high_count += static_cast<double>(count);
      }
      const double terms = static_cast<double>(d.n_in), c_low = cfg_.cost_of(cfg_.low(k));
      const double all = static_cast<double>(B * n_out) * terms;
      cost_high += all * c_high;
      res.level_fraction[0] += static_cast<double>(B * n_out) - high_count;
      res.level_fraction[1] += high_count;
      recomputed += high_count;
      comps += static_cast<double>(B * n_out);
      res.fraction_per_layer[k] = high_count / static_cast<double>(B * n_out);
      if (sel.type == kind::uniform_high) {
        cost += all * c_high;
        tile_cost += all * c_high;
      } else {
        // the MLP runner's sums, in its order
        const double base = all * c_low + overhead * c_low * static_cast<double>(R);
        cost += base;
        tile_cost += base;
        if (high_count > 0) {
          cost += high_count * terms * c_high;
          tile_cost += detail::tiles_at(mask, B, n_out, cfg_.tile_rows, cfg_.tile_samples, 1) * terms * c_high;
        }
      }
      if (sel.keep_trace) {
        auto& tr = res.trace[k];
        tr.recomputed = mask;
        tr.level = mask;
        if (sel.type == kind::threshold) tr.score = score;
        if (sel.type != kind::uniform_high) tr.v_low = v_low;
        if (sel.type != kind::uniform_low) tr.v_high = v_high;
        if (oracle) tr.v_true = v_true;
      }
      nn::apply_activation(d.act, p.act, out, thr, nullptr, p.act_rounding, p.act_saturate, p.seed + k + 1);
      const auto& yr = ref_y_[k];
      if (k != last_inner)
        for (std::size_t t = 0; t < out.size(); ++t)
          if (yr[t] != 0) rel_hidden.push_back(std::fabs(out[t] - yr[t]) / std::fabs(yr[t]));
    }
    in.swap(out);
    per_sample = n_out;
  }
  {
    const auto& yr = ref_y_.back();
    std::vector<double> rel_logits;
    for (std::size_t t = 0; t < in.size(); ++t)
      if (yr[t] != 0) rel_logits.push_back(std::fabs(in[t] - yr[t]) / std::fabs(yr[t]));
    res.rel_logits = quantiles_of(rel_logits);
  }
  res.rel_hidden = quantiles_of(rel_hidden);
  res.fraction = recomputed / comps;
  for (auto& f : res.level_fraction) f /= comps;
  res.weighted_cost = cost / cost_high;
  res.tile_cost = tile_cost / cost_high;
  detail::logit_metrics(res, std::move(in), ref_y_.back(), labels_, net_.outputs());
  return res;
}

}  // namespace mpacc::analysis
