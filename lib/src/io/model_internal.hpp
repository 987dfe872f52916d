// SPDX-License-Identifier: MIT
// Shared by the model-file readers and writers (model_io.cpp: MLPs and .npz;
// cnn_io.cpp: convolutional networks): the bounds-checked reader, the byte
// writer, the atomic write and the one-line error wrapper. Not installed.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <span>
#include <stdexcept>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mpacc::io::detail {

inline constexpr char kModelMagic[8] = {'M', 'P', 'A', 'C', 'C', 'N', 'N', '\0'};
inline constexpr std::uint32_t kMlpVersion = 1;  // dense layers only
inline constexpr std::uint32_t kCnnVersion = 2;  // a layer list (docs/model-format.md)
inline constexpr std::uint32_t kVitVersion = 3;  // a vision transformer (docs/model-format.md)

// Whether `file` is a regular file that starts with the model magic and `version`.
inline bool has_model_version(const std::filesystem::path& file, std::uint32_t version) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return false;
  std::ifstream in(file, std::ios::binary);
  char head[12];
  if (!in.read(head, 12)) return false;
  std::uint32_t v;
  std::memcpy(&v, head + 8, 4);
  return std::memcmp(head, kModelMagic, 8) == 0 && v == version;
}

// The network a reader built, checked: its validate() message as one
// std::runtime_error line naming the file.
template <class Net>
Net validated(Net net, const std::string& name) {
  try {
    net.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(name + ": " + e.what());
  }
  return net;
}

struct writer {
  std::string buf;
  template <class T>
  void put(T v) {
    static_assert(std::endian::native == std::endian::little, "mpacc model files are little-endian");
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    buf.append(b, sizeof(T));
  }
  void put_bytes(const void* p, std::size_t n) { buf.append(static_cast<const char*>(p), n); }
};

// Bounds-checked little-endian reads from the bytes of a model file.
struct reader {
  std::string_view b;
  std::size_t pos = 0;
  const std::string& file;
  void need(std::uint64_t n, const char* what) const {
    if (b.size() - pos < n)
      throw std::runtime_error(file + ": truncated model file (reading " + what + " at byte " + std::to_string(pos) +
                               ")");
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  // The header fields after the version, common to both versions: the layer
  // count (at most `limit`, returned) and the metadata (copied to `metadata`
  // when given, skipped otherwise).
  std::uint32_t layers_and_metadata(std::uint32_t limit, std::string* metadata) {
    const auto n_layers = get<std::uint32_t>("layer count");
    if (n_layers > limit)
      throw std::runtime_error(file + ": " + std::to_string(n_layers) + " layers, over the limit of " +
                               std::to_string(limit));
    const auto meta_len = get<std::uint64_t>("metadata length");
    need(meta_len, "metadata");
    if (metadata) metadata->assign(b.data() + pos, meta_len);
    pos += meta_len;
    return n_layers;
  }
};

inline std::string_view as_chars(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

inline std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// An allocation failure or a length error, whatever its cause, becomes one line naming the file.
template <class F>
auto naming_file(const std::string& name, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(name + ": out of memory");
  } catch (const std::length_error&) {
    throw std::runtime_error(name + ": sizes too large");
  }
}

// An array of an .npy member, as binary64 values in row-major order.
struct npy_array {
  std::vector<std::size_t> shape;
  std::vector<double> data;
};
// The arrays W1, b1, ..., WL, bL of an .npz archive (keys without ".npy"), with
// every check io::import_npz makes on the archive and its members (model_io.cpp).
std::map<std::string, npy_array> read_npz_arrays(std::string_view bytes, const std::string& name);
// The same with other member names: every key (name without ".npy") must be
// one accept() allows, else one line naming the member and `expected` (what
// the archive should hold); no numbering is checked.
std::map<std::string, npy_array> read_npz_named(std::string_view bytes, const std::string& name,
                                                const std::function<bool(const std::string&)>& accept,
                                                const std::string& expected);
// "(2, 1, 5, 5)"
std::string shape_string(const std::vector<std::size_t>& shape);

// Appends the CRC-32 of w.buf and writes it to `file` through a temporary file
// in the same folder renamed into place (model_io.cpp).
void write_model_bytes(writer& w, const std::filesystem::path& file);
// Checks the trailing CRC-32 of a model file whose content ends at r.pos
// (throws std::runtime_error naming trailing bytes or a mismatch).
void check_model_crc(const reader& r, std::span<const std::uint8_t> data, const std::string& name);

}  // namespace mpacc::io::detail
