// SPDX-License-Identifier: MIT
// Convolutional networks (nn::cnn, docs/cnn.md) in Python: the class CNN, and
// simulate / reference / stored_network / validate overloads taking one
// (docs/python.md).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/cnn.hpp"
#include "mpacc/nn/cnn_passes.hpp"

namespace mpacc::python {

namespace {

// per-sample shape (c, h, w); a flat vector of n values is (n, 1, 1)
struct chw {
  std::size_t c, h, w;
};

std::string dims(const chw& s) { return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w); }

// An int or a pair of ints (PyTorch's kernel_size / stride / padding).
std::pair<std::size_t, std::size_t> pair_of(const py::handle& v, const std::string& what) {
  if (py::isinstance<py::int_>(v)) {
    const auto n = v.cast<long long>();
    if (n < 0) throw std::invalid_argument(what + " must not be negative");
    return {static_cast<std::size_t>(n), static_cast<std::size_t>(n)};
  }
  const auto t = py::reinterpret_borrow<py::sequence>(v);
  if (t.size() != 2) throw std::invalid_argument(what + ": expected an int or a pair of ints");
  const auto a = t[0].cast<long long>();
  const auto b = t[1].cast<long long>();
  if (a < 0 || b < 0) throw std::invalid_argument(what + " must not be negative");
  return {static_cast<std::size_t>(a), static_cast<std::size_t>(b)};
}

py::object get_or(const py::dict& d, const char* key, py::object fallback) {
  return d.contains(key) ? py::reinterpret_borrow<py::object>(d[key]) : std::move(fallback);
}

py::object need(const py::dict& d, const char* key, const std::string& name) {
  if (!d.contains(key)) throw std::invalid_argument(name + ": missing key '" + key + "'");
  return py::reinterpret_borrow<py::object>(d[key]);
}

std::vector<double> bias_of(const py::object& b, const std::string& name) {
  auto a = f64_array::ensure(b);
  if (!a) throw py::error_already_set();
  const auto s = as_span(a, (name + ": b").c_str());
  return {s.begin(), s.end()};
}

// shape.validate() with the layer's name in front of the message
template <class Shape>
void checked(const std::string& name, const Shape& s) {
  try {
    s.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(name + ": " + e.what());
  }
}

// One layer description (a dict with 'type') on inputs of shape `in`.
nn::cnn_layer layer_from(const py::handle& item, std::size_t k, const chw& in) {
  const std::string name = "layer " + std::to_string(k + 1);
  if (!py::isinstance<py::dict>(item)) throw std::invalid_argument(name + ": expected a dict with a key 'type'");
  const auto d = py::reinterpret_borrow<py::dict>(item);
  const auto type = need(d, "type", name).cast<std::string>();
  const auto act = [&] {
    return parse_act(get_or(d, "act", py::str("identity")).cast<std::string>(),
                     get_or(d, "slope", py::float_(0.01)).cast<double>());
  };
  if (type == "conv") {
    auto w = f64_array::ensure(need(d, "W", name));
    if (!w) throw py::error_already_set();
    if (w.ndim() != 4) throw std::invalid_argument(name + ": W must be 4-D (c_out x c_in x kh x kw)");
    nn::conv_layer l;
    auto& s = l.shape;
    s.c_out = static_cast<std::size_t>(w.shape(0));
    s.c_in = static_cast<std::size_t>(w.shape(1));
    s.kh = static_cast<std::size_t>(w.shape(2));
    s.kw = static_cast<std::size_t>(w.shape(3));
    s.h = in.h;
    s.w = in.w;
    std::tie(s.stride_h, s.stride_w) = pair_of(get_or(d, "stride", py::int_(1)), name + ": stride");
    std::tie(s.pad_h, s.pad_w) = pair_of(get_or(d, "padding", py::int_(0)), name + ": padding");
    l.W.assign(w.data(), w.data() + w.size());
    l.b = d.contains("b") && !d["b"].is_none() ? bias_of(d["b"], name) : std::vector<double>(s.c_out, 0.0);
    l.act = act();
    checked(name, s);
    return l;
  }
  if (type == "maxpool" || type == "avgpool") {
    nn::pool_layer l;
    l.type = type == "maxpool" ? nn::pool_layer::kind::max : nn::pool_layer::kind::avg;
    auto& s = l.shape;
    s.c = in.c;
    s.h = in.h;
    s.w = in.w;
    const auto kernel = need(d, "kernel", name);
    std::tie(s.kh, s.kw) = pair_of(kernel, name + ": kernel");
    const auto stride = get_or(d, "stride", py::none());
    std::tie(s.stride_h, s.stride_w) = pair_of(stride.is_none() ? kernel : stride, name + ": stride");
    std::tie(s.pad_h, s.pad_w) = pair_of(get_or(d, "padding", py::int_(0)), name + ": padding");
    checked(name, s);
    return l;
  }
  if (type == "flatten") return nn::flatten_layer{in.c, in.h, in.w};
  if (type == "dense") {
    const auto w = as_matrix(need(d, "W", name), "W");
    if (w.was_1d) throw std::invalid_argument(name + ": W must be 2-D (n_out x n_in)");
    nn::dense_layer l;
    l.n_out = w.rows;
    l.n_in = w.cols;
    l.W.assign(w.a.data(), w.a.data() + w.rows * w.cols);
    l.b = d.contains("b") && !d["b"].is_none() ? bias_of(d["b"], name) : std::vector<double>(l.n_out, 0.0);
    l.act = act();
    return l;
  }
  throw std::invalid_argument(name + ": unknown type '" + type + "' (conv, maxpool, avgpool, flatten, dense)");
}

// The per-sample output shape of each layer (the network is valid).
std::vector<chw> out_shapes(const nn::cnn& net) {
  std::vector<chw> out;
  chw cur{net.c, net.h, net.w};
  for (const auto& layer : net.layers) {
    std::visit(
        [&](const auto& l) {
          using T = std::decay_t<decltype(l)>;
          if constexpr (std::is_same_v<T, nn::conv_layer>) {
            cur = {l.shape.c_out, l.shape.out_h(), l.shape.out_w()};
          } else if constexpr (std::is_same_v<T, nn::pool_layer>) {
            cur = {l.shape.c, l.shape.out_h(), l.shape.out_w()};
          } else if constexpr (std::is_same_v<T, nn::flatten_layer>) {
            cur = {cur.c * cur.h * cur.w, 1, 1};
          } else {
            cur = {l.n_out, 1, 1};
          }
        },
        layer);
    out.push_back(cur);
  }
  return out;
}

py::tuple pair_out(std::size_t a, std::size_t b) { return py::make_tuple(a, b); }

py::array_t<double> copy_of(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  std::vector<double> c(v);
  return to_numpy(std::move(c), std::move(shape));
}

py::dict layer_dict(const nn::cnn_layer& layer) {
  py::dict d;
  std::visit(
      [&](const auto& l) {
        using T = std::decay_t<decltype(l)>;
        if constexpr (std::is_same_v<T, nn::conv_layer>) {
          const auto& s = l.shape;
          d["type"] = "conv";
          d["W"] = copy_of(l.W, {static_cast<py::ssize_t>(s.c_out), static_cast<py::ssize_t>(s.c_in),
                                 static_cast<py::ssize_t>(s.kh), static_cast<py::ssize_t>(s.kw)});
          d["b"] = copy_of(l.b, {static_cast<py::ssize_t>(s.c_out)});
          d["stride"] = pair_out(s.stride_h, s.stride_w);
          d["padding"] = pair_out(s.pad_h, s.pad_w);
          d["act"] = act_name(l.act);
          d["slope"] = l.act.slope;
        } else if constexpr (std::is_same_v<T, nn::pool_layer>) {
          const auto& s = l.shape;
          d["type"] = l.type == nn::pool_layer::kind::max ? "maxpool" : "avgpool";
          d["kernel"] = pair_out(s.kh, s.kw);
          d["stride"] = pair_out(s.stride_h, s.stride_w);
          d["padding"] = pair_out(s.pad_h, s.pad_w);
        } else if constexpr (std::is_same_v<T, nn::flatten_layer>) {
          d["type"] = "flatten";
        } else {
          d["type"] = "dense";
          d["W"] = copy_of(l.W, {static_cast<py::ssize_t>(l.n_out), static_cast<py::ssize_t>(l.n_in)});
          d["b"] = copy_of(l.b, {static_cast<py::ssize_t>(l.n_out)});
          d["act"] = act_name(l.act);
          d["slope"] = l.act.slope;
        }
      },
      layer);
  return d;
}

// X as (batch, c*h*w): a (batch, c, h, w) array of the network's input shape,
// a (batch, c*h*w) matrix or one sample (1-D).
matrix_arg cnn_batch(const py::object& X, const nn::cnn& net) {
  auto a = f64_array::ensure(X);
  if (!a) throw py::error_already_set();
  if (a.ndim() == 4) {
    const chw got{static_cast<std::size_t>(a.shape(1)), static_cast<std::size_t>(a.shape(2)),
                  static_cast<std::size_t>(a.shape(3))};
    if (got.c != net.c || got.h != net.h || got.w != net.w)
      throw std::invalid_argument("X: samples of shape " + dims(got) + " for a network on " +
                                  dims({net.c, net.h, net.w}) + " inputs");
    matrix_arg m;
    m.rows = static_cast<std::size_t>(a.shape(0));
    m.cols = net.inputs();
    m.a = std::move(a);
    return m;
  }
  auto m = as_matrix(a, "X");
  if (m.cols != net.inputs())
    throw std::invalid_argument("X has " + std::to_string(m.cols) + " columns for a network of " +
                                std::to_string(net.inputs()) + " inputs (" + dims({net.c, net.h, net.w}) + ")");
  return m;
}

template <class T>
py::array_t<std::uint32_t> u32(const std::vector<T>& v, std::size_t n, std::vector<py::ssize_t> shape) {
  std::vector<std::uint32_t> out(n, 0);
  if (v.size() == n) std::copy(v.begin(), v.end(), out.begin());
  return to_numpy(std::move(out), std::move(shape));
}

}  // namespace

void bind_cnn(py::module_& m) {
  py::class_<nn::cnn>(m, "CNN", R"doc(A convolutional network (mpacc::nn::cnn, docs/cnn.md).

CNN(input_shape, layers): input_shape is (c, h, w); layers a sequence of dicts, each
with a key 'type':
  {'type': 'conv', 'W': c_out x c_in x kh x kw, 'b': c_out (None: zeros), 'act': 'relu',
   'slope': 0.01, 'stride': 1 or (sh, sw), 'padding': 0 or (ph, pw)}
  {'type': 'maxpool' | 'avgpool', 'kernel': k or (kh, kw), 'stride': the kernel, 'padding': 0}
  {'type': 'flatten'}
  {'type': 'dense', 'W': n_out x n_in, 'b': n_out (None: zeros), 'act': 'identity', 'slope': 0.01}
Each layer's input shape follows from the previous one; the last layer must be dense
(its outputs are the logits). Pooling: PyTorch's MaxPool2d / AvgPool2d with dilation 1,
floor mode, padding at most half the window, average pooling counting the padding.
The weights are copied (as binary64). CNN.load(path) reads an mpacc CNN model file;
mpacc.from_torch(model, input_shape) converts a torch.nn.Sequential.)doc")
      .def(py::init([](const py::sequence& input_shape, const py::sequence& layers) {
             if (input_shape.size() != 3) throw std::invalid_argument("input_shape: expected (c, h, w)");
             nn::cnn net;
             net.c = input_shape[0].cast<std::size_t>();
             net.h = input_shape[1].cast<std::size_t>();
             net.w = input_shape[2].cast<std::size_t>();
             if (net.c == 0 || net.h == 0 || net.w == 0) throw std::invalid_argument("input_shape: a zero dimension");
             chw cur{net.c, net.h, net.w};
             for (std::size_t k = 0; k < layers.size(); ++k) {
               net.layers.push_back(layer_from(layers[k], k, cur));
               cur = out_shapes(net).back();
             }
             net.validate();
             return net;
           }),
           py::arg("input_shape"), py::arg("layers"))
      .def_static(
          "load", [](const std::string& path) { return io::load_cnn(path); },
          "CNN.load(path): an mpacc CNN model file (mpacc train-cnn, CNN.save).", py::arg("path"))
      .def(
          "save",
          [](const nn::cnn& net, const std::string& path, const std::string& meta) { io::save_model(net, path, meta); },
          "save(path, metadata=''): writes an mpacc CNN model file.", py::arg("path"), py::arg("metadata") = "")
      .def_property_readonly("arch", &nn::cnn::arch, "'1x28x28,conv1x6k5p2-relu,maxpool2,...'")
      .def_property_readonly(
          "input_shape", [](const nn::cnn& net) { return py::make_tuple(net.c, net.h, net.w); }, "(c, h, w)")
      .def_property_readonly("inputs", &nn::cnn::inputs, "c * h * w")
      .def_property_readonly("outputs", &nn::cnn::outputs)
      .def_property_readonly(
          "output_shapes",
          [](const nn::cnn& net) {
            py::list l;
            for (const auto& s : out_shapes(net)) l.append(py::make_tuple(s.c, s.h, s.w));
            return l;
          },
          "the per-sample output shape (c, h, w) of each layer (flat layers: (n, 1, 1))")
      .def("__len__", [](const nn::cnn& net) { return net.layers.size(); })
      .def_property_readonly(
          "layers",
          [](const nn::cnn& net) {
            py::list l;
            for (const auto& x : net.layers) l.append(layer_dict(x));
            return l;
          },
          "the layer descriptions (dicts as CNN() takes them, every key given; arrays are copies)")
      .def("__repr__", [](const nn::cnn& net) { return "CNN('" + net.arch() + "')"; });

  m.def(
      "simulate",
      [](const nn::cnn& net, const py::object& X, const py::object& precision, int threads) {
        const auto x = cnn_batch(X, net);
        const auto p = make_precision(precision);
        p.check(net.layers.size());
        std::vector<nn::simulated_cnn_layer> r;
        {
          py::gil_scoped_release nogil;
          r = nn::simulate(net, x.view(), p, threads);
        }
        const auto shapes = out_shapes(net);
        py::list out;
        for (std::size_t k = 0; k < r.size(); ++k) {
          const std::size_t n = shapes[k].c * shapes[k].h * shapes[k].w;
          const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(n)};
          py::dict d;
          d["v"] = to_numpy(std::move(r[k].v), shape);
          d["y"] = to_numpy(std::move(r[k].y), shape);
          d["flags"] = u32(r[k].flags, x.rows * n, shape);
          d["act_flags"] = u32(r[k].act_flags, x.rows * n, shape);
          if (!r[k].where.empty()) d["where"] = to_numpy(std::move(r[k].where), shape);
          if (k == 0 && !r[k].in_flags.empty()) {
            std::vector<std::uint32_t> fi(r[k].in_flags.begin(), r[k].in_flags.end());
            d["in_flags"] =
                to_numpy(std::move(fi), {static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(x.cols)});
          }
          out.append(d);
        }
        return out;
      },
      R"doc(simulate(cnn, X, precision=None, threads=0)

The simulated pass over a CNN (mpacc::nn::simulate(cnn, X, p)): X is (batch, c, h, w)
or (batch, c*h*w) float64 (NCHW order). Layer k (convolution, pooling, flatten or dense,
counted alike) is accumulated as precision.layer_spec(k) says. Returns one dict per
layer with arrays (batch x the layer's outputs per sample, NCHW order): 'v', 'y',
'flags', 'act_flags' (zeros where the layer has none: max pooling, flatten), 'where'
for max pooling (the index within the sample's input of each chosen input), and
'in_flags' for the first layer.)doc",
      py::arg("net"), py::arg("X"), py::arg("precision") = py::none(), py::arg("threads") = 0);
  m.def(
      "stored_network",
      [](const nn::cnn& net, const py::object& precision) {
        return nn::stored_network(net, make_precision(precision));
      },
      "stored_network(cnn, precision): the CNN with weights and biases rounded to the storage formats.", py::arg("net"),
      py::arg("precision") = py::none());
  m.def(
      "reference",
      [](const nn::cnn& net, const py::object& X, long bits, bool exact, int threads) {
        const auto x = cnn_batch(X, net);
        nn::reference_options opt;
        opt.precision = static_cast<mpfr_prec_t>(bits);
        opt.exact = exact;
        opt.threads = threads;
        nn::forward_result r;
        {
          py::gil_scoped_release nogil;
          r = nn::reference_forward(net, x.view(), opt);
        }
        return forward_list(std::move(r));
      },
      R"doc(reference(cnn, X, bits=200, exact=False, threads=0)

The MPFR reference pass over a CNN (mpacc::nn::reference_forward(cnn)), X as for
simulate: the same dicts as for a Network, one per layer (batch x the layer's outputs).)doc",
      py::arg("net"), py::arg("X"), py::arg("bits") = 200, py::arg("exact") = false, py::arg("threads") = 0);
  m.def(
      "validate",
      [](const nn::cnn& net, const py::object& X, const py::object& precision, std::size_t samples, double lam,
         long bits, const std::string& reference_inputs, std::size_t component_samples, int threads) {
        const auto p = make_precision(precision);
        const auto x = cnn_batch(X, net);
        io::dataset data;
        data.name = "python";
        data.rows = x.rows;
        data.cols = x.cols;
        data.x.assign(x.a.data(), x.a.data() + x.rows * x.cols);
        data.y.assign(x.rows, 0);
        analysis::validate_options opt;
        opt.samples = samples;
        opt.csv_samples = component_samples;
        opt.lambda = lam;
        opt.precision = static_cast<mpfr_prec_t>(bits);
        opt.ref_inputs = analysis::parse_reference_inputs(reference_inputs);
        opt.threads = threads;
        p.check(net.layers.size());
        py::gil_scoped_release nogil;
        const auto ref = analysis::compute_reference(net, data, opt, p);
        return analysis::validate(net, ref, p, opt);
      },
      "validate(cnn, X, ...): as for a Network (docs/cnn.md, \"Validation\"); X as for simulate.", py::arg("net"),
      py::arg("X"), py::arg("precision") = py::none(), py::arg("samples") = 0, py::arg("lam") = 5.0,
      py::arg("bits") = 200, py::arg("reference_inputs") = "stored", py::arg("component_samples") = 20,
      py::arg("threads") = 0);
}

}  // namespace mpacc::python
