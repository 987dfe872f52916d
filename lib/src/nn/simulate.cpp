#include "mpacc/nn/simulate.hpp"

#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

namespace mpacc::nn {

void apply_activation(const dense_layer& l, const sim::format& act_format, std::vector<double>& v, int threads) {
  const auto n = static_cast<std::ptrdiff_t>(v.size());
#pragma omp parallel for num_threads(sim::thread_count(threads)) schedule(static)
  for (std::ptrdiff_t t = 0; t < n; ++t) {
    auto& x = v[static_cast<std::size_t>(t)];
    unsigned fl = 0;
    x = sim::round(sim::apply(l.act, x), act_format, sim::rounding::nearest_even, false, fl);
  }
}

std::vector<simulated_layer> simulate(const mlp& net, sim::matrix_view X, const sim::layer_spec& spec,
                                      const sim::format& input_format, const sim::format& act_format, int threads) {
  net.validate();
  std::vector<double> in(X.data, X.data + X.rows * X.cols);
  sim::round_array(in, in, {input_format, sim::rounding::nearest_even, false, 0});
  std::vector<simulated_layer> out(net.layers.size());
  std::size_t cols = X.cols;
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const auto& l = net.layers[k];
    const sim::prepared_dense layer({l.W.data(), l.n_out, l.n_in}, l.b, spec);
    auto& r = out[k];
    layer.run({in.data(), X.rows, cols}, r.v, threads, &r.flags);
    r.y = r.v;
    apply_activation(l, act_format, r.y, threads);
    in = r.y;
    cols = l.n_out;
  }
  return out;
}

}  // namespace mpacc::nn
