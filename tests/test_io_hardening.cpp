// SPDX-License-Identifier: MIT
// Hostile inputs for the parsers (issue 16): IDX files (raw and gzip),
// mpacc model files and .npz archives built byte by byte here; sweep
// configurations and the number tokens of `mpacc round` and `mpacc dot`. Each case is a
// defect that was found by hand or by fuzzing; every one must give one line
// naming the file and the problem, never a crash, a wrapped size, a huge
// allocation or a silent acceptance.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <unistd.h>

#include "mpacc/analysis/sweep.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/vit_passes.hpp"
#include "mpacc/ref/parse.hpp"

using namespace mpacc;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("mpacc_test_io_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_file(const fs::path& p, const std::string& b) {
  std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

// The message of the exception f throws, checked to be a single line; "accepted" if none.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    std::string m = e.what();
    INFO(m);
    CHECK(m.find('\n') == std::string::npos);
    return m;
  }
  return "accepted";
}

template <class T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

std::string idx(const std::vector<std::uint32_t>& dims, std::size_t payload) {
  std::string b = {0, 0, 8, static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>(d >> s));
  for (std::size_t k = 0; k < payload; ++k) b.push_back(static_cast<char>(k % 10));
  return b;
}

// b compressed in one go: window_bits 15 + 16 gives gzip (RFC 1952), -15 a
// raw deflate stream (zip method 8).
std::string compress(const std::string& b, int window_bits) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, b.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data()));
  zs.avail_in = static_cast<uInt>(b.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
std::string gzip(const std::string& b) { return compress(b, 15 + 16); }
std::string deflate_raw(const std::string& b) { return compress(b, -15); }

// A .npy array with the given header dictionary text and body.
std::string npy(const std::string& dict, const std::string& body) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string b = "\x93NUMPY\x01";
  b.push_back('\0');
  put<std::uint16_t>(b, static_cast<std::uint16_t>(h.size()));
  return b + h + body;
}

std::string f8(const std::vector<double>& v) {
  std::string s;
  for (double x : v) put(s, x);
  return s;
}

std::string npy_f8(const std::string& shape, const std::vector<double>& v, bool fortran = false) {
  return npy(
      std::string("{'descr': '<f8', 'fortran_order': ") + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }",
      f8(v));
}

struct member {
  std::string name, data;
  bool deflate = false;
  std::optional<std::uint32_t> crc = {}, usize = {}, local_offset = {};  // override the fields
  std::optional<std::size_t> flip = {};                                  // corrupt this byte of the stored data
  // as numpy.savez writes to a stream (zipfile with force_zip64): local header with
  // CRC 0, sizes 0xffffffff and a ZIP64 extra field, then a data descriptor
  bool streamed = false;
};

// A zip archive of the members (local headers, central directory, end record).
std::string zip(const std::vector<member>& ms) {
  std::string out, cd;
  for (const auto& m : ms) {
    std::string stored = m.deflate ? deflate_raw(m.data) : m.data;
    if (m.flip) stored[*m.flip] = static_cast<char>(stored[*m.flip] ^ 0x10);
    const auto crc = m.crc.value_or(static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size()))));
    const auto usize = m.usize.value_or(static_cast<std::uint32_t>(m.data.size()));
    const auto offset = static_cast<std::uint32_t>(out.size());
    const std::uint16_t method = m.deflate ? 8 : 0;
    const std::uint16_t flags = m.streamed ? 8 : 0;
    put<std::uint32_t>(out, 0x04034b50);
    put<std::uint16_t>(out, 45);
    put<std::uint16_t>(out, flags);
    put<std::uint16_t>(out, method);
    put<std::uint16_t>(out, 0);
    put<std::uint16_t>(out, 0x21);
    put<std::uint32_t>(out, m.streamed ? 0 : crc);
    put<std::uint32_t>(out, m.streamed ? 0xffffffffu : static_cast<std::uint32_t>(stored.size()));
    put<std::uint32_t>(out, m.streamed ? 0xffffffffu : usize);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(m.name.size()));
    put<std::uint16_t>(out, m.streamed ? 20 : 0);
    out += m.name;
    if (m.streamed) {
      put<std::uint16_t>(out, 1);  // ZIP64 extra: sizes 0 until the descriptor
      put<std::uint16_t>(out, 16);
      put<std::uint64_t>(out, 0);
      put<std::uint64_t>(out, 0);
    }
    out += stored;
    if (m.streamed) {
      put<std::uint32_t>(out, 0x08074b50);
      put<std::uint32_t>(out, crc);
      put<std::uint64_t>(out, stored.size());
      put<std::uint64_t>(out, usize);
    }
    put<std::uint32_t>(cd, 0x02014b50);
    put<std::uint16_t>(cd, 45);
    put<std::uint16_t>(cd, 45);
    put<std::uint16_t>(cd, flags);
    put<std::uint16_t>(cd, method);
    put<std::uint16_t>(cd, 0);
    put<std::uint16_t>(cd, 0x21);
    put<std::uint32_t>(cd, crc);
    put<std::uint32_t>(cd, static_cast<std::uint32_t>(stored.size()));
    put<std::uint32_t>(cd, usize);
    put<std::uint16_t>(cd, static_cast<std::uint16_t>(m.name.size()));
    put<std::uint16_t>(cd, 0);
    put<std::uint16_t>(cd, 0);
    put<std::uint16_t>(cd, 0);
    put<std::uint16_t>(cd, 0);
    put<std::uint32_t>(cd, 0);
    put<std::uint32_t>(cd, m.local_offset.value_or(offset));
    cd += m.name;
  }
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out += cd;
  put<std::uint32_t>(out, 0x06054b50);
  put<std::uint16_t>(out, 0);
  put<std::uint16_t>(out, 0);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(ms.size()));
  put<std::uint16_t>(out, static_cast<std::uint16_t>(ms.size()));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(cd.size()));
  put<std::uint32_t>(out, cd_offset);
  put<std::uint16_t>(out, 0);
  return out;
}

// The members of a valid 3-2-1 network.
std::vector<member> net_members(bool deflate = false) {
  return {{"W1.npy", npy_f8("(2, 3)", {1, 2, 3, 4, 5, 6}), deflate},
          {"b1.npy", npy_f8("(2,)", {0.5, -0.5}), deflate},
          {"W2.npy", npy_f8("(1, 2)", {0.25, 0.75}), deflate},
          {"b2.npy", npy_f8("(1,)", {-1}), deflate}};
}

std::string npz_error(const fs::path& p, const std::vector<member>& ms) {
  write_file(p, zip(ms));
  return error_of([&] { (void)io::import_npz(p, {sim::activation::relu}); });
}

std::string idx_error(const fs::path& p, const std::string& bytes) {
  write_file(p, bytes);
  return error_of([&] { (void)io::read_idx(p); });
}

}  // namespace

TEST_CASE("npz: the test archive builder makes a valid network", "[nn][io]") {
  const auto d = temp_dir();
  for (bool deflate : {false, true}) {
    write_file(d / "ok.npz", zip(net_members(deflate)));
    const auto net = io::import_npz(d / "ok.npz", {sim::activation::relu});
    CHECK(net.arch() == "3-2-1");
    CHECK(net.layers[0].W == std::vector<double>{1, 2, 3, 4, 5, 6});
    CHECK(net.layers[1].b == std::vector<double>{-1});
  }
  fs::remove_all(d);
}

TEST_CASE("npz: archives as numpy writes them to a stream (ZIP64 local headers and data descriptors) are read",
          "[nn][io]") {
  const auto d = temp_dir();
  for (bool deflate : {false, true}) {
    auto ms = net_members(deflate);
    for (auto& m : ms) m.streamed = true;
    write_file(d / "stream.npz", zip(ms));
    INFO(deflate);
    CHECK(io::import_npz(d / "stream.npz", {sim::activation::relu}).layers[0].W ==
          std::vector<double>{1, 2, 3, 4, 5, 6});
    // the CRC is the central directory's: a corrupted byte is still caught
    ms[0].flip = ms[0].data.size() - 1;
    if (deflate) ms[0].flip = 3;
    CHECK_THAT(npz_error(d / "stream.npz", ms), Catch::Contains("W1.npy"));
  }
  fs::remove_all(d);
}

TEST_CASE("npz row 1: a local-header offset near 2^32 does not wrap", "[nn][io]") {
  const auto d = temp_dir();
  auto ms = net_members();
  ms[1].local_offset = 0xfffffff0u;
  const auto m = npz_error(d / "off.npz", ms);
  CHECK_THAT(m,
             Catch::Contains((d / "off.npz").string()) && Catch::Contains("b1.npy") && Catch::Contains("local header"));
  fs::remove_all(d);
}

TEST_CASE("npz row 2: an element count that overflows is refused in Fortran and C order", "[nn][io]") {
  const auto d = temp_dir();
  for (bool fortran : {true, false}) {
    auto ms = net_members();
    ms[0].data = npy_f8("(4294967296, 4294967296)", {}, fortran);
    const auto m = npz_error(d / "big.npz", ms);
    INFO(fortran);
    CHECK_THAT(m,
               Catch::Contains((d / "big.npz").string()) && Catch::Contains("W1.npy") && Catch::Contains("too large"));
  }
  fs::remove_all(d);
}

TEST_CASE("row 3: products of dimensions that wrap to 0 are refused (IDX and npz)", "[nn][io]") {
  const auto d = temp_dir();
  // 16 bytes claiming 8 x 2^31 x 2^30 bytes: 2^64 wraps to 0 = the (empty) data
  const auto m = idx_error(d / "wrap", idx({8, 1u << 31, 1u << 30}, 0));
  CHECK_THAT(m, Catch::Contains((d / "wrap").string()) && Catch::Contains("too large"));
  fs::create_directories(d / "mnist");
  write_file(d / "mnist" / "t10k-images-idx3-ubyte", idx({8, 1u << 31, 1u << 30}, 0));
  write_file(d / "mnist" / "t10k-labels-idx1-ubyte", idx({8}, 8));
  CHECK_THAT(error_of([&] { (void)io::load_dataset(d, "mnist", false); }),
             Catch::Contains("t10k-images-idx3-ubyte") && Catch::Contains("too large"));
  // W1 of shape (8, 2^61): 8 * 2^61 * 8 bytes wraps to 0
  auto ms = net_members();
  ms[0].data = npy_f8("(8, 2305843009213693952)", {});
  CHECK_THAT(npz_error(d / "w.npz", ms), Catch::Contains("W1.npy") && Catch::Contains("too large"));
  // dimensions over the cap, with data that would not fit anyway
  ms = net_members();
  ms[0].data = npy_f8("(2, 16777217)", {});
  CHECK_THAT(npz_error(d / "w.npz", ms), Catch::Contains("W1.npy") && Catch::Contains("16777217"));
  fs::remove_all(d);
}

TEST_CASE("npz row 4: a deflated member claiming 4 GB is refused before allocating", "[nn][io]") {
  const auto d = temp_dir();
  auto ms = net_members(true);
  ms[0].data = std::string(6'700'000, '\0');  // deflates to ~6.7 KB
  ms[0].usize = 4'000'000'000u;
  const auto t0 = std::chrono::steady_clock::now();
  const auto m = npz_error(d / "bomb.npz", ms);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK_THAT(m,
             Catch::Contains((d / "bomb.npz").string()) && Catch::Contains("W1.npy") && Catch::Contains("4000000000"));
  CHECK(s < 1.0);
  // the declared size is a bound: a member inflating to more than it says is refused
  ms = net_members(true);
  ms[2].usize = 100;
  CHECK_THAT(npz_error(d / "more.npz", ms), Catch::Contains("W2.npy") && Catch::Contains("declared size"));
  fs::remove_all(d);
}

TEST_CASE("IDX row 5: a gzip that inflates beyond its header is refused early", "[nn][io]") {
  const auto d = temp_dir();
  // the header says 10 images of 28x28 pixels; the stream holds 64 MiB
  std::string body = idx({10, 28, 28}, 0);
  body.resize(body.size() + (std::size_t{64} << 20), '\0');
  const std::string z = gzip(body);
  body.clear();
  body.shrink_to_fit();
  const auto t0 = std::chrono::steady_clock::now();
  const auto m = idx_error(d / "bomb.gz", z);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK_THAT(m, Catch::Contains((d / "bomb.gz").string()) && Catch::Contains("more data than its header declares"));
  CHECK(s < 0.5);  // the old reader inflated all 64 MiB first
  fs::remove_all(d);
}

TEST_CASE("IDX: trailing data after the gzip stream is refused", "[nn][io]") {
  const auto d = temp_dir();
  CHECK(io::read_idx((write_file(d / "ok.gz", gzip(idx({3, 2}, 6))), d / "ok.gz")).data.size() == 6);
  CHECK_THAT(idx_error(d / "tail.gz", gzip(idx({3, 2}, 6)) + "garbage"),
             Catch::Contains((d / "tail.gz").string()) && Catch::Contains("trailing data after the gzip stream"));
  // a second gzip member is trailing data too (a data file is one stream)
  CHECK_THAT(idx_error(d / "two.gz", gzip(idx({3, 2}, 6)) + gzip("x")), Catch::Contains("trailing data"));
  CHECK_THAT(idx_error(d / "cut.gz", gzip(idx({3, 2}, 6)).substr(0, 20)), Catch::Contains("truncated gzip"));
  fs::remove_all(d);
}

TEST_CASE("npz row 12: a member whose CRC field is 0 is still checked", "[nn][io]") {
  const auto d = temp_dir();
  for (bool deflate : {false, true}) {
    auto ms = net_members(deflate);
    ms[0].crc = 0;
    const auto m = npz_error(d / "crc0.npz", ms);
    INFO(deflate);
    CHECK_THAT(m, Catch::Contains((d / "crc0.npz").string()) && Catch::Contains("W1.npy") && Catch::Contains("CRC"));
  }
  // a corrupted weight byte with the CRC field zeroed
  auto ms = net_members();
  ms[2].flip = ms[2].data.size() - 3;
  ms[2].crc = 0;
  CHECK_THAT(npz_error(d / "flip.npz", ms), Catch::Contains("W2.npy") && Catch::Contains("CRC mismatch"));
  fs::remove_all(d);
}

TEST_CASE("IDX row 13: a data set with 0 images is an error", "[nn][io]") {
  const auto d = temp_dir();
  fs::create_directories(d / "mnist");
  write_file(d / "mnist" / "t10k-images-idx3-ubyte", idx({0, 28, 28}, 0));
  write_file(d / "mnist" / "t10k-labels-idx1-ubyte", idx({0}, 0));
  CHECK_THAT(error_of([&] { (void)io::load_dataset(d, "mnist", false); }),
             Catch::Contains("t10k-images-idx3-ubyte") && Catch::Contains("no images"));
  // images of 0 pixels
  write_file(d / "mnist" / "t10k-images-idx3-ubyte", idx({2, 0, 28}, 0));
  write_file(d / "mnist" / "t10k-labels-idx1-ubyte", idx({2}, 2));
  CHECK_THAT(error_of([&] { (void)io::load_dataset(d, "mnist", false); }),
             Catch::Contains("t10k-images-idx3-ubyte") && Catch::Contains("0 pixels"));
  // rank errors name the file
  write_file(d / "mnist" / "t10k-images-idx3-ubyte", idx({2, 4}, 8));
  CHECK_THAT(error_of([&] { (void)io::load_dataset(d, "mnist", false); }),
             Catch::Contains("t10k-images-idx3-ubyte") && Catch::Contains("rank"));
  fs::remove_all(d);
}

TEST_CASE("row 14: messages name the file and the problem", "[nn][io]") {
  const auto d = temp_dir();
  fs::create_directories(d / "adir");
  fs::create_directories(d / "adir.npz");
  const std::string dir = (d / "adir").string();
  CHECK(error_of([&] { (void)io::read_idx(d / "adir"); }) == dir + ": is a directory");
  CHECK(error_of([&] { (void)io::load_model(d / "adir"); }) == dir + ": is a directory");
  CHECK(error_of([&] { (void)io::import_npz(d / "adir.npz", {}); }) == (d / "adir.npz").string() + ": is a directory");
  CHECK_THAT(error_of([&] { (void)io::load_model(d / "none"); }),
             Catch::Contains("none") && Catch::Contains("cannot open"));
  // a shape number beyond 64 bits: not a bare "stoull"
  auto ms = net_members();
  ms[0].data = npy_f8("(99999999999999999999999, 3)", {});
  CHECK_THAT(npz_error(d / "s.npz", ms), Catch::Contains((d / "s.npz").string()) && Catch::Contains("W1.npy") &&
                                             Catch::Contains("99999999999999999999999"));
  // a token with an embedded NUL is shown, not cut at the NUL
  ms = net_members();
  constexpr char with_nul[] = "{'descr': '<f8\0zz', 'fortran_order': False, 'shape': (2, 3), }";
  ms[0].data = npy(std::string(with_nul, sizeof with_nul - 1), f8({1, 2, 3, 4, 5, 6}));
  CHECK_THAT(npz_error(d / "nul.npz", ms), Catch::Contains("W1.npy") && Catch::Contains("<f8\\x00zz"));
  fs::remove_all(d);
}

TEST_CASE("npz row 15: extra or gapped or duplicate members are refused naming the member", "[nn][io]") {
  const auto d = temp_dir();
  auto ms = net_members();
  ms.push_back({"optimizer.npy", npy_f8("(1,)", {0})});
  CHECK_THAT(npz_error(d / "extra.npz", ms),
             Catch::Contains((d / "extra.npz").string()) && Catch::Contains("optimizer.npy"));
  ms = net_members();
  ms.push_back({"W4.npy", npy_f8("(1, 1)", {0})});
  ms.push_back({"b4.npy", npy_f8("(1,)", {0})});
  CHECK_THAT(npz_error(d / "gap.npz", ms), Catch::Contains("W4") && Catch::Contains("W3"));
  ms = net_members();
  ms.push_back({"W1.npy", npy_f8("(2, 3)", {1, 2, 3, 4, 5, 6})});
  CHECK_THAT(npz_error(d / "dup.npz", ms), Catch::Contains("W1.npy") && Catch::Contains("duplicate"));
  ms = net_members();
  ms.push_back({"W1", npy_f8("(2, 3)", {1, 2, 3, 4, 5, 6})});  // the same array under both spellings
  CHECK_THAT(npz_error(d / "dup2.npz", ms), Catch::Contains("W1") && Catch::Contains("duplicate"));
  ms = net_members();
  ms.pop_back();
  CHECK_THAT(npz_error(d / "half.npz", ms), Catch::Contains("b2"));
  fs::remove_all(d);
}

TEST_CASE("config: keys and values with control characters give one-line messages (fuzz_config)", "[analysis][io]") {
  // a JSON key "\rder_indicators" was quoted raw: a message over two lines
  const auto m = error_of([] { (void)analysis::parse_sweep_config(R"({"\rder_indicators": 1})", "c.json"); });
  CHECK(m == "c.json: key '\\x0dder_indicators': unknown key");
  CHECK(m.find('\r') == std::string::npos);
  const auto n =
      error_of([] { (void)analysis::parse_sweep_config(R"({"networks": [{"dataset": "mn\nist"}]})", "c.json"); });
  CHECK_THAT(n, Catch::StartsWith("c.json: key 'networks[0].dataset': unknown data set 'mn\\x0aist'"));
}

TEST_CASE("round and dot tokens: only C numbers, and values below MPFR's range stay nonzero (fuzz_token)",
          "[ref][io]") {
  const auto b64 = sim::formats::binary64;
  auto round = [&](const char* token, sim::rounding mode, double& out) {
    unsigned flags = 0;
    return ref::round_token(token, b64, mode, false, flags, 0, out);
  };
  double v = 0;
  // MPFR's base 0 read these as 5 and 1000
  for (const char* t : {"0b101", "0B1", "-0b1.1", "1@3", "0x1@2", "1.5@-1"}) {
    INFO(t);
    CHECK_FALSE(round(t, sim::rounding::nearest_even, v));
    CHECK_FALSE(ref::parse_binary64(t, v));
  }
  // still numbers: hex digits b and e, exponents
  CHECK((round("0xb", sim::rounding::nearest_even, v) && v == 11));
  CHECK((round("0x1e1", sim::rounding::nearest_even, v) && v == 481));
  CHECK((round("0b", sim::rounding::nearest_even, v) == false));
  // a value below MPFR's exponent range rounded to +-0 in every mode (upward should give 2^-1074)
  CHECK((round("1e-99999999999999999999", sim::rounding::upward, v) && v == 0x1p-1074));
  CHECK((round("1e-99999999999999999999", sim::rounding::downward, v) && v == 0 && !std::signbit(v)));
  CHECK((round("-1e-99999999999999999999", sim::rounding::downward, v) && v == -0x1p-1074));
  CHECK((round("-1e-99999999999999999999", sim::rounding::nearest_even, v) && v == 0 && std::signbit(v)));
  CHECK((round("0e-99999999999999999999", sim::rounding::upward, v) && v == 0));
  unsigned flags = 0;
  CHECK((ref::round_token("1e-99999999999999999999", b64, sim::rounding::nearest_even, false, flags, 0, v) && v == 0));
  CHECK(flags == (sim::flag::inexact | sim::flag::underflow));
  CHECK_FALSE(ref::parse_binary64("1e-99999999999999999999", v));
  // exponents beyond a long, shifted by the significand's digits: MPFR read this one as its largest number
  CHECK((round(".0001e-999999999999999999991", sim::rounding::nearest_even, v) && v == 0));
  CHECK((round(".0001e-999999999999999999991", sim::rounding::upward, v) && v == 0x1p-1074));
  CHECK((round("-0x.0001p-99999999999999999999", sim::rounding::downward, v) && v == -0x1p-1074));
  CHECK((round("1000e+000099999999999999999999", sim::rounding::nearest_even, v) && v == HUGE_VAL));
  CHECK((round("1000e+000099999999999999999999", sim::rounding::toward_zero, v) && v == 0x1.fffffffffffffp+1023));
  CHECK((round("0.0e99999999999999999999", sim::rounding::upward, v) && v == 0));
  CHECK((round("1e-00000000000000000000000001", sim::rounding::nearest_even, v) && v == 0.1));
}

TEST_CASE("npz for a CNN: weights in PyTorch's layouts go into the architecture's layers, else one line", "[nn][io]") {
  const auto d = temp_dir();
  // conv 1->2 k2 on 1x3x3 (output 2x2x2), flatten, dense 8->2
  nn::cnn arch;
  arch.c = 1;
  arch.h = arch.w = 3;
  nn::conv_layer conv;
  conv.shape = {1, 3, 3, 2, 2, 2};
  conv.W.assign(8, 0.0);
  conv.b.assign(2, 0.0);
  conv.act = {sim::activation::relu};
  arch.layers.emplace_back(conv);
  arch.layers.emplace_back(nn::flatten_layer{2, 2, 2});
  nn::dense_layer dense;
  dense.n_in = 8;
  dense.n_out = 2;
  dense.W.assign(16, 0.0);
  dense.b.assign(2, 0.0);
  dense.act = {sim::activation::identity};
  arch.layers.emplace_back(dense);
  REQUIRE_NOTHROW(arch.validate());
  std::vector<double> w1(8), w2(16);
  for (std::size_t i = 0; i < 8; ++i) w1[i] = 0.5 * static_cast<double>(i) - 1;
  for (std::size_t i = 0; i < 16; ++i) w2[i] = 0.25 * static_cast<double>(i);
  const member W1{"W1.npy", npy_f8("(2, 1, 2, 2)", w1)}, b1{"b1.npy", npy_f8("(2,)", {1, -1})},
      W2{"W2.npy", npy_f8("(2, 8)", w2), true}, b2{"b2.npy", npy_f8("(2,)", {0.125, 3})};
  write_file(d / "ok.npz", zip({W1, b1, W2, b2}));
  const auto net = io::import_npz_cnn(d / "ok.npz", arch);
  CHECK(net.arch() == arch.arch());
  CHECK(std::get<nn::conv_layer>(net.layers[0]).W == w1);
  CHECK(std::get<nn::conv_layer>(net.layers[0]).b == std::vector<double>{1, -1});
  CHECK(std::get<nn::dense_layer>(net.layers[2]).W == w2);
  CHECK(std::get<nn::dense_layer>(net.layers[2]).b == std::vector<double>{0.125, 3});
  auto err = [&](const std::vector<member>& ms) {
    write_file(d / "bad.npz", zip(ms));
    return error_of([&] { (void)io::import_npz_cnn(d / "bad.npz", arch); });
  };
  // a conv weight in another layout (c_in, c_out, ...), a Linear weight transposed
  CHECK_THAT(err({{"W1.npy", npy_f8("(1, 2, 2, 2)", w1)}, b1, W2, b2}),
             Catch::Contains("W1") && Catch::Contains("(2, 1, 2, 2)") && Catch::Contains("Conv2d"));
  CHECK_THAT(err({W1, b1, {"W2.npy", npy_f8("(8, 2)", w2)}, b2}),
             Catch::Contains("W2") && Catch::Contains("(2, 8)") && Catch::Contains("Linear"));
  CHECK_THAT(err({W1, {"b1.npy", npy_f8("(3,)", {1, 2, 3})}, W2, b2}),
             Catch::Contains("b1") && Catch::Contains("(2,)"));
  CHECK_THAT(err({W1, b1}), Catch::Contains("no W2"));
  CHECK_THAT(err({W1, b1, W2, b2, {"W3.npy", npy_f8("(1, 2)", {1, 2})}, {"b3.npy", npy_f8("(1,)", {0})}}),
             Catch::Contains("W3 has no layer"));
  CHECK_THAT(err({W1, b1, {"W2.npy", npy_f8("(2, 8)", std::vector<double>(16, NAN))}, b2}),
             Catch::Contains("bad.npz") && Catch::Contains("finite"));
  // LeNet-5 (nn::make_lenet5) takes five pairs in this order
  const auto lenet = nn::make_lenet5({sim::activation::relu});
  std::vector<member> ms;
  std::size_t k = 0;
  for (const auto& l : lenet.layers) {
    std::string shape;
    std::size_t n = 0, out = 0;
    if (const auto* c = std::get_if<nn::conv_layer>(&l)) {
      shape = "(" + std::to_string(c->shape.c_out) + ", " + std::to_string(c->shape.c_in) + ", 5, 5)";
      n = c->shape.weights();
      out = c->shape.c_out;
    } else if (const auto* dl = std::get_if<nn::dense_layer>(&l)) {
      shape = "(" + std::to_string(dl->n_out) + ", " + std::to_string(dl->n_in) + ")";
      n = dl->n_out * dl->n_in;
      out = dl->n_out;
    } else {
      continue;
    }
    ++k;
    ms.push_back({"W" + std::to_string(k) + ".npy", npy_f8(shape, std::vector<double>(n, 0.5)), true});
    ms.push_back(
        {"b" + std::to_string(k) + ".npy", npy_f8("(" + std::to_string(out) + ",)", std::vector<double>(out, 1))});
  }
  CHECK(k == 5);
  write_file(d / "lenet.npz", zip(ms));
  const auto ln = io::import_npz_cnn(d / "lenet.npz", lenet);
  CHECK(std::get<nn::dense_layer>(ln.layers.back()).W == std::vector<double>(840, 0.5));
  fs::remove_all(d);
}

// ---------------------------------------------------------------------------
// .npz of a vision transformer (io::import_npz_vit): timm's state_dict names

namespace {

std::string shape_text(const std::vector<std::size_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i)
    t += std::to_string(s[i]) + (s.size() == 1 || i + 1 < s.size() ? ", " : "");
  return t + ")";
}

// A vit with every parameter pseudo-random (weights in +-0.5, gains 1 +- 0.2).
nn::vit npz_random_vit(std::uint64_t seed, std::size_t blocks) {
  auto net = nn::make_vit(blocks, 8, 2, 6, 3, 8, 4);
  std::uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) * 0x1p-53;
  };
  auto fill = [&](std::vector<double>& v, double c, double m) {
    for (auto& x : v) x = c + (2 * next() - 1) * m;
  };
  auto lin = [&](nn::dense_layer& l) {
    fill(l.W, 0, 0.5);
    fill(l.b, 0, 0.5);
  };
  lin(net.embed);
  fill(net.cls, 0, 0.5);
  fill(net.pos, 0, 0.5);
  for (auto& b : net.blocks) {
    for (auto* l : {&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2}) lin(*l);
    for (auto* ln : {&b.ln1, &b.ln2}) {
      fill(ln->gamma, 1, 0.2);
      fill(ln->beta, 0, 0.2);
    }
  }
  fill(net.ln_f.gamma, 1, 0.2);
  fill(net.ln_f.beta, 0, 0.2);
  lin(net.head);
  net.ln_eps = 1e-6;
  return net;
}

// the members of a vit's state_dict as timm names them (float64)
std::vector<member> vit_members(const nn::vit& n) {
  std::vector<member> ms;
  auto add = [&](const std::string& key, const std::vector<std::size_t>& shape, const std::vector<double>& v) {
    ms.push_back({key + ".npy", npy_f8(shape_text(shape), v)});
  };
  const std::size_t d = n.d, T = n.tokens();
  add("patch_embed.proj.weight", {d, 1, n.patch, n.patch}, n.embed.W);
  add("patch_embed.proj.bias", {d}, n.embed.b);
  add("cls_token", {1, 1, d}, n.cls);
  add("pos_embed", {1, T, d}, n.pos);
  for (std::size_t b = 0; b < n.blocks.size(); ++b) {
    const auto& B = n.blocks[b];
    const std::string p = "blocks." + std::to_string(b) + ".";
    add(p + "norm1.weight", {d}, B.ln1.gamma);
    add(p + "norm1.bias", {d}, B.ln1.beta);
    std::vector<double> W, bias;
    for (const auto* l : {&B.q, &B.k, &B.v}) {
      W.insert(W.end(), l->W.begin(), l->W.end());
      bias.insert(bias.end(), l->b.begin(), l->b.end());
    }
    add(p + "attn.qkv.weight", {3 * d, d}, W);
    add(p + "attn.qkv.bias", {3 * d}, bias);
    add(p + "attn.proj.weight", {d, d}, B.proj.W);
    add(p + "attn.proj.bias", {d}, B.proj.b);
    add(p + "norm2.weight", {d}, B.ln2.gamma);
    add(p + "norm2.bias", {d}, B.ln2.beta);
    add(p + "mlp.fc1.weight", {n.hidden, d}, B.fc1.W);
    add(p + "mlp.fc1.bias", {n.hidden}, B.fc1.b);
    add(p + "mlp.fc2.weight", {d, n.hidden}, B.fc2.W);
    add(p + "mlp.fc2.bias", {d}, B.fc2.b);
  }
  add("norm.weight", {d}, n.ln_f.gamma);
  add("norm.bias", {d}, n.ln_f.beta);
  add("head.weight", {n.classes, d}, n.head.W);
  add("head.bias", {n.classes}, n.head.b);
  return ms;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

std::string vit_npz_error(const fs::path& p, const std::vector<member>& ms, std::size_t heads = 2) {
  write_file(p, zip(ms));
  return error_of([&] { (void)io::import_npz_vit(p, heads); });
}

}  // namespace

TEST_CASE("npz vit: a round trip through timm's state_dict names gives the same network and logits", "[nn][io]") {
  const auto dir = temp_dir();
  for (std::size_t blocks : {1, 2}) {
    INFO(blocks << " blocks");
    const auto net = npz_random_vit(40 + blocks, blocks);
    auto ms = vit_members(net);
    ms[3].deflate = true;  // a deflated member among stored ones
    write_file(dir / "vit.npz", zip(ms));
    const auto got = io::import_npz_vit(dir / "vit.npz", 2, 1e-6);
    CHECK(got.arch() == net.arch());
    CHECK(got.ln_eps == net.ln_eps);
    CHECK(got.image == 8);
    CHECK(got.hidden == 6);
    CHECK(same_bits(got.embed.W, net.embed.W));
    CHECK(same_bits(got.embed.b, net.embed.b));
    CHECK(same_bits(got.cls, net.cls));
    CHECK(same_bits(got.pos, net.pos));
    REQUIRE(got.blocks.size() == blocks);
    for (std::size_t b = 0; b < blocks; ++b) {
      const auto &x = got.blocks[b], &y = net.blocks[b];
      for (auto [l, m] : {std::pair{&x.q, &y.q},
                          {&x.k, &y.k},
                          {&x.v, &y.v},
                          {&x.proj, &y.proj},
                          {&x.fc1, &y.fc1},
                          {&x.fc2, &y.fc2}}) {
        CHECK(same_bits(l->W, m->W));
        CHECK(same_bits(l->b, m->b));
        CHECK(l->act.kind == m->act.kind);
      }
      CHECK(same_bits(x.ln1.gamma, y.ln1.gamma));
      CHECK(same_bits(x.ln2.beta, y.ln2.beta));
    }
    CHECK(same_bits(got.ln_f.gamma, net.ln_f.gamma));
    CHECK(same_bits(got.head.W, net.head.W));
#ifndef MPACC_IO_ONLY  // the fuzz preset's test_io_hardening_asan has no layer kernels
    // the same simulated logits, bit for bit
    std::vector<double> X(3 * net.inputs());
    for (std::size_t i = 0; i < X.size(); ++i) X[i] = static_cast<double>((i * 37) % 11) / 7.0;
    const auto p = nn::parse_precision("acc=binary16;order=blocked:4;weights=e4m3-ieee;act=bfloat16");
    const auto a = nn::simulate(net, {X.data(), 3, net.inputs()}, p, 1);
    const auto c = nn::simulate(got, {X.data(), 3, net.inputs()}, p, 1);
    CHECK(same_bits(a.layers.back().y, c.layers.back().y));
#endif
  }
  fs::remove_all(dir);
}

TEST_CASE("npz vit: malformed archives are refused with one line naming the array", "[nn][io]") {
  const auto dir = temp_dir();
  const auto net = npz_random_vit(7, 2);
  const auto good = vit_members(net);
  const auto f = dir / "bad.npz";
  auto find = [&](std::vector<member>& ms, const std::string& key) -> member& {
    for (auto& m : ms)
      if (m.name == key + ".npy") return m;
    FAIL("no member " << key);
    return ms[0];
  };
  auto one_line = [&](const std::string& m) {
    CHECK(m.find('\n') == std::string::npos);
    CHECK_THAT(m, Catch::Contains(f.string()));
  };
  {  // a missing array
    auto ms = good;
    ms.erase(
        std::remove_if(ms.begin(), ms.end(), [](const member& m) { return m.name == "blocks.1.mlp.fc2.bias.npy"; }),
        ms.end());
    const auto m = vit_npz_error(f, ms);
    one_line(m);
    CHECK_THAT(m, Catch::Contains("no array blocks.1.mlp.fc2.bias"));
  }
  {  // a wrong shape: fc2 of block 0 transposed
    auto ms = good;
    find(ms, "blocks.0.mlp.fc2.weight").data = npy_f8("(6, 8)", net.blocks[0].fc2.W);
    const auto m = vit_npz_error(f, ms);
    one_line(m);
    CHECK_THAT(m, Catch::Contains("blocks.0.mlp.fc2.weight has shape (6, 8), expected (8, 6)"));
  }
  {  // qkv of the wrong height
    auto ms = good;
    find(ms, "blocks.1.attn.qkv.weight").data = npy_f8("(16, 8)", std::vector<double>(128, 0.25));
    const auto m = vit_npz_error(f, ms);
    one_line(m);
    CHECK_THAT(m, Catch::Contains("blocks.1.attn.qkv.weight has shape (16, 8), expected (24, 8)"));
  }
  {  // a non-finite value
    auto ms = good;
    auto pos = net.pos;
    pos[5] = std::numeric_limits<double>::quiet_NaN();
    find(ms, "pos_embed").data = npy_f8("(1, 5, 8)", pos);
    const auto m = vit_npz_error(f, ms);
    one_line(m);
    CHECK_THAT(m, Catch::Contains("position embedding") && Catch::Contains("non-finite"));
  }
  {  // a wrong dtype
    auto ms = good;
    find(ms, "head.bias").data = npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", f8({0, 0, 0}));
    const auto m = vit_npz_error(f, ms);
    one_line(m);
    CHECK_THAT(m, Catch::Contains("head.bias") && Catch::Contains("dtype"));
  }
  {  // an unexpected member, and a block numbered with a leading zero
    for (const char* name : {"blocks.0.attn.q.weight.npy", "blocks.01.norm1.weight.npy", "W1.npy"}) {
      auto ms = good;
      ms.push_back({name, npy_f8("(8,)", std::vector<double>(8, 1.0))});
      const auto m = vit_npz_error(f, ms);
      INFO(name);
      one_line(m);
      CHECK_THAT(m, Catch::Contains(name) && Catch::Contains("is not expected"));
    }
  }
  {  // a patch embedding for three channels, a non-square patch count, heads that do not divide d
    auto ms = good;
    find(ms, "patch_embed.proj.weight").data = npy_f8("(8, 3, 4, 4)", std::vector<double>(384, 0.1));
    CHECK_THAT(vit_npz_error(f, ms), Catch::Contains("expected (d, 1, patch, patch)"));
    ms = good;
    find(ms, "pos_embed").data = npy_f8("(1, 4, 8)", std::vector<double>(32, 0.1));
    CHECK_THAT(vit_npz_error(f, ms), Catch::Contains("square number of patches"));
    CHECK_THAT(vit_npz_error(f, good, 3), Catch::Contains("not divisible by 3 heads"));
  }
  {  // a block missing whole: its arrays are asked for by name
    auto ms = good;
    ms.erase(std::remove_if(ms.begin(), ms.end(), [](const member& m) { return m.name.starts_with("blocks.0."); }),
             ms.end());
    CHECK_THAT(vit_npz_error(f, ms), Catch::Contains("no array blocks.0."));
  }
  fs::remove_all(dir);
}
