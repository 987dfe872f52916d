// SPDX-License-Identifier: MIT
// libFuzzer target: .npz archives (io::parse_npz, the body of io::import_npz).
//
// The first input byte chooses the mode. Even: the rest is the archive itself
// (zip structure, offsets, sizes, CRCs). Odd: the rest is a list of members,
// [name length u8][name][data length u16 LE][data]..., which the target packs
// into a well-formed zip with correct CRCs (stored, or deflated when bit 1 is
// set), so that mutations reach the .npy headers and shapes instead of being
// stopped by a CRC mismatch. Bit 2 of the first byte: the archive is read as a
// vision transformer's (io::parse_npz_vit, bits 3-4 + 1 heads) instead of an MLP's.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "mpacc/io/model_io.hpp"

namespace {

template <class T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

std::string deflate_raw(const std::string& in) {
  z_stream zs{};
  if (deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return in;
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string pack(const std::uint8_t* p, std::size_t n, bool deflated) {
  std::string out, cd;
  std::size_t members = 0;
  while (n > 0 && members < 64) {
    const std::size_t nlen = std::min<std::size_t>(p[0], n - 1);
    const std::string name(reinterpret_cast<const char*>(p + 1), nlen);
    p += 1 + nlen;
    n -= 1 + nlen;
    std::size_t dlen = 0;
    if (n >= 2) {
      dlen = std::min<std::size_t>(p[0] | (std::size_t{p[1]} << 8), n - 2);
      p += 2;
      n -= 2;
    } else {
      n = 0;
    }
    const std::string data(reinterpret_cast<const char*>(p), dlen);
    p += dlen;
    n -= dlen;
    const std::string stored = deflated ? deflate_raw(data) : data;
    const auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    const auto offset = static_cast<std::uint32_t>(out.size());
    const std::uint16_t method = deflated ? 8 : 0;
    for (std::string* s : {&out, &cd}) {
      const bool central = s == &cd;
      put<std::uint32_t>(*s, central ? 0x02014b50 : 0x04034b50);
      if (central) put<std::uint16_t>(*s, 20);
      put<std::uint16_t>(*s, 20);
      put<std::uint16_t>(*s, 0);
      put<std::uint16_t>(*s, method);
      put<std::uint32_t>(*s, 0x00210000);  // time, date
      put<std::uint32_t>(*s, crc);
      put<std::uint32_t>(*s, static_cast<std::uint32_t>(stored.size()));
      put<std::uint32_t>(*s, static_cast<std::uint32_t>(data.size()));
      put<std::uint16_t>(*s, static_cast<std::uint16_t>(name.size()));
      put<std::uint16_t>(*s, 0);
      if (central) {
        put<std::uint16_t>(*s, 0);  // comment, disk, attributes
        put<std::uint16_t>(*s, 0);
        put<std::uint16_t>(*s, 0);
        put<std::uint32_t>(*s, 0);
        put<std::uint32_t>(*s, offset);
      }
      *s += name;
    }
    out += stored;
    ++members;
  }
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out += cd;
  put<std::uint32_t>(out, 0x06054b50);
  put<std::uint32_t>(out, 0);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(members));
  put<std::uint16_t>(out, static_cast<std::uint16_t>(members));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(cd.size()));
  put<std::uint32_t>(out, cd_offset);
  put<std::uint16_t>(out, 0);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string name = "fuzz.npz";
  std::string packed;
  std::span<const std::uint8_t> archive(data + 1, size - 1);
  if (data[0] & 1) {
    packed = pack(data + 1, size - 1, data[0] & 2);
    archive = {reinterpret_cast<const std::uint8_t*>(packed.data()), packed.size()};
  }
  try {
    if (data[0] & 4) {  // a vision transformer's timm-named arrays (io::parse_npz_vit), 1 to 4 heads
      const auto net = mpacc::io::parse_npz_vit(archive, name, 1 + ((data[0] >> 3) & 3));
      net.validate();
    } else {
      const auto net = mpacc::io::parse_npz(archive, name, {mpacc::sim::activation::tanh});
      net.validate();
    }
  } catch (const std::runtime_error& e) {
    mpacc::fuzz::check_message(e, name);
  }
  return 0;
}
