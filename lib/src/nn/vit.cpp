// SPDX-License-Identifier: MIT
#include "mpacc/nn/vit.hpp"

#include <cmath>
#include <stdexcept>

namespace mpacc::nn {

namespace {

void check_values(const std::string& name, const std::vector<double>& v, std::size_t expected, const char* what) {
  if (v.size() != expected)
    throw std::invalid_argument(name + ": " + what + " has " + std::to_string(v.size()) + " values, expected " +
                                std::to_string(expected));
  for (double x : v)
    if (!std::isfinite(x)) throw std::invalid_argument(name + ": " + what + " holds a non-finite value");
}

void check_dense(const std::string& name, const dense_layer& l, std::size_t n_in, std::size_t n_out,
                 sim::activation act) {
  if (l.n_in != n_in || l.n_out != n_out)
    throw std::invalid_argument(name + " is " + std::to_string(l.n_in) + " -> " + std::to_string(l.n_out) +
                                ", expected " + std::to_string(n_in) + " -> " + std::to_string(n_out));
  check_values(name, l.W, n_in * n_out, "W");
  check_values(name, l.b, n_out, "b");
  if (l.act.kind != act)
    throw std::invalid_argument(name + " has activation " + std::string(sim::to_string(l.act.kind)) + ", expected " +
                                std::string(sim::to_string(act)));
}

void check_norm(const std::string& name, const layer_norm& n, std::size_t d) {
  check_values(name, n.gamma, d, "gamma");
  check_values(name, n.beta, d, "beta");
}

dense_layer zero_dense(std::size_t n_in, std::size_t n_out, sim::activation act) {
  dense_layer l;
  l.n_in = n_in;
  l.n_out = n_out;
  l.W.assign(n_in * n_out, 0.0);
  l.b.assign(n_out, 0.0);
  l.act.kind = act;
  return l;
}

layer_norm unit_norm(std::size_t d) { return {std::vector<double>(d, 1.0), std::vector<double>(d, 0.0)}; }

}  // namespace

std::string vit::arch() const {
  return "vit" + std::to_string(image) + "p" + std::to_string(patch) + "-d" + std::to_string(d) + "-h" +
         std::to_string(heads) + "-b" + std::to_string(blocks.size()) + "-m" + std::to_string(hidden) + "-c" +
         std::to_string(classes);
}

std::vector<std::string> vit::product_layer_names() const {
  std::vector<std::string> names{"embed"};
  for (std::size_t b = 0; b < blocks.size(); ++b)
    for (const char* p : vit_block_products) names.push_back("block" + std::to_string(b + 1) + "." + p);
  names.emplace_back("head");
  return names;
}

void vit::validate() const {
  if (patch == 0 || image == 0 || image % patch != 0)
    throw std::invalid_argument("vit: image " + std::to_string(image) + " is not divisible into patches of " +
                                std::to_string(patch));
  if (d == 0 || heads == 0 || d % heads != 0)
    throw std::invalid_argument("vit: width d = " + std::to_string(d) + " is not divisible by " +
                                std::to_string(heads) + " heads");
  if (hidden == 0 || classes == 0) throw std::invalid_argument("vit: zero MLP width or class count");
  if (image > 4096 || d > max_layer_width || hidden > max_layer_width || classes > max_layer_width)
    throw std::invalid_argument("vit: a size is over the limits (image 4096, widths 2^24)");
  if (blocks.empty()) throw std::invalid_argument("vit: no blocks");
  if (!(ln_eps > 0) || !std::isfinite(ln_eps)) throw std::invalid_argument("vit: layer-norm epsilon must be positive");
  check_dense("embed", embed, patch * patch, d, sim::activation::identity);
  check_values("class token", cls, d, "cls");
  check_values("position embedding", pos, tokens() * d, "pos");
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const auto& B = blocks[b];
    const std::string n = "block " + std::to_string(b + 1);
    check_norm(n + " ln1", B.ln1, d);
    check_dense(n + " q", B.q, d, d, sim::activation::identity);
    check_dense(n + " k", B.k, d, d, sim::activation::identity);
    check_dense(n + " v", B.v, d, d, sim::activation::identity);
    check_dense(n + " proj", B.proj, d, d, sim::activation::identity);
    check_norm(n + " ln2", B.ln2, d);
    check_dense(n + " fc1", B.fc1, d, hidden, sim::activation::gelu);
    check_dense(n + " fc2", B.fc2, hidden, d, sim::activation::identity);
  }
  check_norm("final norm", ln_f, d);
  check_dense("head", head, d, classes, sim::activation::identity);
}

vit make_vit(std::size_t blocks, std::size_t d, std::size_t heads, std::size_t hidden, std::size_t classes,
             std::size_t image, std::size_t patch) {
  vit net;
  net.image = image;
  net.patch = patch;
  net.d = d;
  net.heads = heads;
  net.hidden = hidden ? hidden : 4 * d;
  net.classes = classes;
  // the sizes first: the vectors below must not be allocated from unchecked sizes
  if (patch == 0 || image == 0 || image % patch != 0 || image > 4096 || d == 0 || heads == 0 || d % heads != 0 ||
      blocks == 0 || blocks > 1024 || d > max_layer_width || net.hidden > max_layer_width || classes == 0 ||
      classes > max_layer_width)
    throw std::invalid_argument("make_vit: invalid sizes (blocks " + std::to_string(blocks) + ", d " +
                                std::to_string(d) + ", heads " + std::to_string(heads) + ", image " +
                                std::to_string(image) + ", patch " + std::to_string(patch) + ")");
  net.embed = zero_dense(patch * patch, d, sim::activation::identity);
  net.cls.assign(d, 0.0);
  net.pos.assign(net.tokens() * d, 0.0);
  for (std::size_t b = 0; b < blocks; ++b) {
    vit_block B;
    B.ln1 = unit_norm(d);
    B.q = zero_dense(d, d, sim::activation::identity);
    B.k = B.q;
    B.v = B.q;
    B.proj = B.q;
    B.ln2 = unit_norm(d);
    B.fc1 = zero_dense(d, net.hidden, sim::activation::gelu);
    B.fc2 = zero_dense(net.hidden, d, sim::activation::identity);
    net.blocks.push_back(std::move(B));
  }
  net.ln_f = unit_norm(d);
  net.head = zero_dense(d, classes, sim::activation::identity);
  net.validate();
  return net;
}

}  // namespace mpacc::nn
