// SPDX-License-Identifier: MIT
// Uses each installed mpacc library once: a rounding (sim), a simulated inner
// product and its exact value (sim, ref), a reference pass (nn) and the
// condition number (analysis). Exit status 0 when every result is as expected.
#include <cstdio>
#include <vector>

#include <mpacc/analysis/bounds.hpp>
#include <mpacc/nn/reference.hpp>
#include <mpacc/ref/accumulate.hpp>
#include <mpacc/sim/accumulate.hpp>
#include <mpacc/sim/rounding.hpp>
#include <mpacc/version.hpp>

int main() {
  using namespace mpacc;
  int bad = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) std::printf("consumer: %s is wrong\n", what);
    bad += !ok;
  };
  expect(sim::round(0.1, sim::formats::e4m3) == 0x1.ap-4, "sim::round");
  const std::vector<double> w = {1, 0x1p-11, 0x1p-11}, x = {1, 1, 1};
  sim::accumulation a;
  a.acc = sim::formats::binary16;
  expect(sim::dot(w, x, 0, a).value == 1.0, "sim::dot");
  expect(ref::dot_exact(w, x, 0).value.to_double() == 1 + 0x1p-10, "ref::dot_exact");
  auto net = nn::make_mlp({3, 1}, {sim::activation::relu});
  net.layers[0].W = {1, 2, 3};
  net.layers[0].b = {0.5};
  const auto r = nn::reference_forward(net, {x.data(), 1, 3});
  expect(r.layers[0].y_hi[0] == 6.5, "nn::reference_forward");
  expect(analysis::kappa_dot(net.layers[0].W, x, 0.5, 6.5) == 1, "analysis::kappa_dot");
  std::printf("consumer of mpacc %s: %s\n", MPACC_VERSION, bad ? "FAILED" : "ok");
  return bad ? 1 : 0;
}
