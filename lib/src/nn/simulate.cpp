// SPDX-License-Identifier: MIT
#include "mpacc/nn/simulate.hpp"

#include <cmath>

#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/random.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::nn {

unsigned apply_activation(const dense_layer& l, const sim::format& act_format, std::vector<double>& v, int threads,
                          std::vector<unsigned>* flags, sim::rounding mode, bool saturate, std::uint64_t seed) {
  return apply_activation(l.act, act_format, v, threads, flags, mode, saturate, seed);
}

unsigned apply_activation(const sim::activation_fn& act, const sim::format& act_format, std::vector<double>& v,
                          int threads, std::vector<unsigned>* flags, sim::rounding mode, bool saturate,
                          std::uint64_t seed) {
  const auto n = static_cast<std::ptrdiff_t>(v.size());
  if (flags) flags->assign(v.size(), 0);
  unsigned all = 0;
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static) reduction(| : all)
  for (std::ptrdiff_t t = 0; t < n; ++t) {
    auto& x = v[static_cast<std::size_t>(t)];
    unsigned fl = 0;
    const double phi = sim::apply(act, x);
    if (std::isfinite(x) && !std::isfinite(phi)) fl |= std::isnan(phi) ? sim::flag::invalid : sim::flag::overflow;
    const std::uint64_t word =
        mode == sim::rounding::stochastic ? sim::random_bits(seed, static_cast<std::uint64_t>(t)) : 0;
    x = sim::round(phi, act_format, mode, saturate, fl, word);
    if (flags) (*flags)[static_cast<std::size_t>(t)] = fl;
    all |= fl;
  }
  return all;
}

std::vector<double> store_inputs(sim::matrix_view X, const sim::format& input_format, std::vector<unsigned>* flags) {
  std::vector<double> in(X.data, X.data + X.rows * X.cols);
  if (!flags) {
    sim::round_array(in, in, {input_format, sim::rounding::nearest_even, false, 0});
    return in;
  }
  flags->assign(in.size(), 0);
  for (std::size_t t = 0; t < in.size(); ++t) {
    unsigned fl = 0;
    in[t] = sim::round(in[t], input_format, sim::rounding::nearest_even, false, fl);
    (*flags)[t] = fl;
  }
  return in;
}

void simulate_layer(const dense_layer& l, sim::matrix_view X, const sim::layer_spec& spec_in, std::vector<double>& Y,
                    std::vector<unsigned>& flags, int threads) {
  const sim::layer_spec spec = spec_in.resolved();
  bool fast = true;
  for (const auto& f : spec.acc.formats) {
    sim::accumulation a = spec.base;
    a.acc = f;
    fast = fast && sim::fast_path_applies(a);
  }
  if (fast) {
    const sim::prepared_dense layer({l.W.data(), l.n_out, l.n_in}, l.b, spec);
    layer.run(X, Y, threads, &flags);
    return;
  }
  // the MPFR model: same rounding steps, same stochastic words as the fast path
  if (X.cols != l.n_in) throw std::invalid_argument("simulate_layer: the input width does not match the layer");
  Y.assign(X.rows * l.n_out, 0);
  flags.assign(X.rows * l.n_out, 0);
  const auto total = static_cast<std::ptrdiff_t>(X.rows * l.n_out);
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(dynamic, 16)
  for (std::ptrdiff_t t = 0; t < total; ++t) {
    const auto at = static_cast<std::size_t>(t);
    const std::size_t s = at / l.n_out, i = at % l.n_out;
    sim::accumulation a = spec.base;
    a.acc = spec.acc.of(i);
    const auto r = ref::dot_mpfr({l.row(i), l.n_in}, {X.row(s), l.n_in}, l.b[i], a, at * sim::words_per_dot(l.n_in, a));
    Y[at] = r.value;
    flags[at] = r.flags;
  }
}

std::vector<simulated_layer> simulate(const mlp& net, sim::matrix_view X, const sim::layer_spec& spec,
                                      const sim::format& input_format, const sim::format& act_format, int threads) {
  net.validate();
  std::vector<simulated_layer> out(net.layers.size());
  if (out.empty()) return out;
  std::vector<double> in = store_inputs(X, input_format, &out[0].in_flags);
  std::size_t cols = X.cols;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& l = net.layers[k];
    auto& r = out[k];
    simulate_layer(l, {in.data(), X.rows, cols}, spec, r.v, r.flags, threads);
    r.y = r.v;
    apply_activation(l, act_format, r.y, threads, &r.act_flags);
    in = r.y;
    cols = l.n_out;
  }
  return out;
}

std::vector<simulated_layer> simulate(const mlp& net_in, sim::matrix_view X, const precision_config& p, int threads) {
  net_in.validate();
  p.check(net_in.layers.size());
  const mlp net = stored_network(net_in, p);
  std::vector<simulated_layer> out(net.layers.size());
  if (out.empty()) return out;
  std::vector<double> in = store_inputs(X, p.inputs, &out[0].in_flags);
  std::size_t cols = X.cols;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& l = net.layers[k];
    auto& r = out[k];
    simulate_layer(l, {in.data(), X.rows, cols}, p.layer_spec(k), r.v, r.flags, threads);
    r.y = r.v;
    apply_activation(l, p.act, r.y, threads, &r.act_flags, p.act_rounding, p.act_saturate, p.seed + k + 1);
    in = r.y;
    cols = l.n_out;
  }
  return out;
}

}  // namespace mpacc::nn
