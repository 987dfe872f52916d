// SPDX-License-Identifier: MIT
// Validation, Algorithm 1 runs and indicators written in Python (docs/python.md).
#include <memory>
#include <stdexcept>

#include "common.hpp"
#include "mpacc/analysis/algorithm1.hpp"
#include "mpacc/analysis/cnn_algorithm1.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/data.hpp"

namespace mpacc::python {

namespace {

io::dataset make_dataset(const py::object& X, const py::object& labels, const char* what) {
  const auto x = as_matrix(X, what);
  io::dataset d;
  d.name = "python";
  d.rows = x.rows;
  d.cols = x.cols;
  d.x.assign(x.a.data(), x.a.data() + x.rows * x.cols);
  if (labels.is_none()) {
    d.y.assign(x.rows, 0);
  } else {
    auto y = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(labels);
    if (!y) throw py::error_already_set();
    if (y.ndim() != 1 || static_cast<std::size_t>(y.shape(0)) != x.rows)
      throw std::invalid_argument("labels: expected " + std::to_string(x.rows) + " labels (one per row of X)");
    for (py::ssize_t i = 0; i < y.shape(0); ++i) {
      const long long v = y.data()[i];
      if (v < 0 || v > 255) throw std::invalid_argument("labels: " + std::to_string(v) + " is not in 0..255");
      d.y.push_back(static_cast<std::uint8_t>(v));
    }
  }
  return d;
}

py::dict quantiles_dict(const analysis::quantiles& q) {
  py::dict d;
  d["n"] = q.n;
  d["q50"] = q.q50;
  d["q90"] = q.q90;
  d["q99"] = q.q99;
  d["max"] = q.max;
  return d;
}

py::dict summary_dict(const analysis::layer_summary& s) {
  py::dict d;
  d["layer"] = s.layer;
  d["components"] = s.components;
  d["uncovered"] = s.uncovered;
  py::dict causes;
  for (std::size_t c = 1; c < analysis::uncovered_causes; ++c)
    causes[py::str(std::string(analysis::to_string(static_cast<analysis::uncovered_cause>(c))))] =
        s.uncovered_by_cause[c];
  d["uncovered_by_cause"] = causes;
  d["violations_v"] = s.violations_v;
  d["violations_y"] = s.violations_y;
  d["local_checked"] = s.local_checked;
  d["local_violations"] = s.local_violations;
  d["local_vacuous"] = s.local_vacuous;
  d["prob_violations_v"] = s.prob_violations_v;
  d["prob_violations_y"] = s.prob_violations_y;
  d["prob_ratio_max"] = s.prob_ratio_max;
  d["err_over_bound_v"] = quantiles_dict(s.err_over_bound_v);
  d["err_over_bound_y"] = quantiles_dict(s.err_over_bound_y);
  d["bound_over_exact_v"] = quantiles_dict(s.bound_over_exact_v);
  d["bound_over_exact_y"] = quantiles_dict(s.bound_over_exact_y);
  d["kappa_dot_median"] = s.kappa_dot_median;
  d["kappa_dot_max"] = s.kappa_dot_max;
  d["spearman"] = s.spearman;
  py::list local;
  for (const auto& c : s.local) {
    py::dict l;
    l["lambda"] = c.lambda;
    l["stated_failure"] = c.stated_failure;
    l["checked"] = c.checked;
    l["violations"] = c.violations;
    l["frequency"] = c.frequency;
    local.append(l);
  }
  d["local"] = local;
  return d;
}

// The components of the first samples (validate_options::csv_samples), as arrays.
py::dict components_dict(const analysis::validation_result& r) {
  py::dict d;
  const std::size_t S = r.csv_rows.size();
  const std::size_t C = S ? r.csv_rows[0].size() : 0;
  const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(S), static_cast<py::ssize_t>(C)};
  auto field = [&](const char* name, auto member) {
    std::vector<double> v;
    v.reserve(S * C);
    for (const auto& row : r.csv_rows)
      for (const auto& c : row) v.push_back(static_cast<double>(c.*member));
    d[name] = to_numpy(std::move(v), shape);
  };
  using cr = analysis::component_result;
  field("v_ref", &cr::v_ref);
  field("v_sim", &cr::v_sim);
  field("y_ref", &cr::y_ref);
  field("y_sim", &cr::y_sim);
  field("err_v", &cr::err_v);
  field("err_y", &cr::err_y);
  field("kappa_dot", &cr::kappa_dot);
  field("kappa_act", &cr::kappa_act);
  field("bound_v", &cr::bound_v);
  field("bound_y", &cr::bound_y);
  field("prob_bound_v", &cr::prob_bound_v);
  field("prob_bound_y", &cr::prob_bound_y);
  field("err_local", &cr::err_local);
  field("bound_local", &cr::bound_local);
  field("flags", &cr::flags);
  field("cause", &cr::cause);
  py::list sizes;
  for (auto n : r.layer_sizes) sizes.append(n);
  d["layer_sizes"] = sizes;
  return d;
}

// A Python callable kept by the C++ indicator registry: released under the
// GIL, or leaked when the interpreter is already gone (the registry is a
// process-wide static destroyed after Python's finalization).
struct py_callable {
  PyObject* obj;
  explicit py_callable(const py::object& o) : obj(o.inc_ref().ptr()) {}
  py_callable(const py_callable&) = delete;
  py_callable& operator=(const py_callable&) = delete;
  ~py_callable() {
    if (Py_IsInitialized() == 0) return;
    try {
      py::gil_scoped_acquire gil;
      Py_DECREF(obj);
    } catch (...) {  // the GIL could not be taken: leak the reference rather than terminate
    }
  }
  [[nodiscard]] py::object get() const { return py::reinterpret_borrow<py::object>(obj); }
};

// What a Python indicator receives: the layer_view's arrays as read-only
// NumPy views (no copies), valid during the call only, and the score array to fill.
struct py_layer_view {
  const analysis::layer_view* lv = nullptr;
  std::vector<double>* score = nullptr;
  [[nodiscard]] const analysis::layer_view& get() const {
    if (!lv) throw std::runtime_error("LayerView: used after the indicator call returned");
    return *lv;
  }
};

py::object lv_array(const py::object& self, const double* data, std::size_t rows, std::size_t cols) {
  return view(data, {static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)}, self);
}

constexpr const char* register_doc = R"doc(register_indicator(name, compute, overhead=None)

Registers an Algorithm 1 indicator written in Python in the same process-wide
registry as the C++ ones (mpacc::analysis::register_indicator): MixedRunner.run(
indicator=name) and every other registry user then call it like a built-in one.

  compute(view): called once per layer and batch with a LayerView whose arrays are
                 read-only NumPy views of the runner's memory (no copies; valid only
                 during the call): view.x (batch x n_in), view.v_low (batch x n_out),
                 view.W (n_out x n_in), view.b, view.row_norms, view.abs_numerator()
                 (the low accumulation of |W||x| + |b|, computed on first use), and
                 view.score (batch x n_out, writable, zeros). Fill view.score in place
                 or return an array of shape (batch, n_out); components with
                 score > tau (or NaN) are recomputed in the high accumulator.
  overhead(view): the extra cost of computing the indicator, in accumulated terms
                 per sample and layer at the low format's cost (None: 0).

Exceptions raised in the callables propagate out of MixedRunner.run. Registering an
existing name replaces it; as for the C++ registry, register (or replace) indicators
only while no run is in progress in another thread.)doc";

}  // namespace

namespace {

// A run's selection from the arguments of MixedRunner.run and CnnMixedRunner.run;
// `c` holds the counts the selection points to.
analysis::selection make_selection(const std::string& selection, const std::string& indicator, double tau,
                                   const py::object& counts, std::vector<std::vector<std::size_t>>& c,
                                   std::uint64_t seed, bool keep_trace, bool ladder, bool overflow_aware) {
  using kind = analysis::selection::kind;
  analysis::selection sel;
  if (selection == "algorithm1" || selection == "threshold") {
    sel.type = kind::threshold;
  } else if (selection == "uniform-low" || selection == "uniform_low") {
    sel.type = kind::uniform_low;
  } else if (selection == "uniform-high" || selection == "uniform_high") {
    sel.type = kind::uniform_high;
  } else {
    std::string s = selection;
    std::replace(s.begin(), s.end(), '_', '-');
    sel.type = analysis::parse_baseline(s);
  }
  sel.indicator = indicator;
  sel.tau = tau;
  sel.seed = seed;
  sel.keep_trace = keep_trace;
  sel.ladder = ladder;
  sel.overflow_aware = overflow_aware;
  if (!counts.is_none()) {
    if (py::isinstance<analysis::mixed_result>(counts)) {
      c = counts.cast<const analysis::mixed_result&>().counts;
    } else {
      for (const auto& layer : counts) c.push_back(layer.cast<std::vector<std::size_t>>());
    }
    sel.counts = &c;
  }
  return sel;
}

}  // namespace

void bind_analysis(py::module_& m) {
  // ---- validation
  py::class_<analysis::validation_result>(
      m, "ValidationResult", "The result of validate(): per-layer summaries and the first samples' components.")
      .def_property_readonly("violations", &analysis::validation_result::violations,
                             "deterministic bound violations, propagated and per inner product (must be 0)")
      .def_readonly("config", &analysis::validation_result::config, "the precision in its compact form")
      .def_readonly("precision", &analysis::validation_result::precision)
      .def_property_readonly(
          "layers",
          [](const analysis::validation_result& r) {
            py::list l;
            for (std::size_t k = 0; k + 1 < r.layers.size(); ++k) l.append(summary_dict(r.layers[k]));
            return l;
          },
          "one summary dict per layer")
      .def_property_readonly(
          "total", [](const analysis::validation_result& r) { return summary_dict(r.total()); },
          "the summary over all layers")
      .def_property_readonly("components", &components_dict,
                             "per-component arrays (samples x components over all layers) of the first samples")
      .def(
          "write_report",
          [](const analysis::validation_result& r, const std::string& dir, bool plots) {
            py::gil_scoped_release nogil;
            analysis::write_report(r, dir, "{}", plots);
          },
          "write_report(dir, plots=False): components.csv, summary.json (and the plots) as `mpacc validate`.",
          py::arg("dir"), py::arg("plots") = false)
      .def("__repr__", [](const analysis::validation_result& r) {
        return "ValidationResult(config='" + r.config + "', violations=" + std::to_string(r.violations()) +
               ", uncovered=" + std::to_string(r.total().uncovered) + ")";
      });

  m.def(
      "validate",
      [](const nn::mlp& net, const py::object& X, const py::object& precision, std::size_t samples, double lam,
         long bits, const std::string& reference_inputs, std::size_t component_samples, int threads) {
        const auto p = make_precision(precision);
        auto data = make_dataset(X, py::none(), "X");
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
      R"doc(validate(net, X, precision=None, samples=0, lam=5.0, bits=200, reference_inputs='stored', component_samples=20, threads=0)

The componentwise error analysis of `mpacc validate` on arrays: the simulated pass of
`net` with `precision` (PrecisionConfig, dict, JSON or compact string) on the rows of
X (the first `samples`, 0 = all) is compared with the MPFR reference at `bits` bits;
every component is checked against the deterministic bound propagated through the
network and per inner product, and the probabilistic bound with lambda = lam.
reference_inputs: 'stored' (the inputs as stored in precision.inputs) or 'exact'.
Returns a ValidationResult (violations, layers, total, components of the first
component_samples rows).)doc",
      py::arg("net"), py::arg("X"), py::arg("precision") = py::none(), py::arg("samples") = 0, py::arg("lam") = 5.0,
      py::arg("bits") = 200, py::arg("reference_inputs") = "stored", py::arg("component_samples") = 20,
      py::arg("threads") = 0);

  // ---- Algorithm 1
  py::class_<analysis::mixed_result>(m, "MixedResult", "The metrics of one MixedRunner.run().")
      .def_readonly("samples", &analysis::mixed_result::samples)
      .def_readonly("correct", &analysis::mixed_result::correct)
      .def_readonly("disagreements", &analysis::mixed_result::disagreements,
                    "samples whose argmax differs from the reference pass's")
      .def_readonly("accuracy", &analysis::mixed_result::accuracy)
      .def_readonly("kl_mean", &analysis::mixed_result::kl_mean)
      .def_readonly("kl_q99", &analysis::mixed_result::kl_q99)
      .def_readonly("mean_relative_error", &analysis::mixed_result::mean_relative_error)
      .def_readonly("fraction", &analysis::mixed_result::fraction, "recomputed fraction of all components")
      .def_readonly("fraction_per_layer", &analysis::mixed_result::fraction_per_layer)
      .def_readonly("level_fraction", &analysis::mixed_result::level_fraction)
      .def_readonly("overflow_recomputed", &analysis::mixed_result::overflow_recomputed)
      .def_readonly("weighted_cost", &analysis::mixed_result::weighted_cost)
      .def_readonly("tile_cost", &analysis::mixed_result::tile_cost)
      .def_property_readonly(
          "counts",
          [](const analysis::mixed_result& r) {
            py::list l;
            for (const auto& c : r.counts) {
              std::vector<std::uint64_t> v(c.begin(), c.end());
              l.append(to_numpy(std::move(v)));
            }
            return l;
          },
          "recomputed components per [layer][sample]")
      .def_property_readonly(
          "logits",
          [](const py::object& self) {
            const auto& r = self.cast<const analysis::mixed_result&>();
            const std::size_t n = r.samples ? r.logits.size() / r.samples : 0;
            return view(r.logits.data(), {static_cast<py::ssize_t>(r.samples), static_cast<py::ssize_t>(n)}, self);
          },
          "the mixed pass's logits (samples x outputs)")
      .def_property_readonly(
          "trace",
          [](const analysis::mixed_result& r) {
            py::list l;
            for (const auto& t : r.trace) {
              py::dict d;
              d["recomputed"] = to_numpy(std::vector<std::uint8_t>(t.recomputed));
              d["level"] = to_numpy(std::vector<std::uint8_t>(t.level));
              d["v_low"] = to_numpy(std::vector<double>(t.v_low));
              d["v_high"] = to_numpy(std::vector<double>(t.v_high));
              d["score"] = to_numpy(std::vector<double>(t.score));
              l.append(d);
            }
            return l;
          },
          "with keep_trace=True: per layer, flat arrays (batch * n_out) 'recomputed', 'level', 'v_low', 'v_high', "
          "'score'")
      .def("__repr__", [](const analysis::mixed_result& r) {
        return "MixedResult(samples=" + std::to_string(r.samples) + ", accuracy=" + std::to_string(r.accuracy) +
               ", fraction=" + std::to_string(r.fraction) + ", disagreements=" + std::to_string(r.disagreements) + ")";
      });

  py::class_<analysis::mixed_runner>(m, "MixedRunner", R"doc(Algorithm 1 and its baselines on one network and data set
(mpacc::analysis::mixed_runner).

MixedRunner(net, X, labels, precision=None, high='binary16', ladder=(), samples=0,
reference_inputs='stored', threads=0): `precision` is the low pass in full
(PrecisionConfig, dict, JSON or compact string; None: e4m3-ieee accumulators and
storage, as `mpacc sweep`), `high` the accumulator the selected components are
recomputed in, `ladder` intermediate accumulators (cheapest first), `samples` the
first rows of X used (0: all). The network is stored as `precision` says.)doc")
      .def(py::init([](const nn::mlp& net, const py::object& X, const py::object& labels, const py::object& precision,
                       const format_arg& high, const std::vector<format_arg>& ladder, std::size_t samples,
                       const std::string& reference_inputs, int threads) {
             analysis::mixed_config cfg;
             if (!precision.is_none()) cfg.precision = make_precision(precision);
             cfg.high = high;
             cfg.ladder = fmt_list(ladder);
             cfg.ref_inputs = analysis::parse_reference_inputs(reference_inputs);
             auto data = make_dataset(X, labels, "X");
             if (samples == 0 || samples > data.rows) samples = data.rows;
             py::gil_scoped_release nogil;
             return std::make_unique<analysis::mixed_runner>(net, data, samples, cfg, threads);
           }),
           py::arg("net"), py::arg("X"), py::arg("labels"), py::arg("precision") = py::none(),
           py::arg("high") = "binary16", py::arg("ladder") = std::vector<format_arg>{}, py::arg("samples") = 0,
           py::arg("reference_inputs") = "stored", py::arg("threads") = 0)
      .def(
          "run",
          [](const analysis::mixed_runner& runner, const std::string& selection, const std::string& indicator,
             double tau, const py::object& counts, std::uint64_t seed, bool keep_trace, bool ladder,
             bool overflow_aware, int threads) {
            std::vector<std::vector<std::size_t>> c;
            const auto sel =
                make_selection(selection, indicator, tau, counts, c, seed, keep_trace, ladder, overflow_aware);
            py::gil_scoped_release nogil;
            return runner.run(sel, threads);
          },
          R"doc(run(selection='algorithm1', indicator='kappa', tau=1.0, counts=None, seed=1234, keep_trace=False, ladder=False, overflow_aware=False, threads=-1)

One run: selection is 'algorithm1' (recompute where the registered indicator
`indicator`'s score > tau; any C++ or Python indicator of indicator_names()),
'uniform-low', 'uniform-high', or a matched baseline 'random', 'random-active',
'smallest', 'oracle-pre', 'oracle-local', 'oracle-gain', which recompute as many
components per (layer, sample) as `counts` (a MixedResult of an algorithm1 run, or
per-layer lists of per-sample counts) says; seed: the random baselines' seed.
keep_trace: fill MixedResult.trace. ladder, overflow_aware: docs/extensions.md.
threads: -1 = the runner's. Returns a MixedResult.)doc",
          py::arg("selection") = "algorithm1", py::arg("indicator") = "kappa", py::arg("tau") = 1.0,
          py::arg("counts") = py::none(), py::arg("seed") = 1234, py::arg("keep_trace") = false,
          py::arg("ladder") = false, py::arg("overflow_aware") = false, py::arg("threads") = -1)
      .def_property_readonly("samples", &analysis::mixed_runner::samples)
      .def("reference_accuracy", &analysis::mixed_runner::reference_accuracy,
           "test accuracy of the binary64 (Dot2) reference pass the runs are compared with")
      .def_property_readonly("network", &analysis::mixed_runner::network, "the network as stored");

  py::class_<analysis::cnn_mixed_runner>(m, "CnnMixedRunner",
                                         R"doc(Algorithm 1 and its baselines on a CNN and a data set
(mpacc::analysis::cnn_mixed_runner, docs/cnn.md "Algorithm 1 on convolutional networks").

CnnMixedRunner(net, X, labels, precision=None, high='binary16', samples=0, threads=0):
net a CNN; X a (batch, c, h, w) array of the network's input shape or a
(batch, c*h*w) matrix; the other arguments as MixedRunner's. A component is an
(output channel, pixel) pair of a convolution or an output of a dense layer;
indicators see a convolution as the dense layer of its im2col lowering. Not
supported for CNNs: ladders, static maps, per-component accumulator maps.)doc")
      .def(py::init([](const nn::cnn& net, const py::object& X, const py::object& labels, const py::object& precision,
                       const format_arg& high, std::size_t samples, int threads) {
             analysis::mixed_config cfg;
             if (!precision.is_none()) cfg.precision = make_precision(precision);
             cfg.high = high;
             auto x = f64_array::ensure(X);
             if (!x) throw py::error_already_set();
             if (x.ndim() == 4) {
               if (static_cast<std::size_t>(x.shape(1)) != net.c || static_cast<std::size_t>(x.shape(2)) != net.h ||
                   static_cast<std::size_t>(x.shape(3)) != net.w)
                 throw std::invalid_argument("X: samples of shape " + std::to_string(x.shape(1)) + "x" +
                                             std::to_string(x.shape(2)) + "x" + std::to_string(x.shape(3)) +
                                             " for a network on " + std::to_string(net.c) + "x" +
                                             std::to_string(net.h) + "x" + std::to_string(net.w) + " inputs");
               x = x.reshape({x.shape(0), static_cast<py::ssize_t>(net.inputs())});
             }
             auto data = make_dataset(x, labels, "X");
             if (samples == 0 || samples > data.rows) samples = data.rows;
             py::gil_scoped_release nogil;
             return std::make_unique<analysis::cnn_mixed_runner>(net, data, samples, cfg, threads);
           }),
           py::arg("net"), py::arg("X"), py::arg("labels"), py::arg("precision") = py::none(),
           py::arg("high") = "binary16", py::arg("samples") = 0, py::arg("threads") = 0)
      .def(
          "run",
          [](const analysis::cnn_mixed_runner& runner, const std::string& selection, const std::string& indicator,
             double tau, const py::object& counts, std::uint64_t seed, bool keep_trace, bool overflow_aware,
             int threads) {
            std::vector<std::vector<std::size_t>> c;
            const auto sel =
                make_selection(selection, indicator, tau, counts, c, seed, keep_trace, false, overflow_aware);
            py::gil_scoped_release nogil;
            return runner.run(sel, threads);
          },
          R"doc(run(selection='algorithm1', indicator='kappa', tau=1.0, counts=None, seed=1234, keep_trace=False, overflow_aware=False, threads=-1)

One run, as MixedRunner.run (no ladder). MixedResult's per-layer lists (counts,
fraction_per_layer, trace) have one entry per network layer, pooling and flatten
included (nothing recomputed there); a convolution's components are in NCHW order
(channel, then pixel).)doc",
          py::arg("selection") = "algorithm1", py::arg("indicator") = "kappa", py::arg("tau") = 1.0,
          py::arg("counts") = py::none(), py::arg("seed") = 1234, py::arg("keep_trace") = false,
          py::arg("overflow_aware") = false, py::arg("threads") = -1)
      .def_property_readonly("samples", &analysis::cnn_mixed_runner::samples)
      .def("reference_accuracy", &analysis::cnn_mixed_runner::reference_accuracy,
           "test accuracy of the binary64 reference pass the runs are compared with")
      .def_property_readonly("network", &analysis::cnn_mixed_runner::network, "the network as stored");

  // ---- indicators
  py::class_<py_layer_view>(m, "LayerView",
                            "What an indicator sees for one layer and one batch (see register_indicator).")
      .def_property_readonly(
          "layer", [](const py_layer_view& v) { return v.get().layer; }, "0-based layer index")
      .def_property_readonly("layers", [](const py_layer_view& v) { return v.get().layers; })
      .def_property_readonly("batch", [](const py_layer_view& v) { return v.get().batch; })
      .def_property_readonly("n_in", [](const py_layer_view& v) { return v.get().n_in; })
      .def_property_readonly("n_out", [](const py_layer_view& v) { return v.get().n_out; })
      .def_property_readonly("last", [](const py_layer_view& v) { return v.get().last(); })
      .def_property_readonly(
          "x",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            return lv_array(self, lv.x, lv.batch, lv.n_in);
          },
          "the layer's (mixed) input, batch x n_in")
      .def_property_readonly(
          "v_low",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            return lv_array(self, lv.v_low, lv.batch, lv.n_out);
          },
          "the low-precision pre-activations, batch x n_out")
      .def_property_readonly(
          "W",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            return lv_array(self, lv.weights->W.data(), lv.n_out, lv.n_in);
          },
          "the stored weights, n_out x n_in")
      .def_property_readonly(
          "b",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            return view(lv.weights->b.data(), {static_cast<py::ssize_t>(lv.n_out)}, self);
          },
          "the stored biases")
      .def_property_readonly(
          "row_norms",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            return view(lv.row_norms->data(), {static_cast<py::ssize_t>(lv.row_norms->size())}, self);
          },
          "||w_i||_2 per row")
      .def(
          "abs_numerator",
          [](const py::object& self) {
            const auto& lv = self.cast<const py_layer_view&>().get();
            const auto& a = lv.abs_numerator();
            return lv_array(self, a.data(), lv.batch, lv.n_out);
          },
          "the low-precision accumulation of |W||x| + |b| (batch x n_out), computed on first use")
      .def_property_readonly(
          "score",
          [](const py::object& self) {
            const auto& v = self.cast<const py_layer_view&>();
            const auto& lv = v.get();
            if (!v.score) throw std::runtime_error("LayerView.score: only in compute(), not in overhead()");
            return py::array_t<double>({static_cast<py::ssize_t>(lv.batch), static_cast<py::ssize_t>(lv.n_out)},
                                       v.score->data(), self);
          },
          "the scores to fill (batch x n_out, writable)")
      .def_property_readonly(
          "act", [](const py_layer_view& v) { return std::string(sim::to_string(v.get().weights->act.kind)); },
          "the layer's activation")
      .def_property_readonly(
          "low", [](const py_layer_view& v) { return v.get().config->low(v.get().layer); },
          "the layer's low accumulator")
      .def_property_readonly("high", [](const py_layer_view& v) { return v.get().config->high; })
      .def_property_readonly(
          "rounding",
          [](const py_layer_view& v) { return std::string(sim::to_string(v.get().config->precision.rounding)); })
      .def_property_readonly(
          "u_low",
          [](const py_layer_view& v) {
            const auto& lv = v.get();
            return analysis::unit_roundoff(lv.config->low(lv.layer), lv.config->precision.rounding);
          },
          "unit roundoff of the low accumulator in the rounding mode");

  m.def(
      "register_indicator",
      [](const std::string& name, const py::object& compute, const py::object& overhead) {
        if (!PyCallable_Check(compute.ptr())) throw py::type_error("register_indicator: compute must be callable");
        if (!overhead.is_none() && !PyCallable_Check(overhead.ptr()))
          throw py::type_error("register_indicator: overhead must be callable or None");
        auto c = std::make_shared<py_callable>(compute);
        auto o = overhead.is_none() ? nullptr : std::make_shared<py_callable>(overhead);
        analysis::indicator ind;
        ind.name = name;
        ind.compute = [c, name](const analysis::layer_view& lv, std::vector<double>& score) {
          py::gil_scoped_acquire gil;
          auto holder = py::cast(py_layer_view{&lv, &score});
          struct reset {  // the views must not outlive the call
            py::object h;
            explicit reset(py::object o) : h(std::move(o)) {}
            reset(const reset&) = delete;
            reset& operator=(const reset&) = delete;
            ~reset() { h.cast<py_layer_view&>() = py_layer_view{}; }
          } guard{holder};
          py::object r = c->get()(holder);
          if (!r.is_none()) {
            auto a = f64_array::ensure(r);
            if (!a) throw py::error_already_set();
            if (static_cast<std::size_t>(a.size()) != score.size())
              throw std::invalid_argument("indicator '" + name + "': returned " + std::to_string(a.size()) +
                                          " scores for " + std::to_string(lv.batch) + " x " + std::to_string(lv.n_out) +
                                          " components");
            std::copy(a.data(), a.data() + a.size(), score.begin());
          }
        };
        ind.overhead = [o](const analysis::layer_view& lv) -> double {
          if (!o) return 0.0;
          py::gil_scoped_acquire gil;
          auto holder = py::cast(py_layer_view{&lv, nullptr});
          struct reset {
            py::object h;
            explicit reset(py::object o) : h(std::move(o)) {}
            reset(const reset&) = delete;
            reset& operator=(const reset&) = delete;
            ~reset() { h.cast<py_layer_view&>() = py_layer_view{}; }
          } guard{holder};
          return o->get()(holder).cast<double>();
        };
        analysis::register_indicator(ind);
      },
      register_doc, py::arg("name"), py::arg("compute"), py::arg("overhead") = py::none());
  m.def("indicator_names", &analysis::indicator_names, "The names of every registered indicator (C++ and Python).");
}

}  // namespace mpacc::python
