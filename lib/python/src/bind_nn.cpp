// SPDX-License-Identifier: MIT
// Networks, the precision configuration, simulated and reference forward
// passes, data sets (docs/python.md).
#include <pybind11/operators.h>

#include <algorithm>
#include <stdexcept>

#include "common.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"

namespace mpacc::python {

std::string act_name(const sim::activation_fn& f) { return std::string(sim::to_string(f.kind)); }

sim::activation_fn parse_act(const std::string& text, double slope) {
  std::string t = text;
  std::replace(t.begin(), t.end(), '_', '-');
  return {sim::parse_activation(t), slope};
}

namespace {

// A layer given as (W, b, act) or (W, b, act, slope).
nn::dense_layer layer_from(const py::handle& item, std::size_t k) {
  const auto t = py::reinterpret_borrow<py::sequence>(item);
  if (t.size() != 3 && t.size() != 4)
    throw std::invalid_argument("layer " + std::to_string(k + 1) + ": expected (W, b, act) or (W, b, act, slope)");
  const auto w = as_matrix(py::reinterpret_borrow<py::object>(t[0]), "W");
  if (w.was_1d) throw std::invalid_argument("layer " + std::to_string(k + 1) + ": W must be 2-D (n_out x n_in)");
  auto b = f64_array::ensure(t[1]);
  if (!b) throw py::error_already_set();
  const auto bs = as_span(b, "b");
  nn::dense_layer l;
  l.n_out = w.rows;
  l.n_in = w.cols;
  l.W.assign(w.a.data(), w.a.data() + w.rows * w.cols);
  l.b.assign(bs.begin(), bs.end());
  l.act = parse_act(t[2].cast<std::string>(), t.size() == 4 ? t[3].cast<double>() : 0.01);
  return l;
}

py::array_t<double> copy_of(const std::vector<double>& v, std::vector<py::ssize_t> shape) {
  std::vector<double> c(v);
  return to_numpy(std::move(c), std::move(shape));
}

py::dict layer_dict(nn::layer_values&& l, std::size_t batch) {
  const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(l.n)};
  py::dict d;
  d["v"] = to_numpy(std::move(l.v_hi), shape);
  d["v_lo"] = to_numpy(std::move(l.v_lo), shape);
  d["y"] = to_numpy(std::move(l.y_hi), shape);
  d["y_lo"] = to_numpy(std::move(l.y_lo), shape);
  d["v_bound"] = to_numpy(std::move(l.v_bound), shape);
  d["y_bound"] = to_numpy(std::move(l.y_bound), shape);
  return d;
}

py::object opt_format(const std::optional<sim::format>& f) { return f ? py::cast(*f) : py::none(); }

}  // namespace

py::list forward_list(nn::forward_result&& r) {
  py::list out;
  for (auto& l : r.layers) out.append(layer_dict(std::move(l), r.batch));
  return out;
}

nn::precision_config make_precision(const py::object& spec) {
  if (spec.is_none()) return {};
  if (py::isinstance<nn::precision_config>(spec)) return spec.cast<nn::precision_config>();
  if (py::isinstance<py::dict>(spec)) {
    const auto text = py::module_::import("json").attr("dumps")(spec).cast<std::string>();
    return nn::parse_precision_json(text);
  }
  if (py::isinstance<py::str>(spec)) {
    const auto text = spec.cast<std::string>();
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first != std::string::npos && text[first] == '{') return nn::parse_precision_json(text);
    return nn::parse_precision(text);
  }
  throw std::invalid_argument("precision: expected a PrecisionConfig, a dict, a JSON string or a compact string");
}

void bind_nn(py::module_& m) {
  // ---- networks
  py::class_<nn::mlp>(m, "Network", R"doc(A multilayer perceptron (mpacc::nn::mlp): layers y = phi(W x + b).

Network(layers): layers is a sequence of (W, b, act) or (W, b, act, slope) with W an
n_out x n_in array, b of length n_out and act one of 'identity', 'relu', 'leaky-relu',
'tanh', 'sigmoid', 'gelu', 'silu' (the last layer's outputs are the logits). The
weights are copied (as binary64). Network.load(path) reads an mpacc model file or an
.npz archive; mpacc.from_torch converts a torch.nn.Sequential.)doc")
      .def(py::init([](const py::sequence& layers) {
             nn::mlp net;
             for (std::size_t k = 0; k < layers.size(); ++k) net.layers.push_back(layer_from(layers[k], k));
             if (net.layers.empty()) throw std::invalid_argument("a network needs at least one layer");
             net.validate();
             return net;
           }),
           py::arg("layers"))
      .def_static(
          "load",
          [](const std::string& path, const std::string& hidden) {
            return io::load_any(path, parse_act(hidden, 0.01));
          },
          "Network.load(path, hidden='relu'): an mpacc model file, or an .npz archive (W1, b1, W2, b2, ...; "
          "`hidden` is then the hidden layers' activation).",
          py::arg("path"), py::arg("hidden") = "relu")
      .def(
          "save",
          [](const nn::mlp& net, const std::string& path, const std::string& meta) { io::save_model(net, path, meta); },
          "save(path, metadata=''): writes an mpacc model file.", py::arg("path"), py::arg("metadata") = "")
      .def_property_readonly("arch", &nn::mlp::arch, "'784-784-128-10'")
      .def_property_readonly("inputs", &nn::mlp::inputs)
      .def_property_readonly("outputs", &nn::mlp::outputs)
      .def("__len__", [](const nn::mlp& net) { return net.layers.size(); })
      .def(
          "layer",
          [](const nn::mlp& net, std::size_t k) {
            if (k >= net.layers.size())
              throw py::index_error("layer " + std::to_string(k) + " of " + std::to_string(net.layers.size()));
            const auto& l = net.layers[k];
            return py::make_tuple(copy_of(l.W, {static_cast<py::ssize_t>(l.n_out), static_cast<py::ssize_t>(l.n_in)}),
                                  copy_of(l.b, {static_cast<py::ssize_t>(l.n_out)}), act_name(l.act), l.act.slope);
          },
          "layer(k): (W, b, act, slope) of layer k (0-based), copies.", py::arg("k"))
      .def_property_readonly(
          "activations",
          [](const nn::mlp& net) {
            py::list l;
            for (const auto& x : net.layers) l.append(act_name(x.act));
            return l;
          },
          "the activation of each layer")
      .def("__repr__", [](const nn::mlp& net) { return "Network('" + net.arch() + "')"; });

  // ---- the precision configuration
  py::class_<nn::precision_config>(m, "PrecisionConfig",
                                   R"doc(Every precision choice of a simulated pass (mpacc::nn::precision_config).

PrecisionConfig(spec=None): spec is None (the defaults: weights and biases stored in
e4m3-ieee, binary32 inputs, accumulators and activations), a compact string
'acc=e4m3-ieee;order=blocked:8;saturate=on;weights=e4m3-ieee;act=binary32', a JSON
string, a dict with the JSON keys, or another PrecisionConfig (copied). Unknown keys
and malformed values raise ValueError naming the key (the C++ message).
Keys: weights, biases, inputs, product, acc (one format or one per layer), maps
(per-layer per-component accumulator maps), rounding, order, saturate, via, seed, act,
act_rounding, act_saturate (docs/design.md). to_dict()/to_json()/to_string() write it back.)doc")
      .def(py::init(&make_precision), py::arg("spec") = py::none())
      .def("to_json", &nn::precision_config::to_json, "every field as pretty-printed JSON")
      .def("to_string", &nn::precision_config::to_string, "the compact one-line form, every field")
      .def(
          "to_dict",
          [](const nn::precision_config& p) { return py::module_::import("json").attr("loads")(p.to_json()); },
          "every field as a dict (the JSON keys)")
      .def("check", &nn::precision_config::check, py::arg("layers"),
           "Raises ValueError when the per-layer lists do not fit a network of `layers` layers.")
      .def(
          "__eq__", [](const nn::precision_config& a, const nn::precision_config& b) { return a == b; },
          py::is_operator())
      .def("__repr__", [](const nn::precision_config& p) { return "PrecisionConfig('" + p.to_string() + "')"; })
      .def(py::pickle([](const nn::precision_config& p) { return p.to_json(); },
                      [](const std::string& s) { return nn::parse_precision_json(s); }))
      .def_property(
          "weights", [](const nn::precision_config& p) { return opt_format(p.weights); },
          [](nn::precision_config& p, std::optional<format_arg> f) { p.weights = opt_fmt(f); },
          "storage format of the weights (None: as given)")
      .def_property(
          "biases", [](const nn::precision_config& p) { return opt_format(p.biases); },
          [](nn::precision_config& p, std::optional<format_arg> f) { p.biases = opt_fmt(f); },
          "storage format of the biases (None: as given)")
      .def_property(
          "inputs", [](const nn::precision_config& p) { return p.inputs; },
          [](nn::precision_config& p, const format_arg& f) { p.inputs = f; }, "storage format of the inputs")
      .def_property(
          "product", [](const nn::precision_config& p) { return opt_format(p.product); },
          [](nn::precision_config& p, std::optional<format_arg> f) { p.product = opt_fmt(f); }, "None: exact products")
      .def_property(
          "acc", [](const nn::precision_config& p) { return p.acc; },
          [](nn::precision_config& p, const std::vector<format_arg>& f) { p.acc = fmt_list(f); },
          "accumulator format(s): one for every layer, or one per layer")
      .def_property(
          "rounding", [](const nn::precision_config& p) { return std::string(sim::to_string(p.rounding)); },
          [](nn::precision_config& p, const std::string& s) { p.rounding = parse_mode(s); },
          "accumulator rounding mode")
      .def_property(
          "order", [](const nn::precision_config& p) { return sim::to_string(p.order); },
          [](nn::precision_config& p, const std::string& s) { p.order = sim::parse_order(s); }, "summation order")
      .def_readwrite("saturate", &nn::precision_config::saturate)
      .def_property(
          "via", [](const nn::precision_config& p) { return opt_format(p.via); },
          [](nn::precision_config& p, std::optional<format_arg> f) { p.via = opt_fmt(f); },
          "double rounding through this format")
      .def_readwrite("seed", &nn::precision_config::seed)
      .def_property(
          "act", [](const nn::precision_config& p) { return p.act; },
          [](nn::precision_config& p, const format_arg& f) { p.act = f; }, "format of the activations")
      .def_property(
          "act_rounding", [](const nn::precision_config& p) { return std::string(sim::to_string(p.act_rounding)); },
          [](nn::precision_config& p, const std::string& s) { p.act_rounding = parse_mode(s); })
      .def_readwrite("act_saturate", &nn::precision_config::act_saturate)
      .def(
          "set_map",
          [](nn::precision_config& p, std::size_t layers, std::size_t layer, const std::vector<format_arg>& comps) {
            if (layer >= layers)
              throw std::invalid_argument("set_map: layer " + std::to_string(layer) + " of " + std::to_string(layers));
            p.maps.resize(layers);
            sim::precision_map pm;
            for (const sim::format& f : comps) {
              auto it = std::find(pm.formats.begin(), pm.formats.end(), f);
              if (it == pm.formats.end()) {
                if (pm.formats.size() == 256) throw std::invalid_argument("set_map: more than 256 distinct formats");
                pm.formats.push_back(f);
                it = pm.formats.end() - 1;
              }
              pm.index.push_back(static_cast<std::uint8_t>(it - pm.formats.begin()));
            }
            p.maps[layer] = std::move(pm);
          },
          "set_map(layers, layer, formats): the accumulator of each component of `layer` (0-based) "
          "in a network of `layers` layers.",
          py::arg("layers"), py::arg("layer"), py::arg("formats"));

  // ---- passes
  m.def(
      "simulate",
      [](const nn::mlp& net, const py::object& X, const py::object& precision, int threads) {
        const auto x = as_matrix(X, "X");
        const auto p = make_precision(precision);
        p.check(net.layers.size());
        if (x.cols != net.inputs())
          throw std::invalid_argument("X has " + std::to_string(x.cols) + " columns for a network of " +
                                      std::to_string(net.inputs()) + " inputs");
        std::vector<nn::simulated_layer> r;
        {
          py::gil_scoped_release nogil;
          r = nn::simulate(net, x.view(), p, threads);
        }
        py::list out;
        for (std::size_t k = 0; k < r.size(); ++k) {
          const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(x.rows),
                                               static_cast<py::ssize_t>(net.layers[k].n_out)};
          py::dict d;
          d["v"] = to_numpy(std::move(r[k].v), shape);
          d["y"] = to_numpy(std::move(r[k].y), shape);
          std::vector<std::uint32_t> f(r[k].flags.begin(), r[k].flags.end()),
              fa(r[k].act_flags.begin(), r[k].act_flags.end());
          d["flags"] = to_numpy(std::move(f), shape);
          d["act_flags"] = to_numpy(std::move(fa), shape);
          if (k == 0 && !r[k].in_flags.empty()) {
            std::vector<std::uint32_t> fi(r[k].in_flags.begin(), r[k].in_flags.end());
            d["in_flags"] =
                to_numpy(std::move(fi), {static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(x.cols)});
          }
          out.append(d);
        }
        return out;
      },
      R"doc(simulate(net, X, precision=None, threads=0)

The simulated forward pass (mpacc::nn::simulate with a precision_config): weights and
biases rounded to their storage formats, X (batch x n_in, float64) stored in the
input format, each layer accumulated as precision.layer_spec(k) says, activations
rounded to precision.act. precision: a PrecisionConfig, dict, JSON or compact string
(None: the defaults). Returns one dict per layer with arrays (batch x n_out) 'v'
(pre-activations), 'y' (outputs; the last layer's are the logits), 'flags' (each
inner product's roundings), 'act_flags', and for the first layer 'in_flags'
(storing each input, batch x n_in).)doc",
      py::arg("net"), py::arg("X"), py::arg("precision") = py::none(), py::arg("threads") = 0);
  m.def(
      "stored_network",
      [](const nn::mlp& net, const py::object& precision) {
        return nn::stored_network(net, make_precision(precision));
      },
      "stored_network(net, precision): the network with weights and biases rounded to the storage formats.",
      py::arg("net"), py::arg("precision") = py::none());
  m.def(
      "reference",
      [](const nn::mlp& net, const py::object& X, long bits, bool exact, int threads) {
        const auto x = as_matrix(X, "X");
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
      R"doc(reference(net, X, bits=200, exact=False, threads=0)

The MPFR reference pass (mpacc::nn::reference_forward) of `net` as given (apply
stored_network first to analyse a stored network) on X as given: every
pre-activation and output at `bits` bits, or exactly (exact=True, piecewise-linear
networks only). Returns one dict per layer with arrays (batch x n): 'v', 'y' (the
nearest binary64), 'v_lo', 'y_lo' (value = hi + lo to 106 bits) and 'v_bound',
'y_bound' (|value - exact| <= bound).)doc",
      py::arg("net"), py::arg("X"), py::arg("bits") = 200, py::arg("exact") = false, py::arg("threads") = 0);
  m.def(
      "fast_reference",
      [](const nn::mlp& net, const py::object& X, int threads) {
        const auto x = as_matrix(X, "X");
        nn::forward_result r;
        {
          py::gil_scoped_release nogil;
          r = nn::fast_forward(net, x.view(), threads);
        }
        return forward_list(std::move(r));
      },
      "fast_reference(net, X, threads=0): the binary64 (Dot2) reference tier with its bounds; same dicts as "
      "reference().",
      py::arg("net"), py::arg("X"), py::arg("threads") = 0);

  // ---- data
  m.def(
      "load_dataset",
      [](const std::string& dir, const std::string& name, bool train, std::size_t limit) {
        io::dataset d;
        {
          py::gil_scoped_release nogil;
          d = io::load_dataset(dir.empty() ? io::default_data_dir() : std::filesystem::path(dir), name, train, limit);
        }
        const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(d.rows), static_cast<py::ssize_t>(d.cols)};
        const auto rows = static_cast<py::ssize_t>(d.rows);
        return py::make_tuple(to_numpy(std::move(d.x), shape), to_numpy(std::move(d.y), {rows}));
      },
      R"doc(load_dataset(dir='', name='mnist', train=False, limit=0)

MNIST or Fashion-MNIST from <dir>/<name>/ (IDX files, raw or .gz; dir '' = $MPACC_DATA
or ./data), normalized as in the paper ((pixel/255 - 0.1307) / 0.3081). limit > 0 keeps
the first `limit` samples. Returns (X float64 rows x 784, labels uint8).)doc",
      py::arg("dir") = "", py::arg("name") = "mnist", py::arg("train") = false, py::arg("limit") = 0);
}

}  // namespace mpacc::python
