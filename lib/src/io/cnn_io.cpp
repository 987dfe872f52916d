// SPDX-License-Identifier: MIT
// Model files of convolutional networks (version 2 of the format,
// docs/model-format.md). Its own file: the fuzz build's model reader
// (model_io.cpp) does not link the convolution code.
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "model_internal.hpp"

namespace mpacc::io {

namespace {

enum class kind_code : std::uint8_t { dense = 0, conv = 1, maxpool = 2, avgpool = 3, flatten = 4 };

void put_act(detail::writer& w, const sim::activation_fn& a) {
  w.put<std::uint8_t>(static_cast<std::uint8_t>(a.kind));
  w.put<double>(a.slope);
}

struct cnn_reader {
  detail::reader r;
  const std::string& name;
  std::string layer;  // "layer k" for messages

  // the window of a convolution or pooling shape, in file order: height and
  // width ("<what> height", "<what> width"), strides, paddings
  template <class Shape>
  void window(Shape& q, const std::string& what) {
    q.kh = size((what + " height").c_str());
    q.kw = size((what + " width").c_str());
    q.stride_h = size("stride");
    q.stride_w = size("stride");
    q.pad_h = size("padding", 0);
    q.pad_w = size("padding", 0);
  }

  // a size in [lo, max_layer_size]
  std::size_t size(const char* what, std::uint64_t lo = 1) {
    const auto v = r.get<std::uint64_t>(what);
    if (v < lo || v > max_layer_size)
      throw std::runtime_error(name + ": " + layer + ": " + what + " " + std::to_string(v) + " is outside [" +
                               std::to_string(lo) + ", " + std::to_string(max_layer_size) + "]");
    return static_cast<std::size_t>(v);
  }
  sim::activation_fn act() {
    const auto code = r.get<std::uint8_t>("activation");
    if (code > static_cast<std::uint8_t>(sim::activation::silu))
      throw std::runtime_error(name + ": " + layer + " has unknown activation code " + std::to_string(code));
    sim::activation_fn a;
    a.kind = static_cast<sim::activation>(code);
    a.slope = r.get<double>("activation slope");
    return a;
  }
  // n binary64 values, n at most 2^31 + 2^24 (checked by the caller)
  std::vector<double> values(std::uint64_t n, const char* what) {
    r.need(n * sizeof(double), what);
    std::vector<double> v(static_cast<std::size_t>(n));
    if (n) std::memcpy(v.data(), r.b.data() + r.pos, v.size() * sizeof(double));
    r.pos += v.size() * sizeof(double);
    return v;
  }
  // a weight count (product of sizes each <= 2^24) within nn::max_layer_weights
  std::uint64_t weights(std::initializer_list<std::uint64_t> dims) {
    std::uint64_t n = 1;
    for (auto d : dims) {
      if (d != 0 && n > nn::max_layer_weights / d)
        throw std::runtime_error(name + ": " + layer + " has more than " + std::to_string(nn::max_layer_weights) +
                                 " weights");
      n *= d;
    }
    if (n > nn::max_layer_weights)
      throw std::runtime_error(name + ": " + layer + " has more than " + std::to_string(nn::max_layer_weights) +
                               " weights");
    return n;
  }
};

}  // namespace

void save_model(const nn::cnn& net, const std::filesystem::path& file, const std::string& metadata) {
  net.validate();
  detail::writer w;
  w.put_bytes(detail::kModelMagic, 8);
  w.put<std::uint32_t>(detail::kCnnVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(net.layers.size()));
  w.put<std::uint64_t>(metadata.size());
  w.put_bytes(metadata.data(), metadata.size());
  for (std::uint64_t d : {net.c, net.h, net.w}) w.put<std::uint64_t>(d);
  for (const auto& layer : net.layers) {
    std::visit(
        [&](const auto& l) {
          using T = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<T, nn::conv_layer>) {
            const auto& q = l.shape;
            w.put<std::uint8_t>(static_cast<std::uint8_t>(kind_code::conv));
            for (std::uint64_t d : {q.c_in, q.h, q.w, q.c_out, q.kh, q.kw, q.stride_h, q.stride_w, q.pad_h, q.pad_w})
              w.put<std::uint64_t>(d);
            put_act(w, l.act);
            w.put_bytes(l.W.data(), l.W.size() * sizeof(double));
            w.put_bytes(l.b.data(), l.b.size() * sizeof(double));
          } else if constexpr (std::is_same_v<T, nn::pool_layer>) {
            const auto& q = l.shape;
            w.put<std::uint8_t>(static_cast<std::uint8_t>(l.type == nn::pool_layer::kind::max ? kind_code::maxpool
                                                                                              : kind_code::avgpool));
            for (std::uint64_t d : {q.c, q.h, q.w, q.kh, q.kw, q.stride_h, q.stride_w, q.pad_h, q.pad_w})
              w.put<std::uint64_t>(d);
          } else if constexpr (std::is_same_v<T, nn::flatten_layer>) {
            w.put<std::uint8_t>(static_cast<std::uint8_t>(kind_code::flatten));
            for (std::uint64_t d : {l.c, l.h, l.w}) w.put<std::uint64_t>(d);
          } else {
            w.put<std::uint8_t>(static_cast<std::uint8_t>(kind_code::dense));
            w.put<std::uint64_t>(l.n_in);
            w.put<std::uint64_t>(l.n_out);
            put_act(w, l.act);
            w.put_bytes(l.W.data(), l.W.size() * sizeof(double));
            w.put_bytes(l.b.data(), l.b.size() * sizeof(double));
          }
        },
        layer);
  }
  detail::write_model_bytes(w, file);
}

nn::cnn parse_cnn(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata) {
  return detail::naming_file(name, [&] {
    const std::string_view bytes = detail::as_chars(data);
    cnn_reader cr{detail::reader{bytes, 0, name}, name, "header"};
    auto& r = cr.r;
    r.need(8, "magic");
    if (std::memcmp(bytes.data(), detail::kModelMagic, 8) != 0)
      throw std::runtime_error(name + ": not an mpacc model file (bad magic; .npz files are imported by extension)");
    r.pos = 8;
    const auto version = r.get<std::uint32_t>("version");
    if (version == detail::kMlpVersion) {
      // an MLP: the dense-only network on n_in x 1 x 1 inputs
      nn::mlp m = parse_model(data, name, metadata);
      nn::cnn net;
      net.c = m.inputs();
      net.h = net.w = 1;
      for (auto& l : m.layers) net.layers.emplace_back(std::move(l));
      return net;
    }
    if (version == detail::kVitVersion)
      throw std::runtime_error(name +
                               ": a vision transformer's model file (version 3); this reader takes MLPs and CNNs");
    if (version != detail::kCnnVersion)
      throw std::runtime_error(name + ": model file version " + std::to_string(version) +
                               " is not supported (expected 1 or 2)");
    const auto n_layers = r.layers_and_metadata(max_layers, metadata);
    nn::cnn net;
    cr.layer = "input";
    net.c = cr.size("channels");
    net.h = cr.size("height");
    net.w = cr.size("width");
    for (std::uint32_t k = 0; k < n_layers; ++k) {
      cr.layer = "layer " + std::to_string(k + 1);
      const auto code = r.get<std::uint8_t>("layer kind");
      switch (static_cast<kind_code>(code)) {
        case kind_code::conv: {
          nn::conv_layer l;
          auto& q = l.shape;
          q.c_in = cr.size("c_in");
          q.h = cr.size("height");
          q.w = cr.size("width");
          q.c_out = cr.size("c_out");
          cr.window(q, "kernel");
          l.act = cr.act();
          l.W = cr.values(cr.weights({q.c_out, q.c_in, q.kh, q.kw}), "weights");
          l.b = cr.values(q.c_out, "biases");
          net.layers.emplace_back(std::move(l));
          break;
        }
        case kind_code::maxpool:
        case kind_code::avgpool: {
          nn::pool_layer l;
          l.type = static_cast<kind_code>(code) == kind_code::maxpool ? nn::pool_layer::kind::max
                                                                      : nn::pool_layer::kind::avg;
          auto& q = l.shape;
          q.c = cr.size("channels");
          q.h = cr.size("height");
          q.w = cr.size("width");
          cr.window(q, "window");
          net.layers.emplace_back(l);
          break;
        }
        case kind_code::flatten: {
          nn::flatten_layer l;
          l.c = cr.size("channels");
          l.h = cr.size("height");
          l.w = cr.size("width");
          net.layers.emplace_back(l);
          break;
        }
        case kind_code::dense: {
          nn::dense_layer l;
          l.n_in = cr.size("n_in");
          l.n_out = cr.size("n_out");
          l.act = cr.act();
          l.W = cr.values(cr.weights({l.n_in, l.n_out}), "weights");
          l.b = cr.values(l.n_out, "biases");
          net.layers.emplace_back(std::move(l));
          break;
        }
        default:
          throw std::runtime_error(name + ": " + cr.layer + " has unknown layer kind " + std::to_string(code));
      }
    }
    detail::check_model_crc(r, data, name);
    return detail::validated(std::move(net), name);
  });
}

nn::cnn load_cnn(const std::filesystem::path& file, std::string* metadata) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "a model file");
  return parse_cnn(detail::as_bytes(bytes), file.string(), metadata);
}

bool is_cnn_model(const std::filesystem::path& file) { return detail::has_model_version(file, detail::kCnnVersion); }

nn::cnn parse_npz_cnn(std::span<const std::uint8_t> bytes, const std::string& name, const nn::cnn& arch) {
  return detail::naming_file(name, [&] {
    const auto arrays = detail::read_npz_arrays(detail::as_chars(bytes), name);
    nn::cnn net = arch;
    std::size_t k = 0;  // the weighted layers, numbered from 1 as the members
    for (auto& layer : net.layers) {
      auto* conv = std::get_if<nn::conv_layer>(&layer);
      auto* dense = std::get_if<nn::dense_layer>(&layer);
      if (!conv && !dense) continue;
      ++k;
      const std::string wk = "W" + std::to_string(k), bk = "b" + std::to_string(k);
      const auto wi = arrays.find(wk);
      const auto bi = arrays.find(bk);
      if (wi == arrays.end())
        throw std::runtime_error(name + ": no " + wk + " for layer " + std::to_string(k) + " of " + arch.arch() +
                                 " (the architecture has more layers with weights than the file)");
      std::vector<std::size_t> want;
      if (conv) {
        const auto& sh = conv->shape;
        want = {sh.c_out, sh.c_in, sh.kh, sh.kw};
      } else {
        want = {dense->n_out, dense->n_in};
      }
      const auto& W = wi->second;
      const auto& B = bi->second;
      if (W.shape != want)
        throw std::runtime_error(
            name + ": " + wk + " has shape " + detail::shape_string(W.shape) + ", layer " + std::to_string(k) +
            " of the architecture needs " + detail::shape_string(want) +
            (conv ? " (PyTorch's Conv2d.weight: c_out, c_in, kh, kw)" : " (PyTorch's Linear.weight: n_out, n_in)"));
      if (B.shape != std::vector<std::size_t>{want[0]})
        throw std::runtime_error(name + ": " + bk + " must have shape (" + std::to_string(want[0]) + ",)");
      (conv ? conv->W : dense->W) = W.data;
      (conv ? conv->b : dense->b) = B.data;
    }
    if (arrays.contains("W" + std::to_string(k + 1)))
      throw std::runtime_error(name + ": W" + std::to_string(k + 1) + " has no layer: the architecture " + arch.arch() +
                               " has " + std::to_string(k) + " layers with weights");
    return detail::validated(std::move(net), name);
  });
}

nn::cnn import_npz_cnn(const std::filesystem::path& file, const nn::cnn& arch) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "an .npz file");
  return parse_npz_cnn(detail::as_bytes(bytes), file.string(), arch);
}

}  // namespace mpacc::io
