// SPDX-License-Identifier: MIT
// The shape checks of convolutions and pooling (sim/conv.hpp), apart from the
// kernels: the model-file reader and its fuzz target need them alone.
#include <stdexcept>
#include <string>

#include "mpacc/sim/conv.hpp"

namespace mpacc::sim {

namespace {

constexpr std::size_t max_axis = std::size_t{1} << 24;

std::string dims(std::size_t a, std::size_t b) { return std::to_string(a) + "x" + std::to_string(b); }

}  // namespace

void conv2d_shape::validate() const {
  for (const auto& [v, name] : {std::pair{c_in, "c_in"},
                                {h, "h"},
                                {w, "w"},
                                {c_out, "c_out"},
                                {kh, "kh"},
                                {kw, "kw"},
                                {stride_h, "stride_h"},
                                {stride_w, "stride_w"}})
    if (v == 0 || v > max_axis)
      throw std::invalid_argument(std::string("conv2d: ") + name + " = " + std::to_string(v) +
                                  " (must be in 1 .. 2^24)");
  if (pad_h > max_axis || pad_w > max_axis) throw std::invalid_argument("conv2d: padding beyond 2^24");
  if (kh > h + 2 * pad_h || kw > w + 2 * pad_w)
    throw std::invalid_argument("conv2d: kernel " + dims(kh, kw) + " larger than the padded input " +
                                dims(h + 2 * pad_h, w + 2 * pad_w));
  // each size is at most 2^24: kh kw <= 2^48 cannot overflow; the products with
  // the channel counts are checked by division (c_in kh kw could reach 2^72)
  constexpr std::size_t max_weights = std::size_t{1} << 31;
  const std::size_t khw = kh * kw;
  if (c_in > max_weights / khw || c_out > max_weights / (c_in * khw))
    throw std::invalid_argument("conv2d: more than 2^31 weights");
}

void pool2d_shape::validate() const {
  for (const auto& [v, name] :
       {std::pair{c, "c"}, {h, "h"}, {w, "w"}, {kh, "kh"}, {kw, "kw"}, {stride_h, "stride_h"}, {stride_w, "stride_w"}})
    if (v == 0 || v > max_axis)
      throw std::invalid_argument(std::string("pool2d: ") + name + " = " + std::to_string(v) +
                                  " (must be in 1 .. 2^24)");
  if (2 * pad_h > kh || 2 * pad_w > kw)
    throw std::invalid_argument("pool2d: padding " + dims(pad_h, pad_w) + " more than half the window " + dims(kh, kw));
  if (kh > h + 2 * pad_h || kw > w + 2 * pad_w)
    throw std::invalid_argument("pool2d: window " + dims(kh, kw) + " larger than the padded input " +
                                dims(h + 2 * pad_h, w + 2 * pad_w));
}

}  // namespace mpacc::sim
