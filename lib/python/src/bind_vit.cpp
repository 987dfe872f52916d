// SPDX-License-Identifier: MIT
// Vision transformers (nn::vit, docs/attention.md) in Python: the class ViT
// (model files, .npz import of timm's state_dict), and simulate / validate
// overloads taking one (docs/python.md).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/data.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/nn/vit.hpp"
#include "mpacc/nn/vit_passes.hpp"

namespace mpacc::python {

namespace {

// X as (batch, image, image) or (batch, image^2)
matrix_arg vit_batch(const py::object& X, const nn::vit& net) {
  auto a = f64_array::ensure(X);
  if (!a) throw py::error_already_set();
  if (a.ndim() == 3) {
    if (static_cast<std::size_t>(a.shape(1)) != net.image || static_cast<std::size_t>(a.shape(2)) != net.image)
      throw std::invalid_argument("X: images of " + std::to_string(a.shape(1)) + "x" + std::to_string(a.shape(2)) +
                                  " for a network on " + std::to_string(net.image) + "x" + std::to_string(net.image));
    matrix_arg m;
    m.rows = static_cast<std::size_t>(a.shape(0));
    m.cols = net.inputs();
    m.a = std::move(a);
    return m;
  }
  auto m = as_matrix(a, "X");
  if (m.cols != net.inputs())
    throw std::invalid_argument("X has " + std::to_string(m.cols) + " columns for a network on " +
                                std::to_string(net.image) + "x" + std::to_string(net.image) + " images");
  return m;
}

}  // namespace

void bind_vit(py::module_& m) {
  py::class_<nn::vit>(m, "ViT", R"doc(A vision transformer (mpacc::nn::vit, docs/attention.md).

ViT.load(path) reads an mpacc model file (mpacc train --arch vit); ViT.from_npz(path,
heads, eps=1e-6) imports the state_dict of timm's VisionTransformer on one-channel
images saved with numpy.savez (the array names and shapes: docs/attention.md, ".npz
import"); save(path) writes a model file.)doc")
      .def_static(
          "load", [](const std::string& path) { return io::load_vit(path); },
          "ViT.load(path): an mpacc vit model file.", py::arg("path"))
      .def_static(
          "from_npz",
          [](const std::string& path, std::size_t heads, double eps) { return io::import_npz_vit(path, heads, eps); },
          "ViT.from_npz(path, heads, eps=1e-6): timm's VisionTransformer state_dict (numpy.savez).", py::arg("path"),
          py::arg("heads"), py::arg("eps") = 1e-6)
      .def(
          "save",
          [](const nn::vit& net, const std::string& path, const std::string& meta) { io::save_model(net, path, meta); },
          "save(path, metadata=''): writes an mpacc vit model file.", py::arg("path"), py::arg("metadata") = "")
      .def_property_readonly("arch", &nn::vit::arch, "'vit28p7-d64-h4-b2-m256-c10'")
      .def_readonly("image", &nn::vit::image)
      .def_readonly("patch", &nn::vit::patch)
      .def_readonly("d", &nn::vit::d)
      .def_readonly("heads", &nn::vit::heads)
      .def_readonly("hidden", &nn::vit::hidden)
      .def_readonly("classes", &nn::vit::classes)
      .def_readonly("ln_eps", &nn::vit::ln_eps)
      .def_property_readonly("blocks", [](const nn::vit& net) { return net.blocks.size(); })
      .def_property_readonly("tokens", &nn::vit::tokens)
      .def_property_readonly("inputs", &nn::vit::inputs)
      .def_property_readonly("outputs", &nn::vit::outputs)
      .def_property_readonly("product_layer_names", &nn::vit::product_layer_names,
                             "the inner-product layers of a precision configuration: embed, block1.q, ..., head")
      .def("__repr__", [](const nn::vit& net) { return "ViT('" + net.arch() + "')"; });

  m.def(
      "simulate",
      [](const nn::vit& net, const py::object& X, const py::object& precision, int threads, std::size_t first_sample) {
        const auto x = vit_batch(X, net);
        const auto p = make_precision(precision);
        p.check(net.product_layers());
        nn::simulated_vit r;
        {
          py::gil_scoped_release nogil;
          r = nn::simulate(net, x.view(), p, threads, first_sample);
        }
        const auto names = net.product_layer_names();
        py::list out;
        for (std::size_t k = 0; k < r.layers.size(); ++k) {
          auto& L = r.layers[k];
          const std::size_t n = x.rows ? L.v.size() / x.rows : 0;
          const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(n)};
          py::dict d;
          d["name"] = names[k];
          d["v"] = to_numpy(std::move(L.v), shape);
          d["y"] = to_numpy(std::move(L.y), shape);
          std::vector<std::uint32_t> f(L.flags.begin(), L.flags.end()), fa(L.act_flags.begin(), L.act_flags.end());
          f.resize(x.rows * n, 0);
          fa.resize(x.rows * n, 0);
          d["flags"] = to_numpy(std::move(f), shape);
          d["act_flags"] = to_numpy(std::move(fa), shape);
          out.append(d);
        }
        return out;
      },
      R"doc(simulate(vit, X, precision=None, threads=0, first_sample=0)

The simulated pass over a vision transformer (mpacc::nn::simulate(vit, X, p)): X is
(batch, image, image) or (batch, image^2) float64. Returns one dict per inner-product
layer (ViT.product_layer_names) with 'name' and arrays (batch x the layer's values per
sample, laid out as docs/attention.md says): 'v', 'y' (for scores the softmax, for proj
and fc2 the residual stream, for the head the logits), 'flags', 'act_flags'.
first_sample numbers the rows for the stochastic streams (a batch run in pieces gives
the bits of one run).)doc",
      py::arg("net"), py::arg("X"), py::arg("precision") = py::none(), py::arg("threads") = 0,
      py::arg("first_sample") = 0);
  m.def(
      "stored_network",
      [](const nn::vit& net, const py::object& precision) {
        return nn::stored_network(net, make_precision(precision));
      },
      "stored_network(vit, precision): the vit with its linear maps rounded to the weight and bias formats and its "
      "elementwise parameters to the activation format.",
      py::arg("net"), py::arg("precision") = py::none());
  m.def(
      "validate",
      [](const nn::vit& net, const py::object& X, const py::object& precision, std::size_t samples, long bits,
         const std::string& reference_inputs, std::size_t component_samples, int threads, std::size_t chunk) {
        const auto p = make_precision(precision);
        const auto x = vit_batch(X, net);
        io::dataset data;
        data.name = "python";
        data.rows = x.rows;
        data.cols = x.cols;
        data.x.assign(x.a.data(), x.a.data() + x.rows * x.cols);
        data.y.assign(x.rows, 0);
        analysis::validate_options opt;
        opt.samples = samples;
        opt.csv_samples = component_samples;
        opt.precision = static_cast<mpfr_prec_t>(bits);
        opt.ref_inputs = analysis::parse_reference_inputs(reference_inputs);
        opt.threads = threads;
        opt.chunk = chunk;
        p.check(net.product_layers());
        py::gil_scoped_release nogil;
        return std::move(analysis::validate(net, data, {p}, opt).front());
      },
      R"doc(validate(vit, X, precision=None, samples=0, bits=200, reference_inputs='stored',
         component_samples=20, threads=0, chunk=64)

validate on a vision transformer (docs/attention.md, "Reference pass and validation"),
in chunks of `chunk` images (bounded memory; the results do not depend on it; the
tightness quantiles come from histograms within 2^-11 relative of the exact ones).
Returns a ValidationResult as for a Network.)doc",
      py::arg("net"), py::arg("X"), py::arg("precision") = py::none(), py::arg("samples") = 0, py::arg("bits") = 200,
      py::arg("reference_inputs") = "stored", py::arg("component_samples") = 20, py::arg("threads") = 0,
      py::arg("chunk") = 64);
}

}  // namespace mpacc::python
