// SPDX-License-Identifier: MIT
#include "mpacc/nn/precision.hpp"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/text.hpp"

namespace mpacc::nn {

namespace {

// what a message quotes from the input, one line whatever it holds
std::string printable(const std::string& s) { return sim::printable(s, 200); }

[[noreturn]] void fail(const std::string& key, const std::string& why) {
  throw std::invalid_argument("precision: key '" + printable(key) + "': " + printable(why));
}

std::string opt_name(const std::optional<sim::format>& f, const char* none) {
  return f ? sim::to_string(*f) : std::string(none);
}

sim::format format_of(const std::string& key, const std::string& v) {
  try {
    return sim::parse_format(v);
  } catch (const std::invalid_argument& e) {
    fail(key, e.what());
  }
}

std::optional<sim::format> opt_format_of(const std::string& key, const std::string& v, const char* none) {
  if (v == none) return std::nullopt;
  return format_of(key, v);
}

bool on_off(const std::string& key, const std::string& v) {
  if (v == "on" || v == "true") return true;
  if (v == "off" || v == "false") return false;
  fail(key, "'" + v + "' is not on or off");
}

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = {"weights", "biases",   "inputs",       "product",     "acc",
                                             "maps",    "rounding", "order",        "saturate",    "via",
                                             "seed",    "act",      "act_rounding", "act_saturate"};
  return k;
}

// One key's value given as text (the compact form, or a JSON string).
void set(precision_config& p, const std::string& key, const std::string& v) {
  if (key == "weights")
    p.weights = opt_format_of(key, v, "none");
  else if (key == "biases")
    p.biases = opt_format_of(key, v, "none");
  else if (key == "inputs")
    p.inputs = format_of(key, v);
  else if (key == "product")
    p.product = opt_format_of(key, v, "exact");
  else if (key == "acc") {
    p.acc.clear();
    std::size_t a = 0;
    while (true) {
      const auto comma = v.find(',', a);
      p.acc.push_back(format_of(key, v.substr(a, comma - a)));
      if (comma == std::string::npos) break;
      a = comma + 1;
    }
    if (p.acc.size() > 4096) fail(key, "more than 4096 layers");
  } else if (key == "rounding" || key == "act_rounding") {
    try {
      (key == "rounding" ? p.rounding : p.act_rounding) = sim::parse_rounding(v);
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  } else if (key == "order") {
    try {
      p.order = sim::parse_order(v);
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  } else if (key == "saturate")
    p.saturate = on_off(key, v);
  else if (key == "act_saturate")
    p.act_saturate = on_off(key, v);
  else if (key == "via")
    p.via = opt_format_of(key, v, "none");
  else if (key == "seed") {
    std::uint64_t s = 0;
    const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
    if (v.empty() || ec != std::errc() || ptr != v.data() + v.size())
      fail(key, "'" + v + "' is not a non-negative integer");
    p.seed = s;
  } else if (key == "act")
    p.act = format_of(key, v);
  else if (key == "maps")
    fail(key, "per-component maps are given in the JSON form only");
  else
    fail(key,
         "unknown key (keys: weights, biases, inputs, product, acc, maps, rounding, order, saturate, via, "
         "seed, act, act_rounding, act_saturate)");
}

}  // namespace

const sim::format& precision_config::accumulator(std::size_t layer) const {
  if (acc.empty()) throw std::invalid_argument("precision: no accumulator format");
  return acc.size() == 1 ? acc[0] : acc.at(layer);
}

sim::layer_spec precision_config::layer_spec(std::size_t layer) const {
  sim::layer_spec s;
  s.base.acc = accumulator(layer);
  s.base.mode = rounding;
  s.base.product = product;
  s.base.ord = order;
  s.base.saturate = saturate;
  s.base.seed = seed;
  s.base.via = via;
  s.acc = layer < maps.size() && !maps[layer].formats.empty() ? maps[layer] : sim::precision_map::uniform(s.base.acc);
  return s;
}

void precision_config::check(std::size_t layers) const {
  if (acc.size() != 1 && acc.size() != layers)
    throw std::invalid_argument("precision: " + std::to_string(acc.size()) + " accumulator formats for a network of " +
                                std::to_string(layers) + " layers (give 1 or " + std::to_string(layers) + ")");
  if (!maps.empty() && maps.size() != layers)
    throw std::invalid_argument("precision: " + std::to_string(maps.size()) + " precision maps for a network of " +
                                std::to_string(layers) + " layers");
}

bool operator==(const precision_config& a, const precision_config& b) { return a.to_json() == b.to_json(); }

std::string precision_config::to_json() const {
  nlohmann::json j;
  j["weights"] = opt_name(weights, "none");
  j["biases"] = opt_name(biases, "none");
  j["inputs"] = sim::to_string(inputs);
  j["product"] = opt_name(product, "exact");
  j["acc"] = nlohmann::json::array();
  for (const auto& f : acc) j["acc"].push_back(sim::to_string(f));
  j["maps"] = nlohmann::json::array();
  for (const auto& m : maps) {
    nlohmann::json jm;
    jm["formats"] = nlohmann::json::array();
    for (const auto& f : m.formats) jm["formats"].push_back(sim::to_string(f));
    jm["index"] = m.index;
    j["maps"].push_back(jm);
  }
  j["rounding"] = std::string(sim::to_string(rounding));
  j["order"] = sim::to_string(order);
  j["saturate"] = saturate;
  j["via"] = opt_name(via, "none");
  j["seed"] = seed;
  j["act"] = sim::to_string(act);
  j["act_rounding"] = std::string(sim::to_string(act_rounding));
  j["act_saturate"] = act_saturate;
  return j.dump(2);
}

std::string precision_config::to_string() const {
  std::string accs;
  for (const auto& f : acc) accs += (accs.empty() ? "" : ",") + sim::to_string(f);
  std::string s = "weights=" + opt_name(weights, "none") + ";biases=" + opt_name(biases, "none") +
                  ";inputs=" + sim::to_string(inputs) + ";product=" + opt_name(product, "exact") + ";acc=" + accs +
                  ";rounding=" + std::string(sim::to_string(rounding)) + ";order=" + sim::to_string(order) +
                  ";saturate=" + (saturate ? "on" : "off") + ";via=" + opt_name(via, "none") +
                  ";seed=" + std::to_string(seed) + ";act=" + sim::to_string(act) +
                  ";act_rounding=" + std::string(sim::to_string(act_rounding)) +
                  ";act_saturate=" + (act_saturate ? "on" : "off");
  if (!maps.empty()) s += ";maps=(" + std::to_string(maps.size()) + " layers, JSON form only)";
  return s;
}

precision_config parse_precision(std::string_view compact) {
  precision_config p;
  std::vector<std::string> seen;
  std::size_t a = 0;
  const std::string text(compact);
  if (text.empty()) return p;
  while (true) {
    const auto semi = text.find(';', a);
    const std::string item = text.substr(a, semi - a);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw std::invalid_argument("precision: '" + printable(item.substr(0, 60)) + "' is not key=value");
    const std::string key = item.substr(0, eq);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) fail(key, "given twice");
    seen.push_back(key);
    set(p, key, item.substr(eq + 1));
    if (semi == std::string::npos) break;
    a = semi + 1;
  }
  return p;
}

precision_config parse_precision_json(std::string_view text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("precision: not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw std::invalid_argument("precision: the configuration must be a JSON object");
  precision_config p;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const auto& v = it.value();
    if (std::find(keys().begin(), keys().end(), key) == keys().end()) set(p, key, "");  // names the unknown key
    if (key == "saturate" || key == "act_saturate") {
      if (!v.is_boolean()) fail(key, "must be true or false");
      (key == "saturate" ? p.saturate : p.act_saturate) = v.get<bool>();
    } else if (key == "seed") {
      if (!v.is_number_unsigned()) fail(key, "must be a non-negative integer");
      p.seed = v.get<std::uint64_t>();
    } else if (key == "acc") {
      if (v.is_string()) {
        set(p, key, v.get<std::string>());
        continue;
      }
      if (!v.is_array() || v.empty() || v.size() > 4096) fail(key, "must be a format or a list of 1 to 4096 formats");
      p.acc.clear();
      for (const auto& e : v) {
        if (!e.is_string()) fail(key, "must be a list of format names");
        p.acc.push_back(format_of(key, e.get<std::string>()));
      }
    } else if (key == "maps") {
      if (!v.is_array() || v.size() > 4096) fail(key, "must be a list of {\"formats\", \"index\"} objects");
      p.maps.clear();
      for (std::size_t k = 0; k < v.size(); ++k) {
        const auto& m = v[k];
        const std::string where = "maps[" + std::to_string(k) + "]";
        if (!m.is_object() || !m.contains("formats") || !m["formats"].is_array() || m["formats"].size() > 256)
          fail(where, "must be an object with a list of at most 256 \"formats\" and an \"index\"");
        for (auto mi = m.begin(); mi != m.end(); ++mi)
          if (mi.key() != "formats" && mi.key() != "index") fail(where + "." + mi.key(), "unknown key");
        sim::precision_map pm;
        for (const auto& f : m["formats"]) {
          if (!f.is_string()) fail(where + ".formats", "must be format names");
          pm.formats.push_back(format_of(where + ".formats", f.get<std::string>()));
        }
        if (m.contains("index")) {
          if (!m["index"].is_array() || m["index"].size() > (1u << 24))
            fail(where + ".index", "must be a list of indices");
          for (const auto& x : m["index"]) {
            if (!x.is_number_unsigned() || x.get<std::uint64_t>() >= pm.formats.size())
              fail(where + ".index", "each index must be below the number of formats");
            pm.index.push_back(static_cast<std::uint8_t>(x.get<std::uint64_t>()));
          }
        }
        if (pm.formats.empty() && !pm.index.empty()) fail(where, "an index without formats");
        p.maps.push_back(std::move(pm));
      }
    } else {
      if (!v.is_string()) fail(key, "must be a string");
      set(p, key, v.get<std::string>());
    }
  }
  return p;
}

mlp stored_network(const mlp& net, const precision_config& p) {
  mlp out = net;
  for (auto& l : out.layers) {
    if (p.weights) sim::round_array(l.W, l.W, {*p.weights, sim::rounding::nearest_even, false, 0});
    if (p.biases) sim::round_array(l.b, l.b, {*p.biases, sim::rounding::nearest_even, false, 0});
  }
  return out;
}

}  // namespace mpacc::nn
