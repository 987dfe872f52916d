// SPDX-License-Identifier: MIT
#include "mpacc/nn/network.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace mpacc::nn {

std::string mlp::arch() const {
  if (layers.empty()) return "";
  std::string s = std::to_string(layers.front().n_in);
  for (const auto& l : layers) {
    s += '-';
    s += std::to_string(l.n_out);
  }
  return s;
}

namespace {

void check_layer_size(const std::string& name, std::size_t n_in, std::size_t n_out) {
  if (n_in > max_layer_width || n_out > max_layer_width)
    throw std::invalid_argument(name + ": " + std::to_string(n_out) + " x " + std::to_string(n_in) +
                                " is wider than the limit of " + std::to_string(max_layer_width));
  if (n_in * n_out > max_layer_weights)  // both <= 2^24: the product does not overflow
    throw std::invalid_argument(name + ": " + std::to_string(n_out) + " x " + std::to_string(n_in) +
                                " weights are more than the limit of " + std::to_string(max_layer_weights));
}

}  // namespace

void mlp::validate() const {
  if (layers.empty()) throw std::invalid_argument("network has no layers");
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const auto& l = layers[k];
    const std::string name = "layer " + std::to_string(k + 1);
    if (l.n_in == 0 || l.n_out == 0) throw std::invalid_argument(name + " has a zero dimension");
    check_layer_size(name, l.n_in, l.n_out);
    if (l.W.size() != l.n_in * l.n_out)
      throw std::invalid_argument(name + ": W has " + std::to_string(l.W.size()) + " values, expected " +
                                  std::to_string(l.n_out) + "x" + std::to_string(l.n_in));
    if (l.b.size() != l.n_out)
      throw std::invalid_argument(name + ": b has " + std::to_string(l.b.size()) + " values, expected " +
                                  std::to_string(l.n_out));
    if (k > 0 && layers[k - 1].n_out != l.n_in)
      throw std::invalid_argument(name + " takes " + std::to_string(l.n_in) + " inputs but layer " + std::to_string(k) +
                                  " gives " + std::to_string(layers[k - 1].n_out));
    for (double w : l.W)
      if (!std::isfinite(w)) throw std::invalid_argument(name + ": W holds a non-finite value");
    for (double v : l.b)
      if (!std::isfinite(v)) throw std::invalid_argument(name + ": b holds a non-finite value");
    if (!std::isfinite(l.act.slope)) throw std::invalid_argument(name + ": non-finite activation slope");
  }
}

mlp make_mlp(const std::vector<std::size_t>& sizes, sim::activation_fn hidden, sim::activation_fn output) {
  if (sizes.size() < 2) throw std::invalid_argument("an architecture needs at least two sizes");
  mlp net;
  for (std::size_t k = 0; k + 1 < sizes.size(); ++k) {
    dense_layer l;
    l.n_in = sizes[k];
    l.n_out = sizes[k + 1];
    check_layer_size("layer " + std::to_string(k + 1), l.n_in, l.n_out);
    l.W.assign(l.n_in * l.n_out, 0.0);
    l.b.assign(l.n_out, 0.0);
    l.act = k + 2 == sizes.size() ? output : hidden;
    net.layers.push_back(std::move(l));
  }
  return net;
}

std::vector<std::size_t> parse_arch(const std::string& text) {
  std::vector<std::size_t> sizes;
  std::size_t pos = 0;
  // every width checked against the limits before anything is allocated
  while (pos <= text.size()) {
    const std::size_t dash = std::min(text.find('-', pos), text.size());
    const std::string tok = text.substr(pos, dash - pos);
    std::size_t v = 0;
    auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (tok.empty() || ec != std::errc() || ptr != tok.data() + tok.size() || v == 0)
      throw std::invalid_argument("architecture '" + text + "': '" + tok +
                                  "' is not a positive integer (expected e.g. 784-784-128-10)");
    sizes.push_back(v);
    pos = dash + 1;
  }
  if (sizes.size() < 2)
    throw std::invalid_argument("architecture '" + text + "' needs at least an input and an output size");
  for (std::size_t k = 0; k + 1 < sizes.size(); ++k)
    check_layer_size("architecture '" + text + "', layer " + std::to_string(k + 1), sizes[k], sizes[k + 1]);
  return sizes;
}

std::size_t argmax(std::span<const double> v) noexcept {
  std::size_t best = 0;
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

}  // namespace mpacc::nn
