// SPDX-License-Identifier: MIT
// Pieces of Algorithm 1 shared by the MLP runner (algorithm1.cpp) and the CNN
// runner (cnn_algorithm1.cpp): the level decision of a threshold run, the
// matched baselines' choice for one (layer, sample), the tile-granular cost
// and the final metrics. Not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/nn/network.hpp"

namespace mpacc::analysis::detail {

// plain binary64 inner products of a dense layer on x (batch x n_in): the
// oracles' notion of the true value
void true_values(const nn::dense_layer& l, const std::vector<double>& x, std::size_t batch, std::vector<double>& v,
                 int threads);

// layer k's accumulation as cfg.precision says, with accumulator f everywhere
sim::layer_spec spec_for(const mixed_config& cfg, std::size_t k, const sim::format& f);

// Threshold runs: the level of each component, the cheapest level j whose
// score * scale[j] is <= tau (scale[0] = 1), the top level (scale.size())
// otherwise (NaN: the top level).
void threshold_levels(const std::vector<double>& score, const std::vector<double>& scale, double tau,
                      std::vector<std::uint8_t>& mask);

// A matched baseline's choice for layer k and sample s (its index in the
// runner): marks (level 1) up to `want` of the n components of the sample's
// row `mask` (n values). v: the low pre-activations, vt: the binary64 values
// (oracles), vh: the high pre-activations (oracle-gain); act: the layer's
// activation.
void select_matched(const selection& sel, std::size_t k, std::size_t s, std::size_t want, const sim::activation_fn& act,
                    const double* v, const double* vt, const double* vh, std::size_t n, std::uint8_t* mask);

// The choice itself, from given candidates and keys: random and random-active
// take `want` of the candidates (can[i] != 0; every component when can is
// null) by the seeded shuffle of (k, s); the other kinds the `want` largest
// keys among them (NaN as +inf), ties by index. select_matched is this with
// the MLP's candidates and keys.
void select_by_keys(const selection& sel, std::size_t k, std::size_t s, std::size_t want, const std::uint8_t* can,
                    const double* key, std::size_t n, std::uint8_t* mask);

// The components (tile_rows x tile_samples tiles of a batch x n_out mask, a
// tile counted whole) of the tiles holding any component at level lvl.
double tiles_at(const std::vector<std::uint8_t>& mask, std::size_t batch, std::size_t n_out, std::size_t tile_rows,
                std::size_t tile_samples, std::uint8_t lvl);

// The metrics of the logits z (batch x C) against the reference logits zr:
// correct, disagreements, accuracy, mean relative error, KL; moves z into
// res.logits.
void logit_metrics(mixed_result& res, std::vector<double>&& z, const std::vector<double>& zr,
                   const std::vector<std::uint8_t>& labels, std::size_t C);

}  // namespace mpacc::analysis::detail
