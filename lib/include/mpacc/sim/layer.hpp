// SPDX-License-Identifier: MIT
// Simulated dense layers: Y = X W^T + b over a batch, each output component
// with its own accumulator format (a precision map), every inner product
// computed exactly as sim::dot computes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpacc/sim/accumulate.hpp"

namespace mpacc::sim {

// Row-major matrix view: element (r, c) at data[r * cols + c].
struct matrix_view {
  const double* data = nullptr;
  std::size_t rows = 0, cols = 0;
  [[nodiscard]] const double* row(std::size_t r) const noexcept { return data + r * cols; }
};

// Which accumulator format each output component uses: formats[index[i]].
// An empty index means formats[0] for every component.
struct precision_map {
  std::vector<format> formats;
  std::vector<std::uint8_t> index;
  [[nodiscard]] const format& of(std::size_t component) const noexcept {
    return formats[index.empty() ? 0 : index[component]];
  }
  static precision_map uniform(const format& f) { return {{f}, {}}; }
};

// Per-layer counts of (sample, component) outputs whose computation raised each
// flag (any of its roundings).
struct layer_flags {
  std::size_t outputs = 0, inexact = 0, underflow = 0, overflow = 0, invalid = 0, saturated = 0;
  void add(unsigned f) noexcept;
};

struct layer_spec {
  // mode, product model, order, saturation, via and seed of every component;
  // base.acc is every component's accumulator when the map is empty
  accumulation base;
  // each component's accumulator (empty: base.acc for all of them)
  precision_map acc;
  // the map in use: acc, or uniform(base.acc) when acc has no format
  [[nodiscard]] layer_spec resolved() const {
    layer_spec s = *this;
    if (s.acc.formats.empty()) s.acc = precision_map::uniform(s.base.acc);
    return s;
  }
};

// Number of random words one inner product of n terms consumes (its
// rounding steps): output (s, i) uses the words from
// (s * n_out + i) * words_per_dot(n, spec) on, so stochastic results do not
// depend on the thread count or on how the work is split.
std::uint64_t words_per_dot(std::size_t n, const accumulation& a) noexcept;

// A dense layer prepared once (weights copied, transposed into the vector
// kernels' layout, bit spans measured) and run on any number of batches.
// Copies share the prepared data; run() is const and thread-safe.
class prepared_dense {
 public:
  // W: n_out x n_in, row-major; b: n_out. Throws std::invalid_argument on
  // mismatched sizes or a precision map outside the exact fast path.
  prepared_dense(matrix_view W, std::span<const double> b, const layer_spec& spec);
  // Y (batch x n_out, row-major, resized) = X W^T + b; see dense(). With
  // `flags`, also each output's own flags (sim::flag bits, batch x n_out).
  // `first_row` numbers the rows of X for the stochastic stream: row r is
  // row first_row + r of a larger batch (its output i takes the words from
  // ((first_row + r) * n_out + i) * words_per_dot(n_in) on), so a batch run in
  // pieces gives the bits of the whole batch run at once.
  // `span_rows`, when given, stands for X in the proof that a task is exact
  // in binary64 (docs/design.md, exact-span shortcut): row r of X is
  // summarized by row r / rows_per_span of span_rows, which must hold every
  // non-zero value of that row (more values only make the proof more
  // conservative; the results are the same bits either way). A convolution
  // passes the input images for its im2col rows: 25 times fewer values.
  layer_flags run(matrix_view X, std::vector<double>& Y, int threads = 0, std::vector<unsigned>* flags = nullptr,
                  std::size_t first_row = 0, matrix_view span_rows = {}, std::size_t rows_per_span = 1) const;
  // Only the selected outputs: Y[r * n_out + i] for need[r * n_out + i] != 0,
  // the same bits (and flags) as run() gives them; the others are quiet NaN
  // (flags 0). need: batch x n_out. The vector kernels run each block of 8
  // components only on the samples that need one of them, so the cost follows
  // the number of (sample, block of 8) pairs selected. The returned counts
  // cover the selected outputs (outputs = their number).
  layer_flags run_selected(matrix_view X, std::span<const std::uint8_t> need, std::vector<double>& Y, int threads = 0,
                           std::vector<unsigned>* flags = nullptr, std::size_t first_row = 0) const;
  // The values alone of run() and run_selected() (the same bits), for callers
  // that use neither the flags nor the counts: the binary32 kernel then skips
  // the flag bookkeeping of every step (docs/design.md), the other kernels
  // compute their flags and drop them.
  void run_values(matrix_view X, std::vector<double>& Y, int threads = 0, std::size_t first_row = 0) const;
  void run_selected_values(matrix_view X, std::span<const std::uint8_t> need, std::vector<double>& Y, int threads = 0,
                           std::size_t first_row = 0) const;
  [[nodiscard]] std::size_t inputs() const noexcept;
  [[nodiscard]] std::size_t outputs() const noexcept;
  [[nodiscard]] const layer_spec& spec() const noexcept;

 private:
  layer_flags run_impl(matrix_view X, const std::uint8_t* need, std::vector<double>& Y, int threads,
                       std::vector<unsigned>* flags, std::size_t first_row, matrix_view span_rows,
                       std::size_t rows_per_span, bool want_flags = true) const;
  struct impl;
  std::shared_ptr<impl> p_;
};

// Y (batch x n_out, row-major, resized) = X (batch x n_in) W^T (W: n_out x n_in) + b.
// Multi-threaded over outputs (threads: 0 = all); identical results for any
// thread count. Uses a vector kernel (8 components per vector, 4 samples
// interleaved) for every rounding mode when the formats allow (docs/design.md):
// AVX-512, else AVX2+FMA, else the portable one, chosen at run time;
// otherwise sim::dot per component. All give the same bits. Returns the flag counts.
layer_flags dense(matrix_view X, matrix_view W, std::span<const double> b, const layer_spec& spec,
                  std::vector<double>& Y, int threads = 0);

// The kernels of dense layers; all give the bits of sim::dot.
//   scalar:   sim::dot per component (any spec, any processor)
//   portable: GCC vector extensions, baseline instructions (SSE2, NEON)
//   avx2:     the same source compiled for AVX2 + FMA; binary32
//             accumulators in nearest-even (every component) run on binary32
//             lanes, one FMA per step, in the values-only calls
//   avx512:   AVX-512F/DQ with embedded rounding
//   avx512-b32: AVX-512 on binary32 lanes (16 components per vector): each
//             step rounded to odd at 24 bits, then to the format (one correct
//             rounding, docs/design.md); for exact products, no `via`,
//             every mode but stochastic, accumulators with p <= 22,
//             emin >= -100, emax <= 100. Binary32 accumulators (every
//             component, nearest-even or a directed mode): one binary32 FMA
//             or addition per step, in the values-only calls (run_values,
//             run_selected_values); with flags their tasks run on avx512.
//             Tasks whose weights, biases or inputs are not binary32 values
//             (or exceed 2^100) run on avx512; the results are the same bits
//             either way.
// The vector kernels cover every rounding mode and the formats with p <= 51,
// emin - p + 1 >= -1072 and emax + 54 - p <= 1023 (not `via`).
enum class dense_kernel : std::uint8_t { scalar, portable, avx2, avx512, avx512_b32 };
std::string_view to_string(dense_kernel k) noexcept;

// Which kernel dense layers use: "auto" (the fastest this processor has, the
// default) or one of "scalar", "portable", "avx2", "avx512", "avx512-b32" to force it (e.g.
// to compare or test the paths on one machine; a spec no vector kernel covers
// still takes the scalar path). Throws std::invalid_argument for an unknown
// name or a kernel this processor cannot run. Read once from the environment
// variable MPACC_KERNEL when set; an unusable value there makes
// dense_kernel_choice() and the construction of layers throw the same error
// (until set_dense_kernel_choice is called). The choice applies to layers
// prepared after the call.
void set_dense_kernel_choice(std::string_view choice);
[[nodiscard]] std::string dense_kernel_choice();

// The kernel dense() would use for this spec on this processor under the
// current choice. "auto" on a processor with AVX-512 gives avx512-b32 when it
// covers the spec, else avx512; forcing "avx512-b32" gives avx512 for a spec it
// does not cover.
dense_kernel dense_kernel_for(const layer_spec& spec) noexcept;
// Diagnostics: how many tasks (16 components x up to 4 samples) ran on
// binary32 lanes in this process: the avx512-b32 kernel's (the others of its
// layers ran on avx512) and avx2's binary32-accumulator path. Lets the tests
// assert that those paths ran.
std::uint64_t dense_b32_tasks() noexcept;
// Whether that is a vector kernel.
bool dense_vector_kernel_applies(const layer_spec& spec) noexcept;

}  // namespace mpacc::sim
