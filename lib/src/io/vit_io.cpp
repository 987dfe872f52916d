// SPDX-License-Identifier: MIT
// Model files of vision transformers (version 3 of the format,
// docs/model-format.md): the sizes, then every parameter tensor in a fixed
// order. Its own file, as cnn_io.cpp.
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "model_internal.hpp"

namespace mpacc::io {

namespace {

void put_values(detail::writer& w, const std::vector<double>& v) { w.put_bytes(v.data(), v.size() * sizeof(double)); }

struct vit_reader {
  detail::reader r;
  const std::string& name;

  // a size in [lo, hi]
  std::size_t size(const char* what, std::uint64_t lo, std::uint64_t hi) {
    const auto v = r.get<std::uint64_t>(what);
    if (v < lo || v > hi)
      throw std::runtime_error(name + ": " + what + " " + std::to_string(v) + " is outside [" + std::to_string(lo) +
                               ", " + std::to_string(hi) + "]");
    return static_cast<std::size_t>(v);
  }
  // n = a * b binary64 values, the product checked before anything is allocated
  std::vector<double> values(std::uint64_t a, std::uint64_t b, const std::string& what) {
    if (b != 0 && a > nn::max_layer_weights / b)
      throw std::runtime_error(name + ": " + what + " has more than " + std::to_string(nn::max_layer_weights) +
                               " values");
    const std::uint64_t n = a * b;
    r.need(n * sizeof(double), what.c_str());
    std::vector<double> v(static_cast<std::size_t>(n));
    if (n) std::memcpy(v.data(), r.b.data() + r.pos, v.size() * sizeof(double));
    r.pos += v.size() * sizeof(double);
    return v;
  }
  void linear(nn::dense_layer& l, std::size_t n_in, std::size_t n_out, sim::activation act, const std::string& what) {
    l.n_in = n_in;
    l.n_out = n_out;
    l.act.kind = act;
    l.W = values(n_out, n_in, what + " W");
    l.b = values(n_out, 1, what + " b");
  }
  void norm(nn::layer_norm& n, std::size_t d, const std::string& what) {
    n.gamma = values(d, 1, what + " gamma");
    n.beta = values(d, 1, what + " beta");
  }
};

}  // namespace

void save_model(const nn::vit& net, const std::filesystem::path& file, const std::string& metadata) {
  net.validate();
  detail::writer w;
  w.put_bytes(detail::kModelMagic, 8);
  w.put<std::uint32_t>(detail::kVitVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(net.blocks.size()));
  w.put<std::uint64_t>(metadata.size());
  w.put_bytes(metadata.data(), metadata.size());
  for (std::uint64_t v : {net.image, net.patch, net.d, net.heads, net.hidden, net.classes}) w.put<std::uint64_t>(v);
  w.put<double>(net.ln_eps);
  put_values(w, net.embed.W);
  put_values(w, net.embed.b);
  put_values(w, net.cls);
  put_values(w, net.pos);
  for (const auto& b : net.blocks) {
    for (const auto* v : {&b.ln1.gamma, &b.ln1.beta, &b.q.W, &b.q.b, &b.k.W, &b.k.b, &b.v.W, &b.v.b, &b.proj.W,
                          &b.proj.b, &b.ln2.gamma, &b.ln2.beta, &b.fc1.W, &b.fc1.b, &b.fc2.W, &b.fc2.b})
      put_values(w, *v);
  }
  put_values(w, net.ln_f.gamma);
  put_values(w, net.ln_f.beta);
  put_values(w, net.head.W);
  put_values(w, net.head.b);
  detail::write_model_bytes(w, file);
}

nn::vit parse_vit(std::span<const std::uint8_t> data, const std::string& name, std::string* metadata) {
  return detail::naming_file(name, [&] {
    const std::string_view bytes = detail::as_chars(data);
    vit_reader vr{detail::reader{bytes, 0, name}, name};
    auto& r = vr.r;
    r.need(8, "magic");
    if (std::memcmp(bytes.data(), detail::kModelMagic, 8) != 0)
      throw std::runtime_error(name + ": not an mpacc model file (bad magic)");
    r.pos = 8;
    const auto version = r.get<std::uint32_t>("version");
    if (version != detail::kVitVersion)
      throw std::runtime_error(name + ": model file version " + std::to_string(version) +
                               " is not a vision transformer's (version 3)");
    const auto n_blocks = r.layers_and_metadata(max_layers, metadata);
    if (n_blocks == 0) throw std::runtime_error(name + ": a vision transformer without blocks");
    nn::vit net;
    net.image = vr.size("image size", 1, 4096);
    net.patch = vr.size("patch size", 1, net.image);
    net.d = vr.size("width d", 1, max_layer_size);
    net.heads = vr.size("head count", 1, net.d);
    net.hidden = vr.size("MLP width", 1, max_layer_size);
    net.classes = vr.size("class count", 1, max_layer_size);
    net.ln_eps = r.get<double>("layer-norm epsilon");
    if (net.image % net.patch != 0)
      throw std::runtime_error(name + ": image " + std::to_string(net.image) + " is not divisible into patches of " +
                               std::to_string(net.patch));
    if (net.d % net.heads != 0)
      throw std::runtime_error(name + ": width " + std::to_string(net.d) + " is not divisible by " +
                               std::to_string(net.heads) + " heads");
    const std::size_t d = net.d, T = net.tokens();
    vr.linear(net.embed, net.patch * net.patch, d, sim::activation::identity, "embed");
    net.cls = vr.values(d, 1, "class token");
    net.pos = vr.values(T, d, "position embedding");
    for (std::uint32_t k = 0; k < n_blocks; ++k) {
      const std::string n = "block " + std::to_string(k + 1);
      nn::vit_block b;
      vr.norm(b.ln1, d, n + " ln1");
      vr.linear(b.q, d, d, sim::activation::identity, n + " q");
      vr.linear(b.k, d, d, sim::activation::identity, n + " k");
      vr.linear(b.v, d, d, sim::activation::identity, n + " v");
      vr.linear(b.proj, d, d, sim::activation::identity, n + " proj");
      vr.norm(b.ln2, d, n + " ln2");
      vr.linear(b.fc1, d, net.hidden, sim::activation::gelu, n + " fc1");
      vr.linear(b.fc2, net.hidden, d, sim::activation::identity, n + " fc2");
      net.blocks.push_back(std::move(b));
    }
    vr.norm(net.ln_f, d, "final norm");
    vr.linear(net.head, d, net.classes, sim::activation::identity, "head");
    detail::check_model_crc(r, data, name);
    return detail::validated(std::move(net), name);
  });
}

nn::vit load_vit(const std::filesystem::path& file, std::string* metadata) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "a model file");
  return parse_vit(detail::as_bytes(bytes), file.string(), metadata);
}

bool is_vit_model(const std::filesystem::path& file) { return detail::has_model_version(file, detail::kVitVersion); }

}  // namespace mpacc::io
