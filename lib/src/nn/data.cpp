#include "mpacc/nn/data.hpp"

#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace mpacc::nn {

namespace {

std::vector<std::uint8_t> read_all(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error(file.string() + ": read error");
  return bytes;
}

std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& in, const std::filesystem::path& file) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) throw std::runtime_error(file.string() + ": zlib init failed");
  std::vector<std::uint8_t> out(in.size() * 4 + 1024);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (zs.total_out == out.size()) out.resize(out.size() * 2);
    zs.next_out = out.data() + zs.total_out;
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      inflateEnd(&zs);
      throw std::runtime_error(file.string() + ": truncated gzip stream");
    }
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      inflateEnd(&zs);
      throw std::runtime_error(file.string() + ": corrupt gzip stream (" + (zs.msg ? zs.msg : "zlib error") + ")");
    }
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

}  // namespace

idx_array read_idx(const std::filesystem::path& file) {
  std::vector<std::uint8_t> bytes = read_all(file);
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) bytes = gunzip(bytes, file);
  const std::string name = file.string();
  if (bytes.size() < 4) throw std::runtime_error(name + ": truncated IDX header (" + std::to_string(bytes.size()) + " bytes)");
  if (bytes[0] != 0 || bytes[1] != 0)
    throw std::runtime_error(name + ": not an IDX file (magic must start with two zero bytes)");
  if (bytes[2] != 0x08)
    throw std::runtime_error(name + ": IDX type 0x" + std::to_string(bytes[2]) + " is not unsigned byte (0x08)");
  const std::size_t nd = bytes[3];
  if (nd == 0 || nd > 8) throw std::runtime_error(name + ": IDX rank " + std::to_string(nd) + " is out of range [1, 8]");
  if (bytes.size() < 4 + 4 * nd) throw std::runtime_error(name + ": truncated IDX header");
  idx_array a;
  std::size_t count = 1;
  for (std::size_t k = 0; k < nd; ++k) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * k;
    const std::size_t d = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) | p[3];
    a.dims.push_back(d);
    count *= d;
  }
  const std::size_t header = 4 + 4 * nd;
  if (bytes.size() - header != count)
    throw std::runtime_error(name + ": size does not match its header (header says " + std::to_string(count) +
                             " bytes of data, file has " + std::to_string(bytes.size() - header) + ")");
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

std::filesystem::path default_data_dir() {
  if (const char* d = std::getenv("MPACC_DATA"); d && *d) return d;
  return "data";
}

dataset load_dataset(const std::filesystem::path& data_dir, const std::string& name, bool train,
                     std::size_t limit, normalization norm) {
  if (name != "mnist" && name != "fashion-mnist")
    throw std::runtime_error("unknown dataset '" + name + "' (datasets: mnist, fashion-mnist)");
  const std::string prefix = train ? "train" : "t10k";
  auto find = [&](const std::string& base) {
    const auto p = data_dir / name / base;
    if (std::filesystem::exists(p)) return p;
    if (std::filesystem::exists(p.string() + ".gz")) return std::filesystem::path(p.string() + ".gz");
    throw std::runtime_error(p.string() + ": not found (run scripts/fetch-data.sh " + name + ")");
  };
  const auto img = read_idx(find(prefix + "-images-idx3-ubyte"));
  const auto lab = read_idx(find(prefix + "-labels-idx1-ubyte"));
  if (img.dims.size() != 3) throw std::runtime_error(name + ": image file is not of rank 3");
  if (lab.dims.size() != 1) throw std::runtime_error(name + ": label file is not of rank 1");
  if (img.dims[0] != lab.dims[0])
    throw std::runtime_error(name + ": " + std::to_string(img.dims[0]) + " images but " +
                             std::to_string(lab.dims[0]) + " labels");
  dataset d;
  d.name = name;
  d.rows = limit > 0 ? std::min(limit, img.dims[0]) : img.dims[0];
  d.cols = img.dims[1] * img.dims[2];
  d.x.resize(d.rows * d.cols);
  for (std::size_t k = 0; k < d.x.size(); ++k) d.x[k] = (img.data[k] / 255.0 - norm.mean) / norm.std;
  d.y.assign(lab.data.begin(), lab.data.begin() + static_cast<std::ptrdiff_t>(d.rows));
  for (auto v : d.y)
    if (v > 9) throw std::runtime_error(name + ": label " + std::to_string(v) + " is out of range [0, 9]");
  return d;
}

}  // namespace mpacc::nn
