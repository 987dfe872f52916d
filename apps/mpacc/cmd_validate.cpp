// SPDX-License-Identifier: MIT
// mpacc validate: the componentwise error analysis checked on a network and
// data set (docs/semantics.md §6), for one or several accumulator configurations.
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <cmath>

#include <mpfr.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/io/model_io.hpp"

namespace mpacc::app {

namespace {

struct validate_cli {
  std::string model, dataset = "mnist", act = "relu", data, out = "results/validate";
  std::string acc = "e4m3-ieee", order = "blocked:8", product = "exact", rounding = "nearest-even";
  std::string saturate = "off", input_format = "binary32", act_format = "binary32", storage = "none";
  std::string precision, precision_file, npz_arch;
  std::vector<CLI::Option*> precision_options;  // the single-choice options --precision replaces
  std::size_t samples = 1000, csv_samples = 20, chunk = 64;
  double lambda = 5;
  std::string lambdas = "1,2,3,4,5", ref_inputs = "stored";
  long reference_bits = 200;
  bool no_plots = false, samples_given = false;
  int threads = 0;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(item);
  return v;
}

std::string safe(const std::string& s) {
  std::string r;
  for (char c : s) r += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  return r;
}

std::string g3(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// One configuration's human summary: violations, uncovered components with
// their causes, tightness quantiles, and the per-inner-product probabilistic check.
void print_summary(const std::string& name, const analysis::validation_result& r) {
  const auto& t = r.total();
  std::printf("\n%s  (%s)\n", name.c_str(), r.config.c_str());
  std::printf("  deterministic violations: %zu propagated (v %zu, y %zu), %zu per inner product (of %zu checked)%s\n",
              t.violations_v + t.violations_y, t.violations_v, t.violations_y, t.local_violations, t.local_checked,
              r.violations() ? "  <-- a bug: the bound must hold" : "");
  std::string causes;
  for (std::size_t c = 1; c < analysis::uncovered_causes; ++c)
    if (t.uncovered_by_cause[c])
      causes += (causes.empty() ? "" : ", ") + std::to_string(t.uncovered_by_cause[c]) + " " +
                std::string(analysis::to_string(static_cast<analysis::uncovered_cause>(c)));
  std::printf("  uncovered (no bound: overflow, saturation, NaN): %zu of %zu%s%s\n", t.uncovered, t.components,
              causes.empty() ? "" : ": ", causes.c_str());
  if (r.inputs_overflow) std::printf("  inputs that overflowed when stored: %zu\n", r.inputs_overflow);
  std::printf("  %-6s %-34s %-34s %s\n", "layer", "error/bound of v: q50 q90 q99 max",
              "error/bound of y: q50 q90 q99 max", "act.-dominated y bounds");
  for (const auto& l : r.layers) {
    auto q = [](const analysis::quantiles& x) {
      return g3(x.q50) + " " + g3(x.q90) + " " + g3(x.q99) + " " + g3(x.max);
    };
    const double cov = static_cast<double>(l.components - l.uncovered);
    std::printf("  %-6s %-34s %-34s %.1f %%\n", l.layer ? std::to_string(l.layer).c_str() : "all",
                q(l.err_over_bound_v).c_str(), q(l.err_over_bound_y).c_str(),
                cov > 0 ? 100.0 * static_cast<double>(l.act_dominated) / cov : 0.0);
  }
  std::printf(
      "  per inner product, probabilistic bound (Higham-Mary), l = lambda: measured violation frequency\n"
      "  [95 %% CI] vs stated failure probability (share of vacuous bounds, >= |w|^T|x| + |b|)\n");
  for (const auto& l : r.layers) {
    if (!l.layer) continue;
    std::printf("    layer %zu:", l.layer);
    for (const auto& c : l.local) {
      std::printf("  l=%g %s [%s, %s] vs %s", c.lambda, g3(c.frequency).c_str(), g3(c.ci_low).c_str(),
                  g3(c.ci_high).c_str(), g3(c.stated_failure).c_str());
      if (c.vacuous && c.checked)
        std::printf(" (vacuous %.0f %%)", 100.0 * static_cast<double>(c.vacuous) / static_cast<double>(c.checked));
    }
    std::printf("\n");
  }
}

// the layers of a precision configuration's per-layer lists
template <class Net>
std::size_t layer_count(const Net& net) {
  return net.layers.size();
}
std::size_t layer_count(const nn::vit& net) { return net.product_layers(); }

// An MLP, a convolutional network or a vision transformer (analysis::compute_reference and
// validate have the three overloads).
template <class Net>
int validate_network(const Net& net, const validate_cli& o) {
  analysis::validate_options opt;
  opt.samples = o.samples;
  opt.csv_samples = o.csv_samples;
  if (!std::isfinite(o.lambda) || o.lambda <= 0) throw usage_error("--lambda: must be a positive number");
  opt.lambda = o.lambda;
  opt.lambdas.clear();
  for (const auto& t : split_list(o.lambdas)) {
    const double v = option_value("--lambdas", [&] {
      std::size_t pos = 0;
      double d = 0;
      try {
        d = std::stod(t, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != t.size() || !std::isfinite(d) || d <= 0)
        throw std::invalid_argument("'" + t + "' is not a positive number");
      return d;
    });
    opt.lambdas.push_back(v);
  }
  if (o.reference_bits < 64 || o.reference_bits > 100000)
    throw usage_error("--reference-bits: between 64 and 100000 bits");
  opt.precision = o.reference_bits;
  opt.threads = o.threads;
  opt.ref_inputs = option_value("--reference-inputs", [&] { return analysis::parse_reference_inputs(o.ref_inputs); });
  std::vector<nn::precision_config> configs;
  std::vector<std::string> names;
  if (auto p = precision_from_options(o.precision, o.precision_file, o.precision_options,
                                      "--storage, --acc, --order, --product, --rounding, --saturate, --input-format "
                                      "and --act-format")) {
    configs.push_back(*p);
    std::string acc;
    for (const auto& f : p->acc) acc += (acc.empty() ? "" : "+") + sim::to_string(f);
    names.push_back(safe(acc) + "_" + safe(sim::to_string(p->order)));
  } else {
    nn::precision_config base;
    if (o.storage != "none")
      base.weights = base.biases = option_value("--storage", [&] { return sim::parse_format(o.storage); });
    else
      base.weights = base.biases = std::nullopt;
    base.rounding = option_value("--rounding", [&] { return sim::parse_rounding(o.rounding); });
    if (o.product != "exact") base.product = option_value("--product", [&] { return sim::parse_format(o.product); });
    base.inputs = option_value("--input-format", [&] { return sim::parse_format(o.input_format); });
    base.act = option_value("--act-format", [&] { return sim::parse_format(o.act_format); });
    base.saturate = parse_switch("--saturate", o.saturate);
    for (const auto& acc : split_list(o.acc))
      for (const auto& ord : split_list(o.order)) {
        nn::precision_config c = base;
        c.acc = {option_value("--acc", [&] { return sim::parse_format(acc); })};
        c.order = option_value("--order", [&] { return sim::parse_order(ord); });
        configs.push_back(c);
        names.push_back(safe(acc) + "_" + safe(ord));
      }
  }
  for (const auto& c : configs) {
    try {
      c.check(layer_count(net));
    } catch (const std::invalid_argument& e) {
      throw usage_error(e.what());
    }
  }
  if (configs.empty()) throw usage_error("--acc, --order: no configuration to validate");
  analysis::ensure_writable_dir(o.out);
  const auto dir = o.data.empty() ? io::default_data_dir() : std::filesystem::path(o.data);
  const auto test_set = io::load_dataset(dir, o.dataset, false, o.samples);
  if (o.samples_given && o.samples > test_set.rows)
    throw usage_error("--samples: " + std::to_string(o.samples) + " exceeds the " + std::to_string(test_set.rows) +
                      " test images of " + o.dataset);
  if (opt.ref_inputs == analysis::reference_inputs::stored)  // fail before the long pass
    option_value("--input-format",
                 [&] { return analysis::stored_reference_inputs(test_set, test_set.rows, configs[0].inputs); });
  std::fprintf(stderr, "reference pass (MPFR, %ld bits, %s inputs) of %s on %zu %s images...\n", o.reference_bits,
               o.ref_inputs.c_str(), net.arch().c_str(), test_set.rows, o.dataset.c_str());
  // one reference per distinct storage of weights, biases and inputs (one with the single options)
  std::vector<analysis::reference_data> refs;
  auto reference_for = [&](const nn::precision_config& p) -> const analysis::reference_data& {
    for (const auto& r : refs)
      if (r.input_format == p.inputs && r.weights == p.weights && r.biases == p.biases) return r;
    refs.push_back(analysis::compute_reference(net, test_set, opt, p));
    std::fprintf(stderr, "reference: %.1f s\n", refs.back().seconds);
    return refs.back();
  };
  refs.reserve(configs.size());
  std::size_t violations = 0, uncovered = 0;
  std::printf("%-28s %5s %9s %9s %7s %7s %9s %12s %10s %9s %9s %9s %8s\n", "configuration", "layer", "comps",
              "uncovered", "viol_v", "viol_y", "viol_dot", "prob_freq_y", "prob_stated", "q50", "q99", "max",
              "spearman");
  std::vector<analysis::validation_result> results, vit_results;
  const std::size_t nsamples = opt.samples > 0 ? std::min(opt.samples, test_set.rows) : test_set.rows;
  if constexpr (std::is_same_v<Net, nn::vit>) {
    // every configuration at once, chunk by chunk: bounded memory (docs/attention.md)
    opt.chunk = o.chunk;
    const auto t0 = std::chrono::steady_clock::now();
    opt.progress = [t0](std::size_t done, std::size_t total) {
      std::fprintf(stderr, "  %zu of %zu images (%.0f s)\n", done, total,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    };
    vit_results = analysis::validate(net, test_set, configs, opt);
  }
  for (std::size_t c = 0; c < configs.size(); ++c) {
    analysis::validation_result r;
    if constexpr (std::is_same_v<Net, nn::vit>) {
      r = std::move(vit_results[c]);
      std::fprintf(stderr, "%s: reference %.1f s, simulation %.1f s, bounds %.1f s\n", names[c].c_str(),
                   r.seconds_reference, r.seconds_simulation, r.seconds_bounds);
    } else {
      r = analysis::validate(net, reference_for(configs[c]), configs[c], opt);
    }
    nlohmann::json manifest = {{"model", o.model},
                               {"dataset", o.dataset},
                               {"samples", nsamples},
                               {"reference_precision", o.reference_bits},
                               {"precision", nlohmann::json::parse(configs[c].to_json())},
                               {"reference_inputs", o.ref_inputs},
                               {"lambda", o.lambda},
                               {"lambdas", opt.lambdas},
                               {"mpfr", mpfr_get_version()},
                               {"compiler", __VERSION__}};
    analysis::write_report(r, std::filesystem::path(o.out) / names[c], manifest.dump(), !o.no_plots);
    for (const auto& l : r.layers) {
      const double covered = static_cast<double>(l.components - l.uncovered);
      const std::string stated = l.layer == 0                ? ""
                                 : l.prob_propagated_failure ? g3(*l.prob_propagated_failure)
                                                             : "none";
      std::printf("%-28s %5s %9zu %9zu %7zu %7zu %9zu %12.3g %10s %9.3g %9.3g %9.3g %8.3f\n", names[c].c_str(),
                  l.layer ? std::to_string(l.layer).c_str() : "all", l.components, l.uncovered, l.violations_v,
                  l.violations_y, l.local_violations,
                  covered > 0 ? static_cast<double>(l.prob_violations_y) / covered : 0.0, stated.c_str(),
                  l.err_over_bound_y.q50, l.err_over_bound_y.q99, l.err_over_bound_y.max, l.spearman);
    }
    violations += r.violations();
    uncovered += r.total().uncovered;
    results.push_back(std::move(r));
  }
  for (std::size_t c = 0; c < results.size(); ++c) print_summary(names[c], results[c]);
  if constexpr (std::is_same_v<Net, nn::vit>) {
    const auto layer_names = net.product_layer_names();
    std::printf("\nlayers:");
    for (std::size_t k = 0; k < layer_names.size(); ++k) std::printf(" %zu %s", k + 1, layer_names[k].c_str());
    std::printf("\n");
  }
  std::printf("\nreports in %s\n", o.out.c_str());
  if (violations) {
    std::fprintf(stderr, "mpacc: the deterministic bound was violated %zu times: this is a bug\n", violations);
    return exit_violation;
  }
  if (uncovered) {
    std::fprintf(
        stderr,
        "mpacc: %zu components are not covered by the analysis (overflow, saturation or NaN; see the summary)\n",
        uncovered);
    return exit_uncovered;
  }
  return 0;
}

int run_validate(const validate_cli& o) {
  if (auto v = npz_vit(o.model, o.npz_arch)) return validate_network(*v, o);
  if (!o.npz_arch.empty())
    return validate_network(
        npz_cnn(o.model, o.npz_arch, {option_value("--act", [&] { return sim::parse_activation(o.act); }), 0.01}), o);
  if (io::is_cnn_model(o.model)) return validate_network(io::load_cnn(o.model), o);
  if (io::is_vit_model(o.model)) return validate_network(io::load_vit(o.model), o);
  return validate_network(
      io::load_any(o.model, {option_value("--act", [&] { return sim::parse_activation(o.act); }), 0.01}), o);
}

}  // namespace

command add_validate_command(CLI::App& app) {
  auto o = std::make_shared<validate_cli>();
  auto* sub = app.add_subcommand(
      "validate",
      "Check the componentwise error analysis: simulated vs MPFR reference pass, per-component errors,\n"
      "kappa_dot, kappa_act, deterministic and probabilistic bounds; CSV, JSON summary and plots per\n"
      "configuration, and a summary per configuration. The reference takes the inputs as stored\n"
      "(--reference-inputs exact: the exact data, the storage error then enters the bounds).\n"
      "Exit status: 0 every component bounded and no violation; 3 a deterministic bound was violated\n"
      "(a bug); 4 some components are not covered (overflow, saturation, inf or NaN: see the summary);\n"
      "2 bad usage, 5 bad input data.");
  sub->add_option("--model", o->model, "model file (.mpnn, MLP or CNN, or .npz)")->required();
  sub->add_option("--dataset", o->dataset, "mnist | fashion-mnist")->capture_default_str();
  sub->add_option("--act", o->act, "hidden activation of an .npz model")->capture_default_str();
  sub->add_option("--npz-arch", o->npz_arch,
                  "lenet5: the .npz holds a LeNet-5's W1,b1,...,W5,b5 in PyTorch's layouts (docs/cnn.md);\n"
                  "vit:HEADS[:EPS]: a vision transformer as timm's state_dict names it (docs/attention.md)");
  auto* samples = sub->add_option("--samples", o->samples, "first N test images (0: all 10,000)")
                      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}))
                      ->capture_default_str();
  o->precision_options = {
      sub->add_option("--storage", o->storage, "round weights and biases to this format first, or none")
          ->capture_default_str(),
      sub->add_option("--acc", o->acc, "accumulator format(s), comma-separated")->capture_default_str(),
      sub->add_option("--order", o->order, "order(s), comma-separated: recursive, pairwise, blocked:B")
          ->capture_default_str(),
      sub->add_option("--product", o->product, "exact or a product format")->capture_default_str(),
      sub->add_option("--rounding", o->rounding, "accumulator rounding mode")->capture_default_str(),
      sub->add_option("--saturate", o->saturate, "on|off")->capture_default_str(),
      sub->add_option("--input-format", o->input_format, "format the inputs are stored in")->capture_default_str(),
      sub->add_option("--act-format", o->act_format, "format activations are rounded to")->capture_default_str()};
  sub->add_option("--precision", o->precision,
                  "one configuration, every precision choice in one line (as for eval; docs/semantics.md), "
                  "e.g. 'acc=e4m3-ieee;order=blocked:8;act=binary16;act_rounding=toward-zero'; replaces the "
                  "single options");
  sub->add_option("--precision-file", o->precision_file,
                  "the same as a JSON file (per-layer accumulators, per-component maps)");
  sub->add_option("--lambda", o->lambda, "probabilistic bound parameter, propagated through the network")
      ->capture_default_str();
  sub->add_option("--lambdas", o->lambdas, "lambdas of the per-inner-product probabilistic checks")
      ->capture_default_str();
  sub->add_option("--reference-inputs", o->ref_inputs, "stored | exact: the inputs the reference pass takes")
      ->capture_default_str();
  sub->add_option("--reference-bits", o->reference_bits, "reference precision in bits (64..100000)")
      ->capture_default_str();
  sub->add_option("--csv-samples", o->csv_samples, "samples written to components.csv and plotted")
      ->capture_default_str();
  sub->add_option("--chunk", o->chunk,
                  "vision transformers: images per chunk (reference, simulated pass and bounds; only the\n"
                  "statistics are kept between chunks; 0: all at once)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{0}, std::size_t{100000000}));
  sub->add_option("--out", o->out, "output folder")->capture_default_str();
  sub->add_flag("--no-plots", o->no_plots, "skip the gnuplot figures");
  sub->add_option("--data", o->data, "data folder (default: $MPACC_DATA or ./data)");
  sub->add_option("--threads", o->threads, "threads (0: all cores; at most 256)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  return [o, samples] {
    o->samples_given = samples->count() > 0;
    return run_validate(*o);
  };
}

}  // namespace mpacc::app
