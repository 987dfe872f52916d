// SPDX-License-Identifier: MIT
// Model files of vision transformers (version 3 of the format,
// docs/model-format.md): the sizes, then every parameter tensor in a fixed
// order. Its own file, as cnn_io.cpp.
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
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

// --- .npz: the state_dict of timm's VisionTransformer (docs/attention.md, ".npz import") ---

namespace {

// the arrays of one block, after "blocks.<b>."
constexpr const char* kVitBlockArrays[] = {"norm1.weight",     "norm1.bias",     "attn.qkv.weight", "attn.qkv.bias",
                                           "attn.proj.weight", "attn.proj.bias", "norm2.weight",    "norm2.bias",
                                           "mlp.fc1.weight",   "mlp.fc1.bias",   "mlp.fc2.weight",  "mlp.fc2.bias"};
constexpr const char* kVitTopArrays[] = {"patch_embed.proj.weight",
                                         "patch_embed.proj.bias",
                                         "cls_token",
                                         "pos_embed",
                                         "norm.weight",
                                         "norm.bias",
                                         "head.weight",
                                         "head.bias"};
constexpr std::size_t kMaxNpzBlocks = 1024;

// blocks.<b>.<one of kVitBlockArrays> (b decimal, no leading zero, < kMaxNpzBlocks): b; else -1
long vit_block_of(const std::string& key) {
  if (!key.starts_with("blocks.")) return -1;
  std::size_t i = 7, b = 0;
  if (i >= key.size() || key[i] < '0' || key[i] > '9' || (key[i] == '0' && i + 1 < key.size() && key[i + 1] != '.'))
    return -1;
  for (; i < key.size() && key[i] >= '0' && key[i] <= '9'; ++i) {
    b = 10 * b + static_cast<std::size_t>(key[i] - '0');
    if (b >= kMaxNpzBlocks) return -1;
  }
  if (i >= key.size() || key[i] != '.') return -1;
  const std::string rest = key.substr(i + 1);
  for (const char* a : kVitBlockArrays)
    if (rest == a) return static_cast<long>(b);
  return -1;
}

bool is_vit_key(const std::string& key) {
  for (const char* a : kVitTopArrays)
    if (key == a) return true;
  return vit_block_of(key) >= 0;
}

class npz_vit_reader {
 public:
  npz_vit_reader(const std::map<std::string, detail::npy_array>& arrays, const std::string& name)
      : arrays_(arrays), name_(name) {}

  const detail::npy_array& get(const std::string& key) const {
    const auto it = arrays_.find(key);
    if (it == arrays_.end()) throw std::runtime_error(name_ + ": no array " + key);
    return it->second;
  }
  // the array `key` of shape `want`; `layout` says what the shape means
  const std::vector<double>& shaped(const std::string& key, const std::vector<std::size_t>& want,
                                    const std::string& layout) const {
    const auto& a = get(key);
    if (a.shape != want)
      throw std::runtime_error(name_ + ": " + key + " has shape " + detail::shape_string(a.shape) + ", expected " +
                               detail::shape_string(want) + " (" + layout + ")");
    return a.data;
  }
  void linear(nn::dense_layer& l, const std::string& prefix, std::size_t n_in, std::size_t n_out,
              sim::activation act) const {
    l.n_in = n_in;
    l.n_out = n_out;
    l.act = sim::activation_fn{act};
    l.W = shaped(prefix + ".weight", {n_out, n_in}, "Linear.weight: out, in");
    l.b = shaped(prefix + ".bias", {n_out}, "Linear.bias");
  }
  void norm(nn::layer_norm& ln, const std::string& prefix, std::size_t d) const {
    ln.gamma = shaped(prefix + ".weight", {d}, "LayerNorm.weight");
    ln.beta = shaped(prefix + ".bias", {d}, "LayerNorm.bias");
  }

 private:
  const std::map<std::string, detail::npy_array>& arrays_;
  const std::string& name_;
};

}  // namespace

nn::vit parse_npz_vit(std::span<const std::uint8_t> bytes, const std::string& name, std::size_t heads, double ln_eps) {
  return detail::naming_file(name, [&] {
    const std::function<bool(const std::string&)> accept = is_vit_key;
    const auto arrays = detail::read_npz_named(
        detail::as_chars(bytes), name, accept,
        "a vision transformer's .npz holds patch_embed.proj.weight/bias, cls_token, pos_embed, blocks.<b>.{norm1, "
        "attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.weight/bias, norm.weight/bias, head.weight/bias only");
    const npz_vit_reader rd(arrays, name);
    // the sizes, from the patch embedding, the position embedding, the first block and the head
    const auto& E = rd.get("patch_embed.proj.weight");
    if (E.shape.size() != 4 || E.shape[1] != 1 || E.shape[2] != E.shape[3] || E.shape[0] == 0 || E.shape[2] == 0)
      throw std::runtime_error(name + ": patch_embed.proj.weight has shape " + detail::shape_string(E.shape) +
                               ", expected (d, 1, patch, patch) (Conv2d.weight on one-channel images)");
    const std::size_t d = E.shape[0], patch = E.shape[2];
    const auto& P = rd.get("pos_embed");
    if (P.shape.size() != 3 || P.shape[0] != 1 || P.shape[2] != d || P.shape[1] < 2)
      throw std::runtime_error(name + ": pos_embed has shape " + detail::shape_string(P.shape) + ", expected (1, " +
                               "tokens, " + std::to_string(d) + ") with tokens = 1 + patches");
    const std::size_t patches = P.shape[1] - 1;
    std::size_t per = 1;
    while ((per + 1) * (per + 1) <= patches) ++per;
    if (per * per != patches)
      throw std::runtime_error(name + ": pos_embed has " + std::to_string(P.shape[1]) +
                               " tokens: 1 + patches needs a square number of patches");
    std::size_t n_blocks = 0;
    for (const auto& [key, a] : arrays) n_blocks = std::max(n_blocks, static_cast<std::size_t>(vit_block_of(key) + 1));
    if (n_blocks == 0) throw std::runtime_error(name + ": no array blocks.0.norm1.weight (no transformer block)");
    const auto& F1 = rd.get("blocks.0.mlp.fc1.weight");
    const auto& H = rd.get("head.weight");
    if (F1.shape.size() != 2 || F1.shape[0] == 0)
      throw std::runtime_error(name + ": blocks.0.mlp.fc1.weight has shape " + detail::shape_string(F1.shape) +
                               ", expected (hidden, " + std::to_string(d) + ")");
    if (H.shape.size() != 2 || H.shape[0] == 0)
      throw std::runtime_error(name + ": head.weight has shape " + detail::shape_string(H.shape) +
                               ", expected (classes, " + std::to_string(d) + ")");
    if (heads == 0 || d % heads != 0)
      throw std::runtime_error(name + ": width d = " + std::to_string(d) + " is not divisible by " +
                               std::to_string(heads) + " heads");
    nn::vit net;
    net.image = per * patch;
    net.patch = patch;
    net.d = d;
    net.heads = heads;
    net.hidden = F1.shape[0];
    net.classes = H.shape[0];
    net.ln_eps = ln_eps;
    const std::size_t T = net.tokens(), pp = patch * patch;
    // Conv2d.weight (d, 1, p, p) is the embedding's d x p^2 row-major matrix
    net.embed.n_in = pp;
    net.embed.n_out = d;
    net.embed.act = sim::activation_fn{sim::activation::identity};
    net.embed.W = rd.shaped("patch_embed.proj.weight", {d, 1, patch, patch}, "Conv2d.weight");
    net.embed.b = rd.shaped("patch_embed.proj.bias", {d}, "Conv2d.bias");
    net.cls = rd.shaped("cls_token", {1, 1, d}, "1, 1, d");
    net.pos = rd.shaped("pos_embed", {1, T, d}, "1, tokens, d");
    for (std::size_t b = 0; b < n_blocks; ++b) {
      const std::string pre = "blocks." + std::to_string(b) + ".";
      nn::vit_block B;
      rd.norm(B.ln1, pre + "norm1", d);
      // attn.qkv (3d, d): rows [0, d) q, [d, 2d) k, [2d, 3d) v (timm's reshape to (3, heads, d_head))
      const auto& W = rd.shaped(pre + "attn.qkv.weight", {3 * d, d}, "Linear.weight: 3 d, d; q, k, v stacked");
      const auto& bias = rd.shaped(pre + "attn.qkv.bias", {3 * d}, "Linear.bias: 3 d");
      nn::dense_layer* qkv[3] = {&B.q, &B.k, &B.v};
      for (std::size_t m = 0; m < 3; ++m) {
        auto& l = *qkv[m];
        l.n_in = d;
        l.n_out = d;
        l.act = sim::activation_fn{sim::activation::identity};
        l.W.assign(W.begin() + static_cast<std::ptrdiff_t>(m * d * d),
                   W.begin() + static_cast<std::ptrdiff_t>((m + 1) * d * d));
        l.b.assign(bias.begin() + static_cast<std::ptrdiff_t>(m * d),
                   bias.begin() + static_cast<std::ptrdiff_t>((m + 1) * d));
      }
      rd.linear(B.proj, pre + "attn.proj", d, d, sim::activation::identity);
      rd.norm(B.ln2, pre + "norm2", d);
      rd.linear(B.fc1, pre + "mlp.fc1", d, net.hidden, sim::activation::gelu);
      rd.linear(B.fc2, pre + "mlp.fc2", net.hidden, d, sim::activation::identity);
      net.blocks.push_back(std::move(B));
    }
    rd.norm(net.ln_f, "norm", d);
    rd.linear(net.head, "head", d, net.classes, sim::activation::identity);
    return detail::validated(std::move(net), name);
  });
}

nn::vit import_npz_vit(const std::filesystem::path& file, std::size_t heads, double ln_eps) {
  const std::string bytes = detail::read_file_capped(file, max_model_file, "an .npz file");
  return parse_npz_vit(detail::as_bytes(bytes), file.string(), heads, ln_eps);
}

}  // namespace mpacc::io
