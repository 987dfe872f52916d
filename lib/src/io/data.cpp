// SPDX-License-Identifier: MIT
#include "mpacc/io/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <optional>
#include <stdexcept>

#include "mpacc/sim/text.hpp"

namespace mpacc::io {

namespace detail {

namespace {

// Refuses what cannot be read as a file, with the same words for every reader.
std::ifstream open_checked(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw std::runtime_error(file.string() + ": is a directory");
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw std::runtime_error(file.string() + ": cannot open" +
                             (err ? std::string(" (") + std::strerror(err) + ")" : ""));
  }
  return in;
}

}  // namespace

std::string read_file_capped(const std::filesystem::path& file, std::uint64_t max_bytes, const char* what) {
  std::ifstream in = open_checked(file);
  std::error_code ec;
  const auto size = std::filesystem::is_regular_file(file, ec) ? std::filesystem::file_size(file, ec) : 0;
  if (!ec && size > max_bytes)
    throw std::runtime_error(file.string() + ": " + std::to_string(size) + " bytes, over the limit of " +
                             std::to_string(max_bytes) + " for " + what);
  // chunked, so that a pipe or a file growing under us is capped too
  std::string bytes;
  std::array<char, 1 << 16> buf;
  while (in) {
    in.read(buf.data(), buf.size());
    const auto got = static_cast<std::size_t>(in.gcount());
    if (bytes.size() + got > max_bytes)
      throw std::runtime_error(file.string() + ": over the limit of " + std::to_string(max_bytes) + " bytes for " +
                               what);
    bytes.append(buf.data(), got);
  }
  if (in.bad()) throw std::runtime_error(file.string() + ": read error");
  return bytes;
}

}  // namespace detail

namespace {

constexpr std::size_t kChunk = std::size_t{1} << 20;  // inflate and copy in 1 MiB steps

// Where the bytes of an IDX file come from, read front to back.
class source {
 public:
  virtual ~source() = default;
  // Up to n bytes into dst; fewer only at the end of the data.
  virtual std::size_t read(std::uint8_t* dst, std::size_t n) = 0;
  // The bytes left, when known without reading them (a raw file or buffer).
  [[nodiscard]] virtual std::optional<std::uint64_t> remaining() const { return std::nullopt; }
};

class memory_source final : public source {
 public:
  explicit memory_source(std::span<const std::uint8_t> b) : b_(b) {}
  std::size_t read(std::uint8_t* dst, std::size_t n) override {
    n = std::min(n, b_.size() - pos_);
    if (n) std::memcpy(dst, b_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  [[nodiscard]] std::optional<std::uint64_t> remaining() const override { return b_.size() - pos_; }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
};

class file_source final : public source {
 public:
  file_source(std::ifstream in, const std::string& name, std::optional<std::uint64_t> size)
      : in_(std::move(in)), name_(name), left_(size) {}
  std::size_t read(std::uint8_t* dst, std::size_t n) override {
    in_.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
    const auto got = static_cast<std::size_t>(in_.gcount());
    if (in_.bad()) throw std::runtime_error(name_ + ": read error");
    if (left_) *left_ -= std::min<std::uint64_t>(*left_, got);
    return got;
  }
  [[nodiscard]] std::optional<std::uint64_t> remaining() const override { return left_; }

 private:
  std::ifstream in_;
  const std::string& name_;
  std::optional<std::uint64_t> left_;
};

// A gzip stream inflated on demand from another source: never more output than
// asked for, an error for a truncated or corrupt stream and for anything after
// its end (a second gzip member included: a data file is one stream).
class gunzip_source final : public source {
 public:
  gunzip_source(source& raw, const std::string& name) : raw_(raw), name_(name) {
    if (inflateInit2(&zs_, 15 + 16) != Z_OK) throw std::runtime_error(name_ + ": zlib init failed");
  }
  ~gunzip_source() override { inflateEnd(&zs_); }
  gunzip_source(const gunzip_source&) = delete;
  gunzip_source& operator=(const gunzip_source&) = delete;

  std::size_t read(std::uint8_t* dst, std::size_t n) override {
    std::size_t produced = 0;
    while (produced < n && !ended_) {
      if (zs_.avail_in == 0) {
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(raw_.read(in_.data(), in_.size()));
        if (zs_.avail_in == 0) throw std::runtime_error(name_ + ": truncated gzip stream");
      }
      const std::size_t want = std::min<std::size_t>(n - produced, kChunk);
      zs_.next_out = dst + produced;
      zs_.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      produced += want - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        ended_ = true;
        std::uint8_t extra;
        if (zs_.avail_in > 0 || raw_.read(&extra, 1) > 0)
          throw std::runtime_error(name_ + ": trailing data after the gzip stream");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw std::runtime_error(name_ + ": corrupt gzip stream (" + (zs_.msg ? zs_.msg : "zlib error") + ")");
      }
    }
    return produced;
  }

 private:
  source& raw_;
  const std::string& name_;
  z_stream zs_{};
  std::array<std::uint8_t, 1 << 16> in_{};
  bool ended_ = false;
};

std::size_t read_full(source& s, std::uint8_t* dst, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const std::size_t k = s.read(dst + got, n - got);
    if (k == 0) break;
    got += k;
  }
  return got;
}

// The IDX layout on a stream whose first bytes are not a gzip magic (or an inflated one).
idx_array parse_stream(source& src, const std::string& name) {
  std::uint8_t head[4];
  const std::size_t got = read_full(src, head, 4);
  if (got < 4) throw std::runtime_error(name + ": truncated IDX header (" + std::to_string(got) + " bytes)");
  if (head[0] != 0 || head[1] != 0)
    throw std::runtime_error(name + ": not an IDX file (magic must start with two zero bytes)");
  if (head[2] != 0x08) {
    constexpr char hex[] = "0123456789abcdef";
    throw std::runtime_error(name + ": IDX type 0x" + hex[head[2] >> 4] + hex[head[2] & 15] +
                             " is not unsigned byte (0x08)");
  }
  const std::size_t nd = head[3];
  if (nd == 0 || nd > 8)
    throw std::runtime_error(name + ": IDX rank " + std::to_string(nd) + " is out of range [1, 8]");
  std::uint8_t dimb[32];
  if (read_full(src, dimb, 4 * nd) < 4 * nd) throw std::runtime_error(name + ": truncated IDX header");
  idx_array a;
  // the data size in 64 bits with overflow checks: 8 x 2^31 x 2^30 must not wrap to 0
  std::uint64_t count = 1;
  bool too_large = false;
  std::string shape;
  for (std::size_t k = 0; k < nd; ++k) {
    const std::uint8_t* p = dimb + 4 * k;
    const std::uint32_t d =
        (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    a.dims.push_back(d);
    shape += (k ? " x " : "") + std::to_string(d);
    too_large = too_large || __builtin_mul_overflow(count, std::uint64_t{d}, &count);
  }
  if (too_large || count > max_idx_bytes)
    throw std::runtime_error(name + ": IDX dimensions " + shape + " are too large (" +
                             (too_large ? std::string("over 2^64") : std::to_string(count)) +
                             " bytes of data; the limit is " + std::to_string(max_idx_bytes) + ")");
  // a raw file or buffer is checked against the header before any allocation
  if (const auto rem = src.remaining(); rem && *rem != count)
    throw std::runtime_error(name + ": size does not match its header (header says " + std::to_string(count) +
                             " bytes of data, file has " + std::to_string(*rem) + ")");
  // otherwise (gzip) the data are read in chunks: memory follows what really arrives
  if (src.remaining()) a.data.reserve(count);
  while (a.data.size() < count) {
    const std::size_t old = a.data.size();
    const std::size_t step = std::min<std::uint64_t>(count - old, kChunk);
    a.data.resize(old + step);
    const std::size_t k = read_full(src, a.data.data() + old, step);
    if (k < step)
      throw std::runtime_error(name + ": size does not match its header (header says " + std::to_string(count) +
                               " bytes of data, file has " + std::to_string(old + k) + ")");
  }
  std::uint8_t extra;
  if (read_full(src, &extra, 1) > 0)
    throw std::runtime_error(name +
                             ": size does not match its header (the stream holds more data than its header declares, " +
                             std::to_string(count) + " bytes)");
  return a;
}

idx_array parse_any(source& raw, const std::uint8_t* magic, std::size_t magic_len, const std::string& name) {
  if (magic_len >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    gunzip_source gz(raw, name);
    return parse_stream(gz, name);
  }
  return parse_stream(raw, name);
}

}  // namespace

idx_array parse_idx(std::span<const std::uint8_t> bytes, const std::string& name) {
  memory_source src(bytes);
  return parse_any(src, bytes.data(), bytes.size(), name);
}

idx_array read_idx(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::ifstream in = detail::open_checked(file);
  std::error_code ec;
  std::optional<std::uint64_t> size;
  if (std::filesystem::is_regular_file(file, ec)) {
    const auto s = std::filesystem::file_size(file, ec);
    if (!ec) size = s;
  }
  // peek at the gzip magic, then start over
  char magic[2] = {0, 0};
  in.read(magic, 2);
  const auto magic_len = static_cast<std::size_t>(in.gcount());
  if (in.bad()) throw std::runtime_error(name + ": read error");
  in.clear();
  in.seekg(0);
  if (!in) throw std::runtime_error(name + ": cannot seek (not a regular file)");
  file_source src(std::move(in), name, size);
  try {
    return parse_any(src, reinterpret_cast<const std::uint8_t*>(magic), magic_len, name);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(name + ": out of memory reading the IDX data");
  }
}

std::filesystem::path default_data_dir() {
  if (const char* d = std::getenv("MPACC_DATA"); d && *d) return d;
  return "data";
}

dataset load_dataset(const std::filesystem::path& data_dir, const std::string& name, bool train, std::size_t limit,
                     normalization norm) {
  if (name != "mnist" && name != "fashion-mnist")
    throw std::runtime_error("unknown dataset '" + sim::printable(name) + "' (datasets: mnist, fashion-mnist)");
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& base) {
    auto p = data_dir / name / base;
    if (std::filesystem::exists(p)) return p;
    if (std::filesystem::exists(p.string() + ".gz")) return std::filesystem::path(p.string() + ".gz");
    throw std::runtime_error(p.string() + ": not found (run scripts/fetch-data.sh " + name + ")");
  };
  const auto img_file = find(prefix + "-images-idx3-ubyte");
  const auto lab_file = find(prefix + "-labels-idx1-ubyte");
  const auto img = read_idx(img_file);
  const std::string img_name = img_file.string(), lab_name = lab_file.string();
  if (img.dims.size() != 3)
    throw std::runtime_error(img_name + ": rank " + std::to_string(img.dims.size()) +
                             ", but an image file has rank 3 (images x rows x columns)");
  if (img.dims[0] == 0) throw std::runtime_error(img_name + ": no images");
  if (img.dims[1] == 0 || img.dims[2] == 0)
    throw std::runtime_error(img_name + ": images of 0 pixels (" + std::to_string(img.dims[1]) + " x " +
                             std::to_string(img.dims[2]) + ")");
  const auto lab = read_idx(lab_file);
  if (lab.dims.size() != 1)
    throw std::runtime_error(lab_name + ": rank " + std::to_string(lab.dims.size()) + ", but a label file has rank 1");
  if (img.dims[0] != lab.dims[0])
    throw std::runtime_error(img_name + ": " + std::to_string(img.dims[0]) + " images, but " + lab_name + " has " +
                             std::to_string(lab.dims[0]) + " labels");
  dataset d;
  d.name = name;
  d.rows = limit > 0 ? std::min(limit, img.dims[0]) : img.dims[0];
  d.cols = img.dims[1] * img.dims[2];  // no overflow: the product of all three is at most max_idx_bytes
  try {
    d.x.resize(d.rows * d.cols);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error(img_name + ": out of memory for " + std::to_string(d.rows) + " x " +
                             std::to_string(d.cols) + " inputs");
  }
  for (std::size_t k = 0; k < d.x.size(); ++k) d.x[k] = (img.data[k] / 255.0 - norm.mean) / norm.std;
  d.y.assign(lab.data.begin(), lab.data.begin() + static_cast<std::ptrdiff_t>(d.rows));
  for (std::size_t i = 0; i < d.y.size(); ++i)
    if (d.y[i] > 9)
      throw std::runtime_error(lab_name + ": label " + std::to_string(d.y[i]) + " of sample " + std::to_string(i) +
                               " is out of range [0, 9]");
  return d;
}

}  // namespace mpacc::io
