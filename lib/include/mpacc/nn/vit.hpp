// SPDX-License-Identifier: MIT
// A small vision transformer (issue 15, phase 1; docs/attention.md): patch
// embedding, class token and position embedding, pre-norm transformer blocks
// (layer norm, multi-head self-attention, residual; layer norm, GELU MLP,
// residual), a final layer norm on the class token and a linear classifier.
// Training and native evaluation: train/vit.hpp; the simulated pass:
// nn/vit_passes.hpp.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "mpacc/nn/network.hpp"

namespace mpacc::nn {

// y = gamma * (x - mean) / sqrt(var + eps) + beta over the d features of one
// token, var the biased variance (PyTorch's nn.LayerNorm).
struct layer_norm {
  std::vector<double> gamma, beta;  // d each
};

// One pre-norm block on a tokens x d residual stream X:
//   X += proj(attention(ln1(X))),  X += fc2(gelu(fc1(ln2(X)))).
// q, k, v, proj: d -> d (identity activation); fc1: d -> hidden (GELU,
// the exact erf form x Phi(x)); fc2: hidden -> d (identity). Every W is
// n_out x n_in as PyTorch's nn.Linear.weight. Head h (0-based) owns the
// features [h d_head, (h + 1) d_head) of q, k, v and of the attention output
// (PyTorch's nn.MultiheadAttention split).
struct vit_block {
  layer_norm ln1;
  dense_layer q, k, v, proj;
  layer_norm ln2;
  dense_layer fc1, fc2;
};

// A vision transformer on image x image one-channel inputs (a data-set row is
// the image row-major), cut into (image / patch)^2 non-overlapping patches.
// Token 0 is the class token, token 1 + p the patch p (patches row-major over
// the image, pixels row-major within a patch: PyTorch's Conv2d(1, d, patch,
// stride=patch) followed by flatten(2).transpose(1, 2), its weight
// (d, 1, patch, patch) being embed.W).
struct vit {
  std::size_t image = 28, patch = 7;
  std::size_t d = 64, heads = 4, hidden = 256, classes = 10;
  double ln_eps = 1e-5;     // the layer norms' epsilon (PyTorch's default)
  dense_layer embed;        // patch^2 -> d, identity
  std::vector<double> cls;  // d: the class token before its position embedding
  std::vector<double> pos;  // tokens() x d, row-major: token t's position embedding at t * d
  std::vector<vit_block> blocks;
  layer_norm ln_f;   // on the class token after the last block
  dense_layer head;  // d -> classes, identity: the logits

  [[nodiscard]] std::size_t patches() const noexcept { return (image / patch) * (image / patch); }
  [[nodiscard]] std::size_t tokens() const noexcept { return patches() + 1; }
  [[nodiscard]] std::size_t d_head() const noexcept { return heads ? d / heads : 0; }
  [[nodiscard]] std::size_t inputs() const noexcept { return image * image; }
  [[nodiscard]] std::size_t outputs() const noexcept { return classes; }
  // "vit28p7-d64-h4-b2-m256-c10"
  [[nodiscard]] std::string arch() const;
  // Throws std::invalid_argument naming the part and the mismatch: sizes (an
  // image not divisible into patches, d not divisible by heads), every
  // weight, bias, gain and embedding of the wrong size, activations other
  // than identity (GELU for fc1), non-finite values, a non-positive epsilon.
  void validate() const;

  // The inner products of the network as "layers" of a precision_config
  // (its acc and maps lists): 0 the patch embedding; block b (0-based) at
  // 1 + 8 b: q, k, v, scores (Q K^T per head), mix (P V per head), proj, fc1,
  // fc2; the head last. 2 + 8 * blocks entries.
  [[nodiscard]] std::size_t product_layers() const noexcept { return 2 + 8 * blocks.size(); }
  // "embed", "block1.q", ..., "block1.fc2", ..., "head"
  [[nodiscard]] std::vector<std::string> product_layer_names() const;
};

// The kinds of inner products within a block, in their order (index k - 1 - 8 b).
inline constexpr const char* vit_block_products[8] = {"q", "k", "v", "scores", "mix", "proj", "fc1", "fc2"};

// A vit with zero weights and biases, layer-norm gains 1 and shifts 0, zero
// class token and position embedding; `hidden` the MLP width (0: 4 d).
// Throws std::invalid_argument for sizes validate() would refuse.
vit make_vit(std::size_t blocks, std::size_t d, std::size_t heads, std::size_t hidden = 0, std::size_t classes = 10,
             std::size_t image = 28, std::size_t patch = 7);

}  // namespace mpacc::nn
