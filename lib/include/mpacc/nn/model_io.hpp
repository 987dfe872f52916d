// Model files: mpacc's own binary format (bit-exact round trip) and import of
// NumPy .npz archives (e.g. a PyTorch model saved with numpy.savez).
// The formats are documented in docs/model-format.md.
#pragma once

#include <filesystem>
#include <string>

#include "mpacc/nn/network.hpp"

namespace mpacc::nn {

// Writes net (and a free-form metadata text, e.g. JSON) to `file` through a
// temporary file in the same folder renamed into place: an existing file is
// replaced whole or left untouched. Throws std::runtime_error on I/O failure.
void save_model(const mlp& net, const std::filesystem::path& file, const std::string& metadata = "");

// Reads a model file. Throws std::runtime_error naming the file and the
// problem: wrong magic or version, truncation, sizes that do not chain,
// an unknown activation code, a CRC mismatch, trailing bytes.
mlp load_model(const std::filesystem::path& file, std::string* metadata = nullptr);

// Imports arrays W1, b1, W2, b2, ... (W_k of shape (n_out, n_in) as in
// PyTorch's Linear.weight, b_k of shape (n_out,), float32 or float64,
// little-endian, C or Fortran order) from an .npz file (stored or deflated
// members). `hidden` is the activation of every layer but the last, whose
// activation is identity. Throws std::runtime_error naming the file/member.
mlp import_npz(const std::filesystem::path& file, sim::activation_fn hidden);

// Loads a model by extension: ".npz" through import_npz (with `hidden`),
// anything else through load_model.
mlp load_any(const std::filesystem::path& file, sim::activation_fn hidden = {sim::activation::relu},
             std::string* metadata = nullptr);

}  // namespace mpacc::nn
