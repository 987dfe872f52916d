// SPDX-License-Identifier: MIT
// The bounds of a convolution's outputs (its own file: the fuzz build links
// bounds.cpp without the convolution code).
#include <stdexcept>

#include "mpacc/analysis/bounds.hpp"

namespace mpacc::analysis {

std::vector<double> conv2d_bounds(const sim::conv2d_shape& s, const double* X, std::size_t batch,
                                  std::span<const double> W, std::span<const double> b, const sim::layer_spec& spec) {
  return conv2d_bounds(s, X, batch, W, b, spec, gamma_deterministic, 0);
}

std::vector<double> conv2d_bounds(const sim::conv2d_shape& s, const double* X, std::size_t batch,
                                  std::span<const double> W, std::span<const double> b, const sim::layer_spec& spec_in,
                                  gamma_fn gamma, double param) {
  const sim::layer_spec spec = spec_in.resolved();
  s.validate();
  if (W.size() != s.weights() || b.size() != s.c_out) throw std::invalid_argument("conv2d_bounds: sizes");
  const std::size_t ohw = s.out_h() * s.out_w(), K = s.patch(), C = s.c_out;
  const std::size_t nidx = spec.acc.index.size();
  if (nidx != 0 && nidx != C && nidx != C * ohw) throw std::invalid_argument("conv2d_bounds: precision map size");
  std::vector<bound_model> models;
  for (const auto& f : spec.acc.formats) {
    sim::accumulation a = spec.base;
    a.acc = f;
    models.push_back(make_bound_model(K, a, gamma, param));
  }
  std::vector<double> out(batch * C * ohw);
  const auto n = static_cast<std::ptrdiff_t>(batch * ohw);
#pragma omp parallel if (out.size() * K >= 32768)
  {
    std::vector<double> patch(K);
#pragma omp for schedule(static)
    for (std::ptrdiff_t t = 0; t < n; ++t) {
      const std::size_t smp = static_cast<std::size_t>(t) / ohw, pix = static_cast<std::size_t>(t) % ohw;
      sim::conv_patch(s, X + smp * s.in_size(), pix / s.out_w(), pix % s.out_w(), patch.data());
      for (std::size_t c = 0; c < C; ++c) {
        const std::size_t fi = nidx == 0 ? 0 : spec.acc.index[nidx == C ? c : c * ohw + pix];
        out[(smp * C + c) * ohw + pix] = models[fi].evaluate({W.data() + c * K, K}, patch, b[c]);
      }
    }
  }
  return out;
}

}  // namespace mpacc::analysis
