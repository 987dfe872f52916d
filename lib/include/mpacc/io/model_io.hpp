// SPDX-License-Identifier: MIT
// Model files: mpacc's own binary format (bit-exact round trip) and import of
// NumPy .npz archives (e.g. a PyTorch model saved with numpy.savez).
// The formats are documented in docs/model-format.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "mpacc/nn/cnn.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/nn/vit.hpp"

namespace mpacc::io {

// Writes net (and a free-form metadata text, e.g. JSON) to `file` through a
// temporary file in the same folder renamed into place: an existing file is
// replaced whole or left untouched. Throws std::runtime_error on I/O failure.
void save_model(const nn::mlp& net, const std::filesystem::path& file, const std::string& metadata = "");

// Limits of the readers (docs/model-format.md, "Limits"). Sizes and offsets from a
// file are computed in 64 bits with overflow checks, and checked against these and
// against the bytes the file really holds before anything is allocated.
inline constexpr std::uint64_t max_layer_size = std::uint64_t{1} << 24;  // n_in, n_out, every .npy dimension
inline constexpr std::uint32_t max_layers = 1024;
inline constexpr std::uint64_t max_model_file = std::uint64_t{1} << 32;  // a model file or .npz, read whole
inline constexpr std::uint64_t max_npz_member = std::uint64_t{1} << 30;  // one .npz member, uncompressed
inline constexpr std::uint64_t max_npz_total = std::uint64_t{1} << 31;   // all members, uncompressed

// Reads a model file. Throws std::runtime_error, one line naming the file and
// the problem: a directory, wrong magic or version, truncation, more layers or
// larger layers than the limits, sizes that do not chain, an unknown activation
// code, a CRC mismatch, trailing bytes.
nn::mlp load_model(const std::filesystem::path& file, std::string* metadata = nullptr);
// The same on bytes in memory; `name` stands for the file in messages.
nn::mlp parse_model(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata = nullptr);

// Imports arrays W1, b1, W2, b2, ... (W_k of shape (n_out, n_in) as in
// PyTorch's Linear.weight, b_k of shape (n_out,), float32 or float64,
// little-endian, C or Fortran order) from an .npz file (stored or deflated
// members). `hidden` is the activation of every layer but the last, whose
// activation is identity. Strict: every member must be one of W1, b1, ..., WL, bL
// (with or without ".npy"), once, without gaps; every member's CRC-32 is
// checked; a deflated member is inflated in chunks up to the size it declares
// (at most max_npz_member, and at most what deflate can expand its compressed
// bytes to); ZIP64, encryption and other compression methods are refused.
// Throws std::runtime_error, one line naming the file and the member.
nn::mlp import_npz(const std::filesystem::path& file, sim::activation_fn hidden);
// The same on bytes in memory; `name` stands for the file in messages.
nn::mlp parse_npz(std::span<const std::uint8_t> bytes, const std::string& name, sim::activation_fn hidden);

// Imports the weights of a convolutional network from an .npz file, in
// PyTorch's layouts, into the layers of `arch` (its shapes and activations;
// its weights are replaced): the k-th layer with weights (convolution or
// dense, in order) takes W<k> and b<k> — a convolution's W of shape (c_out,
// c_in, kh, kw) as Conv2d.weight, a dense layer's (n_out, n_in) as
// Linear.weight, b of shape (c_out,) or (n_out,). The file must hold exactly
// these arrays (read as import_npz reads them, with the same checks); a shape
// that differs from the architecture's, a missing or extra layer, or
// non-finite values give one std::runtime_error line naming the file and the
// array. docs/cnn.md shows the PyTorch snippet that writes such a file.
nn::cnn import_npz_cnn(const std::filesystem::path& file, const nn::cnn& arch);
// The same on bytes in memory; `name` stands for the file in messages.
nn::cnn parse_npz_cnn(std::span<const std::uint8_t> bytes, const std::string& name, const nn::cnn& arch);

// Loads a model by extension: ".npz" through import_npz (with `hidden`),
// anything else through load_model.
nn::mlp load_any(const std::filesystem::path& file, sim::activation_fn hidden = {sim::activation::relu},
                 std::string* metadata = nullptr);

// --- convolutional networks (version 2 of the model file: a layer list) ----

// Writes a convolutional network (version 2 of the format: the input shape and
// every layer's kind, shape, activation and parameters; docs/model-format.md),
// through a temporary file renamed into place as save_model does.
void save_model(const nn::cnn& net, const std::filesystem::path& file, const std::string& metadata = "");
// Reads a model file as a convolutional network: version 2 as written above,
// or version 1 (an MLP) as the dense-only network on n_in x 1 x 1 inputs.
// Throws std::runtime_error, one line naming the file and the problem (as
// load_model; also an unknown layer kind, a zero stride or size, a size over
// max_layer_size, more than 2^31 weights in a layer, shapes that do not chain).
nn::cnn load_cnn(const std::filesystem::path& file, std::string* metadata = nullptr);
nn::cnn parse_cnn(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata = nullptr);
// Whether `file` is a version-2 (convolutional) model file: its first 12 bytes
// are the magic and version 2. False for anything else (an MLP file, .npz, a
// missing file); the loaders then say what is wrong.
bool is_cnn_model(const std::filesystem::path& file);

// --- vision transformers (version 3: the sizes and every parameter tensor) --

// Writes a vision transformer (docs/model-format.md, version 3) through a
// temporary file renamed into place, as save_model does.
void save_model(const nn::vit& net, const std::filesystem::path& file, const std::string& metadata = "");
// Reads a version-3 model file. Throws std::runtime_error, one line naming the
// file and the problem: the problems of the other versions (magic, version,
// truncation naming the tensor being read, checksum, trailing bytes), sizes
// outside their ranges (image 1 to 4096, patch 1 to image, d, MLP width and
// classes 1 to 2^24, heads 1 to d, 1 to 1024 blocks), an image not divisible
// into patches, d not divisible by the heads, a tensor of more than 2^31
// values (checked before anything is allocated), and what nn::vit::validate
// refuses (non-finite values, a non-positive epsilon).
nn::vit load_vit(const std::filesystem::path& file, std::string* metadata = nullptr);
nn::vit parse_vit(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata = nullptr);
// Whether `file` is a version-3 (vision transformer) model file.
bool is_vit_model(const std::filesystem::path& file);

// Imports a vision transformer from an .npz file holding the state_dict of
// timm's VisionTransformer on one-channel images (class token, learned
// position embedding, pre-norm blocks with a fused qkv projection, exact
// GELU, the head on the class token; docs/attention.md, ".npz import"):
// patch_embed.proj.weight (d, 1, p, p) and .bias (d); cls_token (1, 1, d);
// pos_embed (1, 1 + patches, d); per block b = 0, 1, ...:
// blocks.b.norm1.weight/.bias (d), blocks.b.attn.qkv.weight (3d, d) and .bias
// (3d) (rows q, then k, then v), blocks.b.attn.proj.weight (d, d)/.bias,
// blocks.b.norm2.weight/.bias, blocks.b.mlp.fc1.weight (hidden, d)/.bias,
// blocks.b.mlp.fc2.weight (d, hidden)/.bias; norm.weight/.bias (d);
// head.weight (classes, d)/.bias. The sizes are inferred from the arrays
// (d, patch, tokens, blocks, hidden, classes; the image side is patch times
// the square root of the patch count); the number of heads and the layer
// norms' epsilon (timm's default 1e-6) are not in the state_dict and are
// given. The archive is read as import_npz reads one (float32 or float64
// members, the same checks), every array must be one of these names, and
// each problem is one std::runtime_error line naming the file and the array:
// a missing array, an unexpected one, a shape that differs from the inferred
// architecture, a non-finite value (nn::vit::validate's message), heads that
// do not divide d.
nn::vit import_npz_vit(const std::filesystem::path& file, std::size_t heads, double ln_eps = 1e-6);
// The same on bytes in memory; `name` stands for the file in messages.
nn::vit parse_npz_vit(std::span<const std::uint8_t> bytes, const std::string& name, std::size_t heads,
                      double ln_eps = 1e-6);

}  // namespace mpacc::io
