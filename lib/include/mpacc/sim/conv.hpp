// SPDX-License-Identifier: MIT
// Simulated 2-D convolutions, pooling and flatten on NCHW batches
// (docs/cnn.md). A convolution is lowered by im2col onto sim::prepared_dense, so
// every output pixel is one inner product simulated exactly as sim::dot
// computes it, in every accumulation model a dense layer has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::sim {

// The shape of a 2-D convolution: input c_in x h x w, c_out kernels of
// c_in x kh x kw, stride and zero padding per axis (as PyTorch's Conv2d with
// dilation 1 and groups 1). Output oh x ow with
//   oh = (h + 2 pad_h - kh) / stride_h + 1,  ow = (w + 2 pad_w - kw) / stride_w + 1.
struct conv2d_shape {
  std::size_t c_in = 1, h = 1, w = 1, c_out = 1, kh = 1, kw = 1;
  std::size_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;

  [[nodiscard]] std::size_t out_h() const noexcept { return (h + 2 * pad_h - kh) / stride_h + 1; }
  [[nodiscard]] std::size_t out_w() const noexcept { return (w + 2 * pad_w - kw) / stride_w + 1; }
  // terms of one output's inner product: c_in * kh * kw (padded positions included)
  [[nodiscard]] std::size_t patch() const noexcept { return c_in * kh * kw; }
  [[nodiscard]] std::size_t in_size() const noexcept { return c_in * h * w; }  // per sample
  [[nodiscard]] std::size_t out_size() const noexcept { return c_out * out_h() * out_w(); }
  [[nodiscard]] std::size_t weights() const noexcept { return c_out * patch(); }
  // Throws std::invalid_argument naming the problem: a zero size, a kernel
  // larger than the padded input, or sizes beyond 2^24 per axis.
  void validate() const;
};

// The im2col lowering. Row (s, oy, ox) of the (batch * oh * ow) x patch()
// matrix holds the operands of output pixel (oy, ox) of sample s, column
// (ci * kh + ky) * kw + kx holding x[s][ci][oy * stride_h + ky - pad_h][ox * stride_w + kx - pad_w],
// and +0 where that position lies in the padding. This is the term order of
// every output's inner product (PyTorch's unfold order, the flattened
// (c_in, kh, kw) layout of its weights). X: batch x c_in x h x w, row-major.
void im2col(const conv2d_shape& s, const double* X, std::size_t batch, std::vector<double>& cols);
// The same for one output pixel of one sample (image: c_in x h x w): patch() values.
void conv_patch(const conv2d_shape& s, const double* image, std::size_t oy, std::size_t ox, double* out);

// The stochastic stream of a convolution: output (s, c, oy, ox) takes the
// random words from conv_first_word(...) on, words_per_dot(patch(), a) of
// them, in the order sim::dot consumes them. That is
//   ((s * oh * ow + oy * ow + ox) * c_out + c) * words_per_dot(patch()),
// the counter of the dense layer (batch * oh * ow) x c_out that im2col gives:
// a pure function of the sample's index in the whole data set, so the result
// does not depend on threads, kernels or how the batch is split.
std::uint64_t conv_first_word(const conv2d_shape& s, const accumulation& a, std::size_t sample, std::size_t c,
                              std::size_t oy, std::size_t ox) noexcept;

// A convolution prepared once (weights in the dense kernels' layout) and run
// on any number of batches; copies share the prepared data, run() is const
// and thread-safe.
//
// W: c_out x c_in x kh x kw (PyTorch's layout), b: c_out; both stored values.
// spec: the accumulation model (mode incl. stochastic, product model, order,
// saturation, via, seed) and the accumulator map (a map without formats means
// base.acc everywhere). A *component* of a convolution is an (output channel,
// output pixel) pair; the map's index is
//   - empty: formats[0] everywhere;
//   - of size c_out: one format per output channel (every pixel of channel c
//     uses formats[index[c]]): one dense pass;
//   - of size c_out * oh * ow: one format per (channel, pixel), index
//     c * oh * ow + oy * ow + ox (the NCHW order of one sample's outputs), the
//     same for every sample: one dense pass per format used, each output
//     taken from the pass of its own format (same words, so the same bits as
//     sim::dot with that accumulator).
// Throws std::invalid_argument on mismatched sizes or an index of another size.
class prepared_conv2d {
 public:
  prepared_conv2d(const conv2d_shape& shape, std::span<const double> W, std::span<const double> b,
                  const layer_spec& spec);
  // Y (batch x c_out x oh x ow, resized) from X (batch x c_in x h x w). With
  // `flags`, each output's own flags (sim::flag bits, same layout as Y).
  // first_sample: the index of X's first sample in the whole data set (for the
  // stochastic stream). The batch is lowered in pieces of at most
  // `rows_per_piece` im2col rows (0: 4096, so that a piece stays in cache);
  // the pieces change nothing in the results.
  layer_flags run(const double* X, std::size_t batch, std::vector<double>& Y, int threads = 0,
                  std::vector<unsigned>* flags = nullptr, std::size_t first_sample = 0,
                  std::size_t rows_per_piece = 0) const;
  [[nodiscard]] const conv2d_shape& shape() const noexcept;
  [[nodiscard]] const layer_spec& spec() const noexcept;
  // The kernel the dense passes use.
  [[nodiscard]] dense_kernel kernel() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> p_;
};

// One-shot convenience: prepared_conv2d(shape, W, b, spec).run(X, batch, Y, threads).
layer_flags conv2d(const conv2d_shape& shape, const double* X, std::size_t batch, std::span<const double> W,
                   std::span<const double> b, const layer_spec& spec, std::vector<double>& Y, int threads = 0);

// The error bounds of each output: analysis::conv2d_bounds (analysis/bounds.hpp).

// --- pooling -------------------------------------------------------------

// Pooling windows kh x kw with stride and padding per axis over c channels of
// h x w (PyTorch's MaxPool2d / AvgPool2d, dilation 1, floor mode). Padding is
// at most half the window (pad_h <= kh / 2, pad_w <= kw / 2), so every window
// holds at least one input.
struct pool2d_shape {
  std::size_t c = 1, h = 1, w = 1, kh = 2, kw = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
  [[nodiscard]] std::size_t out_h() const noexcept { return (h + 2 * pad_h - kh) / stride_h + 1; }
  [[nodiscard]] std::size_t out_w() const noexcept { return (w + 2 * pad_w - kw) / stride_w + 1; }
  [[nodiscard]] std::size_t window() const noexcept { return kh * kw; }
  [[nodiscard]] std::size_t in_size() const noexcept { return c * h * w; }
  [[nodiscard]] std::size_t out_size() const noexcept { return c * out_h() * out_w(); }
  void validate() const;  // throws std::invalid_argument
};

// Max pooling: the IEEE 754-2019 maximum of the window's inputs (padded
// positions are not inputs): NaN if any input is NaN, +0 above -0, +inf and
// -inf as values. No rounding: the result is an input, exactly. With `where`,
// the index (within the sample's c x h x w input) of the chosen input (the
// first NaN, else the first occurrence of the maximum in row-major window
// order), for gradients and the analysis. X: batch x c x h x w; Y: batch x c x oh x ow.
void max_pool2d(const pool2d_shape& s, const double* X, std::size_t batch, std::vector<double>& Y,
                std::vector<std::uint32_t>* where = nullptr);

// Average pooling, simulated: the window's k = kh * kw terms (padded positions
// as +0 terms in their place, PyTorch's count_include_pad) are summed as the
// inner product sim::dot(ones, window, 0, a) — the accumulation model of `a`:
// order, mode, accumulator, saturation, via, stochastic words — and the mean
// is then one correct rounding, in a's mode and accumulator (with saturation),
// of the exact quotient sum / k: what a kernel that sums and then scales does,
// with the scaling rounded once (exactly once, also when 1/k is not a binary64
// value). Output (s, c, oy, ox) = o in NCHW order uses the words from
// o * (words_per_dot(k, a) + 1) on (the last one for the division). Flags:
// those of the sum and of the division. Requires fast_path_applies(a).
layer_flags avg_pool2d(const pool2d_shape& s, const double* X, std::size_t batch, const accumulation& a,
                       std::vector<double>& Y, int threads = 0, std::vector<unsigned>* flags = nullptr,
                       std::size_t first_sample = 0);
// The correctly rounded quotient round(x / k) of a binary64 value by a
// positive integer k < 2^53 in (f, mode, saturate), flags added to `flags`.
double round_quotient(double x, std::uint64_t k, const format& f, rounding mode, bool saturate, unsigned& flags,
                      std::uint64_t random_word = 0) noexcept;

// Flatten: an NCHW batch is already the row-major batch x (c * h * w) matrix
// of PyTorch's flatten (index (ci * h + y) * w + x); this is that view.
[[nodiscard]] inline matrix_view flatten(const double* X, std::size_t batch, std::size_t per_sample) noexcept {
  return {X, batch, per_sample};
}

}  // namespace mpacc::sim
