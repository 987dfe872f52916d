// SPDX-License-Identifier: MIT
// The extension module mpacc._core (the package mpacc re-exports it; docs/python.md).
#include <algorithm>
#include <stdexcept>

#include "common.hpp"
#include "mpacc/version.hpp"

namespace mpacc::python {

sim::rounding parse_mode(std::string text) {
  std::replace(text.begin(), text.end(), '_', '-');
  return sim::parse_rounding(text);
}

sim::accumulation make_accumulation(const sim::format& acc, const std::string& mode,
                                    const std::optional<sim::format>& product, const std::string& order, bool saturate,
                                    const std::optional<sim::format>& via, std::uint64_t seed,
                                    std::optional<bool> subnormals) {
  sim::accumulation a;
  a.acc = acc;
  a.mode = parse_mode(mode);
  a.product = product;
  a.ord = sim::parse_order(order);
  a.saturate = saturate;
  a.via = via;
  a.seed = seed;
  if (subnormals) {
    a.acc.subnormals = *subnormals;
    if (a.product) a.product->subnormals = *subnormals;
  }
  if (auto msg = sim::validate(a.acc); !msg.empty()) throw std::invalid_argument("acc: " + msg);
  if (a.product)
    if (auto msg = sim::validate(*a.product); !msg.empty()) throw std::invalid_argument("product: " + msg);
  if (a.via)
    if (auto msg = sim::validate(*a.via); !msg.empty()) throw std::invalid_argument("via: " + msg);
  return a;
}

matrix_arg as_matrix(const py::object& x, const char* what) {
  matrix_arg m;
  m.a = f64_array::ensure(x);
  if (!m.a) throw py::error_already_set();
  if (m.a.ndim() == 1) {
    m.rows = 1;
    m.cols = static_cast<std::size_t>(m.a.shape(0));
    m.was_1d = true;
  } else if (m.a.ndim() == 2) {
    m.rows = static_cast<std::size_t>(m.a.shape(0));
    m.cols = static_cast<std::size_t>(m.a.shape(1));
  } else {
    throw std::invalid_argument(std::string(what) + ": expected a 1-D or 2-D array, got " + std::to_string(m.a.ndim()) +
                                " dimensions");
  }
  return m;
}

std::span<const double> as_span(const f64_array& a, const char* what) {
  if (a.ndim() != 1)
    throw std::invalid_argument(std::string(what) + ": expected a 1-D array, got " + std::to_string(a.ndim()) +
                                " dimensions");
  return {a.data(), static_cast<std::size_t>(a.shape(0))};
}

}  // namespace mpacc::python

PYBIND11_MODULE(_core, m) {
  m.doc() =
      "mpacc: exact simulation of low-precision rounding and accumulation in neural-network inference, "
      "with componentwise error bounds and Algorithm 1 (docs/python.md).";
  m.attr("__version__") = MPACC_VERSION;
  mpacc::python::bind_sim(m);
  mpacc::python::bind_nn(m);
  mpacc::python::bind_analysis(m);
  mpacc::python::bind_cnn(m);
  mpacc::python::bind_vit(m);
}
