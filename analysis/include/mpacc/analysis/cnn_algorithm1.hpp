// SPDX-License-Identifier: MIT
// Algorithm 1 over convolutional networks (docs/cnn.md, "Algorithm 1 on
// convolutional networks"): the MLP runner's strategies and metrics
// (analysis/algorithm1.hpp) on an nn::cnn.
//
// The components of a convolution are its (output channel, output pixel)
// pairs, per sample, in NCHW order (c * oh * ow + oy * ow + ox); those of a
// dense layer its outputs. Layer by layer, every convolution and dense layer
// is computed with the low accumulator, the indicator scores each component,
// the components scoring > tau (or NaN) are recomputed with the high
// accumulator, phi is applied to the mixed pre-activations, and the result is
// the next layer's input. Pooling and flatten layers act on the mixed
// outputs as the simulated pass (nn::simulate over a cnn) does: max pooling
// exactly, average pooling simulated with the layer's own accumulation model
// (precision.accumulator(k) of the pooling layer: never recomputed).
//
// Indicators see a convolution as the dense layer of its im2col lowering:
// layer_view::batch = samples * oh * ow rows, n_in = c_in * kh * kw (the
// patch is the component's input vector x), n_out = c_out, weights = the
// kernels as a c_out x patch dense layer, x = the im2col matrix, v_low and
// the score in that (sample, pixel, channel) layout. So every registered
// indicator applies unchanged: kappa's |W||x| + |b| is the low accumulation
// of |kernel| . |patch| + |b|, kappa-norm's ||w_i||_2 ||x||_2 the kernel's
// and the patch's norms; its overhead is counted per im2col row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/nn/cnn.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::analysis {

// Runs of Algorithm 1 and its baselines on a cnn and a data set (one image
// per row, the network's c x h x w in NCHW order).
//
// mixed_config: precision as for nn::simulate over a cnn (one accumulator or
// one per network layer, pooling and flatten counted; no maps); high: the
// recomputation accumulator of every convolution and dense layer. Not
// supported (std::invalid_argument): ladders (selection::ladder) and static
// maps (selection::kind::static_map).
//
// mixed_result as for MLPs, with layers numbered as the network's: counts,
// fraction_per_layer and trace have one entry per network layer (zeros, and
// an empty trace, for pooling and flatten). Costs count accumulated terms of
// the convolutions (c_in * kh * kw per output) and dense layers (n_in per
// output); pooling sums are the same in every strategy and not counted.
// Tiles: tile_rows consecutive components (NCHW order) x tile_samples samples.
// rel_hidden: the outputs of every convolution and dense layer but the last.
// The reference: binary64, each convolution and dense layer by nn::fast_forward
// (Dot2) on its (im2col) inputs, max pooling exact, average pooling summed and
// divided in binary64.
class cnn_mixed_runner {
 public:
  cnn_mixed_runner(const nn::cnn& net, const io::dataset& data, std::size_t samples, const mixed_config& cfg,
                   int threads = 0);
  // threads: -1 = the runner's
  [[nodiscard]] mixed_result run(const selection& sel, int threads = -1) const;

  [[nodiscard]] std::size_t samples() const noexcept { return rows_; }
  [[nodiscard]] const mixed_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const nn::cnn& network() const noexcept { return net_; }
  // the reference outputs per network layer (samples x the layer's outputs)
  [[nodiscard]] const std::vector<std::vector<double>>& reference_outputs() const noexcept { return ref_y_; }
  // test accuracy of the binary64 reference pass
  [[nodiscard]] double reference_accuracy() const;

 private:
  // per network layer with inner products: the layer as a dense layer (a
  // convolution's kernels as c_out x patch) and its prepared passes
  struct inner {
    nn::dense_layer dense;
    sim::prepared_dense low, high, abs_low;
    std::vector<double> row_norms;
  };
  nn::cnn net_;  // as stored (cfg.precision's weight and bias formats)
  mixed_config cfg_;
  std::size_t rows_;
  int threads_;
  std::vector<double> x0_;  // stored inputs
  std::vector<std::uint8_t> labels_;
  std::vector<std::vector<double>> ref_y_;
  std::vector<std::optional<inner>> inner_;  // [layer]: convolutions and dense layers only
};

}  // namespace mpacc::analysis
