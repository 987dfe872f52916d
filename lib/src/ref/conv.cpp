// SPDX-License-Identifier: MIT
#include "mpacc/ref/conv.hpp"

#include <stdexcept>

#include "mpacc/ref/accumulate.hpp"
#include "mpacc/ref/long_accumulator.hpp"

namespace mpacc::ref {

namespace {

// calls f(output index, exact value) for every output, serially
template <class F>
void each_exact(const sim::conv2d_shape& s, const double* X, std::size_t batch, std::span<const double> W,
                std::span<const double> b, F&& f) {
  s.validate();
  if (W.size() != s.weights() || b.size() != s.c_out) throw std::invalid_argument("conv2d_exact: sizes");
  const std::size_t ohw = s.out_h() * s.out_w(), K = s.patch();
  std::vector<double> patch(K);
  long_accumulator acc;
  for (std::size_t smp = 0; smp < batch; ++smp)
    for (std::size_t pix = 0; pix < ohw; ++pix) {
      sim::conv_patch(s, X + smp * s.in_size(), pix / s.out_w(), pix % s.out_w(), patch.data());
      for (std::size_t c = 0; c < s.c_out; ++c) {
        const std::span<const double> w{W.data() + c * K, K};
        acc.clear();
        bool ok = true;
        acc.add(b[c]);
        for (std::size_t j = 0; j < K && ok; ++j) ok = acc.add_product(w[j], patch[j]);
        mpfr_float v(2);
        if (ok) {
          acc.exact_to(v);
        } else {
          v = dot_exact(w, patch, b[c]).value;
        }
        f((smp * s.c_out + c) * ohw + pix, v);
      }
    }
}

}  // namespace

std::vector<mpfr_float> conv2d_exact(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                     std::span<const double> W, std::span<const double> b) {
  std::vector<mpfr_float> out(batch * shape.out_size(), mpfr_float(2));
  each_exact(shape, X, batch, W, b, [&](std::size_t o, mpfr_float& v) { out[o] = std::move(v); });
  return out;
}

std::vector<double> conv2d_nearest(const sim::conv2d_shape& shape, const double* X, std::size_t batch,
                                   std::span<const double> W, std::span<const double> b) {
  std::vector<double> out(batch * shape.out_size());
  each_exact(shape, X, batch, W, b, [&](std::size_t o, mpfr_float& v) { out[o] = v.to_double(); });
  return out;
}

}  // namespace mpacc::ref
