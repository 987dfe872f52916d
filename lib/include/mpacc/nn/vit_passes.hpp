// SPDX-License-Identifier: MIT
// The simulated forward pass of a vision transformer (nn::vit; docs/attention.md,
// "Simulated pass"): every inner product — patch embedding, Q, K, V, Q K^T and
// P V per head, output projection, MLP, head — accumulated exactly as a
// sim::layer_spec says (the dense kernels of sim/layer.hpp or sim::dot, the
// MPFR model for formats outside the fast path); layer norm, softmax, GELU and
// the residual additions evaluated in binary64 and rounded once to the
// activation format. The reference pass, bounds and validate are not here yet.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/nn/vit.hpp"
#include "mpacc/sim/accumulate.hpp"

namespace mpacc::nn {

// The network as the simulated pass uses it: the weights and biases of every
// linear map rounded to p.weights and p.biases, the class token, position
// embedding and layer-norm gains and shifts (elementwise parameters) rounded
// to p.act; all nearest-even without saturation ("none" keeps a linear map's
// values as they are).
vit stored_network(const vit& net, const precision_config& p);

// One inner-product layer of the pass (vit::product_layer_names order): v and
// y are rows x cols, row-major. v: the accumulated inner products (values of
// the accumulator format). y: what the next step consumes —
//   embed       rows (sample, patch),      cols d:      round(v + pos[1 + patch])  (the patch tokens of the stream)
//   q, k, v     rows (sample, token),      cols d:      round(v)
//   scores      rows (sample, head, query), cols tokens: round(softmax(v / sqrt(d_head))) over the keys
//   mix         rows (sample, token),      cols d:      round(v), head h in columns [h d_head, (h + 1) d_head)
//   proj, fc2   rows (sample, token),      cols d:      round(x + v), the residual stream after the addition
//   fc1         rows (sample, token),      cols hidden: round(gelu(v))
//   head        rows sample,               cols classes: round(v), the logits
// with round() to p.act in p.act_rounding (saturating when p.act_saturate).
// in: the operand rows X of a linear map (rows x n_in: the patches, the layer
// norms' outputs, the attention output, the GELU outputs, the final norm of
// the class token); empty for scores and mix, whose operands are the y of the
// q and k layers (scores) and of the scores and v layers (mix). flags: each
// inner product's roundings; act_flags: each y rounding's (with overflow or
// invalid when the binary64 value of the nonlinearity is not finite).
// in_flags: layer 0 only, the storage rounding of each input pixel.
struct simulated_vit_layer : simulated_layer {
  std::size_t rows = 0, cols = 0;
  std::vector<double> in;
};

struct simulated_vit {
  std::vector<simulated_vit_layer> layers;  // net.product_layers() entries
  // the OR of the flags of the roundings that belong to no inner-product
  // layer: the class-token row of the stream (round(cls + pos[0])) and the
  // layer norms' outputs
  unsigned other_flags = 0;
  // batch x d: the class-token row of the stream before the first block,
  // round(cls + pos[0]) (the patch tokens are the embedding's y)
  std::vector<double> cls_row;
  // batch x classes
  [[nodiscard]] const std::vector<double>& logits() const { return layers.back().y; }
};

// The simulated pass on X (batch x image^2, the exact inputs, stored in
// p.inputs first). Inner-product layer k (0 .. net.product_layers() - 1) is
// accumulated as p.layer_spec(k) says: p.acc and p.maps have 1 or
// product_layers() entries; a map's index (when not empty) has one entry per
// column of that layer's v (output feature; key position for scores, output
// feature for mix). Terms: a linear map's output i is sim::dot(W row i, the
// input row, b_i); scores (s, h, i, j) is sim::dot(k_j^h, q_i^h, 0) on the y
// of the k and q layers (head h's d_head features); mix (s, i, h d_head + c)
// is sim::dot(V^h column c over the tokens, P row (s, h, i), 0). Stochastic
// words: every layer numbers its outputs as the dense layer with these rows
// and columns does ((row * cols + col) * words_per_dot(n) on), rows counted
// from first_sample (the index of X's first row in a larger data set), so a
// data set run in pieces gives the bits of one run. The y roundings of layer k
// use seed p.seed + k + 1, the other roundings p.seed + product_layers() + 1 +
// site (site 0 the class-token row, 1 + 2 b and 2 + 2 b the layer norms of
// block b, 1 + 2 blocks the final norm), element index counted from
// first_sample likewise. Throws std::invalid_argument for a network that does
// not validate, inputs of the wrong width or per-layer lists that do not fit.
// hook (when set) is called once per inner-product layer k, after the layer's
// v and flags (and rows, cols, in) are formed and before y is computed from
// them: it may replace values of v and flags (e.g. recompute some components
// in another format, analysis/vit_algorithm1.hpp); y is then formed from the
// v it leaves. `pass` holds every earlier layer complete (the operands of
// scores and mix are the y of earlier layers). Without a hook, or with one
// that changes nothing, the bits are those of the pass without it.
using vit_layer_hook = std::function<void(std::size_t k, simulated_vit& pass)>;
simulated_vit simulate(const vit& net, sim::matrix_view X, const precision_config& p, int threads = 0,
                       std::size_t first_sample = 0, const vit_layer_hook& hook = {});

// Component (row, col) of inner-product layer k of a simulated pass computed
// again with accumulation a: the same operands, bias and stochastic words
// (numbered for a, from first_sample) as simulate() uses, through sim::dot
// (ref::dot_mpfr where sim::dot does not apply). net: the network as the
// pass used it (stored_network); pass: layers 0 .. k formed (v, rows, cols,
// in), the operand layers of scores and mix complete.
sim::dot_result vit_component(const vit& net, const simulated_vit& pass, std::size_t k, std::size_t row,
                              std::size_t col, const sim::accumulation& a, std::size_t first_sample = 0);
// The operands of that component (w, x, bias) as simulate() forms them; for
// the mix, w is column col of V over the tokens (copied into `buffer`).
struct vit_operands {
  std::span<const double> w, x;
  double bias = 0;
};
vit_operands vit_component_operands(const vit& net, const simulated_vit& pass, std::size_t k, std::size_t row,
                                    std::size_t col, std::vector<double>& buffer);

// Argmax of the simulated logits of every row of X (simulate() in pieces of
// `chunk` samples, the same bits as one run); for evaluation.
std::vector<std::size_t> simulate_predictions(const vit& net, sim::matrix_view X, const precision_config& p,
                                              int threads = 0, std::size_t chunk = 256);

}  // namespace mpacc::nn
