// SPDX-License-Identifier: MIT
// Shared helpers of the Python bindings (docs/python.md): argument conversion
// (formats, modes, orders given as strings), NumPy arrays in and out.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/reference.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/format.hpp"
#include "mpacc/sim/layer.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::python {

namespace py = pybind11;

// A C-contiguous float64 array: the argument itself when it already is one
// (no copy), else a converted copy.
using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;

// A format argument: a Format or its name / custom description. A name that
// does not parse raises ValueError with sim::parse_format's message (the type
// caster below; pybind11's implicit conversions would turn it into a TypeError).
struct format_arg {
  sim::format f;
  operator const sim::format&() const noexcept { return f; }  // NOLINT: implicit on purpose
};
inline std::optional<sim::format> opt_fmt(const std::optional<format_arg>& a) {
  return a ? std::optional<sim::format>(a->f) : std::nullopt;
}
inline std::vector<sim::format> fmt_list(const std::vector<format_arg>& a) { return {a.begin(), a.end()}; }

// "nearest_even" or "nearest-even" (and the other modes); throws ValueError
// with the C++ message for an unknown mode.
sim::rounding parse_mode(std::string text);

// The accumulation model of dot / dense / the bounds from keyword arguments.
sim::accumulation make_accumulation(const sim::format& acc, const std::string& mode,
                                    const std::optional<sim::format>& product, const std::string& order, bool saturate,
                                    const std::optional<sim::format>& via, std::uint64_t seed,
                                    std::optional<bool> subnormals);

// A vector moved into a NumPy array (no copy): the array owns it.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(std::move(shape), heap->data(), owner);
}
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
  const auto n = static_cast<py::ssize_t>(v.size());
  return to_numpy(std::move(v), {n});
}

// A read-only NumPy view of memory owned by `base` (no copy).
template <class T>
py::array_t<T> view(const T* data, std::vector<py::ssize_t> shape, py::handle base) {
  py::array_t<T> a(std::move(shape), data, base);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// A 2-D C-contiguous float64 matrix (a 1-D array is one row); throws
// ValueError naming `what` otherwise.
struct matrix_arg {
  f64_array a;
  std::size_t rows = 0, cols = 0;
  bool was_1d = false;
  [[nodiscard]] sim::matrix_view view() const noexcept { return {a.data(), rows, cols}; }
};
matrix_arg as_matrix(const py::object& x, const char* what);

// The elements of a 1-D float64 array.
std::span<const double> as_span(const f64_array& a, const char* what);

// A precision configuration from a PrecisionConfig, a dict (JSON keys), a JSON
// string or a compact string; None gives the defaults.
nn::precision_config make_precision(const py::object& spec);

// An activation's name ('leaky-relu'), and one parsed from its name ('_' or '-').
std::string act_name(const sim::activation_fn& f);
sim::activation_fn parse_act(const std::string& text, double slope);

// The reference pass's layers as dicts of (batch x n) arrays 'v', 'v_lo', 'y',
// 'y_lo', 'v_bound', 'y_bound' (bind_nn.cpp).
py::list forward_list(nn::forward_result&& r);

void bind_sim(py::module_& m);
void bind_nn(py::module_& m);
void bind_analysis(py::module_& m);
void bind_cnn(py::module_& m);
void bind_vit(py::module_& m);

}  // namespace mpacc::python

namespace pybind11::detail {
template <>
struct type_caster<mpacc::python::format_arg> {
  PYBIND11_TYPE_CASTER(mpacc::python::format_arg, const_name("Format | str"));
  bool load(handle src, bool) {
    if (isinstance<mpacc::sim::format>(src)) {
      value.f = src.cast<mpacc::sim::format>();
      return true;
    }
    if (isinstance<str>(src)) {
      value.f = mpacc::sim::parse_format(src.cast<std::string>());  // throws: ValueError with its message
      return true;
    }
    return false;
  }
  static handle cast(const mpacc::python::format_arg& a, return_value_policy policy, handle parent) {
    return type_caster_base<mpacc::sim::format>::cast(a.f, policy, parent);
  }
};
}  // namespace pybind11::detail
