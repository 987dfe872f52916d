// SPDX-License-Identifier: MIT
// Sweep configurations (JSON in and out) and result rows (CSV in and out):
// the parsers of everything a sweep reads back, kept free of the runs so
// that they can be fuzzed on their own.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/sweep.hpp"
#include "mpacc/nn/precision.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/text.hpp"

namespace mpacc::analysis {

namespace fs = std::filesystem;

std::string network_name(const network_spec& n) {
  if (!n.name.empty()) return n.name;
  std::string s = n.dataset + "-" + n.act;
  if (n.hidden != std::vector<std::size_t>{784, 128}) {
    s += "-h";
    for (std::size_t k = 0; k < n.hidden.size(); ++k) s += (k ? "x" : "") + std::to_string(n.hidden[k]);
  }
  return s;
}

std::vector<std::string> sweep_config::indicators_for(const network_spec& n, const sim::order& o) const {
  const auto it = order_indicators.find(sim::to_string(o));
  std::vector<std::string> v;
  for (const auto& i : indicators) {
    if (it != order_indicators.end() && std::find(it->second.begin(), it->second.end(), i) == it->second.end())
      continue;
    if (!n.indicators.empty() && std::find(n.indicators.begin(), n.indicators.end(), i) == n.indicators.end()) continue;
    v.push_back(i);
  }
  return v;
}

sweep_config reproduce_config(bool full) {
  sweep_config c;
  c.name = full ? "reproduce-full" : "reproduce-quick";
  const std::vector<const char*> datasets =
      full ? std::vector<const char*>{"mnist", "fashion-mnist"} : std::vector<const char*>{"mnist"};
  for (const char* d : datasets)
    for (const char* a : {"relu", "tanh"})
      // kappa (a second low pass per layer: never cheaper than uniform high) on MNIST only
      c.networks.push_back({d,
                            a,
                            "",
                            {784, 128},
                            std::string(d) == "mnist" ? std::vector<std::string>{}
                                                      : std::vector<std::string>{"kprime-companion", "kappa-norm"},
                            "",
                            {}});
  if (full)
    // depth: MNIST MLPs with 2, 4 and 6 hidden layers of 128 (same recipe), kprime-companion only
    for (const char* a : {"relu", "tanh"})
      for (std::size_t depth : {2, 4, 6})
        c.networks.push_back({"mnist", a, "", std::vector<std::size_t>(depth, 128), {"kprime-companion"}, "", {}});
  c.samples = 0;
  c.epochs = full ? 10 : 2;
  c.train_limit = full ? 0 : 20000;
  c.taus = {1, 0.5, 0.3, 0.1, 0.01};
  c.indicators = full ? std::vector<std::string>{"kprime-companion", "kappa-norm", "kappa"}
                      : std::vector<std::string>{"kprime-companion", "kappa-norm"};
  c.baselines = full
                    ? std::vector<std::string>{"random-active", "oracle-local", "oracle-gain", "smallest", "oracle-pre"}
                    : std::vector<std::string>{"random-active", "oracle-local"};
  c.seeds = 5;
  c.orders = {{sim::order::kind::blocked, 8}, {sim::order::kind::recursive, 8}};
  // the recursive order: its uniform strategies (quick), and kprime-companion (full)
  c.order_indicators["recursive"] = full ? std::vector<std::string>{"kprime-companion"} : std::vector<std::string>{};
  c.mix.precision.saturate = true;  // docs/semantics.md §8
  c.out = full ? "results/reproduce-full" : "results/reproduce-quick";
  return c;
}

std::string to_json(const sweep_config& c) {
  nlohmann::json j;
  j["name"] = c.name;
  for (const auto& n : c.networks)
    j["networks"].push_back({{"dataset", n.dataset},
                             {"act", n.act},
                             {"model", n.model},
                             {"hidden", n.hidden},
                             {"indicators", n.indicators}});
  j["samples"] = c.samples;
  j["taus"] = c.taus;
  j["indicators"] = c.indicators;
  j["baselines"] = c.baselines;
  j["seeds"] = c.seeds;
  for (const auto& o : c.orders) j["orders"].push_back(sim::to_string(o));
  j["order_indicators"] = nlohmann::json::object();
  for (const auto& [o, v] : c.order_indicators) j["order_indicators"][o] = v;
  // the low pass in full (its order is each of "orders")
  j["precision"] = nlohmann::json::parse(c.mix.precision.to_json());
  j["high"] = sim::to_string(c.mix.high);
  j["ladder"] = nlohmann::json::array();
  for (const auto& f : c.mix.ladder) j["ladder"].push_back(sim::to_string(f));
  j["overflow_aware"] = c.overflow_aware;
  j["calibration"] = {
      {"samples", c.calibration_samples}, {"quantiles", c.calibration_quantiles}, {"ladder", c.calibration_ladder}};
  j["input_scale"] = c.input_scale;
  j["reference_inputs"] = std::string(to_string(c.mix.ref_inputs));
  j["tile_rows"] = c.mix.tile_rows;
  j["tile_samples"] = c.mix.tile_samples;
  j["epochs"] = c.epochs;
  j["train_limit"] = c.train_limit;
  j["seed"] = c.seed;
  j["diagnostics"] = c.diagnostics;
  j["models_dir"] = c.models_dir.string();
  j["out"] = c.out.string();
  j["term_cost"] = nlohmann::json::object();
  for (const auto& [k, v] : c.mix.term_cost) j["term_cost"][k] = v;
  return j.dump(2);
}

namespace {

// JSON strings hold any character: what a message quotes from the configuration
// (keys, names, values) has its control characters escaped, so that the message
// stays one line (found by tests/fuzz/fuzz_config: a key "\r...").
std::string printable(const std::string& s) { return sim::printable(s, 200); }

}  // namespace

sweep_config parse_sweep_config(const std::string& text, const std::string& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": not valid JSON (" + e.what() + ")");
  }
  auto fail = [&](const std::string& key, const std::string& why) {
    throw std::runtime_error(file + ": key '" + printable(key) + "': " + printable(why));
  };
  if (!j.is_object()) throw std::runtime_error(file + ": the configuration must be a JSON object");
  sweep_config c = reproduce_config(false);
  c.name = fs::path(file).stem().string();
  c.orders = {{sim::order::kind::blocked, 8}};  // a configuration file names its orders, or gets this one
  c.order_indicators.clear();
  static const std::vector<std::string> known = {"name",
                                                 "networks",
                                                 "samples",
                                                 "taus",
                                                 "indicators",
                                                 "baselines",
                                                 "seeds",
                                                 "orders",
                                                 "order_indicators",
                                                 "low",
                                                 "high",
                                                 "product",
                                                 "rounding",
                                                 "saturate",
                                                 "via",
                                                 "input_format",
                                                 "act_format",
                                                 "reference_inputs",
                                                 "tile_rows",
                                                 "tile_samples",
                                                 "epochs",
                                                 "train_limit",
                                                 "seed",
                                                 "diagnostics",
                                                 "models_dir",
                                                 "out",
                                                 "term_cost",
                                                 "data_dir",
                                                 "precision",
                                                 "ladder",
                                                 "overflow_aware",
                                                 "calibration",
                                                 "input_scale"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      fail(it.key(), it.key() == "order" ? "unknown key (a list \"orders\" replaces it)" : "unknown key");
  auto str = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_string()) fail(key, "must be a string");
    return v.get<std::string>();
  };
  auto count_of = [&](const nlohmann::json& v, const std::string& key, std::size_t lo, std::size_t hi) {
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0))
      fail(key, "must be a non-negative integer");
    const auto n = v.get<std::uint64_t>();
    if (n < lo || n > hi)
      fail(key, std::to_string(n) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<std::size_t>(n);
  };
  auto count = [&](const std::string& key, std::size_t lo, std::size_t hi) { return count_of(j[key], key, lo, hi); };
  auto boolean = [&](const std::string& key) {
    if (!j[key].is_boolean()) fail(key, "must be true or false");
    return j[key].get<bool>();
  };
  auto strings = [&](const std::string& key) {
    const auto& v = j[key];
    if (!v.is_array()) fail(key, "must be a list of strings");
    std::vector<std::string> out;
    for (const auto& e : v) {
      const auto t = str(e, key);
      if (std::find(out.begin(), out.end(), t) != out.end()) fail(key, "'" + t + "' is listed twice");
      out.push_back(t);
    }
    return out;
  };
  auto fmt = [&](const char* key, sim::format& f) {
    if (!j.contains(key)) return;
    try {
      f = sim::parse_format(str(j[key], key));
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  };
  if (j.contains("name")) c.name = str(j["name"], "name");
  if (j.contains("networks")) {
    if (!j["networks"].is_array())
      fail("networks", "must be a list of {\"dataset\", \"act\", \"model\", \"hidden\"} objects");
    c.networks.clear();
    for (std::size_t k = 0; k < j["networks"].size(); ++k) {
      const auto& n = j["networks"][k];
      const std::string where = "networks[" + std::to_string(k) + "]";
      if (!n.is_object()) fail(where, "must be an object with keys dataset, act, model, hidden");
      for (auto it = n.begin(); it != n.end(); ++it)
        if (it.key() != "dataset" && it.key() != "act" && it.key() != "model" && it.key() != "hidden" &&
            it.key() != "indicators")
          fail(where + "." + it.key(), "unknown key");
      network_spec ns{"mnist", "relu", "", {784, 128}, {}, "", {}};
      if (n.contains("dataset")) ns.dataset = str(n["dataset"], where + ".dataset");
      if (n.contains("act")) ns.act = str(n["act"], where + ".act");
      if (n.contains("model")) ns.model = str(n["model"], where + ".model");
      if (n.contains("hidden")) {
        if (!n["hidden"].is_array() || n["hidden"].empty() || n["hidden"].size() > 64)
          fail(where + ".hidden", "must be a list of 1 to 64 layer widths");
        ns.hidden.clear();
        for (const auto& w : n["hidden"]) ns.hidden.push_back(count_of(w, where + ".hidden", 1, 1u << 16));
      }
      if (n.contains("indicators")) {
        if (!n["indicators"].is_array()) fail(where + ".indicators", "must be a list of indicators");
        for (const auto& e : n["indicators"]) ns.indicators.push_back(str(e, where + ".indicators"));
      }
      if (ns.dataset != "mnist" && ns.dataset != "fashion-mnist")
        fail(where + ".dataset", "unknown data set '" + ns.dataset + "' (mnist, fashion-mnist)");
      try {
        (void)sim::parse_activation(ns.act);
      } catch (const std::invalid_argument& e) {
        fail(where + ".act", e.what());
      }
      for (const auto& o : c.networks)
        if (network_name(o) == network_name(ns)) fail(where, "network " + network_name(ns) + " is listed twice");
      c.networks.push_back(ns);
    }
  }
  if (j.contains("samples")) c.samples = count("samples", 0, 100000000);
  if (j.contains("epochs")) c.epochs = count("epochs", 1, 1000);
  if (j.contains("train_limit")) c.train_limit = count("train_limit", 0, 100000000);
  if (j.contains("seeds")) c.seeds = count("seeds", 1, 100);
  if (j.contains("tile_rows")) c.mix.tile_rows = count("tile_rows", 1, 1u << 20);
  if (j.contains("tile_samples")) c.mix.tile_samples = count("tile_samples", 1, 1u << 20);
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) fail("seed", "must be a non-negative integer");
    c.seed = j["seed"].get<std::uint64_t>();
  }
  // the low pass: a whole precision configuration, or the shorthand keys
  static const std::vector<std::string> shorthands = {"low", "product",      "rounding",  "saturate",
                                                      "via", "input_format", "act_format"};
  if (j.contains("precision")) {
    for (const auto& k : shorthands)
      if (j.contains(k))
        fail("precision", "replaces the key '" + k +
                              "' (low, product, rounding, saturate, via, input_format, "
                              "act_format): give one or the other");
    if (!j["precision"].is_object()) fail("precision", "must be an object (the keys of a precision configuration)");
    try {
      c.mix.precision = nn::parse_precision_json(j["precision"].dump());
    } catch (const std::invalid_argument& e) {
      fail("precision", e.what());
    }
    if (!c.mix.precision.maps.empty()) fail("precision", "per-component maps are Algorithm 1's output, not its input");
  }
  if (j.contains("saturate")) c.mix.precision.saturate = boolean("saturate");
  if (j.contains("diagnostics")) c.diagnostics = boolean("diagnostics");
  // beyond Algorithm 1 (docs/extensions.md)
  if (j.contains("ladder")) {
    c.mix.ladder.clear();
    for (const auto& f : strings("ladder")) try {
        c.mix.ladder.push_back(sim::parse_format(f));
      } catch (const std::invalid_argument& e) {
        fail("ladder", e.what());
      }
  }
  if (j.contains("overflow_aware")) c.overflow_aware = boolean("overflow_aware");
  if (j.contains("input_scale")) {
    if (!j["input_scale"].is_number()) fail("input_scale", "must be a number");
    const double v = j["input_scale"].get<double>();
    if (!(v > 0) || !std::isfinite(v)) fail("input_scale", "must be a finite number > 0");
    c.input_scale = v;
  }
  if (j.contains("calibration")) {
    const auto& cal = j["calibration"];
    if (!cal.is_object()) fail("calibration", "must be an object {samples, quantiles, ladder}");
    for (auto it = cal.begin(); it != cal.end(); ++it)
      if (it.key() != "samples" && it.key() != "quantiles" && it.key() != "ladder")
        fail("calibration." + it.key(), "unknown key (samples, quantiles, ladder)");
    if (cal.contains("samples")) c.calibration_samples = count_of(cal["samples"], "calibration.samples", 1, 60000);
    if (cal.contains("ladder")) {
      if (!cal["ladder"].is_boolean()) fail("calibration.ladder", "must be true or false");
      c.calibration_ladder = cal["ladder"].get<bool>();
    }
    if (cal.contains("quantiles")) {
      if (!cal["quantiles"].is_array()) fail("calibration.quantiles", "must be a list of numbers in [0, 1]");
      c.calibration_quantiles.clear();
      for (const auto& q : cal["quantiles"]) {
        if (!q.is_number()) fail("calibration.quantiles", "must be a list of numbers in [0, 1]");
        const double v = q.get<double>();
        if (!(v >= 0 && v <= 1)) fail("calibration.quantiles", "quantile " + q.dump() + " is not in [0, 1]");
        if (std::find(c.calibration_quantiles.begin(), c.calibration_quantiles.end(), v) !=
            c.calibration_quantiles.end())
          fail("calibration.quantiles", "quantile " + q.dump() + " is listed twice");
        c.calibration_quantiles.push_back(v);
      }
    }
    if (c.calibration_ladder && c.mix.ladder.empty())
      fail("calibration.ladder", "needs a \"ladder\" of intermediate formats");
  }
  if (j.contains("taus")) {
    if (!j["taus"].is_array()) fail("taus", "must be a list of numbers");
    c.taus.clear();
    for (const auto& t : j["taus"]) {
      if (!t.is_number()) fail("taus", "must be a list of numbers");
      const double v = t.get<double>();
      if (!(v >= 0) || !std::isfinite(v)) fail("taus", "tolerance " + t.dump() + " must be a finite number >= 0");
      if (std::find(c.taus.begin(), c.taus.end(), v) != c.taus.end())
        fail("taus", "tolerance " + t.dump() + " is listed twice");
      c.taus.push_back(v);
    }
  }
  if (j.contains("indicators")) c.indicators = strings("indicators");
  if (j.contains("baselines")) c.baselines = strings("baselines");
  if (j.contains("orders")) {
    c.orders.clear();
    for (const auto& o : strings("orders")) try {
        c.orders.push_back(sim::parse_order(o));
      } catch (const std::invalid_argument& e) {
        fail("orders", e.what());
      }
  }
  if (j.contains("order_indicators")) {
    const auto& oi = j["order_indicators"];
    if (!oi.is_object()) fail("order_indicators", "must be an object {order: [indicators]}");
    c.order_indicators.clear();
    for (auto it = oi.begin(); it != oi.end(); ++it) {
      const std::string key = "order_indicators." + it.key();
      sim::order o;
      try {
        o = sim::parse_order(it.key());
      } catch (const std::invalid_argument& e) {
        fail(key, e.what());
      }
      if (std::find(c.orders.begin(), c.orders.end(), o) == c.orders.end()) fail(key, "not one of the sweep's orders");
      if (!it.value().is_array()) fail(key, "must be a list of indicators (empty: uniform strategies only)");
      std::vector<std::string> v;
      for (const auto& e : it.value()) {
        const auto t = str(e, key);
        if (std::find(c.indicators.begin(), c.indicators.end(), t) == c.indicators.end())
          fail(key, "'" + t + "' is not one of the sweep's indicators");
        if (std::find(v.begin(), v.end(), t) != v.end()) fail(key, "'" + t + "' is listed twice");
        v.push_back(t);
      }
      c.order_indicators[sim::to_string(o)] = v;
    }
  }
  for (const char* key : {"models_dir", "out", "data_dir"})
    if (j.contains(key)) {
      const auto v = str(j[key], key);
      if (v.empty()) fail(key, "must not be empty");
      (std::string(key) == "out" ? c.out : std::string(key) == "data_dir" ? c.data_dir : c.models_dir) = v;
    }
  if (j.contains("low")) {
    sim::format low = c.mix.low(0);
    fmt("low", low);
    c.mix.precision.acc = {low};
  }
  fmt("high", c.mix.high);
  fmt("input_format", c.mix.precision.inputs);
  fmt("act_format", c.mix.precision.act);
  if (j.contains("term_cost")) {
    if (!j["term_cost"].is_object()) fail("term_cost", "must be an object {format: cost}");
    for (auto it = j["term_cost"].begin(); it != j["term_cost"].end(); ++it) {
      const std::string key = "term_cost." + it.key();
      try {
        (void)sim::parse_format(it.key());
      } catch (const std::invalid_argument& e) {
        fail(key, e.what());
      }
      if (!it.value().is_number()) fail(key, "must be a number");
      const double v = it.value().get<double>();
      if (!(v > 0) || !std::isfinite(v)) fail(key, "cost " + it.value().dump() + " must be a finite number > 0");
      c.mix.term_cost[it.key()] = v;
    }
  }
  auto parse = [&](const char* key, auto&& f) {
    if (!j.contains(key)) return;
    try {
      f(str(j[key], key));
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  };
  parse("reference_inputs", [&](const std::string& v) { c.mix.ref_inputs = parse_reference_inputs(v); });
  parse("rounding", [&](const std::string& v) { c.mix.precision.rounding = sim::parse_rounding(v); });
  parse("product", [&](const std::string& v) {
    if (v != "exact") c.mix.precision.product = sim::parse_format(v);
  });
  parse("via", [&](const std::string& v) {
    if (v != "none") c.mix.precision.via = sim::parse_format(v);
  });
  for (const auto& i : c.indicators) try {
      (void)find_indicator(i);
    } catch (const std::exception& e) {
      fail("indicators", e.what());
    }
  for (const auto& b : c.baselines) try {
      (void)parse_baseline(b);
    } catch (const std::invalid_argument& e) {
      fail("baselines", e.what());
    }
  for (std::size_t k = 0; k < c.networks.size(); ++k)
    for (const auto& i : c.networks[k].indicators)
      if (std::find(c.indicators.begin(), c.indicators.end(), i) == c.indicators.end())
        fail("networks[" + std::to_string(k) + "].indicators", "'" + i + "' is not one of the sweep's indicators");
  if (c.networks.empty()) fail("networks", "no network");
  if (c.taus.empty()) fail("taus", "no tolerance");
  if (c.indicators.empty()) fail("indicators", "no indicator");
  if (c.orders.empty()) fail("orders", "no order");
  for (std::size_t a = 0; a < c.orders.size(); ++a)
    for (std::size_t b = 0; b < a; ++b)
      if (c.orders[a] == c.orders[b]) fail("orders", "'" + sim::to_string(c.orders[a]) + "' is listed twice");
  // every format the sweep uses needs a cost
  std::vector<sim::format> used = c.mix.precision.acc;
  used.insert(used.end(), c.mix.ladder.begin(), c.mix.ladder.end());
  used.push_back(c.mix.high);
  used.push_back(sim::formats::binary32);
  for (const auto& f : used)
    if (!(c.mix.cost_of(f) > 0)) fail("term_cost", "no positive cost for " + sim::to_string(f));
  for (std::size_t k = 0; k < c.networks.size(); ++k) {
    const std::size_t layers = c.networks[k].hidden.size() + 1;
    if (c.mix.precision.acc.size() != 1 && c.networks[k].model.empty() && c.mix.precision.acc.size() != layers)
      fail("precision", std::to_string(c.mix.precision.acc.size()) + " accumulator formats for network " +
                            std::to_string(k) + " of " + std::to_string(layers) + " layers");
  }
  return c;
}

sweep_config load_sweep_config(const fs::path& file) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw std::runtime_error(file.string() + ": is a directory");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > (1u << 24)) throw std::runtime_error(file.string() + ": larger than 16 MiB, not a configuration");
  return parse_sweep_config(text, file.string());
}

// ---------------------------------------------------------------------------
// result rows

namespace {

constexpr const char* kColumns[] = {"network",
                                    "order",
                                    "strategy",
                                    "indicator",
                                    "tau",
                                    "seed",
                                    "samples",
                                    "correct",
                                    "accuracy",
                                    "accuracy_lo",
                                    "accuracy_hi",
                                    "disagreements",
                                    "disagreement",
                                    "disagreement_lo",
                                    "disagreement_hi",
                                    "kl_mean",
                                    "kl_q99",
                                    "rel_hidden_q50",
                                    "rel_hidden_q90",
                                    "rel_hidden_q99",
                                    "rel_logits_q50",
                                    "rel_logits_q90",
                                    "rel_logits_q99",
                                    "mean_relative_error",
                                    "fraction",
                                    "weighted_cost",
                                    "tile_cost",
                                    "fraction_per_layer",
                                    "paired_with",
                                    "mcnemar_b",
                                    "mcnemar_c",
                                    "mcnemar_p"};
constexpr std::size_t kNumColumns = sizeof kColumns / sizeof kColumns[0];

double number(const std::string& cell, const char* column) {
  if (cell == "inf") return std::numeric_limits<double>::infinity();
  if (cell == "-inf") return -std::numeric_limits<double>::infinity();
  if (cell == "nan") return std::numeric_limits<double>::quiet_NaN();
  double v = 0;
  const auto [p, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (cell.empty() || ec != std::errc() || p != cell.data() + cell.size())
    throw std::runtime_error(std::string("column ") + column + ": '" + printable(cell.substr(0, 40)) +
                             "' is not a number");
  return v;
}

std::size_t whole(const std::string& cell, const char* column) {
  std::size_t v = 0;
  const auto [p, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (cell.empty() || ec != std::errc() || p != cell.data() + cell.size())
    throw std::runtime_error(std::string("column ") + column + ": '" + printable(cell.substr(0, 40)) +
                             "' is not a count");
  return v;
}

bool name_ok(const std::string& s) {
  return s.size() <= 200 && std::all_of(s.begin(), s.end(), [](char ch) {
           return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == ':' || ch == '.';
         });
}

}  // namespace

std::string csv_header() {
  std::string s;
  for (std::size_t k = 0; k < kNumColumns; ++k) s += (k ? "," : "") + std::string(kColumns[k]);
  return s + "\n";
}

std::string to_csv(const result_row& r) {
  std::string s = r.network + "," + r.order + "," + r.strategy + "," + r.indicator + ",";
  auto num = [&](double v) {
    put_number(s, v);
    s += ',';
  };
  auto cnt = [&](std::size_t v) { s += std::to_string(v) + ","; };
  num(r.tau);
  cnt(r.seed);
  cnt(r.samples);
  cnt(r.correct);
  const auto acc = wilson(r.correct, r.samples), dis = wilson(r.disagreements, r.samples);
  const double n = r.samples ? static_cast<double>(r.samples) : std::numeric_limits<double>::quiet_NaN();
  num(static_cast<double>(r.correct) / n);
  num(acc.lo);
  num(acc.hi);
  cnt(r.disagreements);
  num(static_cast<double>(r.disagreements) / n);
  num(dis.lo);
  num(dis.hi);
  for (double v : {r.kl_mean, r.kl_q99, r.rel_hidden.q50, r.rel_hidden.q90, r.rel_hidden.q99, r.rel_logits.q50,
                   r.rel_logits.q90, r.rel_logits.q99, r.mean_relative_error, r.fraction, r.weighted_cost, r.tile_cost})
    num(v);
  for (std::size_t k = 0; k < r.fraction_per_layer.size(); ++k) {
    if (k) s += ';';
    put_number(s, r.fraction_per_layer[k]);
  }
  s += "," + r.paired_with + ",";
  cnt(r.mcnemar_b);
  cnt(r.mcnemar_c);
  put_number(s, r.mcnemar_p);
  return s + "\n";
}

result_row parse_csv_row(const std::string& line) {
  std::vector<std::string> cells;
  std::size_t start = 0;
  while (true) {
    const auto comma = line.find(',', start);
    cells.push_back(line.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (cells.size() != kNumColumns)
    throw std::runtime_error(std::to_string(cells.size()) + " fields, a result row has " + std::to_string(kNumColumns));
  result_row r;
  std::size_t k = 0;
  auto text = [&](std::string& out, bool may_be_empty) {
    out = cells[k];
    if ((!may_be_empty && out.empty()) || !name_ok(out))
      throw std::runtime_error(std::string("column ") + kColumns[k] + ": '" + printable(out.substr(0, 40)) +
                               "' is not a name");
    ++k;
  };
  auto num = [&]() {
    const double v = number(cells[k], kColumns[k]);
    ++k;
    return v;
  };
  auto cnt = [&]() {
    const auto v = whole(cells[k], kColumns[k]);
    ++k;
    return v;
  };
  text(r.network, false);
  text(r.order, false);
  text(r.strategy, false);
  text(r.indicator, true);
  r.tau = num();
  r.seed = cnt();
  r.samples = cnt();
  r.correct = cnt();
  for (int i = 0; i < 3; ++i) (void)num();  // accuracy and its interval: derived from the counts
  r.disagreements = cnt();
  for (int i = 0; i < 3; ++i) (void)num();
  if (r.correct > r.samples || r.disagreements > r.samples)
    throw std::runtime_error("more correct or disagreeing samples than samples");
  r.kl_mean = num();
  r.kl_q99 = num();
  r.rel_hidden.q50 = num();
  r.rel_hidden.q90 = num();
  r.rel_hidden.q99 = num();
  r.rel_logits.q50 = num();
  r.rel_logits.q90 = num();
  r.rel_logits.q99 = num();
  r.mean_relative_error = num();
  r.fraction = num();
  r.weighted_cost = num();
  r.tile_cost = num();
  {
    const std::string& f = cells[k];
    std::size_t a = 0;
    while (!f.empty()) {
      const auto semi = f.find(';', a);
      r.fraction_per_layer.push_back(number(f.substr(a, semi - a), kColumns[k]));
      if (semi == std::string::npos) break;
      a = semi + 1;
    }
    if (r.fraction_per_layer.size() > 4096) throw std::runtime_error("column fraction_per_layer: too many layers");
    ++k;
  }
  text(r.paired_with, true);
  r.mcnemar_b = cnt();
  r.mcnemar_c = cnt();
  r.mcnemar_p = num();
  return r;
}

}  // namespace mpacc::analysis
