// SPDX-License-Identifier: MIT
#include "mpacc/io/model_io.hpp"

#include "mpacc/io/data.hpp"
#include "model_internal.hpp"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <new>
#include <stdexcept>

#include "mpacc/sim/text.hpp"
#include <unistd.h>

namespace mpacc::io {

using nn::dense_layer;
using nn::mlp;

using detail::as_bytes;
using detail::as_chars;
using detail::naming_file;
using detail::reader;
using detail::writer;

namespace detail {

void write_model_bytes(writer& w, const std::filesystem::path& file) {
  const auto crc = static_cast<std::uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(w.buf.data()), w.buf.size()));
  w.put<std::uint32_t>(crc);
  // temporary file in the same folder, then rename: the target is never half-written
  const auto dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
  const auto tmp = dir / (file.filename().string() + ".tmp." + std::to_string(::getpid()));
  std::error_code ec;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot create");
    out.write(w.buf.data(), static_cast<std::streamsize>(w.buf.size()));
    out.close();
    if (!out) {
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error(tmp.string() + ": write failed");
    }
  }
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error(file.string() + ": cannot rename into place: " + why);
  }
}

void check_model_crc(const reader& r, std::span<const std::uint8_t> data, const std::string& name) {
  r.need(4, "checksum");
  if (r.pos + 4 != data.size())
    throw std::runtime_error(name + ": " + std::to_string(data.size() - r.pos - 4) + " unexpected trailing bytes");
  std::uint32_t stored_crc;
  std::memcpy(&stored_crc, data.data() + r.pos, 4);
  const auto crc = static_cast<std::uint32_t>(crc32_z(0L, data.data(), r.pos));
  if (crc != stored_crc) throw std::runtime_error(name + ": checksum mismatch (file corrupted)");
}

}  // namespace detail

void save_model(const mlp& net, const std::filesystem::path& file, const std::string& metadata) {
  net.validate();
  writer w;
  w.put_bytes(detail::kModelMagic, 8);
  w.put<std::uint32_t>(detail::kMlpVersion);
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
  detail::write_model_bytes(w, file);
}

mlp parse_model(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata) {
  return naming_file(name, [&] {
    const std::string_view bytes = as_chars(data);
    reader r{bytes, 0, name};
    r.need(8, "magic");
    if (std::memcmp(bytes.data(), detail::kModelMagic, 8) != 0)
      throw std::runtime_error(name + ": not an mpacc model file (bad magic; .npz files are imported by extension)");
    r.pos = 8;
    const auto version = r.get<std::uint32_t>("version");
    if (version == detail::kCnnVersion)
      throw std::runtime_error(name + ": a convolutional network's model file (version 2); this reader takes MLPs");
    if (version == detail::kVitVersion)
      throw std::runtime_error(name + ": a vision transformer's model file (version 3); this reader takes MLPs");
    if (version != detail::kMlpVersion)
      throw std::runtime_error(name + ": model file version " + std::to_string(version) +
                               " is not supported (expected 1)");
    const auto n_layers = r.layers_and_metadata(max_layers, metadata);
    mlp net;
    for (std::uint32_t k = 0; k < n_layers; ++k) {
      dense_layer l;
      l.n_in = r.get<std::uint64_t>("layer size");
      l.n_out = r.get<std::uint64_t>("layer size");
      const auto code = r.get<std::uint8_t>("activation");
      if (code > static_cast<std::uint8_t>(sim::activation::silu))
        throw std::runtime_error(name + ": layer " + std::to_string(k + 1) + " has unknown activation code " +
                                 std::to_string(code));
      l.act.kind = static_cast<sim::activation>(code);
      l.act.slope = r.get<double>("activation slope");
      if (l.n_in == 0 || l.n_out == 0 || l.n_in > max_layer_size || l.n_out > max_layer_size)
        throw std::runtime_error(name + ": layer " + std::to_string(k + 1) + " has implausible sizes " +
                                 std::to_string(l.n_out) + "x" + std::to_string(l.n_in) + " (each in [1, " +
                                 std::to_string(max_layer_size) + "])");
      // both sizes are at most 2^24: (n_in n_out + n_out) 8 < 2^52, no overflow;
      // allocate only once the file is known to hold the values
      r.need((l.n_in * l.n_out + l.n_out) * sizeof(double), "weights");
      l.W.resize(l.n_in * l.n_out);
      std::memcpy(l.W.data(), bytes.data() + r.pos, l.W.size() * sizeof(double));
      r.pos += l.W.size() * sizeof(double);
      l.b.resize(l.n_out);
      std::memcpy(l.b.data(), bytes.data() + r.pos, l.b.size() * sizeof(double));
      r.pos += l.b.size() * sizeof(double);
      net.layers.push_back(std::move(l));
    }
    detail::check_model_crc(r, data, name);
    return detail::validated(std::move(net), name);
  });
}

mlp load_model(const std::filesystem::path& file, std::string* metadata) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "a model file");
  return parse_model(as_bytes(bytes), file.string(), metadata);
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

std::string in_quotes(std::string_view s) { return "'" + sim::printable(s) + "'"; }

using detail::npy_array;

// The header of a .npy file is a Python dict literal, e.g.
//   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and a newline. Parsed strictly: the three keys, once each,
// nothing else.
struct npy_header {
  std::string descr;
  bool fortran = false;
  std::vector<std::uint64_t> shape;
};

class header_parser {
 public:
  header_parser(std::string_view h, const std::string& where) : h_(h), where_(where) {}

  npy_header parse() {
    npy_header out;
    bool seen[3] = {false, false, false};
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      ws();
      expect(':');
      ws();
      int which;
      if (key == "descr") {
        which = 0;
        out.descr = string_literal();
      } else if (key == "fortran_order") {
        which = 1;
        out.fortran = boolean();
      } else if (key == "shape") {
        which = 2;
        out.shape = tuple();
      } else {
        fail("unknown key " + in_quotes(key) + " in the .npy header");
      }
      if (seen[which]) fail("key " + in_quotes(key) + " twice in the .npy header");
      seen[which] = true;
      ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("malformed .npy header at " + in_quotes(rest()));
    }
    ++pos_;
    ws();
    if (pos_ != h_.size()) fail("malformed .npy header: " + in_quotes(rest()) + " after the dictionary");
    const char* keys[3] = {"descr", "fortran_order", "shape"};
    for (int k = 0; k < 3; ++k)
      if (!seen[k]) fail(std::string(".npy header lacks '") + keys[k] + "'");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(where_ + ": " + what); }
  char peek() const { return pos_ < h_.size() ? h_[pos_] : '\0'; }
  std::string_view rest() const { return h_.substr(pos_); }
  void ws() {
    while (pos_ < h_.size() && (h_[pos_] == ' ' || h_[pos_] == '\n' || h_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    if (pos_ >= h_.size() || h_[pos_] != c)
      fail(std::string("malformed .npy header: '") + c + "' expected at " + in_quotes(rest()));
    ++pos_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("malformed .npy header: a quoted string expected at " + in_quotes(rest()));
    const auto end = h_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("malformed .npy header: unterminated string " + in_quotes(rest()));
    std::string s(h_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    if (rest().starts_with("True")) {
      pos_ += 4;
      return true;
    }
    if (rest().starts_with("False")) {
      pos_ += 5;
      return false;
    }
    fail("malformed .npy header: fortran_order must be True or False, not " + in_quotes(rest().substr(0, 16)));
  }
  std::vector<std::uint64_t> tuple() {
    expect('(');
    std::vector<std::uint64_t> v;
    for (;;) {
      ws();
      if (peek() == ')') break;
      const std::size_t start = pos_;
      while (pos_ < h_.size() && h_[pos_] >= '0' && h_[pos_] <= '9') ++pos_;
      const std::string_view digits = h_.substr(start, pos_ - start);
      if (digits.empty()) fail("malformed shape at " + in_quotes(rest()));
      std::uint64_t d = 0;
      for (char c : digits)
        if (__builtin_mul_overflow(d, 10u, &d) || __builtin_add_overflow(d, static_cast<unsigned>(c - '0'), &d))
          fail("shape dimension " + sim::printable(digits) + " is too large");
      if (v.size() == 32) fail("shape of rank over 32");
      v.push_back(d);
      ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("malformed shape at " + in_quotes(rest()));
    }
    ++pos_;
    return v;
  }

  std::string_view h_;
  std::size_t pos_ = 0;
  const std::string& where_;
};

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string t = "(";
  for (std::size_t k = 0; k < s.size(); ++k) t += (k ? ", " : "") + std::to_string(s[k]);
  return t + (s.size() == 1 ? ",)" : ")");
}

npy_array parse_npy(std::string_view bytes, const std::string& where) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != "\x93NUMPY")
    throw std::runtime_error(where + ": not a .npy array (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::uint64_t hlen, hstart;
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
  if (bytes.size() - hstart < hlen) throw std::runtime_error(where + ": truncated .npy header");
  const npy_header h = header_parser(bytes.substr(hstart, hlen), where).parse();
  std::size_t item;
  if (h.descr == "<f8" || h.descr == "=f8") {
    item = 8;
  } else if (h.descr == "<f4" || h.descr == "=f4") {
    item = 4;
  } else {
    throw std::runtime_error(where + ": dtype " + in_quotes(h.descr) +
                             " is not supported (float32 or float64, little-endian)");
  }
  // every dimension capped, the element count and byte size with overflow checks
  // (a Fortran-order (2^32, 2^32) must not wrap to 0 elements)
  std::uint64_t count = 1, size = 0;
  bool overflow = false;
  for (auto d : h.shape) {
    if (d > max_layer_size)
      throw std::runtime_error(where + ": shape " + shape_text(h.shape) + " is too large (dimension " +
                               std::to_string(d) + " over the limit of " + std::to_string(max_layer_size) + ")");
    overflow = overflow || __builtin_mul_overflow(count, d, &count);
  }
  overflow = overflow || __builtin_mul_overflow(count, std::uint64_t{item}, &size);
  if (overflow) throw std::runtime_error(where + ": shape " + shape_text(h.shape) + " is too large");
  const std::uint64_t body = hstart + hlen;
  if (bytes.size() - body != size)
    throw std::runtime_error(where + ": data size " + std::to_string(bytes.size() - body) + " does not match shape " +
                             shape_text(h.shape) + " (" + std::to_string(size) + " bytes expected)");
  if (h.fortran && h.shape.size() > 2)
    throw std::runtime_error(where + ": Fortran order is supported up to rank 2, not shape " + shape_text(h.shape));
  npy_array a;
  a.shape.assign(h.shape.begin(), h.shape.end());
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
  if (h.fortran && a.shape.size() == 2) {  // to row-major
    std::vector<double> t(count);
    const std::size_t R = a.shape[0], C = a.shape[1];
    for (std::size_t i = 0; i < R; ++i)
      for (std::size_t j = 0; j < C; ++j) t[i * C + j] = a.data[j * R + i];
    a.data.swap(t);
  }
  return a;
}

// One central-directory entry, sizes and offsets widened to 64 bits.
struct zip_entry {
  std::string name, key;  // key: the name without ".npy"
  std::uint16_t method = 0, flags = 0;
  std::uint32_t crc = 0;
  std::uint64_t csize = 0, usize = 0, local = 0;
  char kind = 0;  // 'W' or 'b'
  std::uint32_t layer = 0;
};

// W<k> or b<k> with k in [1, max_layers], no leading zero; layer 0 if not.
void classify(zip_entry& e) {
  e.key = e.name.ends_with(".npy") ? e.name.substr(0, e.name.size() - 4) : e.name;
  if (e.key.size() < 2 || e.key.size() > 5 || (e.key[0] != 'W' && e.key[0] != 'b') || e.key[1] == '0') return;
  std::uint32_t k = 0;
  for (std::size_t i = 1; i < e.key.size(); ++i) {
    if (e.key[i] < '0' || e.key[i] > '9') return;
    k = 10 * k + static_cast<std::uint32_t>(e.key[i] - '0');
  }
  if (k > max_layers) return;
  e.kind = e.key[0];
  e.layer = k;
}

// The member's bytes, inflated in chunks up to the size the directory declares and checked against its CRC.
std::string extract(std::string_view b, const zip_entry& e, std::uint64_t data, const std::string& where) {
  std::string content;
  if (e.method == 0) {
    if (e.csize != e.usize)
      throw std::runtime_error(where + ": stored member with compressed size " + std::to_string(e.csize) +
                               " but size " + std::to_string(e.usize));
    content.assign(b.substr(data, e.csize));
  } else {
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK) throw std::runtime_error(where + ": zlib init failed");
    struct guard {
      z_stream& z;
      explicit guard(z_stream& s) : z(s) {}
      guard(const guard&) = delete;
      guard& operator=(const guard&) = delete;
      ~guard() { inflateEnd(&z); }
    } g{zs};
    const char* in = b.data() + data;
    std::uint64_t in_left = e.csize;
    int rc = Z_OK;
    // grow the output as it is produced: memory follows the data, not the header
    while (rc != Z_STREAM_END) {
      if (zs.avail_in == 0 && in_left > 0) {
        const auto n = static_cast<uInt>(std::min<std::uint64_t>(in_left, 1u << 30));
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
        zs.avail_in = n;
        in += n;
        in_left -= n;
      }
      const std::size_t produced = content.size() - zs.avail_out;
      Bytef spare[1];
      if (produced == e.usize) {
        // all declared bytes are there: the stream must end without another byte
        content.resize(produced);
        zs.next_out = spare;
        zs.avail_out = 1;
      } else if (zs.avail_out == 0) {
        const std::size_t grow = std::min<std::uint64_t>(e.usize - produced, std::uint64_t{1} << 20);
        content.resize(produced + grow);
        zs.next_out = reinterpret_cast<Bytef*>(content.data() + produced);
        zs.avail_out = static_cast<uInt>(grow);
      }
      const bool to_spare = zs.next_out == spare;
      rc = inflate(&zs, Z_NO_FLUSH);
      if (to_spare && zs.avail_out == 0)
        throw std::runtime_error(where + ": inflates to more than its declared size of " + std::to_string(e.usize) +
                                 " bytes");
      if (to_spare) zs.avail_out = 0;  // nothing was written to the spare byte
      if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0)
        throw std::runtime_error(where + ": truncated deflate data");
      if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
        throw std::runtime_error(where + ": corrupt deflate data (" + (zs.msg ? zs.msg : "zlib error") + ")");
    }
    content.resize(content.size() - zs.avail_out);
    if (content.size() != e.usize)
      throw std::runtime_error(where + ": inflates to " + std::to_string(content.size()) + " bytes, not the declared " +
                               std::to_string(e.usize));
    if (zs.avail_in > 0 || in_left > 0)
      throw std::runtime_error(where + ": " + std::to_string(zs.avail_in + in_left) +
                               " bytes after the deflate stream");
  }
  // always compared: a CRC field of 0 is a CRC like any other
  const auto crc =
      static_cast<std::uint32_t>(crc32_z(0L, reinterpret_cast<const Bytef*>(content.data()), content.size()));
  if (crc != e.crc) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (stored 0x%08x, computed 0x%08x)", e.crc, crc);
    throw std::runtime_error(where + ": CRC mismatch" + buf);
  }
  return content;
}

// accept (null: the MLP's W1, b1, ... without gaps) decides which member keys
// are allowed; `expected` says what the archive should hold.
std::map<std::string, npy_array> read_npz(std::string_view b, const std::string& name,
                                          const std::function<bool(const std::string&)>* accept = nullptr,
                                          const std::string& expected = "") {
  // end of central directory record: the last one whose comment reaches the end of the file
  constexpr std::size_t kEocd = 22;
  if (b.size() < kEocd) throw std::runtime_error(name + ": not a zip/.npz archive (no end-of-directory record)");
  std::size_t eocd = std::string_view::npos;
  for (std::size_t back = 0; back <= 0xffff && back + kEocd <= b.size(); ++back) {
    const std::size_t p = b.size() - kEocd - back;
    if (le32(b.data() + p) == 0x06054b50 && le16(b.data() + p + 20) == back) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string_view::npos)
    throw std::runtime_error(name + ": not a zip/.npz archive (no end-of-directory record)");
  const std::uint16_t disk = le16(b.data() + eocd + 4), cd_disk = le16(b.data() + eocd + 6);
  const std::uint16_t entries_here = le16(b.data() + eocd + 8), entries = le16(b.data() + eocd + 10);
  const std::uint64_t cd_size = le32(b.data() + eocd + 12), cd_offset = le32(b.data() + eocd + 16);
  if (disk != 0 || cd_disk != 0 || entries_here != entries)
    throw std::runtime_error(name + ": multi-disk zip archives are not supported");
  if (entries == 0xffff || cd_offset == 0xffffffffu || cd_size == 0xffffffffu)
    throw std::runtime_error(name + ": ZIP64 archives are not supported");
  if (cd_offset + cd_size > eocd)
    throw std::runtime_error(name + ": corrupt zip central directory (beyond its end record)");
  if (entries > 2 * max_layers)
    throw std::runtime_error(name + ": " + std::to_string(entries) + " members, over the limit of " +
                             std::to_string(2 * max_layers));

  // the whole directory first: names, duplicates, gaps and sizes are refused before any inflation
  std::vector<zip_entry> list;
  std::map<std::string, std::size_t> by_key;
  std::uint64_t cd = cd_offset, total = 0;
  const std::uint64_t cd_end = cd_offset + cd_size;
  for (std::size_t k = 0; k < entries; ++k) {
    if (cd_end - cd < 46 || le32(b.data() + cd) != 0x02014b50)
      throw std::runtime_error(name + ": corrupt zip central directory (entry " + std::to_string(k + 1) + ")");
    zip_entry e;
    e.flags = le16(b.data() + cd + 8);
    e.method = le16(b.data() + cd + 10);
    e.crc = le32(b.data() + cd + 16);
    e.csize = le32(b.data() + cd + 20);
    e.usize = le32(b.data() + cd + 24);
    const std::uint64_t nlen = le16(b.data() + cd + 28), xlen = le16(b.data() + cd + 30),
                        clen = le16(b.data() + cd + 32);
    e.local = le32(b.data() + cd + 42);
    if (cd_end - cd - 46 < nlen + xlen + clen)
      throw std::runtime_error(name + ": corrupt zip central directory (entry " + std::to_string(k + 1) + ")");
    e.name.assign(b.substr(cd + 46, nlen));
    cd += 46 + nlen + xlen + clen;
    const std::string where = name + ": member " + in_quotes(e.name);
    if (e.csize == 0xffffffffu || e.usize == 0xffffffffu || e.local == 0xffffffffu)
      throw std::runtime_error(where + " uses ZIP64, which is not supported");
    if (e.flags & 1) throw std::runtime_error(where + " is encrypted");
    if (e.method != 0 && e.method != 8)
      throw std::runtime_error(where + " uses zip compression method " + std::to_string(e.method) +
                               " (only stored and deflate are supported)");
    classify(e);
    if (accept ? !(*accept)(e.key) : e.layer == 0)
      throw std::runtime_error(where + " is not expected (" +
                               (accept ? expected : std::string("an .npz model holds W1, b1, W2, b2, ... only")) + ")");
    if (const auto [it, fresh] = by_key.emplace(e.key, list.size()); !fresh)
      throw std::runtime_error(where + ": duplicate of member " + in_quotes(list[it->second].name) + " (" + e.key +
                               " appears twice)");
    if (e.usize > max_npz_member)
      throw std::runtime_error(where + " declares " + std::to_string(e.usize) + " bytes, over the limit of " +
                               std::to_string(max_npz_member) + " for a member");
    // deflate expands at most 1032:1 (258-byte matches in 2 bits), so a larger claim is a lie
    if (e.method == 8 && e.usize > e.csize * 1032 + 64)
      throw std::runtime_error(where + " declares " + std::to_string(e.usize) + " bytes from " +
                               std::to_string(e.csize) + " compressed bytes, more than deflate can expand to");
    total += e.usize;
    if (total > max_npz_total)
      throw std::runtime_error(name + ": members declare over " + std::to_string(max_npz_total) +
                               " bytes in all, over the limit");
    list.push_back(std::move(e));
  }
  // layers 1..L, each with both arrays
  std::uint32_t last = 0;
  if (!accept)
    for (const auto& e : list) last = std::max(last, e.layer);
  for (std::uint32_t k = 1; k <= last; ++k) {
    const bool w = by_key.contains("W" + std::to_string(k)), bias = by_key.contains("b" + std::to_string(k));
    if (w && bias) continue;
    if (!w && !bias) {
      // name the first member beyond the gap
      const zip_entry* after = nullptr;
      for (const auto& e : list)
        if (e.layer > k && (!after || e.layer < after->layer)) after = &e;
      // (some member has layer `last` > k, so `after` is set)
      throw std::runtime_error(name + ": member " + (after ? in_quotes(after->name) : std::string("?")) + " without W" +
                               std::to_string(k) + " and b" + std::to_string(k) +
                               " (layers are numbered 1, 2, ... without gaps)");
    }
    throw std::runtime_error(name + ": layer " + std::to_string(k) + " needs both W" + std::to_string(k) + " and b" +
                             std::to_string(k) + " (" + (w ? "b" : "W") + std::to_string(k) + " is missing)");
  }

  std::map<std::string, npy_array> out;
  for (const auto& e : list) {
    const std::string where = name + ": member " + in_quotes(e.name);
    // 64-bit offsets: a local header near 2^32 must not wrap past the end of the file
    if (e.local >= cd_offset || cd_offset - e.local < 30 || le32(b.data() + e.local) != 0x04034b50)
      throw std::runtime_error(where + ": bad local header offset " + std::to_string(e.local));
    const std::uint64_t lnlen = le16(b.data() + e.local + 26), lxlen = le16(b.data() + e.local + 28);
    const std::uint64_t data = e.local + 30 + lnlen + lxlen;
    if (data > cd_offset || b.substr(e.local + 30, std::min<std::uint64_t>(lnlen, cd_offset - e.local - 30)) != e.name)
      throw std::runtime_error(where + ": bad local header (its name differs from the directory's)");
    if (cd_offset - data < e.csize) throw std::runtime_error(where + " is truncated");
    const std::string content = extract(b, e, data, where);
    out[e.key] = parse_npy(content, name + ": " + sim::printable(e.name));
  }
  return out;
}

}  // namespace

std::map<std::string, npy_array> detail::read_npz_arrays(std::string_view bytes, const std::string& name) {
  return read_npz(bytes, name);
}

std::map<std::string, npy_array> detail::read_npz_named(std::string_view bytes, const std::string& name,
                                                        const std::function<bool(const std::string&)>& accept,
                                                        const std::string& expected) {
  return read_npz(bytes, name, &accept, expected);
}

std::string detail::shape_string(const std::vector<std::size_t>& shape) {
  return shape_text(std::vector<std::uint64_t>(shape.begin(), shape.end()));
}

mlp parse_npz(std::span<const std::uint8_t> bytes, const std::string& name, sim::activation_fn hidden) {
  return naming_file(name, [&] {
    const auto arrays = read_npz(as_chars(bytes), name);
    mlp net;
    for (std::size_t k = 1;; ++k) {
      const auto wi = arrays.find("W" + std::to_string(k));
      const auto bi = arrays.find("b" + std::to_string(k));
      if (wi == arrays.end()) break;  // read_npz saw both of every layer, without gaps
      const auto& W = wi->second;
      const auto& B = bi->second;
      if (W.shape.size() != 2)
        throw std::runtime_error(name + ": W" + std::to_string(k) + " must have shape (n_out, n_in), not rank " +
                                 std::to_string(W.shape.size()));
      if (B.shape.size() != 1 || B.shape[0] != W.shape[0])
        throw std::runtime_error(name + ": b" + std::to_string(k) + " must have shape (" + std::to_string(W.shape[0]) +
                                 ",)");
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
    return detail::validated(std::move(net), name);
  });
}

mlp import_npz(const std::filesystem::path& file, sim::activation_fn hidden) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "an .npz file");
  return parse_npz(as_bytes(bytes), file.string(), hidden);
}

mlp load_any(const std::filesystem::path& file, sim::activation_fn hidden, std::string* metadata) {
  if (file.extension() == ".npz") return import_npz(file, hidden);
  return load_model(file, metadata);
}

}  // namespace mpacc::io
