// SPDX-License-Identifier: MIT
// One named type for every precision choice of a simulated forward pass
// (docs/semantics.md §2-4): storage formats of weights, biases and inputs, the
// product model, the accumulator of each layer (optionally per component), the
// rounding mode, summation order, saturation, the double rounding of binary32
// hardware, the stochastic seed, and the format, mode and saturation of the
// activations. It reads and writes JSON and a compact one-line form, e.g.
//
//   acc=e4m3-ieee;order=blocked:8;saturate=on;weights=e4m3-ieee;act=binary32
//
// Keys (JSON and compact alike; every key optional, defaults below):
//   weights, biases   storage formats of the parameters, or "none" (used as stored)
//   inputs            storage format of the inputs
//   product           "exact" (FMA) or the format each product is rounded to
//   acc               accumulator format of every layer, or a list (JSON) /
//                     comma-separated list (compact), one per layer
//   rounding          accumulator (and product) rounding mode
//   order             recursive | pairwise | blocked:B
//   saturate          on | off (JSON: true | false)
//   via               "none" or a format every accumulator rounding goes through
//   seed              stochastic rounding seed
//   act, act_rounding, act_saturate   the activations' format, mode and saturation
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mpacc/nn/network.hpp"
#include "mpacc/sim/layer.hpp"

namespace mpacc::nn {

struct precision_config {
  std::optional<sim::format> weights = sim::formats::e4m3_ieee;
  std::optional<sim::format> biases = sim::formats::e4m3_ieee;
  sim::format inputs = sim::formats::binary32;
  std::optional<sim::format> product;  // none: exact products
  // one accumulator for every layer, or one per layer
  std::vector<sim::format> acc = std::vector<sim::format>(1, sim::formats::binary32);
  // optional per-layer per-component maps (Algorithm 1's output); an empty
  // vector, or an empty map for a layer, means acc for every component
  std::vector<sim::precision_map> maps;
  sim::rounding rounding = sim::rounding::nearest_even;
  sim::order order{};
  bool saturate = false;
  std::optional<sim::format> via;
  std::uint64_t seed = 0;
  sim::format act = sim::formats::binary32;
  sim::rounding act_rounding = sim::rounding::nearest_even;
  bool act_saturate = false;

  // The accumulator of layer k (0-based): acc[k], or acc[0] when one is given.
  [[nodiscard]] const sim::format& accumulator(std::size_t layer) const;
  // The sim::layer_spec of layer k: its accumulator or its map, and the
  // shared mode, product, order, saturation, via and seed.
  [[nodiscard]] sim::layer_spec layer_spec(std::size_t layer) const;
  // Throws std::invalid_argument when the per-layer lists do not fit a network
  // of `layers` layers (acc: 1 or `layers` entries; maps: 0 or `layers`).
  void check(std::size_t layers) const;

  [[nodiscard]] std::string to_json() const;    // every field, pretty-printed
  [[nodiscard]] std::string to_string() const;  // the compact form, every field
  friend bool operator==(const precision_config&, const precision_config&);
};

// Strict readers: unknown keys, wrong types and malformed values throw
// std::invalid_argument naming the key. Missing keys keep the defaults.
precision_config parse_precision_json(std::string_view json_text);
precision_config parse_precision(std::string_view compact);

// The network with its weights and biases rounded to the storage formats
// (nearest-even, no saturation; "none" leaves them as they are).
mlp stored_network(const mlp& net, const precision_config& p);

}  // namespace mpacc::nn
