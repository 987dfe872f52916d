// SPDX-License-Identifier: MIT
#include "mpacc/analysis/sweep.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <fstream>
#include <map>
#include <mpfr.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "mpacc/analysis/plot.hpp"
#include "mpacc/nn/model_io.hpp"
#include "mpacc/nn/train.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/version.hpp"

#ifndef MPACC_GIT_HASH
#define MPACC_GIT_HASH "unknown"
#endif

namespace mpacc::analysis {

namespace fs = std::filesystem;

sweep_config reproduce_config(bool full) {
  sweep_config c;
  c.name = full ? "reproduce-full" : "reproduce-quick";
  for (const char* d : {"mnist", "fashion-mnist"})
    for (const char* a : {"relu", "tanh"}) c.networks.push_back({d, a, ""});
  c.samples = full ? 0 : 1000;
  c.epochs = full ? 10 : 2;
  c.train_limit = full ? 0 : 20000;
  // The paper's {1, 0.5, 0.3, 0.1} within a logarithmic sweep (decades, 0.001 .. 10)
  c.taus = full ? std::vector<double>{0.001, 0.01, 0.1, 0.3, 0.5, 1, 10}
                : std::vector<double>{0.01, 0.03, 0.1, 0.3, 0.5, 1, 3};
  c.mix.model.ord = {sim::order::kind::blocked, 8};
  c.out = full ? "results/reproduce-full" : "results/reproduce-quick";
  return c;
}

std::string to_json(const sweep_config& c) {
  nlohmann::json j;
  j["name"] = c.name;
  for (const auto& n : c.networks) j["networks"].push_back({{"dataset", n.dataset}, {"act", n.act}, {"model", n.model}});
  j["samples"] = c.samples;
  j["taus"] = c.taus;
  j["indicators"] = c.indicators;
  j["baselines"] = c.baselines;
  j["low"] = sim::to_string(c.mix.low);
  j["high"] = sim::to_string(c.mix.high);
  j["order"] = sim::to_string(c.mix.model.ord);
  j["product"] = c.mix.model.product ? sim::to_string(*c.mix.model.product) : "exact";
  j["rounding"] = std::string(sim::to_string(c.mix.model.mode));
  j["input_format"] = sim::to_string(c.mix.input_format);
  j["act_format"] = sim::to_string(c.mix.act_format);
  j["reference_inputs"] = std::string(to_string(c.mix.ref_inputs));
  j["epochs"] = c.epochs;
  j["train_limit"] = c.train_limit;
  j["seed"] = c.seed;
  j["models_dir"] = c.models_dir.string();
  j["out"] = c.out.string();
  for (const auto& [k, v] : c.mix.term_cost) j["term_cost"][k] = v;
  return j.dump(2);
}

sweep_config load_sweep_config(const fs::path& file) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) throw std::runtime_error(file.string() + ": is a directory");
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
  auto fail = [&](const std::string& key, const std::string& why) {
    throw std::runtime_error(file.string() + ": key '" + key + "': " + why);
  };
  if (!j.is_object()) throw std::runtime_error(file.string() + ": the configuration must be a JSON object");
  sweep_config c = reproduce_config(false);
  c.name = file.stem().string();
  static const std::vector<std::string> known = {"name", "networks", "samples", "taus", "indicators", "baselines", "low",
                                                 "high", "order", "product", "rounding", "input_format", "act_format",
                                                 "reference_inputs", "epochs", "train_limit", "seed", "models_dir", "out",
                                                 "term_cost", "data_dir"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) fail(it.key(), "unknown key");
  // typed reads that name the key
  auto str = [&](const nlohmann::json& v, const std::string& key) {
    if (!v.is_string()) fail(key, "must be a string");
    return v.get<std::string>();
  };
  auto count = [&](const std::string& key, std::size_t lo, std::size_t hi) {
    const auto& v = j[key];
    if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0))
      fail(key, "must be a non-negative integer");
    const auto n = v.get<std::uint64_t>();
    if (n < lo || n > hi) fail(key, std::to_string(n) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<std::size_t>(n);
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
    if (!j["networks"].is_array()) fail("networks", "must be a list of {\"dataset\", \"act\", \"model\"} objects");
    c.networks.clear();
    for (std::size_t k = 0; k < j["networks"].size(); ++k) {
      const auto& n = j["networks"][k];
      const std::string where = "networks[" + std::to_string(k) + "]";
      if (!n.is_object()) fail(where, "must be an object with keys dataset, act, model");
      for (auto it = n.begin(); it != n.end(); ++it)
        if (it.key() != "dataset" && it.key() != "act" && it.key() != "model") fail(where + "." + it.key(), "unknown key");
      network_spec ns{"mnist", "relu", ""};
      if (n.contains("dataset")) ns.dataset = str(n["dataset"], where + ".dataset");
      if (n.contains("act")) ns.act = str(n["act"], where + ".act");
      if (n.contains("model")) ns.model = str(n["model"], where + ".model");
      if (ns.dataset != "mnist" && ns.dataset != "fashion-mnist")
        fail(where + ".dataset", "unknown data set '" + ns.dataset + "' (mnist, fashion-mnist)");
      try {
        (void)sim::parse_activation(ns.act);
      } catch (const std::invalid_argument& e) {
        fail(where + ".act", e.what());
      }
      for (const auto& o : c.networks)
        if (o.dataset == ns.dataset && o.act == ns.act)
          fail(where, "network " + ns.dataset + "-" + ns.act + " is listed twice");
      c.networks.push_back(ns);
    }
  }
  if (j.contains("samples")) c.samples = count("samples", 0, 100000000);
  if (j.contains("epochs")) c.epochs = count("epochs", 1, 1000);
  if (j.contains("train_limit")) c.train_limit = count("train_limit", 0, 100000000);
  if (j.contains("seed")) {
    if (!j["seed"].is_number_unsigned()) fail("seed", "must be a non-negative integer");
    c.seed = j["seed"].get<std::uint64_t>();
  }
  if (j.contains("taus")) {
    if (!j["taus"].is_array()) fail("taus", "must be a list of numbers");
    c.taus.clear();
    for (const auto& t : j["taus"]) {
      if (!t.is_number()) fail("taus", "must be a list of numbers");
      const double v = t.get<double>();
      if (!(v >= 0) || !std::isfinite(v)) fail("taus", "tolerance " + t.dump() + " must be a finite number >= 0");
      if (std::find(c.taus.begin(), c.taus.end(), v) != c.taus.end()) fail("taus", "tolerance " + t.dump() + " is listed twice");
      c.taus.push_back(v);
    }
  }
  if (j.contains("indicators")) c.indicators = strings("indicators");
  if (j.contains("baselines")) c.baselines = strings("baselines");
  for (const char* key : {"models_dir", "out", "data_dir"})
    if (j.contains(key)) {
      const auto v = str(j[key], key);
      if (v.empty()) fail(key, "must not be empty");
      (std::string(key) == "out" ? c.out : std::string(key) == "data_dir" ? c.data_dir : c.models_dir) = v;
    }
  fmt("low", c.mix.low);
  fmt("high", c.mix.high);
  fmt("input_format", c.mix.input_format);
  fmt("act_format", c.mix.act_format);
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
  if (j.contains("reference_inputs")) try {
      c.mix.ref_inputs = parse_reference_inputs(str(j["reference_inputs"], "reference_inputs"));
    } catch (const std::invalid_argument& e) {
      fail("reference_inputs", e.what());
    }
  auto parse = [&](const char* key, auto&& f) {
    if (!j.contains(key)) return;
    try {
      f(str(j[key], key));
    } catch (const std::invalid_argument& e) {
      fail(key, e.what());
    }
  };
  parse("order", [&](const std::string& v) { c.mix.model.ord = sim::parse_order(v); });
  parse("rounding", [&](const std::string& v) { c.mix.model.mode = sim::parse_rounding(v); });
  parse("product", [&](const std::string& v) {
    if (v != "exact") c.mix.model.product = sim::parse_format(v);
  });
  for (const auto& i : c.indicators) try {
      (void)find_indicator(i);
    } catch (const std::exception& e) {
      fail("indicators", e.what());
    }
  for (const auto& b : c.baselines)
    if (b != "random" && b != "smallest" && b != "oracle") fail("baselines", "unknown baseline '" + b + "' (random, smallest, oracle)");
  if (c.networks.empty()) fail("networks", "no network");
  if (c.taus.empty()) fail("taus", "no tolerance");
  if (c.indicators.empty()) fail("indicators", "no indicator");
  // every format the sweep uses needs a cost
  for (const auto& f : {c.mix.low, c.mix.high, sim::formats::binary32})
    if (!(c.mix.cost_of(f) > 0)) fail("term_cost", "no positive cost for " + sim::to_string(f));
  return c;
}

namespace {

std::string net_name(const network_spec& n) { return n.dataset + "-" + n.act; }

nn::mlp obtain_network(const sweep_config& c, const network_spec& n, const fs::path& data_dir) {
  const auto act = sim::activation_fn{sim::parse_activation(n.act), 0.01};
  if (!n.model.empty()) return nn::load_any(n.model, act);
  fs::create_directories(c.models_dir);
  const fs::path file = c.models_dir / (net_name(n) + "-e" + std::to_string(c.epochs) + "-l" +
                                        std::to_string(c.train_limit) + "-s" + std::to_string(c.seed) + ".mpnn");
  if (fs::exists(file)) return nn::load_model(file);
  const auto train_set = nn::load_dataset(data_dir, n.dataset, true, c.train_limit);
  nn::train_options opt;
  opt.epochs = c.epochs;
  opt.batch = c.batch;
  opt.seed = c.seed;
  opt.lr = n.dataset == "fashion-mnist" ? 0.01 : 0.05;  // docs/networks.md
  opt.threads = c.threads;
  std::fprintf(stderr, "training %s (%zu epochs on %zu images)...\n", net_name(n).c_str(), c.epochs, train_set.rows);
  auto net = nn::train({784, 784, 128, 10}, act, train_set, opt);
  nn::save_model(net, file, nlohmann::json{{"dataset", n.dataset}, {"act", n.act}}.dump());
  return net;
}

// One job: a network and either a uniform baseline or an (indicator, tau)
// with its matched baselines. Jobs are numbered in a fixed order.
struct job {
  std::size_t network;
  std::string kind;  // "uniform" or "threshold"
  std::string indicator;
  double tau = 0;
};

std::vector<job> jobs_of(const sweep_config& c) {
  std::vector<job> v;
  for (std::size_t n = 0; n < c.networks.size(); ++n) {
    v.push_back({n, "uniform", "", 0});
    for (const auto& ind : c.indicators)
      for (double tau : c.taus) v.push_back({n, "threshold", ind, tau});
  }
  return v;
}

struct row {
  std::string network, strategy, indicator;
  double tau;
  mixed_result r;
};

std::string csv_line(const row& x) {
  std::string s = x.network + "," + x.strategy + "," + x.indicator + ",";
  put_number(s, x.tau);
  for (double v : {x.r.accuracy, x.r.fraction, x.r.weighted_cost, x.r.mean_relative_error}) {
    s += ',';
    put_number(s, v);
  }
  for (std::size_t k = 0; k < 3; ++k) {
    s += ',';
    put_number(s, k < x.r.fraction_per_layer.size() ? x.r.fraction_per_layer[k] : 0.0);
  }
  return s + "\n";
}

constexpr const char* kHeader =
    "network,strategy,indicator,tau,accuracy,fraction,weighted_cost,mean_relative_error,fraction_l1,fraction_l2,fraction_l3\n";

// What a shard's rows depend on: the configuration without where files go.
// FNV-1a 64 of its JSON, in hex.
std::string config_hash(const sweep_config& c) {
  auto j = nlohmann::json::parse(to_json(c));
  j.erase("out");
  j.erase("data_dir");
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : j.dump()) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// The first line of a shard file: which shard of how many, of which configuration.
std::string shard_line(const sweep_config& c, std::size_t shard, std::size_t shards) {
  return "# mpacc sweep shard " + std::to_string(shard) + " of " + std::to_string(shards) + ", configuration " +
         config_hash(c) + "\n";
}

}  // namespace

void run_sweep(const sweep_config& c, std::size_t shard, std::size_t shards) {
  if (shards == 0 || shard >= shards) throw std::invalid_argument("shard index must be below the shard count");
  fs::create_directories(c.out);
  const fs::path data_dir = c.data_dir.empty() ? nn::default_data_dir() : c.data_dir;
  const auto all = jobs_of(c);
  const bool tty = isatty(fileno(stderr));
  std::string out = shard_line(c, shard, shards) + kHeader;
  std::map<std::size_t, std::unique_ptr<mixed_runner>> runners;
  std::map<std::size_t, nn::mlp> nets;
  std::map<std::size_t, nn::dataset> tests;
  std::size_t done = 0, mine = 0;
  for (std::size_t j = shard; j < all.size(); j += shards) ++mine;
  for (std::size_t j = shard; j < all.size(); j += shards) {
    const job& jb = all[j];
    const auto& ns = c.networks[jb.network];
    if (!runners.count(jb.network)) {
      nets[jb.network] = obtain_network(c, ns, data_dir);
      tests[jb.network] = nn::load_dataset(data_dir, ns.dataset, false, c.samples);
      if (c.samples > tests[jb.network].rows)
        throw std::runtime_error("samples: " + std::to_string(c.samples) + " exceeds the " +
                                 std::to_string(tests[jb.network].rows) + " test images of " + ns.dataset);
      runners[jb.network] = std::make_unique<mixed_runner>(nets[jb.network], tests[jb.network], c.samples, c.mix, c.threads);
    }
    const auto& R = *runners[jb.network];
    const std::string name = net_name(ns);
    if (jb.kind == "uniform") {
      selection s;
      s.type = selection::kind::uniform_low;
      out += csv_line({name, "uniform-low", "", 0, R.run(s)});
      s.type = selection::kind::uniform_high;
      out += csv_line({name, "uniform-high", "", 0, R.run(s)});
      // uniform binary32: its own runner (binary32 everywhere)
      mixed_config b32 = c.mix;
      b32.low = sim::formats::binary32;
      mixed_runner r32(nets[jb.network], tests[jb.network], c.samples, b32, c.threads);
      s.type = selection::kind::uniform_low;
      auto r = r32.run(s);
      r.weighted_cost = c.mix.cost_of(sim::formats::binary32) / c.mix.cost_of(c.mix.high);
      out += csv_line({name, "uniform-binary32", "", 0, r});
      // the exact reference: the runner's binary64 Dot2 pass (its accuracy; cost not applicable)
      mixed_result e;
      e.accuracy = R.reference_accuracy();
      e.fraction = 1;
      e.weighted_cost = std::nan("");
      out += csv_line({name, "exact", "", 0, e});
    } else {
      selection s;
      s.type = selection::kind::threshold;
      s.indicator = jb.indicator;
      s.tau = jb.tau;
      const auto r = R.run(s);
      out += csv_line({name, "algorithm1", jb.indicator, jb.tau, r});
      for (const auto& b : c.baselines) {
        selection m;
        m.type = b == "random" ? selection::kind::random : b == "smallest" ? selection::kind::smallest : selection::kind::oracle;
        m.counts = &r.counts;
        m.seed = c.seed + j;
        out += csv_line({name, b, jb.indicator, jb.tau, R.run(m)});
      }
    }
    ++done;
    if (tty) std::fprintf(stderr, "\r[%zu/%zu] %s %s %s %g          ", done, mine, name.c_str(), jb.kind.c_str(),
                          jb.indicator.c_str(), jb.tau);
  }
  if (tty) std::fprintf(stderr, "\r%70s\r", "");
  write_atomic(c.out / ("shard-" + std::to_string(shard) + "-of-" + std::to_string(shards) + ".csv"), out);
}

std::string merge_sweep(const sweep_config& c, double wall_seconds) {
  // collect the rows of every shard file; each must be a shard of this
  // configuration, of one shard count, present exactly once, whole and parsable
  std::map<std::size_t, fs::path> found;  // shard index -> file
  std::size_t count = 0;
  std::vector<std::string> lines;
  const std::string hash = config_hash(c);
  if (!fs::is_directory(c.out)) throw std::runtime_error(c.out.string() + ": no such folder (run the sweep first)");
  for (const auto& e : fs::directory_iterator(c.out)) {
    const auto name = e.path().filename().string();
    if (name.rfind("shard-", 0) != 0 || e.path().extension() != ".csv") continue;
    const std::string f = e.path().string();
    std::ifstream in(e.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.empty() || text.back() != '\n') throw std::runtime_error(f + ": truncated (no final newline)");
    std::stringstream ss(text);
    std::string first, header;
    std::getline(ss, first);
    unsigned long long i = 0, n = 0;
    char h[17] = {};
    if (std::sscanf(first.c_str(), "# mpacc sweep shard %llu of %llu, configuration %16[0-9a-f]", &i, &n, h) != 3 ||
        n == 0 || i >= n)
      throw std::runtime_error(f + ": not a sweep shard (bad first line)");
    if (h != hash)
      throw std::runtime_error(f + ": a shard of another configuration (" + std::string(h) + ", this one is " + hash +
                               "): remove it or merge with its own configuration");
    if (count && n != count)
      throw std::runtime_error(f + ": a shard of " + std::to_string(n) + " beside shards of " + std::to_string(count));
    count = n;
    if (!found.emplace(i, e.path()).second) throw std::runtime_error(f + ": shard " + std::to_string(i) + " appears twice");
    std::getline(ss, header);
    if (header + "\n" != kHeader) throw std::runtime_error(f + ": not a sweep shard (bad header)");
    std::size_t line_no = 2;
    for (std::string line; std::getline(ss, line);) {
      ++line_no;
      // 11 fields; fields 4..11 numbers
      std::vector<std::string> cells;
      std::stringstream ls(line);
      for (std::string cell; std::getline(ls, cell, ',');) cells.push_back(cell);
      if (!line.empty() && line.back() == ',') cells.emplace_back();
      bool ok = cells.size() == 11;
      for (std::size_t k = 3; ok && k < cells.size(); ++k) {
        const char* b = cells[k].c_str();
        char* endp = nullptr;
        (void)std::strtod(b, &endp);
        ok = !cells[k].empty() && endp == b + cells[k].size();
      }
      if (!ok) throw std::runtime_error(f + ":" + std::to_string(line_no) + ": not a result row");
      lines.push_back(line);
    }
  }
  if (found.empty()) throw std::runtime_error(c.out.string() + ": no shard-*.csv to merge (run the sweep first)");
  for (std::size_t i = 0; i < count; ++i)
    if (!found.count(i)) throw std::runtime_error(c.out.string() + ": shard " + std::to_string(i) + " of " +
                                                  std::to_string(count) + " is missing");
  // canonical order: network, then strategy rows as the job list produces them
  const auto all = jobs_of(c);
  std::map<std::string, std::size_t> order;
  std::size_t pos = 0;
  for (const auto& jb : all) {
    const std::string name = net_name(c.networks[jb.network]);
    auto key = [&](const std::string& strat, const std::string& ind, double tau) {
      std::string k = name + "," + strat + "," + ind + ",";
      put_number(k, tau);
      return k;
    };
    if (jb.kind == "uniform") {
      for (const char* s : {"uniform-low", "uniform-high", "uniform-binary32", "exact"}) order[key(s, "", 0)] = pos++;
    } else {
      order[key("algorithm1", jb.indicator, jb.tau)] = pos++;
      for (const auto& b : c.baselines) order[key(b, jb.indicator, jb.tau)] = pos++;
    }
  }
  auto rank = [&](const std::string& line) {
    std::size_t commas = 0, i = 0;
    for (; i < line.size() && commas < 4; ++i) commas += line[i] == ',';
    const auto it = order.find(line.substr(0, i - 1));
    return it == order.end() ? SIZE_MAX : it->second;
  };
  std::sort(lines.begin(), lines.end(), [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  for (std::size_t k = 0; k < lines.size(); ++k)
    if (rank(lines[k]) != k)
      throw std::runtime_error(c.out.string() + ": the shards' rows do not match the sweep (" +
                               (rank(lines[k]) == SIZE_MAX ? "unexpected" : "duplicate or missing") + " row '" +
                               lines[k].substr(0, 60) + "')");
  if (lines.size() != order.size())
    throw std::runtime_error(c.out.string() + ": the shards hold " + std::to_string(lines.size()) + " rows, the sweep has " +
                             std::to_string(order.size()));
  std::string csv = kHeader;
  for (const auto& l : lines) csv += l + "\n";
  write_atomic(c.out / "results.csv", csv);

  nlohmann::json m;
  m["mpacc_version"] = MPACC_VERSION;
  m["git_hash"] = MPACC_GIT_HASH;
  m["compiler"] = __VERSION__;
  m["mpfr_version"] = mpfr_get_version();
  m["seed"] = c.seed;
  m["config"] = nlohmann::json::parse(to_json(c));
  m["wall_seconds"] = wall_seconds;
  m["shards"] = count;
  m["configuration_hash"] = hash;
  write_atomic(c.out / "manifest.json", m.dump(2) + "\n");

  // figures per network: one data block per series (gnuplot 'index'), rows in tau order
  // columns: tau accuracy weighted_cost mean_relative_error fraction_l1 fraction_l2 fraction_l3
  std::vector<std::vector<std::string>> table;
  {
    std::stringstream ss(csv);
    std::string line;
    std::getline(ss, line);
    while (std::getline(ss, line)) {
      std::vector<std::string> f;
      std::stringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) f.push_back(cell);
      if (f.size() == 11) table.push_back(f);
    }
  }
  for (const auto& ns : c.networks) {
    const std::string name = net_name(ns);
    std::string dat = "# tau accuracy weighted_cost mean_relative_error fraction_l1 fraction_l2 fraction_l3\n";
    std::vector<std::string> titles;
    auto block = [&](const std::string& strat, const std::string& ind, const std::string& title) {
      dat += "\n\n# " + title + "\n";
      std::size_t n = 0;
      for (const auto& f : table)
        if (f[0] == name && f[1] == strat && f[2] == ind) {
          dat += f[3] + ' ' + f[4] + ' ' + f[6] + ' ' + f[7] + ' ' + f[8] + ' ' + f[9] + ' ' + f[10] + '\n';
          ++n;
        }
      if (n == 0) dat += "nan nan nan nan nan nan nan\n";
      titles.push_back(title);
      return titles.size() - 1;
    };
    std::vector<std::pair<std::size_t, std::string>> alg, base, uni;
    for (const auto& ind : c.indicators) {
      alg.push_back({block("algorithm1", ind, "algorithm1 (" + ind + ")"), ind});
      for (const auto& b : c.baselines) base.push_back({block(b, ind, b + " at the rate of " + ind), ind});
    }
    for (const char* u : {"uniform-low", "uniform-high", "uniform-binary32"}) uni.push_back({block(u, "", u), u});
    // the blocks start after the header comment: gnuplot counts them from 0
    write_atomic(c.out / (name + ".dat"), dat);
    const std::string file = gnuplot_quote(name + ".dat");
    auto idx = [&](std::size_t k) { return file + " index " + std::to_string(k); };
    std::string p = "set key outside right\nset grid\nset xlabel 'weighted cost relative to uniform " +
                    sim::to_string(c.mix.high) + "'\nset ylabel 'test accuracy'\nset title " + gnuplot_quote(name +
                    ": accuracy against cost") + "\nplot ";
    bool first = true;
    for (const auto& [k, ind] : alg) {
      p += std::string(first ? "" : ", ") + idx(k) + " using 3:2 with linespoints lw 2 title " + gnuplot_quote(titles[k]);
      first = false;
    }
    for (const auto& [k, ind] : base) p += ", " + idx(k) + " using 3:2 with linespoints dt 2 title " + gnuplot_quote(titles[k]);
    for (const auto& [k, u] : uni) p += ", " + idx(k) + " using 3:2 with points pt 7 ps 2 title " + gnuplot_quote(u);
    draw_plot(c.out, name + "-accuracy-cost", p + "\n");
    std::string t = "set key outside right\nset grid\nset logscale x\nset xlabel 'tau'\nset ylabel 'test accuracy'\n"
                    "set title " + gnuplot_quote(name + ": accuracy against tau") + "\nplot ";
    std::string f = "set key outside right\nset grid\nset logscale x\nset xlabel 'tau'\nset ylabel 'fraction recomputed'\n"
                    "set title " + gnuplot_quote(name + ": recomputation per layer against tau") + "\nplot ";
    std::string e = "set key outside right\nset grid\nset logscale y\nset xlabel 'weighted cost'\n"
                    "set ylabel 'mean relative error of the logits'\nset title " + gnuplot_quote(name + ": error against cost") + "\nplot ";
    first = true;
    for (const auto& [k, ind] : alg) {
      const std::string sep = first ? "" : ", ";
      t += sep + idx(k) + " using 1:2 with linespoints title " + gnuplot_quote(ind);
      for (int layer = 1; layer <= 3; ++layer)
        f += (first && layer == 1 ? "" : ", ") + idx(k) + " using 1:" + std::to_string(4 + layer) +
             " with linespoints title " + gnuplot_quote(ind + " layer " + std::to_string(layer));
      e += sep + idx(k) + " using 3:4 with linespoints lw 2 title " + gnuplot_quote("algorithm1 (" + ind + ")");
      first = false;
    }
    for (const auto& [k, ind] : base) e += ", " + idx(k) + " using 3:4 with linespoints dt 2 title " + gnuplot_quote(titles[k]);
    for (const auto& [k, u] : uni) e += ", " + idx(k) + " using 3:4 with points pt 7 ps 2 title " + gnuplot_quote(u);
    draw_plot(c.out, name + "-accuracy-tau", t + "\n");
    draw_plot(c.out, name + "-fraction-tau", f + "\n");
    draw_plot(c.out, name + "-error-cost", e + "\n");
  }
  return csv;
}

}  // namespace mpacc::analysis
