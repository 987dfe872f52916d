// SPDX-License-Identifier: MIT
// IDX files (raw or gzip) and the MNIST-style data sets built from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mpacc::io {

// An IDX array of unsigned bytes (type 0x08): dims and row-major data.
struct idx_array {
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> data;
};

// Limits of the IDX reader (docs/model-format.md, "Limits"): the product of the
// dimensions (the data size in bytes) is at most 2^30 (1 GiB; MNIST's training
// images are 47 MB), the rank at most 8.
inline constexpr std::uint64_t max_idx_bytes = std::uint64_t{1} << 30;

// Reads an IDX file of unsigned bytes, raw or gzip-compressed (detected from
// its first bytes). Throws std::runtime_error, one line naming the file, for: a
// missing, unreadable or directory path, a corrupt or truncated gzip stream,
// data after the gzip stream, a wrong magic (not 0,0,0x08,ndims), a truncated
// header, dimensions whose product exceeds max_idx_bytes, or a size that does
// not match the header. Memory: the declared data size at most; a raw file's
// size is checked before anything is allocated, a gzip stream is inflated in
// chunks and refused as soon as it holds more than the header declares.
idx_array read_idx(const std::filesystem::path& file);

// The same on bytes in memory (raw or gzip); `name` stands for the file in messages.
idx_array parse_idx(std::span<const std::uint8_t> bytes, const std::string& name);

// A labelled image data set with inputs normalized as in the paper (docs/semantics.md §8):
// x = (pixel/255 - mean) / std, stored as binary64 values.
struct dataset {
  std::string name;
  std::size_t rows = 0, cols = 0;  // samples x features (28*28 = 784)
  std::vector<double> x;           // rows * cols, row-major
  std::vector<std::uint8_t> y;     // labels 0..9
  [[nodiscard]] const double* row(std::size_t i) const noexcept { return x.data() + i * cols; }
};

struct normalization {
  double mean = 0.1307, std = 0.3081;  // the paper's (MNIST's); used for Fashion-MNIST too
};

// Loads "mnist" or "fashion-mnist" from <data_dir>/<name>/ (train or t10k
// files, raw or .gz); `limit` > 0 keeps the first `limit` samples. Throws
// std::runtime_error naming the missing or bad file and how to fetch it; a
// file with no images (or images of 0 pixels), image and label files of the
// wrong rank or with different counts, and labels above 9 are errors.
dataset load_dataset(const std::filesystem::path& data_dir, const std::string& name, bool train, std::size_t limit = 0,
                     normalization norm = {});

// The data folder: $MPACC_DATA if set, else "data" under the current directory.
std::filesystem::path default_data_dir();

namespace detail {

// Shared by the data and model readers.
// The whole of a file, read after checking that it is not a directory and holds
// at most max_bytes. Throws std::runtime_error "<file>: <problem>".
std::string read_file_capped(const std::filesystem::path& file, std::uint64_t max_bytes, const char* what);

}  // namespace detail

}  // namespace mpacc::io
