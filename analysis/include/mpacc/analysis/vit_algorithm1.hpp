// SPDX-License-Identifier: MIT
// Algorithm 1 over the inner products of a vision transformer (docs/attention.md,
// "Algorithm 1 on the vision transformer"): the MLP runner's strategies,
// matched baselines and metrics (analysis/algorithm1.hpp) on an nn::vit.
//
// The components of inner-product layer k are the (row, col) entries of its
// v as nn::simulate lays them out (nn/vit_passes.hpp): a linear map's
// (sample, token) x output feature, the scores' (sample, head, query) x key,
// the mix's (sample, token) x feature. Layer by layer in
// vit::product_layer_names() order, every component is accumulated with the
// low accumulator, the indicator scores it, the components scoring > tau (or
// NaN) are computed again with the high accumulator (the bits of sim::dot in
// the high format on the same operands and stochastic words), and the layer's
// nonlinearity (position embedding, softmax, GELU, residual addition, the
// rounding to the activation format) is applied to the mixed v exactly as
// nn::simulate does: the runner is nn::simulate with a hook
// (nn::vit_layer_hook). So a run that recomputes nothing is nn::simulate with
// the low configuration bit for bit, and one that recomputes everything is
// nn::simulate with the high accumulator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/nn/vit.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

// The kind of inner-product layer k: "embed", "q", "k", "v", "scores", "mix",
// "proj", "fc1", "fc2" or "head".
std::string vit_layer_kind(const nn::vit& net, std::size_t k);

// What a ViT indicator sees for one inner-product layer of one piece of the
// data set.
struct vit_layer_view {
  std::size_t layer = 0;
  std::string kind;                         // vit_layer_kind
  const nn::vit* net = nullptr;             // as stored (the pass's weights)
  const nn::simulated_vit* pass = nullptr;  // layers 0 .. layer formed; pass->layers[layer].v the low values
  const mixed_config* config = nullptr;
  // embed, proj, fc2: the value each output is added to (rows x cols: the
  // position embedding, the residual stream before the addition); else empty
  const std::vector<double>* addend = nullptr;
};

// An indicator: fills score (rows x cols of the layer); components with
// score > tau (or NaN) are recomputed. `overhead`: the extra accumulated terms
// per component (at the low format's cost) of computing it on this layer.
struct vit_indicator {
  std::string name;
  std::function<void(const vit_layer_view&, std::vector<double>& score)> compute;
  std::function<double(const vit_layer_view&)> overhead;
};

// Built in (docs/attention.md, "Indicators"), with u the low accumulator's unit
// roundoff and N(c) = sum_j |w_j x_j| + |b| the absolute inner product of a
// component, v its low value:
//   kappa         linear maps: N u |phi'(v)| / |phi(v)| with phi the map after the
//                 inner product: identity (q, k, v, mix, head: N u / |v|), the
//                 residual or position addition y = a + v (embed, proj, fc2:
//                 N u / |a + v|), GELU (fc1: N u kappa_act(v) / |v|); scores:
//                 2 s_j (1 - s_j) N u / sqrt(d_head), s the binary64 softmax of
//                 the row's low logits, the first-order L1 change of the
//                 probability row under the accumulation's error bound N u.
//   kappa-row     the linear maps' first-order output error N u |phi'(v)| relative to
//                 the root mean square of phi(v_low) over the component's row (the
//                 vector the next layer consumes: attention, layer norm and the
//                 linear maps are conditioned normwise, not per component);
//                 scores as kappa;
//   kappa-row-norm  kappa-row with N replaced by its Cauchy-Schwarz bound
//                 ||w||_2 ||x||_2 + |b| (norms shared by a row and a column: a
//                 cheap estimate, about 2 n / cols + 1 terms per component);
//   kappa-scores  kappa on the scores, 0 (never recomputed) elsewhere;
//   lamp          LAMP's rule (arXiv 2601.21623) on the scores: 2 s_j (1 - s_j) |z_j|,
//                 z_j = v_j / sqrt(d_head) the low logit; 0 elsewhere.
// A component with a zero denominator scores +inf (recomputed) unless its
// numerator is 0.
void register_vit_indicator(const vit_indicator& ind);
const vit_indicator& find_vit_indicator(const std::string& name);
std::vector<std::string> vit_indicator_names();

// Runs of Algorithm 1 and its baselines on a vit and a data set (one image per
// row). mixed_config: precision as for nn::simulate over a vit (one
// accumulator or one per inner-product layer; no maps); high: the
// recomputation accumulator of every inner-product layer.
//
// selection kinds: uniform_low, uniform_high, threshold (a vit indicator by
// name), and the matched baselines random, random_active, smallest,
// oracle_pre and oracle_local with counts per [layer][row] (the layer's rows
// over the whole data set, as mixed_result::counts of a threshold run holds
// them). random-active's candidates: every component but fc1 ones where GELU
// is flat (kappa_act = 0 and v != 0): the identity, residual and softmax maps
// let every component matter, so elsewhere it is random. Oracles rank by the
// binary64 value of the same operands: oracle-pre |v_low - v|, oracle-local
// the change of the layer's output, |phi(v_low) - phi(v)| for linear maps and
// mix, and for a logit the exact L1 change of its probability row when that
// logit alone is corrected, 2 |s_j' - s_j|. Not supported
// (std::invalid_argument): ladders, static maps, overflow_aware, oracle-gain.
//
// mixed_result: counts [layer][row]; fraction_per_layer per inner-product
// layer; costs count accumulated terms (a linear map's n_in, d_head for a
// score, tokens for a mix component) relative to uniform high, the
// indicator's overhead included; tiles: tile_rows consecutive columns x
// tile_samples consecutive rows of a layer, within one piece of the data
// set; rel_logits against the reference; rel_hidden is not computed (n = 0).
// The reference: train::vit_forward_native (binary64, no rounding) on the
// stored network and the stored (or exact, cfg.ref_inputs) inputs.
// keep_trace: per layer, over all rows, the recomputed mask, the score
// (threshold runs), v_low (the low values), v_high (the mixed values the
// layer's y was formed from) and v_true (oracles).
class vit_mixed_runner {
 public:
  // chunk: samples per simulated piece (memory: about 0.1 MB per sample)
  vit_mixed_runner(const nn::vit& net, const io::dataset& data, std::size_t samples, const mixed_config& cfg,
                   int threads = 0, std::size_t chunk = 256);
  [[nodiscard]] mixed_result run(const selection& sel, int threads = -1) const;
  // Uniform low except the inner-product layers whose kind (vit_layer_kind)
  // is listed, computed entirely with the high accumulator.
  [[nodiscard]] mixed_result run_kinds_high(const std::vector<std::string>& kinds, int threads = -1) const;

  [[nodiscard]] std::size_t samples() const noexcept { return rows_; }
  [[nodiscard]] const mixed_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const nn::vit& network() const noexcept { return net_; }
  [[nodiscard]] const std::vector<double>& reference_logits() const noexcept { return ref_logits_; }
  [[nodiscard]] double reference_accuracy() const;
  // the stored inputs (samples x image^2)
  [[nodiscard]] const std::vector<double>& inputs() const noexcept { return x0_; }

 private:
  nn::vit net_;  // as stored (cfg.precision's weight, bias and activation formats)
  mixed_config cfg_;
  std::size_t rows_, chunk_;
  int threads_;
  std::vector<double> x0_;  // stored inputs
  std::vector<std::uint8_t> labels_;
  std::vector<double> ref_logits_;
  // per inner-product layer: the linear map prepared with the high
  // accumulator (none for scores, mix, or a high format outside the fast path)
  std::vector<std::optional<sim::prepared_dense>> high_;
  mixed_result run_impl(const selection& sel, const std::vector<std::string>* kinds, int threads) const;
};

}  // namespace mpacc::analysis
