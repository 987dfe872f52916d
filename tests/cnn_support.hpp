// SPDX-License-Identifier: MIT
// Shapes for the convolution tests (test_cnn, test_cnn_passes).
#pragma once

#include <cstddef>

#include "mpacc/sim/conv.hpp"

namespace mpacc::test {

// A square k x k convolution with the same stride and padding in both directions.
inline sim::conv2d_shape conv_shape(std::size_t c_in, std::size_t h, std::size_t w, std::size_t c_out, std::size_t k,
                                    std::size_t stride, std::size_t pad) {
  sim::conv2d_shape s;
  s.c_in = c_in;
  s.h = h;
  s.w = w;
  s.c_out = c_out;
  s.kh = s.kw = k;
  s.stride_h = s.stride_w = stride;
  s.pad_h = s.pad_w = pad;
  return s;
}

}  // namespace mpacc::test
