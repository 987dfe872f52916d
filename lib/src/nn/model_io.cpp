#include "mpacc/nn/model_io.hpp"

#include <zlib.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <unistd.h>

namespace mpacc::nn {

namespace {

constexpr char kMagic[8] = {'M', 'P', 'A', 'C', 'C', 'N', 'N', '\0'};
constexpr std::uint32_t kVersion = 1;

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

struct reader {
  const std::vector<char>& b;
  std::size_t pos = 0;
  const std::string& file;
  void need(std::size_t n, const char* what) {
    if (b.size() - pos < n)
      throw std::runtime_error(file + ": truncated model file (reading " + what + " at byte " + std::to_string(pos) + ")");
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
};

std::vector<char> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes;
}

}  // namespace

void save_model(const mlp& net, const std::filesystem::path& file, const std::string& metadata) {
  net.validate();
  writer w;
  w.put_bytes(kMagic, 8);
  w.put<std::uint32_t>(kVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(net.layers.size()));
  w.put<std::uint64_t>(metadata.size());
  w.put_bytes(metadata.data(), metadata.size());
  for (const auto& l : net.layers) {
    w.put<std::uint64_t>(l.n_in);
    w.put<std::uint64_t>(l.n_out);
    w.put<std::uint8_t>(static_cast<std::uint8_t>(l.act.kind));
    w.put<double>(l.act.slope);
    w.put_bytes(l.W.data(), l.W.size() * sizeof(double));
    w.put_bytes(l.b.data(), l.b.size() * sizeof(double));
  }
  const auto crc = static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(w.buf.data()), static_cast<uInt>(w.buf.size())));
  w.put<std::uint32_t>(crc);
  // temporary file in the same folder, then rename: the target is never half-written
  const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  const auto tmp = dir / (file.filename().string() + ".tmp." + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot create");
    out.write(w.buf.data(), static_cast<std::streamsize>(w.buf.size()));
    out.flush();
    if (!out) {
      std::filesystem::remove(tmp);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(file.string() + ": cannot rename into place: " + ec.message());
  }
}

mlp load_model(const std::filesystem::path& file, std::string* metadata) {
  const std::vector<char> bytes = read_file(file);
  const std::string name = file.string();
  reader r{bytes, 0, name};
  r.need(8, "magic");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw std::runtime_error(name + ": not an mpacc model file (bad magic; .npz files are imported by extension)");
  r.pos = 8;
  const auto version = r.get<std::uint32_t>("version");
  if (version != kVersion)
    throw std::runtime_error(name + ": model file version " + std::to_string(version) + " is not supported (expected 1)");
  if (bytes.size() < 4) throw std::runtime_error(name + ": truncated model file");
  const std::uint32_t stored_crc = [&] {
    std::uint32_t c;
    std::memcpy(&c, bytes.data() + bytes.size() - 4, 4);
    return c;
  }();
  const auto crc = static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size() - 4)));
  const auto n_layers = r.get<std::uint32_t>("layer count");
  const auto meta_len = r.get<std::uint64_t>("metadata length");
  r.need(meta_len, "metadata");
  if (metadata) metadata->assign(bytes.data() + r.pos, meta_len);
  r.pos += meta_len;
  mlp net;
  for (std::uint32_t k = 0; k < n_layers; ++k) {
    dense_layer l;
    l.n_in = r.get<std::uint64_t>("layer size");
    l.n_out = r.get<std::uint64_t>("layer size");
    const auto code = r.get<std::uint8_t>("activation");
    if (code > static_cast<std::uint8_t>(sim::activation::silu))
      throw std::runtime_error(name + ": layer " + std::to_string(k + 1) + " has unknown activation code " + std::to_string(code));
    l.act.kind = static_cast<sim::activation>(code);
    l.act.slope = r.get<double>("activation slope");
    if (l.n_in == 0 || l.n_out == 0 || l.n_in > (1u << 24) || l.n_out > (1u << 24))
      throw std::runtime_error(name + ": layer " + std::to_string(k + 1) + " has implausible sizes " +
                               std::to_string(l.n_out) + "x" + std::to_string(l.n_in));
    r.need((l.n_in * l.n_out + l.n_out) * sizeof(double), "weights");
    l.W.resize(l.n_in * l.n_out);
    std::memcpy(l.W.data(), bytes.data() + r.pos, l.W.size() * sizeof(double));
    r.pos += l.W.size() * sizeof(double);
    l.b.resize(l.n_out);
    std::memcpy(l.b.data(), bytes.data() + r.pos, l.b.size() * sizeof(double));
    r.pos += l.b.size() * sizeof(double);
    net.layers.push_back(std::move(l));
  }
  r.need(4, "checksum");
  if (r.pos + 4 != bytes.size())
    throw std::runtime_error(name + ": " + std::to_string(bytes.size() - r.pos - 4) + " unexpected trailing bytes");
  if (crc != stored_crc) throw std::runtime_error(name + ": checksum mismatch (file corrupted)");
  try {
    net.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(name + ": " + e.what());
  }
  return net;
}

// ---------------------------------------------------------------------------
// .npz: a zip archive of .npy files

namespace {

std::uint32_t le32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint16_t le16(const char* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

struct npy_array {
  std::vector<std::size_t> shape;
  std::vector<double> data;
};

npy_array parse_npy(const std::string& bytes, const std::string& where) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw std::runtime_error(where + ": not a .npy array (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t hlen, hstart;
  if (major == 1) {
    hlen = le16(bytes.data() + 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw std::runtime_error(where + ": truncated .npy header");
    hlen = le32(bytes.data() + 8);
    hstart = 12;
  } else {
    throw std::runtime_error(where + ": .npy version " + std::to_string(major) + " is not supported");
  }
  if (bytes.size() < hstart + hlen) throw std::runtime_error(where + ": truncated .npy header");
  const std::string h = bytes.substr(hstart, hlen);
  auto field = [&](const std::string& key) {
    const auto k = h.find("'" + key + "'");
    if (k == std::string::npos) throw std::runtime_error(where + ": .npy header lacks '" + key + "'");
    auto c = h.find(':', k);
    return h.substr(c + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  std::size_t item;
  if (descr == "<f8" || descr == "=f8") {
    item = 8;
  } else if (descr == "<f4" || descr == "=f4") {
    item = 4;
  } else {
    throw std::runtime_error(where + ": dtype '" + descr + "' is not supported (float32 or float64, little-endian)");
  }
  const std::string fo = field("fortran_order");
  const bool fortran = fo.find("True") < fo.find_first_of(",}");
  std::string sh = field("shape");
  sh = sh.substr(sh.find('(') + 1);
  sh = sh.substr(0, sh.find(')'));
  npy_array a;
  std::size_t count = 1;
  std::size_t pos = 0;
  while (pos < sh.size()) {
    while (pos < sh.size() && (sh[pos] == ' ' || sh[pos] == ',')) ++pos;
    if (pos >= sh.size()) break;
    std::size_t end = pos;
    while (end < sh.size() && std::isdigit(static_cast<unsigned char>(sh[end]))) ++end;
    if (end == pos) throw std::runtime_error(where + ": malformed shape '(" + sh + ")'");
    a.shape.push_back(std::stoull(sh.substr(pos, end - pos)));
    count *= a.shape.back();
    pos = end;
  }
  const std::size_t body = hstart + hlen;
  if (bytes.size() - body != count * item)
    throw std::runtime_error(where + ": data size " + std::to_string(bytes.size() - body) + " does not match shape (" +
                             std::to_string(count * item) + " bytes expected)");
  a.data.resize(count);
  for (std::size_t k = 0; k < count; ++k) {
    if (item == 8) {
      std::memcpy(&a.data[k], bytes.data() + body + 8 * k, 8);
    } else {
      float f;
      std::memcpy(&f, bytes.data() + body + 4 * k, 4);
      a.data[k] = f;  // exact
    }
  }
  if (fortran && a.shape.size() == 2) {  // to row-major
    std::vector<double> t(count);
    const std::size_t R = a.shape[0], C = a.shape[1];
    for (std::size_t i = 0; i < R; ++i)
      for (std::size_t j = 0; j < C; ++j) t[i * C + j] = a.data[j * R + i];
    a.data.swap(t);
  }
  return a;
}

std::map<std::string, npy_array> read_npz(const std::filesystem::path& file) {
  const std::vector<char> raw = read_file(file);
  const std::string name = file.string();
  const std::string b(raw.begin(), raw.end());
  // end of central directory record
  const std::size_t search_from = b.size() > 65557 ? b.size() - 65557 : 0;
  std::size_t eocd = std::string::npos;
  for (std::size_t p = b.size() >= 22 ? b.size() - 22 : 0; p + 1 > search_from && p != std::string::npos; --p) {
    if (le32(b.data() + p) == 0x06054b50) {
      eocd = p;
      break;
    }
    if (p == 0) break;
  }
  if (b.size() < 22 || eocd == std::string::npos) throw std::runtime_error(name + ": not a zip/.npz archive (no end-of-directory record)");
  const std::size_t entries = le16(b.data() + eocd + 10);
  std::size_t cd = le32(b.data() + eocd + 16);
  std::map<std::string, npy_array> out;
  for (std::size_t e = 0; e < entries; ++e) {
    if (cd + 46 > b.size() || le32(b.data() + cd) != 0x02014b50) throw std::runtime_error(name + ": corrupt zip central directory");
    const std::uint16_t method = le16(b.data() + cd + 10);
    const std::uint32_t csize = le32(b.data() + cd + 20), usize = le32(b.data() + cd + 24);
    const std::uint16_t nlen = le16(b.data() + cd + 28), xlen = le16(b.data() + cd + 30), clen = le16(b.data() + cd + 32);
    const std::uint32_t local = le32(b.data() + cd + 42);
    if (cd + 46 + nlen > b.size()) throw std::runtime_error(name + ": corrupt zip central directory");
    const std::string member = b.substr(cd + 46, nlen);
    cd += 46 + nlen + xlen + clen;
    if (csize == 0xffffffffu || usize == 0xffffffffu || local == 0xffffffffu)
      throw std::runtime_error(name + ": member '" + member + "' uses ZIP64, which is not supported");
    if (local + 30 > b.size() || le32(b.data() + local) != 0x04034b50)
      throw std::runtime_error(name + ": member '" + member + "': bad local header");
    const std::size_t data = local + 30 + le16(b.data() + local + 26) + le16(b.data() + local + 28);
    if (data + csize > b.size()) throw std::runtime_error(name + ": member '" + member + "' is truncated");
    std::string content;
    if (method == 0) {
      content = b.substr(data, csize);
    } else if (method == 8) {
      content.resize(usize);
      z_stream zs{};
      inflateInit2(&zs, -15);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data() + data));
      zs.avail_in = csize;
      zs.next_out = reinterpret_cast<Bytef*>(content.data());
      zs.avail_out = usize;
      const int rc = inflate(&zs, Z_FINISH);
      const auto produced = zs.total_out;
      inflateEnd(&zs);
      if (rc != Z_STREAM_END || produced != usize)
        throw std::runtime_error(name + ": member '" + member + "': corrupt deflate data");
    } else {
      throw std::runtime_error(name + ": member '" + member + "' uses zip compression method " + std::to_string(method) +
                               " (only stored and deflate are supported)");
    }
    if (static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(content.data()), static_cast<uInt>(content.size()))) !=
        le32(b.data() + local + 14) && le32(b.data() + local + 14) != 0)
      throw std::runtime_error(name + ": member '" + member + "': CRC mismatch");
    std::string key = member;
    if (key.size() > 4 && key.ends_with(".npy")) key.resize(key.size() - 4);
    out[key] = parse_npy(content, name + ": " + member);
  }
  return out;
}

}  // namespace

mlp import_npz(const std::filesystem::path& file, sim::activation_fn hidden) {
  const auto arrays = read_npz(file);
  const std::string name = file.string();
  mlp net;
  for (std::size_t k = 1;; ++k) {
    const auto wi = arrays.find("W" + std::to_string(k));
    const auto bi = arrays.find("b" + std::to_string(k));
    if (wi == arrays.end() && bi == arrays.end()) break;
    if (wi == arrays.end() || bi == arrays.end())
      throw std::runtime_error(name + ": layer " + std::to_string(k) + " needs both W" + std::to_string(k) + " and b" +
                               std::to_string(k));
    const auto& W = wi->second;
    const auto& B = bi->second;
    if (W.shape.size() != 2)
      throw std::runtime_error(name + ": W" + std::to_string(k) + " must have shape (n_out, n_in)");
    if (B.shape.size() != 1 || B.shape[0] != W.shape[0])
      throw std::runtime_error(name + ": b" + std::to_string(k) + " must have shape (" + std::to_string(W.shape[0]) + ",)");
    dense_layer l;
    l.n_out = W.shape[0];
    l.n_in = W.shape[1];
    l.W = W.data;
    l.b = B.data;
    l.act = hidden;
    net.layers.push_back(std::move(l));
  }
  if (net.layers.empty()) throw std::runtime_error(name + ": no arrays W1, b1 found");
  net.layers.back().act = {sim::activation::identity};
  try {
    net.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(name + ": " + e.what());
  }
  return net;
}

mlp load_any(const std::filesystem::path& file, sim::activation_fn hidden, std::string* metadata) {
  if (file.extension() == ".npz") return import_npz(file, hidden);
  return load_model(file, metadata);
}

}  // namespace mpacc::nn
