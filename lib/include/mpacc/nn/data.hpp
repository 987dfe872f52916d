// IDX files (raw or gzip) and the MNIST-style data sets built from them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mpacc::nn {

// An IDX array of unsigned bytes (type 0x08): dims and row-major data.
struct idx_array {
  std::vector<std::size_t> dims;
  std::vector<std::uint8_t> data;
};

// Reads an IDX file of unsigned bytes, raw or gzip-compressed (detected from
// its first bytes). Throws std::runtime_error naming the file for: a missing
// or unreadable file, a corrupt gzip stream, a wrong magic (not 0,0,0x08,ndims),
// a truncated header, or a size that does not match the header.
idx_array read_idx(const std::filesystem::path& file);

// A labelled image data set with inputs normalized as SPEC §8:
// x = (pixel/255 - mean) / std, stored as binary64 values.
struct dataset {
  std::string name;
  std::size_t rows = 0, cols = 0;  // samples x features (28*28 = 784)
  std::vector<double> x;           // rows * cols, row-major
  std::vector<std::uint8_t> y;     // labels 0..9
  [[nodiscard]] const double* row(std::size_t i) const noexcept { return x.data() + i * cols; }
};

struct normalization {
  double mean = 0.1307, std = 0.3081;  // SPEC §8 (MNIST's); used for Fashion-MNIST too
};

// Loads "mnist" or "fashion-mnist" from <data_dir>/<name>/ (train or t10k
// files, raw or .gz); `limit` > 0 keeps the first `limit` samples. Throws
// std::runtime_error naming the missing or bad file and how to fetch it.
dataset load_dataset(const std::filesystem::path& data_dir, const std::string& name, bool train,
                     std::size_t limit = 0, normalization norm = {});

// The data folder: $MPACC_DATA if set, else "data" under the current directory.
std::filesystem::path default_data_dir();

}  // namespace mpacc::nn
