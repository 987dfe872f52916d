// SPDX-License-Identifier: MIT
// The C++ side of the Python bit-for-bit tests (tests/python/test_identity.py):
// reads raw binary64 inputs on stdin, computes with the C++ API directly and
// writes the raw results on stdout. Deliberately takes other C++ paths than
// the bindings where the library has them (scalar sim::round per element
// instead of round_array; sim::dot per component instead of the dense kernels),
// so a wrong stream offset, layout or argument in the bindings shows up.
//   oracle round FORMAT MODE SATURATE(0|1) SUBNORMALS(on|off|default) SEED   < doubles
//       -> n doubles, n uint32 flags
//   oracle dot ACC MODE PRODUCT(exact|F) ORDER SATURATE SEED   < n(u64) bias w[n] x[n]
//       -> value, flags(u32)
//   oracle dense ACC MODE ORDER SEED MAP(-|F1;F2;...)   < batch n_in n_out (u64) X W b [index u8 x n_out]
//       -> Y (batch x n_out), flags (u32, batch x n_out)
//   oracle alg1 MODEL PRECISION HIGH INDICATOR TAU   < rows cols (u64) X labels(u8)
//       -> layers(u64), per layer its recomputed mask (u8, rows x n_out), then logits
//   oracle cnn MODEL PRECISION   < rows cols (u64) X      (a CNN model file, nn::simulate(cnn))
//       -> layers(u64), per layer n (u64, outputs per sample), v, y (rows x n), flags (u32, rows x n)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/analysis/cnn_algorithm1.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"

using namespace mpacc;

namespace {

std::vector<char> input;
std::size_t pos = 0;

template <class T>
T get() {
  if (pos + sizeof(T) > input.size()) throw std::runtime_error("oracle: input too short");
  T v;
  std::memcpy(&v, input.data() + pos, sizeof(T));
  pos += sizeof(T);
  return v;
}
template <class T>
std::vector<T> get_n(std::size_t n) {
  std::vector<T> v(n);
  for (auto& x : v) x = get<T>();
  return v;
}
template <class T>
void put(const T& v) {
  std::fwrite(&v, sizeof(T), 1, stdout);
}
template <class T>
void put_n(const std::vector<T>& v) {
  std::fwrite(v.data(), sizeof(T), v.size(), stdout);
}

sim::dot_result any_dot(std::span<const double> w, std::span<const double> x, double b, const sim::accumulation& a,
                        std::uint64_t first) {
  if (sim::fast_path_applies(a)) {
    auto r = sim::dot(w, x, b, a, first);
    if (r.exact_model) return r;
  }
  return ref::dot_mpfr(w, x, b, a, first);
}

}  // namespace

int main(int argc, char** argv) try {
  input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  const std::vector<std::string> arg(argv + 1, argv + argc);
  if (arg.empty()) throw std::runtime_error("oracle: no command");
  if (arg[0] == "round" && arg.size() == 6) {
    sim::format f = sim::parse_format(arg[1]);
    const auto mode = sim::parse_rounding(arg[2]);
    const bool sat = arg[3] == "1";
    if (arg[4] != "default") f.subnormals = arg[4] == "on";
    const std::uint64_t seed = std::stoull(arg[5]);
    const auto x = get_n<double>(input.size() / sizeof(double));
    std::vector<double> y(x.size());
    std::vector<std::uint32_t> fl(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      unsigned flags = 0;
      y[i] = sim::round(x[i], f, mode, sat, flags, mode == sim::rounding::stochastic ? sim::random_bits(seed, i) : 0);
      fl[i] = flags;
    }
    put_n(y);
    put_n(fl);
  } else if (arg[0] == "dot" && arg.size() == 7) {
    sim::accumulation a;
    a.acc = sim::parse_format(arg[1]);
    a.mode = sim::parse_rounding(arg[2]);
    if (arg[3] != "exact") a.product = sim::parse_format(arg[3]);
    a.ord = sim::parse_order(arg[4]);
    a.saturate = arg[5] == "1";
    a.seed = std::stoull(arg[6]);
    const auto n = get<std::uint64_t>();
    const double bias = get<double>();
    const auto w = get_n<double>(n), x = get_n<double>(n);
    const auto r = any_dot(w, x, bias, a, 0);
    put(r.value);
    put(static_cast<std::uint32_t>(r.flags));
  } else if (arg[0] == "dense" && arg.size() == 6) {
    sim::accumulation a;
    a.acc = sim::parse_format(arg[1]);
    a.mode = sim::parse_rounding(arg[2]);
    a.ord = sim::parse_order(arg[3]);
    a.seed = std::stoull(arg[4]);
    std::vector<sim::format> fmts;
    if (arg[5] != "-") {
      std::size_t start = 0;
      while (true) {
        const auto end = arg[5].find(';', start);
        fmts.push_back(sim::parse_format(arg[5].substr(start, end - start)));
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    const auto B = get<std::uint64_t>(), n_in = get<std::uint64_t>(), n_out = get<std::uint64_t>();
    const auto X = get_n<double>(B * n_in), W = get_n<double>(n_out * n_in), b = get_n<double>(n_out);
    std::vector<std::uint8_t> index;
    if (!fmts.empty()) index = get_n<std::uint8_t>(n_out);
    std::vector<double> Y(B * n_out);
    std::vector<std::uint32_t> fl(B * n_out);
    for (std::size_t s = 0; s < B; ++s)
      for (std::size_t i = 0; i < n_out; ++i) {
        sim::accumulation ai = a;
        if (!fmts.empty()) ai.acc = fmts.at(index[i]);
        const std::uint64_t first = (s * n_out + i) * sim::words_per_dot(n_in, ai);
        const auto r = any_dot({W.data() + i * n_in, n_in}, {X.data() + s * n_in, n_in}, b[i], ai, first);
        Y[s * n_out + i] = r.value;
        fl[s * n_out + i] = r.flags;
      }
    put_n(Y);
    put_n(fl);
  } else if (arg[0] == "alg1" && arg.size() == 6) {
    const auto net = io::load_model(arg[1]);
    analysis::mixed_config cfg;
    cfg.precision = nn::parse_precision(arg[2]);
    cfg.high = sim::parse_format(arg[3]);
    io::dataset d;
    d.rows = get<std::uint64_t>();
    d.cols = get<std::uint64_t>();
    d.x = get_n<double>(d.rows * d.cols);
    d.y = get_n<std::uint8_t>(d.rows);
    analysis::mixed_runner runner(net, d, d.rows, cfg, 1);
    analysis::selection sel;
    sel.type = analysis::selection::kind::threshold;
    sel.indicator = arg[4];
    sel.tau = std::stod(arg[5]);
    sel.keep_trace = true;
    const auto r = runner.run(sel);
    put(static_cast<std::uint64_t>(r.trace.size()));
    for (const auto& t : r.trace) put_n(t.recomputed);
    put_n(r.logits);
  } else if (arg[0] == "cnnalg1" && arg.size() == 6) {
    // Algorithm 1 on a CNN model file: the recomputed masks per network layer, then the logits
    const auto net = io::load_cnn(arg[1]);
    analysis::mixed_config cfg;
    cfg.precision = nn::parse_precision(arg[2]);
    cfg.high = sim::parse_format(arg[3]);
    io::dataset d;
    d.rows = get<std::uint64_t>();
    d.cols = get<std::uint64_t>();
    d.x = get_n<double>(d.rows * d.cols);
    d.y = get_n<std::uint8_t>(d.rows);
    const analysis::cnn_mixed_runner runner(net, d, d.rows, cfg, 1);
    analysis::selection sel;
    sel.type = analysis::selection::kind::threshold;
    sel.indicator = arg[4];
    sel.tau = std::stod(arg[5]);
    sel.keep_trace = true;
    const auto r = runner.run(sel);
    put(static_cast<std::uint64_t>(r.trace.size()));
    for (const auto& t : r.trace) {
      put(static_cast<std::uint64_t>(t.recomputed.size()));
      put_n(t.recomputed);
    }
    put_n(r.logits);
  } else if (arg[0] == "cnn" && arg.size() == 3) {
    const auto net = io::load_cnn(arg[1]);
    const auto p = nn::parse_precision(arg[2]);
    const auto rows = get<std::uint64_t>(), cols = get<std::uint64_t>();
    const auto X = get_n<double>(rows * cols);
    const auto r = nn::simulate(net, {X.data(), rows, cols}, p, 1);
    put(static_cast<std::uint64_t>(r.size()));
    for (const auto& l : r) {
      const std::uint64_t n = rows ? l.y.size() / rows : 0;
      put(n);
      put_n(l.v);
      put_n(l.y);
      std::vector<std::uint32_t> fl(l.y.size(), 0);
      if (l.flags.size() == fl.size()) std::copy(l.flags.begin(), l.flags.end(), fl.begin());
      put_n(fl);
    }
  } else {
    throw std::runtime_error("oracle: unknown command or wrong argument count");
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 2;
}
