// SPDX-License-Identifier: MIT
// Formats, rounding, inner products, dense layers and the bounds of one inner
// product (docs/python.md).
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <pybind11/operators.h>

#include "common.hpp"
#include "mpacc/analysis/bounds.hpp"
#include "mpacc/nn/network.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/activation.hpp"
#include "mpacc/sim/random.hpp"

namespace mpacc::python {

namespace {

// What dot() returns: the simulated value with its flags, and the exact
// value, kappa_dot, the deterministic bound and the error (as `mpacc dot`).
struct dot_answer {
  double value = 0;
  unsigned flags = 0;
  bool exact_model = true;
  double exact = 0, kappa_dot = 0, bound = 0, error = 0;
};

dot_answer run_dot(std::span<const double> w, std::span<const double> x, double bias, const sim::accumulation& a,
                   std::uint64_t first_random) {
  dot_answer r;
  sim::dot_result d;
  bool fast = sim::fast_path_applies(a);
  if (fast) {
    d = sim::dot(w, x, bias, a, first_random);
    fast = d.exact_model;
  }
  if (!fast) d = ref::dot_mpfr(w, x, bias, a, first_random);
  r.value = d.value;
  r.flags = d.flags;
  r.exact_model = d.exact_model || !fast;
  bool finite = std::isfinite(bias);
  for (std::size_t j = 0; j < w.size(); ++j) finite = finite && std::isfinite(w[j]) && std::isfinite(x[j]);
  r.bound = analysis::deterministic_bound(w, x, bias, a);
  if (!finite) {  // no exact value to compare with
    r.exact = r.kappa_dot = r.error = std::nan("");
    return r;
  }
  const auto ex = ref::dot_exact(w, x, bias);
  r.exact = mpfr_get_d(ex.value.get(), MPFR_RNDN);
  if (mpfr_zero_p(ex.value.get())) {
    r.kappa_dot = mpfr_zero_p(ex.abs_sum.get()) ? 1.0 : HUGE_VAL;
  } else {
    ref::mpfr_float k(64);
    mpfr_div(k.get(), ex.abs_sum.get(), ex.value.get(), MPFR_RNDN);
    mpfr_abs(k.get(), k.get(), MPFR_RNDN);
    r.kappa_dot = mpfr_get_d(k.get(), MPFR_RNDN);
  }
  r.error = HUGE_VAL;
  if (std::isfinite(r.value)) {
    ref::mpfr_float e(64);
    mpfr_sub_d(e.get(), ex.value.get(), r.value, MPFR_RNDN);
    mpfr_abs(e.get(), e.get(), MPFR_RNDN);
    r.error = mpfr_get_d(e.get(), MPFR_RNDN);
  } else if (std::isnan(r.value)) {
    r.error = std::nan("");
  }
  return r;
}

void check_pair(std::span<const double> w, std::span<const double> x) {
  if (w.size() != x.size())
    throw std::invalid_argument("w and x differ in length (" + std::to_string(w.size()) + " and " +
                                std::to_string(x.size()) + ")");
}

std::string format_repr(const sim::format& f) { return "Format('" + sim::to_string(f) + "')"; }

constexpr const char* round_doc =
    R"doc(round(x, format, mode='nearest_even', saturate=False, subnormals=None, seed=0, flags=False, out=None, first_index=0, threads=0)

Rounds every value of ``x`` to ``format``: one correct rounding of each binary64
value (the same bits as the C++ ``mpacc::sim::round_array``).

Arguments:
  x:           array_like of numbers (converted to float64; a C-contiguous float64
               array is read in place, without a copy) or a Python number.
  format:      a Format or its name ('binary16', 'bfloat16', 'e4m3', 'e4m3-ieee', ...)
               or a custom 'p=P,emin=E,emax=E[,subnormals=off][,inf=off][,max=X]'.
  mode:        'nearest_even' (default), 'nearest_away', 'toward_zero', 'upward',
               'downward', 'odd' or 'stochastic' ('-' or '_' both accepted).
  saturate:    overflow and +-inf give +-max_finite (flag 'saturated') instead of
               inf (or NaN for formats without infinities).
  subnormals:  None keeps the format's own setting; True or False overrides it
               (False: results below 2^emin are flushed to 0 or 2^emin as the mode says).
  seed:        stochastic rounding: element i (flattened C order) uses the random
               word random_bits(seed, first_index + i), so results do not depend
               on the thread count.
  flags:       False: return the rounded values only; True: return (values, flags)
               with flags the OR of the sim flag bits (mpacc.flag.*); 'each': return
               (values, per-element flags as a uint32 array of the same shape).
  out:         an optional C-contiguous float64 array of the same size to write to
               (may be x itself for rounding in place); returned.
  first_index: offset of the stochastic stream (to round an array in pieces).
  threads:     0 = all available threads (small arrays run on one).

Returns a float64 array of x's shape (a float when x is a Python number), or a
tuple with the flags as described above. Raises ValueError for an unknown format
or mode, or an `out` of the wrong size.)doc";

constexpr const char* dot_doc =
    R"doc(dot(w, x, bias=0.0, acc='binary32', mode='nearest_even', product=None, order='recursive', saturate=False, via=None, seed=0, subnormals=None, first_random=0)

The simulated inner product v = sum_j w_j x_j + bias (bias added last), every
rounding step one correct rounding (the C++ ``mpacc::sim::dot``; formats outside its
exact fast path, e.g. binary64 accumulators, go through ``ref::dot_mpfr``: same model).

Arguments:
  w, x:         1-D arrays of equal length (the stored values; no storage rounding here).
  bias:         the bias, added last (one more rounding).
  acc:          accumulator format (Format or name).
  mode:         accumulator (and product) rounding mode, as in round().
  product:      None: exact products (FMA); else the format every product w_j x_j is rounded to.
  order:        'recursive', 'pairwise' or 'blocked:B'.
  saturate:     saturating accumulator.
  via:          None, or a format every accumulator rounding goes through first
                (nearest-even), as binary32 hardware converting partial sums.
  seed:         stochastic rounding: step k uses random_bits(seed, first_random + k).
  subnormals:   None keeps the formats' own; True/False overrides acc and product.
  first_random: offset of the stochastic stream.

Returns a DotResult: value, flags, exact (the exact sum rounded to binary64),
kappa_dot, bound (the deterministic bound of docs/error-bounds.md), error (|value - exact|,
computed exactly then rounded) and exact_model.)doc";

constexpr const char* dense_doc =
    R"doc(dense(X, W, b, acc='binary32', mode='nearest_even', product=None, order='recursive', saturate=False, via=None, seed=0, acc_map=None, precision=None, layer=0, flags=False, threads=0)

A simulated dense layer Y = X W^T + b: each output component is the inner
product sim::dot computes (the same bits), accumulated in its own format when
``acc_map`` is given (the C++ ``nn::simulate_layer`` over ``sim::prepared_dense``).

Arguments:
  X:          inputs, batch x n_in (a 1-D array is one sample), float64.
  W:          weights, n_out x n_in (row-major, W[i, j] = w_ij).
  b:          biases, n_out.
  acc, mode, product, order, saturate, via, seed: the accumulation model, as in dot().
              Output (s, i) uses the stochastic words from
              (s * n_out + i) * words_per_dot on.
  acc_map:    None, or a sequence of n_out formats: the accumulator of each component
              (Algorithm 1's per-component map; at most 256 distinct formats).
  precision:  a PrecisionConfig: when given, layer ``layer``'s spec from it
              (PrecisionConfig.layer_spec) replaces acc ... seed (acc_map still
              overrides its accumulators). Storage formats are not applied here: W, b and
              X are used as given.
  layer:      which layer of ``precision``.
  flags:      also return the per-output flags (uint32, batch x n_out).
  threads:    0 = all.

Returns Y (batch x n_out; 1-D when X was 1-D), or (Y, flags).)doc";

}  // namespace

void bind_sim(py::module_& m) {
  py::class_<sim::format>(m, "Format", R"doc(A binary floating-point format: p significand bits (implicit bit included),
normal exponents emin..emax, optional subnormals and infinities, largest finite value.
Format('e4m3') looks one up by name (mpacc.formats() lists them) or parses a custom
'p=P,emin=E,emax=E[,subnormals=off][,inf=off][,max=X]'; Format(p=..., emin=..., emax=...)
builds one. Wherever a format is expected, its name is accepted too.)doc")
      .def(py::init([](const std::string& name) { return sim::parse_format(name); }), py::arg("name"))
      .def(py::init([](int p, int emin, int emax, bool subnormals, bool has_inf, std::optional<double> max_finite) {
             sim::format f = sim::make_format(p, emin, emax, subnormals, has_inf);
             if (max_finite) f.max_finite = *max_finite;
             if (auto msg = sim::validate(f); !msg.empty()) throw std::invalid_argument(msg);
             return f;
           }),
           py::kw_only(), py::arg("p"), py::arg("emin"), py::arg("emax"), py::arg("subnormals") = true,
           py::arg("has_inf") = true, py::arg("max_finite") = py::none())
      .def_readonly("p", &sim::format::p, "significand bits, implicit bit included")
      .def_readonly("emin", &sim::format::emin, "exponent of the smallest normal number")
      .def_readonly("emax", &sim::format::emax, "exponent of the largest binade")
      .def_readonly("subnormals", &sim::format::subnormals, "gradual underflow below 2^emin")
      .def_readonly("has_inf", &sim::format::has_inf, "whether infinities exist")
      .def_readonly("max_finite", &sim::format::max_finite, "largest finite value")
      .def_property_readonly("unit_roundoff", &sim::format::unit_roundoff, "u = 2^-p")
      .def_property_readonly("min_normal", &sim::format::min_normal, "2^emin")
      .def_property_readonly("min_positive", &sim::format::min_positive, "smallest positive value")
      .def_property_readonly("bit_width", &sim::format::bit_width, "storage width of an IEEE-like encoding")
      .def_property_readonly(
          "name", [](const sim::format& f) { return sim::to_string(f); },
          "the name of a named format, else its custom description")
      .def(
          "__eq__", [](const sim::format& a, const sim::format& b) { return a == b; }, py::is_operator())
      .def("__hash__", [](const sim::format& f) { return py::hash(py::str(sim::to_string(f))); })
      .def("__repr__", &format_repr)
      .def("__str__", [](const sim::format& f) { return sim::to_string(f); })
      .def(py::pickle([](const sim::format& f) { return sim::to_string(f); },
                      [](const std::string& s) { return sim::parse_format(s); }));

  m.def(
      "formats",
      [] {
        py::dict d;
        for (const auto& nf : sim::named_formats()) d[py::str(std::string(nf.name))] = nf.fmt;
        return d;
      },
      "Every named format: a dict name -> Format, in the specification's table order.");
  m.def(
      "rounding_modes",
      [] {
        py::list l;
        for (auto r : sim::all_roundings) l.append(std::string(sim::to_string(r)));
        return l;
      },
      "The seven rounding modes' names.");

  auto flag = m.def_submodule("flag", "The sticky exception flag bits (OR-ed together).");
  flag.attr("inexact") = sim::flag::inexact;
  flag.attr("underflow") = sim::flag::underflow;
  flag.attr("overflow") = sim::flag::overflow;
  flag.attr("invalid") = sim::flag::invalid;
  flag.attr("saturated") = sim::flag::saturated;
  m.def("flags_to_string", &sim::flags_to_string, py::arg("flags"),
        "Names of the set flag bits, comma-separated ('inexact,underflow'), or 'none'.");
  m.def("random_bits", &sim::random_bits, py::arg("seed"), py::arg("index"),
        "The 64 random bits stochastic rounding uses for element `index` of the stream `seed`.");

  m.def(
      "round",
      [](const py::object& x, const format_arg& fmt, const std::string& mode, bool saturate,
         std::optional<bool> subnormals, std::uint64_t seed, const py::object& flags, const py::object& out,
         std::uint64_t first_index, int threads) -> py::object {
        sim::round_spec spec{fmt.f, parse_mode(mode), saturate, seed};
        if (subnormals) spec.fmt.subnormals = *subnormals;
        if (auto msg = sim::validate(spec.fmt); !msg.empty()) throw std::invalid_argument(msg);
        bool each = false, want = false;
        if (py::isinstance<py::str>(flags)) {
          if (flags.cast<std::string>() != "each")
            throw std::invalid_argument("flags: expected True, False or 'each', got '" + flags.cast<std::string>() +
                                        "'");
          each = want = true;
        } else {
          want = flags.cast<bool>();
        }
        const bool scalar = py::isinstance<py::float_>(x) || py::isinstance<py::int_>(x);
        auto in = f64_array::ensure(x);
        if (!in) throw py::error_already_set();
        f64_array res;
        if (out.is_none()) {
          std::vector<py::ssize_t> shape(in.shape(), in.shape() + in.ndim());
          res = f64_array(shape);
        } else {
          if (!py::isinstance<f64_array>(out) || !(py::array(out).flags() & py::array::c_style) ||
              !py::array(out).writeable())
            throw std::invalid_argument("out: expected a writable C-contiguous float64 array");
          res = out.cast<f64_array>();
          if (res.size() != in.size())
            throw std::invalid_argument("out: " + std::to_string(res.size()) + " elements for " +
                                        std::to_string(in.size()) + " inputs");
        }
        const auto n = static_cast<std::size_t>(in.size());
        std::span<const double> src(in.data(), n);
        std::span<double> dst(res.mutable_data(), n);
        unsigned all = 0;
        py::array_t<std::uint32_t> per;
        if (each) {
          std::vector<py::ssize_t> shape(in.shape(), in.shape() + in.ndim());
          per = py::array_t<std::uint32_t>(shape);
          std::uint32_t* pf = per.mutable_data();
          py::gil_scoped_release nogil;
          const bool sr = spec.mode == sim::rounding::stochastic;
          for (std::size_t i = 0; i < n; ++i) {
            unsigned f = 0;
            dst[i] = sim::round(src[i], spec.fmt, spec.mode, spec.saturate, f,
                                sr ? sim::random_bits(spec.seed, first_index + i) : 0);
            pf[i] = f;
            all |= f;
          }
        } else {
          py::gil_scoped_release nogil;
          all = sim::round_array(src, dst, spec, first_index, threads);
        }
        py::object value = res;
        if (scalar) value = py::float_(res.data()[0]);
        if (!want) return value;
        if (each) return py::make_tuple(value, scalar ? py::object(py::int_(per.data()[0])) : py::object(per));
        return py::make_tuple(value, all);
      },
      round_doc, py::arg("x"), py::arg("format"), py::arg("mode") = "nearest_even", py::arg("saturate") = false,
      py::arg("subnormals") = py::none(), py::arg("seed") = 0, py::arg("flags") = false, py::arg("out") = py::none(),
      py::arg("first_index") = 0, py::arg("threads") = 0);

  py::class_<dot_answer>(m, "DotResult", "The result of dot(): simulated value, flags, exact value and bounds.")
      .def_readonly("value", &dot_answer::value, "the simulated inner product")
      .def_readonly("flags", &dot_answer::flags, "OR of the flags of its roundings (mpacc.flag.*)")
      .def_readonly("exact_model", &dot_answer::exact_model, "false if a product left binary64's exact range")
      .def_readonly("exact", &dot_answer::exact, "the exact value, rounded to binary64 (nearest)")
      .def_readonly("kappa_dot", &dot_answer::kappa_dot, "(|w|^T|x| + |b|) / |w^T x + b|, exact ratio rounded")
      .def_readonly("bound", &dot_answer::bound, "the deterministic bound on |value - exact|")
      .def_readonly("error", &dot_answer::error, "|value - exact|")
      .def("__repr__", [](const dot_answer& r) {
        return "DotResult(value=" + py::repr(py::float_(r.value)).cast<std::string>() +
               ", flags=" + sim::flags_to_string(r.flags) +
               ", exact=" + py::repr(py::float_(r.exact)).cast<std::string>() +
               ", bound=" + py::repr(py::float_(r.bound)).cast<std::string>() + ")";
      });

  m.def(
      "dot",
      [](const f64_array& w, const f64_array& x, double bias, const format_arg& acc, const std::string& mode,
         const std::optional<format_arg>& product, const std::string& order, bool saturate,
         const std::optional<format_arg>& via, std::uint64_t seed, std::optional<bool> subnormals,
         std::uint64_t first_random) {
        const auto ws = as_span(w, "w"), xs = as_span(x, "x");
        check_pair(ws, xs);
        const auto a = make_accumulation(acc, mode, opt_fmt(product), order, saturate, opt_fmt(via), seed, subnormals);
        py::gil_scoped_release nogil;
        return run_dot(ws, xs, bias, a, first_random);
      },
      dot_doc, py::arg("w"), py::arg("x"), py::arg("bias") = 0.0, py::arg("acc") = "binary32",
      py::arg("mode") = "nearest_even", py::arg("product") = py::none(), py::arg("order") = "recursive",
      py::arg("saturate") = false, py::arg("via") = py::none(), py::arg("seed") = 0, py::arg("subnormals") = py::none(),
      py::arg("first_random") = 0);

  m.def(
      "dense",
      [](const py::object& X, const py::object& W, const py::object& b, const format_arg& acc, const std::string& mode,
         const std::optional<format_arg>& product, const std::string& order, bool saturate,
         const std::optional<format_arg>& via, std::uint64_t seed, const py::object& acc_map,
         const py::object& precision, std::size_t layer, bool flags, int threads) -> py::object {
        const auto x = as_matrix(X, "X"), w = as_matrix(W, "W");
        auto bias = f64_array::ensure(b);
        if (!bias) throw py::error_already_set();
        const auto bs = as_span(bias, "b");
        if (w.was_1d) throw std::invalid_argument("W: expected a 2-D array n_out x n_in");
        if (x.cols != w.cols)
          throw std::invalid_argument("X has " + std::to_string(x.cols) + " columns, W " + std::to_string(w.cols));
        if (bs.size() != w.rows)
          throw std::invalid_argument("b has " + std::to_string(bs.size()) + " values for " + std::to_string(w.rows) +
                                      " rows of W");
        sim::layer_spec spec;
        if (!precision.is_none()) {
          const auto& pc = precision.cast<const nn::precision_config&>();
          if (pc.acc.size() != 1 && layer >= pc.acc.size())
            throw std::invalid_argument("precision: layer " + std::to_string(layer) + " of " +
                                        std::to_string(pc.acc.size()) + " per-layer accumulators");
          spec = pc.layer_spec(layer);
        } else {
          spec.base = make_accumulation(acc, mode, opt_fmt(product), order, saturate, opt_fmt(via), seed, std::nullopt);
        }
        if (!acc_map.is_none()) {
          const auto fl = fmt_list(acc_map.cast<std::vector<format_arg>>());
          if (fl.size() != w.rows)
            throw std::invalid_argument("acc_map: " + std::to_string(fl.size()) + " formats for " +
                                        std::to_string(w.rows) + " components");
          sim::precision_map pm;
          for (const auto& f : fl) {
            auto it = std::find(pm.formats.begin(), pm.formats.end(), f);
            if (it == pm.formats.end()) {
              if (pm.formats.size() == 256) throw std::invalid_argument("acc_map: more than 256 distinct formats");
              pm.formats.push_back(f);
              it = pm.formats.end() - 1;
            }
            pm.index.push_back(static_cast<std::uint8_t>(it - pm.formats.begin()));
          }
          spec.acc = std::move(pm);
        }
        nn::dense_layer l;
        l.n_in = w.cols;
        l.n_out = w.rows;
        l.W.assign(w.a.data(), w.a.data() + w.rows * w.cols);
        l.b.assign(bs.begin(), bs.end());
        std::vector<double> Y;
        std::vector<unsigned> fl;
        {
          py::gil_scoped_release nogil;
          nn::simulate_layer(l, x.view(), spec, Y, fl, threads);
        }
        std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(w.rows)};
        if (x.was_1d) shape = {static_cast<py::ssize_t>(w.rows)};
        py::object y = to_numpy(std::move(Y), shape);
        if (!flags) return y;
        std::vector<std::uint32_t> f32(fl.begin(), fl.end());
        return py::make_tuple(y, to_numpy(std::move(f32), shape));
      },
      dense_doc, py::arg("X"), py::arg("W"), py::arg("b"), py::arg("acc") = "binary32",
      py::arg("mode") = "nearest_even", py::arg("product") = py::none(), py::arg("order") = "recursive",
      py::arg("saturate") = false, py::arg("via") = py::none(), py::arg("seed") = 0, py::arg("acc_map") = py::none(),
      py::arg("precision") = py::none(), py::arg("layer") = 0, py::arg("flags") = false, py::arg("threads") = 0);

  m.def(
      "words_per_dot",
      [](std::size_t n, const format_arg& acc, const std::string& mode, const std::optional<format_arg>& product,
         const std::string& order) {
        return sim::words_per_dot(
            n, make_accumulation(acc, mode, opt_fmt(product), order, false, std::nullopt, 0, std::nullopt));
      },
      "Random words one inner product of n terms consumes (its rounding steps).", py::arg("n"),
      py::arg("acc") = "binary32", py::arg("mode") = "nearest_even", py::arg("product") = py::none(),
      py::arg("order") = "recursive");

  // ---- condition numbers and bounds of one inner product (mpacc::bounds)
  m.def(
      "kappa_dot",
      [](const f64_array& w, const f64_array& x, double bias, std::optional<double> value) {
        const auto ws = as_span(w, "w"), xs = as_span(x, "x");
        check_pair(ws, xs);
        if (value) return analysis::kappa_dot(ws, xs, bias, *value);
        py::gil_scoped_release nogil;
        const auto ex = ref::dot_exact(ws, xs, bias);
        return analysis::kappa_dot(ws, xs, bias, mpfr_get_d(ex.value.get(), MPFR_RNDN));
      },
      R"doc(kappa_dot(w, x, bias=0.0, value=None)

The condition number (|w|^T|x| + |bias|) / |w^T x + bias| of an inner product
(mpacc::analysis::kappa_dot). value: w^T x + bias as known (e.g. from a reference
pass); None computes it exactly (MPFR) and rounds it to binary64. +inf for an exact
zero with a non-zero numerator, 1 for 0/0.)doc",
      py::arg("w"), py::arg("x"), py::arg("bias") = 0.0, py::arg("value") = py::none());
  m.def(
      "kappa_act",
      [](const std::string& act, const f64_array& v, double slope) {
        sim::activation_fn f{sim::parse_activation(act), slope};
        std::vector<double> r(static_cast<std::size_t>(v.size()));
        for (std::size_t i = 0; i < r.size(); ++i) r[i] = sim::kappa_act(f, v.data()[i]);
        std::vector<py::ssize_t> shape(v.shape(), v.shape() + v.ndim());
        return to_numpy(std::move(r), shape);
      },
      R"doc(kappa_act(act, v, slope=0.01)

kappa_act(v) = |v phi'(v) / phi(v)| elementwise for the activation `act` ('identity',
'relu', 'leaky-relu', 'tanh', 'sigmoid', 'gelu', 'silu'; slope: leaky ReLU's).)doc",
      py::arg("act"), py::arg("v"), py::arg("slope") = 0.01);
  m.def(
      "activation",
      [](const std::string& act, const f64_array& v, double slope) {
        sim::activation_fn f{sim::parse_activation(act), slope};
        std::vector<double> r(static_cast<std::size_t>(v.size()));
        for (std::size_t i = 0; i < r.size(); ++i) r[i] = sim::apply(f, v.data()[i]);
        std::vector<py::ssize_t> shape(v.shape(), v.shape() + v.ndim());
        return to_numpy(std::move(r), shape);
      },
      "activation(act, v, slope=0.01): phi(v) elementwise in binary64 (sim::apply).", py::arg("act"), py::arg("v"),
      py::arg("slope") = 0.01);
  m.def(
      "deterministic_bound",
      [](const f64_array& w, const f64_array& x, double bias, const format_arg& acc, const std::string& mode,
         const std::optional<format_arg>& product, const std::string& order, const std::optional<format_arg>& via) {
        const auto ws = as_span(w, "w"), xs = as_span(x, "x");
        check_pair(ws, xs);
        return analysis::deterministic_bound(
            ws, xs, bias, make_accumulation(acc, mode, opt_fmt(product), order, false, opt_fmt(via), 0, std::nullopt));
      },
      R"doc(deterministic_bound(w, x, bias=0.0, acc='binary32', mode='nearest_even', product=None, order='recursive', via=None)

The deterministic bound on |simulated - exact| of the inner product dot() computes
with the same model (docs/error-bounds.md; not valid after an overflow).)doc",
      py::arg("w"), py::arg("x"), py::arg("bias") = 0.0, py::arg("acc") = "binary32", py::arg("mode") = "nearest_even",
      py::arg("product") = py::none(), py::arg("order") = "recursive", py::arg("via") = py::none());
  m.def(
      "probabilistic_bound",
      [](const f64_array& w, const f64_array& x, double bias, double lambda, const format_arg& acc,
         const std::string& mode, const std::optional<format_arg>& product, const std::string& order,
         const std::optional<format_arg>& via) {
        const auto ws = as_span(w, "w"), xs = as_span(x, "x");
        check_pair(ws, xs);
        return analysis::accumulation_bound(
            ws, xs, bias, make_accumulation(acc, mode, opt_fmt(product), order, false, opt_fmt(via), 0, std::nullopt),
            analysis::gamma_probabilistic, lambda);
      },
      R"doc(probabilistic_bound(w, x, bias=0.0, lam=5.0, acc='binary32', mode='nearest_even', product=None, order='recursive', via=None)

The Higham-Mary probabilistic bound (gamma-tilde with lambda = lam) of the same
inner product; it holds with probability probabilistic_confidence(roundings, u, lam).)doc",
      py::arg("w"), py::arg("x"), py::arg("bias") = 0.0, py::arg("lam") = 5.0, py::arg("acc") = "binary32",
      py::arg("mode") = "nearest_even", py::arg("product") = py::none(), py::arg("order") = "recursive",
      py::arg("via") = py::none());
  m.def(
      "unit_roundoff",
      [](const format_arg& f, const std::string& mode) { return analysis::unit_roundoff(f, parse_mode(mode)); },
      "unit_roundoff(format, mode='nearest_even'): 2^-p for nearest modes, 2^(1-p) otherwise.", py::arg("format"),
      py::arg("mode") = "nearest_even");
  m.def("gamma", &analysis::gamma_deterministic, "gamma(k, u, param=0): (1 + u)^k - 1 rounded up.", py::arg("k"),
        py::arg("u"), py::arg("param") = 0.0);
  m.def("gamma_probabilistic", &analysis::gamma_probabilistic,
        "gamma_probabilistic(k, u, lam): exp(lam sqrt(k) u + k u^2 / (1 - u)) - 1.", py::arg("k"), py::arg("u"),
        py::arg("lam"));
  m.def("probabilistic_confidence", &analysis::probabilistic_confidence,
        "probabilistic_confidence(roundings, u, lam): 1 - 2 roundings exp(-lam^2 (1 - u)^2 / 2), clamped at 0.",
        py::arg("roundings"), py::arg("u"), py::arg("lam"));
  m.def(
      "rounding_counts",
      [](std::size_t n, const std::string& order) { return sim::rounding_counts(n, sim::parse_order(order)); },
      "rounding_counts(n, order='recursive'): accumulator roundings each term undergoes (bias rounding included).",
      py::arg("n"), py::arg("order") = "recursive");
}

}  // namespace mpacc::python
