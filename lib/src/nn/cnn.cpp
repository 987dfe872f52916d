// SPDX-License-Identifier: MIT
#include <cmath>
#include <stdexcept>

#include "mpacc/nn/cnn.hpp"

namespace mpacc::nn {

namespace {

// the per-sample shape (c, h, w) a layer produces from (c, h, w); a flat
// vector of n values is (n, 1, 1)
struct chw {
  std::size_t c, h, w;
  [[nodiscard]] std::size_t size() const noexcept { return c * h * w; }
};

std::string act_suffix(const sim::activation_fn& a) {
  return a.kind == sim::activation::identity ? "" : "-" + std::string(sim::to_string(a.kind));
}

template <class F>
void walk(const cnn& net, F&& f) {
  chw cur{net.c, net.h, net.w};
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    const std::string name = "layer " + std::to_string(k + 1);
    chw next = cur;
    std::visit(
        [&](const auto& l) {
          using T = std::decay_t<decltype(l)>;
          f(k, name, cur, l);  // first: validate() must check a shape before its output size is computed
          if constexpr (std::is_same_v<T, conv_layer>) {
            next = {l.shape.c_out, l.shape.out_h(), l.shape.out_w()};
          } else if constexpr (std::is_same_v<T, pool_layer>) {
            next = {l.shape.c, l.shape.out_h(), l.shape.out_w()};
          } else if constexpr (std::is_same_v<T, flatten_layer>) {
            next = {cur.size(), 1, 1};
          } else {
            next = {l.n_out, 1, 1};
          }
        },
        net.layers[k]);
    cur = next;
  }
}

void check_finite(const std::string& name, const std::vector<double>& v, const char* what) {
  for (double x : v)
    if (!std::isfinite(x)) throw std::invalid_argument(name + ": " + what + " holds a non-finite value");
}

}  // namespace

std::size_t cnn::outputs() const {
  if (layers.empty()) return 0;
  const auto* d = std::get_if<dense_layer>(&layers.back());
  return d ? d->n_out : 0;
}

std::string cnn::arch() const {
  std::string s = std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
  walk(*this, [&](std::size_t, const std::string&, chw, const auto& l) {
    using T = std::decay_t<decltype(l)>;
    s += ',';
    if constexpr (std::is_same_v<T, conv_layer>) {
      const auto& q = l.shape;
      s += "conv" + std::to_string(q.c_in) + "x" + std::to_string(q.c_out) + "k" + std::to_string(q.kh);
      if (q.kw != q.kh) s += "x" + std::to_string(q.kw);
      if (q.stride_h != 1 || q.stride_w != 1) s += "s" + std::to_string(q.stride_h);
      if (q.stride_w != q.stride_h) s += "x" + std::to_string(q.stride_w);
      if (q.pad_h || q.pad_w) s += "p" + std::to_string(q.pad_h);
      if (q.pad_w != q.pad_h) s += "x" + std::to_string(q.pad_w);
      s += act_suffix(l.act);
    } else if constexpr (std::is_same_v<T, pool_layer>) {
      s += (l.type == pool_layer::kind::max ? "maxpool" : "avgpool") + std::to_string(l.shape.kh);
      if (l.shape.kw != l.shape.kh) s += "x" + std::to_string(l.shape.kw);
      if (l.shape.stride_h != l.shape.kh || l.shape.stride_w != l.shape.kw)
        s += "s" + std::to_string(l.shape.stride_h) + "x" + std::to_string(l.shape.stride_w);
      if (l.shape.pad_h || l.shape.pad_w)
        s += "p" + std::to_string(l.shape.pad_h) + "x" + std::to_string(l.shape.pad_w);
    } else if constexpr (std::is_same_v<T, flatten_layer>) {
      s += "flatten";
    } else {
      s += "dense" + std::to_string(l.n_in) + "x" + std::to_string(l.n_out) + act_suffix(l.act);
    }
  });
  return s;
}

void cnn::validate() const {
  if (layers.empty()) throw std::invalid_argument("network has no layers");
  if (c == 0 || h == 0 || w == 0) throw std::invalid_argument("network input has a zero dimension");
  if (!std::holds_alternative<dense_layer>(layers.back()))
    throw std::invalid_argument("the last layer must be dense (its outputs are the logits)");
  walk(*this, [&](std::size_t, const std::string& name, chw in, const auto& l) {
    using T = std::decay_t<decltype(l)>;
    if constexpr (std::is_same_v<T, conv_layer>) {
      l.shape.validate();
      if (l.shape.c_in != in.c || l.shape.h != in.h || l.shape.w != in.w)
        throw std::invalid_argument(name + ": the convolution takes " + std::to_string(l.shape.c_in) + "x" +
                                    std::to_string(l.shape.h) + "x" + std::to_string(l.shape.w) + " inputs, it gets " +
                                    std::to_string(in.c) + "x" + std::to_string(in.h) + "x" + std::to_string(in.w));
      if (l.W.size() != l.shape.weights() || l.b.size() != l.shape.c_out)
        throw std::invalid_argument(name + ": weight or bias size does not match the convolution's shape");
      check_finite(name, l.W, "W");
      check_finite(name, l.b, "b");
    } else if constexpr (std::is_same_v<T, pool_layer>) {
      l.shape.validate();
      if (l.shape.c != in.c || l.shape.h != in.h || l.shape.w != in.w)
        throw std::invalid_argument(name + ": the pooling takes " + std::to_string(l.shape.c) + "x" +
                                    std::to_string(l.shape.h) + "x" + std::to_string(l.shape.w) + " inputs, it gets " +
                                    std::to_string(in.c) + "x" + std::to_string(in.h) + "x" + std::to_string(in.w));
    } else if constexpr (std::is_same_v<T, flatten_layer>) {
      if (l.c != in.c || l.h != in.h || l.w != in.w)
        throw std::invalid_argument(name + ": flatten of " + std::to_string(l.c) + "x" + std::to_string(l.h) + "x" +
                                    std::to_string(l.w) + " gets " + std::to_string(in.c) + "x" + std::to_string(in.h) +
                                    "x" + std::to_string(in.w));
    } else {
      if (in.h != 1 || in.w != 1)
        throw std::invalid_argument(name + ": a dense layer needs a flat input (add a flatten layer)");
      if (l.n_in != in.c || l.n_out == 0)
        throw std::invalid_argument(name + " takes " + std::to_string(l.n_in) + " inputs, it gets " +
                                    std::to_string(in.c));
      if (l.n_in > max_layer_width || l.n_out > max_layer_width || l.W.size() != l.n_in * l.n_out ||
          l.b.size() != l.n_out)
        throw std::invalid_argument(name + ": weight or bias size does not match " + std::to_string(l.n_out) + "x" +
                                    std::to_string(l.n_in));
      check_finite(name, l.W, "W");
      check_finite(name, l.b, "b");
    }
  });
}

cnn make_lenet5(sim::activation_fn act, std::size_t classes) {
  cnn net;
  auto conv = [&](std::size_t c_in, std::size_t hw, std::size_t c_out, std::size_t pad) {
    conv_layer l;
    l.shape.c_in = c_in;
    l.shape.h = l.shape.w = hw;
    l.shape.c_out = c_out;
    l.shape.kh = l.shape.kw = 5;
    l.shape.pad_h = l.shape.pad_w = pad;
    l.W.assign(l.shape.weights(), 0.0);
    l.b.assign(c_out, 0.0);
    l.act = act;
    return l;
  };
  auto pool = [](std::size_t c, std::size_t hw) {
    pool_layer p;
    p.shape.c = c;
    p.shape.h = p.shape.w = hw;
    return p;
  };
  auto dense = [](std::size_t n_in, std::size_t n_out, sim::activation_fn a) {
    dense_layer d;
    d.n_in = n_in;
    d.n_out = n_out;
    d.W.assign(n_in * n_out, 0.0);
    d.b.assign(n_out, 0.0);
    d.act = a;
    return d;
  };
  net.layers.emplace_back(conv(1, 28, 6, 2));
  net.layers.emplace_back(pool(6, 28));
  net.layers.emplace_back(conv(6, 14, 16, 0));
  net.layers.emplace_back(pool(16, 10));
  net.layers.emplace_back(flatten_layer{16, 5, 5});
  net.layers.emplace_back(dense(400, 120, act));
  net.layers.emplace_back(dense(120, 84, act));
  net.layers.emplace_back(dense(84, classes, {sim::activation::identity}));
  return net;
}

}  // namespace mpacc::nn
