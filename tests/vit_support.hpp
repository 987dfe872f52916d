// SPDX-License-Identifier: MIT
// Random vision transformers and images for the vit tests (test_vit_reference,
// test_vit_algorithm1): one definition, so that both draw the same values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mpacc/nn/vit.hpp"
#include "mpacc/sim/random.hpp"

namespace mpacc::test {

// A tiny vit (image 8, patch 4: 5 tokens; d, heads, hidden, classes as given)
// with every parameter uniform in +-mag (layer-norm gains 1 +- mag), drawn in
// a fixed order from the seed.
inline nn::vit random_vit(std::uint64_t seed, std::size_t blocks, double mag, std::size_t d = 8, std::size_t heads = 2,
                          std::size_t hidden = 6, std::size_t classes = 4) {
  auto net = nn::make_vit(blocks, d, heads, hidden, classes, 8, 4);
  sim::random_stream rng(seed);
  auto fill = [&](std::vector<double>& v, double center) {
    for (auto& x : v) x = center + (rng.uniform() * 2 - 1) * mag;
  };
  auto lin = [&](nn::dense_layer& l) {
    fill(l.W, 0);
    fill(l.b, 0);
  };
  lin(net.embed);
  fill(net.cls, 0);
  fill(net.pos, 0);
  for (auto& b : net.blocks) {
    for (auto* l : {&b.q, &b.k, &b.v, &b.proj, &b.fc1, &b.fc2}) lin(*l);
    fill(b.ln1.gamma, 1);
    fill(b.ln1.beta, 0);
    fill(b.ln2.gamma, 1);
    fill(b.ln2.beta, 0);
  }
  fill(net.ln_f.gamma, 1);
  fill(net.ln_f.beta, 0);
  lin(net.head);
  return net;
}

}  // namespace mpacc::test
