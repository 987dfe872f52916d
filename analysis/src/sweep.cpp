// SPDX-License-Identifier: MIT
// Running a sweep (jobs, shards) and merging its shards.
#include "mpacc/analysis/sweep.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mpfr.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "mpacc/analysis/plot.hpp"
#include "mpacc/io/model_io.hpp"
#include "mpacc/train/train.hpp"
#include "mpacc/sim/threads.hpp"
#include "mpacc/version.hpp"
#include "sweep_internal.hpp"

#ifndef MPACC_GIT_HASH
#define MPACC_GIT_HASH "unknown"
#endif

namespace mpacc::analysis {

namespace fs = std::filesystem;

namespace detail {

std::vector<job> jobs_of(const sweep_config& c) {
  std::vector<job> v;
  for (std::size_t n = 0; n < c.networks.size(); ++n)
    for (std::size_t o = 0; o < c.orders.size(); ++o) {
      v.push_back({n, o, true, "", 0});
      for (const auto& ind : c.indicators_for(c.networks[n], c.orders[o]))
        for (double tau : c.taus) v.push_back({n, o, false, ind, tau});
    }
  return v;
}

std::string static_name(double q) {
  char b[32];
  std::snprintf(b, sizeof b, "static-q%g", q);
  return b;
}

std::vector<std::pair<std::string, std::size_t>> rows_of(const sweep_config& c, const job& jb) {
  std::vector<std::pair<std::string, std::size_t>> r;
  if (jb.uniform) {
    for (const char* s : {"uniform-low", "uniform-high", "uniform-binary32"}) r.emplace_back(s, 0);
    for (const auto& f : c.mix.ladder) r.emplace_back("uniform-" + sim::to_string(f), 0);
    r.emplace_back("exact", 0);
    return r;
  }
  r.emplace_back("algorithm1", 0);
  for (const auto& b : c.baselines) {
    const auto k = parse_baseline(b);
    const bool random = k == selection::kind::random || k == selection::kind::random_active;
    for (std::size_t s = 0; s < (random ? c.seeds : 1); ++s) r.emplace_back(b, s);
  }
  if (!c.mix.ladder.empty()) r.emplace_back("ladder", 0);
  if (c.overflow_aware) r.emplace_back("overflow-aware", 0);
  for (double q : c.calibration_quantiles) r.emplace_back(static_name(q), 0);
  return r;
}

std::string file_safe(std::string s) {
  for (char& ch : s)
    if (ch == ':') ch = '-';
  return s;
}

}  // namespace detail

using namespace detail;

namespace {

fs::path model_file(const sweep_config& c, const network_spec& n) {
  return c.models_dir / (network_name(n) + "-e" + std::to_string(c.epochs) + "-l" + std::to_string(c.train_limit) +
                         "-s" + std::to_string(c.seed) + ".mpnn");
}

// The network of n: its model file, the cached one, or trained and cached.
// Training runs OpenBLAS on one thread: its results then do not depend on
// the machine's core count (OpenBLAS splits a product differently with more
// threads, and the weights differ in the last bits), and on 2 cores two
// networks trained side by side (train_missing) take half the time that one
// 2-thread training at a time took (the small products of a 64-image batch
// keep the second thread mostly waiting).
nn::mlp obtain_network(const sweep_config& c, const network_spec& n, const fs::path& data_dir) {
  const auto act = sim::activation_fn{sim::parse_activation(n.act), 0.01};
  if (!n.model.empty()) return io::load_any(n.model, act);
  fs::create_directories(c.models_dir);
  const fs::path file = model_file(c, n);
  if (fs::exists(file)) return io::load_model(file);
  const auto train_set = io::load_dataset(data_dir, n.dataset, true, c.train_limit);
  train::train_options opt;
  opt.epochs = c.epochs;
  opt.batch = c.batch;
  opt.seed = c.seed;
  opt.lr = n.dataset == "fashion-mnist" ? 0.01 : 0.05;  // docs/networks.md
  opt.threads = 1;
  std::fprintf(stderr, "training %s (%zu epochs on %zu images)...\n", network_name(n).c_str(), c.epochs,
               train_set.rows);
  std::vector<std::size_t> shape = {train_set.cols};
  shape.insert(shape.end(), n.hidden.begin(), n.hidden.end());
  shape.push_back(10);
  auto net = train::fit(shape, act, train_set, opt);
  io::save_model(net, file, nlohmann::json{{"dataset", n.dataset}, {"act", n.act}}.dump());
  return net;
}

// Trains the networks of `which` that have no model file yet, as many side by
// side as the sweep has threads (each on one thread: obtain_network).
void train_missing(const sweep_config& c, const std::vector<std::size_t>& which, const fs::path& data_dir) {
  std::vector<std::size_t> missing;
  for (std::size_t i : which)
    if (c.networks[i].model.empty() && !fs::exists(model_file(c, c.networks[i]))) missing.push_back(i);
  if (missing.size() < 2) return;  // one (or none): trained when first used
  fs::create_directories(c.models_dir);
  const int workers = std::min(sim::thread_count(c.threads), static_cast<int>(missing.size()));
  const auto n = static_cast<std::ptrdiff_t>(missing.size());
  std::string error;
#pragma omp parallel for num_threads(workers) schedule(dynamic)
  for (std::ptrdiff_t q = 0; q < n; ++q) {
    try {
      (void)obtain_network(c, c.networks[missing[static_cast<std::size_t>(q)]], data_dir);
    } catch (const std::exception& ex) {
#pragma omp critical(mpacc_train_error)
      if (error.empty()) error = ex.what();
    }
  }
  if (!error.empty()) throw std::runtime_error(error);
}

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

std::string shard_line(const sweep_config& c, std::size_t shard, std::size_t shards) {
  return "# mpacc sweep shard " + std::to_string(shard) + " of " + std::to_string(shards) + ", configuration " +
         config_hash(c) + "\n";
}

std::string diagnostics_data(const std::vector<layer_diagnostics>& d, double u) {
  // one block per layer: kappa_dot kappa_act rel_error kappa_dot*u
  std::string s = "# per layer (blocks): kappa_dot kappa_act relative_error kappa_dot*u_low\n";
  for (std::size_t k = 0; k < d.size(); ++k) {
    s += "\n\n# layer " + std::to_string(k + 1) + "\n";
    for (std::size_t t = 0; t < d[k].kappa_dot.size(); ++t) {
      put_number(s, d[k].kappa_dot[t]);
      s += ' ';
      put_number(s, d[k].kappa_act[t]);
      s += ' ';
      put_number(s, d[k].rel_error[t]);
      s += ' ';
      put_number(s, d[k].kappa_dot[t] * u);
      s += '\n';
    }
  }
  return s;
}

}  // namespace

result_row row_of(const std::string& net, const std::string& order, const std::string& strategy,
                  const std::string& indicator, double tau, std::size_t seed, const mixed_result& r) {
  result_row x;
  x.network = net;
  x.order = order;
  x.strategy = strategy;
  x.indicator = indicator;
  x.tau = tau;
  x.seed = seed;
  x.samples = r.samples;
  x.correct = r.correct;
  x.disagreements = r.disagreements;
  x.kl_mean = r.kl_mean;
  x.kl_q99 = r.kl_q99;
  x.rel_hidden = r.rel_hidden;
  x.rel_logits = r.rel_logits;
  x.mean_relative_error = r.mean_relative_error;
  x.fraction = r.fraction;
  x.weighted_cost = r.weighted_cost;
  x.tile_cost = r.tile_cost;
  x.fraction_per_layer = r.fraction_per_layer;
  return x;
}

void pair_with(result_row& x, const mixed_result& mine, const std::string& other_name, const mixed_result& other) {
  x.paired_with = other_name;
  x.mcnemar_b = x.mcnemar_c = 0;
  for (std::size_t s = 0; s < mine.disagrees.size(); ++s) {
    x.mcnemar_b += mine.disagrees[s] && !other.disagrees[s];
    x.mcnemar_c += !mine.disagrees[s] && other.disagrees[s];
  }
  x.mcnemar_p = mcnemar_p(x.mcnemar_b, x.mcnemar_c);
}

void run_sweep(const sweep_config& c, std::size_t shard, std::size_t shards) {
  if (shards == 0 || shard >= shards) throw std::invalid_argument("shard index must be below the shard count");
  fs::create_directories(c.out);
  const fs::path data_dir = c.data_dir.empty() ? io::default_data_dir() : c.data_dir;
  const auto all = jobs_of(c);
  const bool tty = isatty(fileno(stderr));
  std::string out = shard_line(c, shard, shards) + csv_header();
  std::map<std::size_t, nn::mlp> nets;
  std::map<std::size_t, io::dataset> tests;
  std::map<std::size_t, std::vector<std::vector<double>>> references;  // per network: the reference pass
  std::vector<std::size_t> mine;
  for (std::size_t j = shard; j < all.size(); j += shards) mine.push_back(j);
  {
    std::vector<std::size_t> used;
    for (std::size_t j : mine)
      if (std::find(used.begin(), used.end(), all[j].network) == used.end()) used.push_back(all[j].network);
    train_missing(c, used, data_dir);
  }
  std::size_t done = 0;
  // the jobs of one (network, order) share a runner; its threshold jobs run
  // in parallel (one thread each) once the runner's shared results exist
  for (std::size_t first = 0; first < mine.size();) {
    const auto t_group = std::chrono::steady_clock::now();
    const job& head = all[mine[first]];
    std::size_t last = first;
    while (last < mine.size() && all[mine[last]].network == head.network && all[mine[last]].order == head.order) ++last;
    const auto& ns = c.networks[head.network];
    if (!nets.contains(head.network)) {
      nets[head.network] = obtain_network(c, ns, data_dir);
      tests[head.network] = io::load_dataset(data_dir, ns.dataset, false, c.samples);
      if (c.input_scale != 1)
        for (auto& x : tests[head.network].x) x *= c.input_scale;
      if (c.samples > tests[head.network].rows)
        throw std::runtime_error("samples: " + std::to_string(c.samples) + " exceeds the " +
                                 std::to_string(tests[head.network].rows) + " test images of " + ns.dataset);
    }
    mixed_config mix = c.mix;
    mix.precision.order = c.orders[head.order];
    const auto ref_it = references.find(head.network);
    const mixed_runner R(nets[head.network], tests[head.network], c.samples, mix, c.threads,
                         ref_it == references.end() ? nullptr : &ref_it->second);
    if (ref_it == references.end()) references[head.network] = R.reference_outputs();
    const std::string name = network_name(ns), order = sim::to_string(c.orders[head.order]);
    selection ls;
    ls.type = selection::kind::uniform_low;
    const mixed_result low = R.run(ls);
    std::vector<std::string> text(last - first);
    auto progress = [&](const job& jb) {
      if (tty)
        std::fprintf(stderr, "\r[%zu/%zu] %s %s %s %g          ", done, mine.size(), name.c_str(), order.c_str(),
                     jb.uniform ? "uniform" : jb.indicator.c_str(), jb.tau);
    };
    // uniform jobs first (multi-threaded runs), then the threshold jobs side by side
    for (std::size_t q = first; q < last; ++q) {
      const job& jb = all[mine[q]];
      if (!jb.uniform) continue;
      std::string& o = text[q - first];
      o += to_csv(row_of(name, order, "uniform-low", "", 0, 0, low));
      selection s;
      s.type = selection::kind::uniform_high;
      const auto high = R.run(s);
      auto hrow = row_of(name, order, "uniform-high", "", 0, 0, high);
      pair_with(hrow, high, "uniform-low", low);
      o += to_csv(hrow);
      // uniform binary32: its own runner (binary32 everywhere)
      mixed_config b32 = mix;
      b32.precision.acc = {sim::formats::binary32};
      const mixed_runner r32(nets[head.network], tests[head.network], c.samples, b32, c.threads,
                             &R.reference_outputs());
      s.type = selection::kind::uniform_low;
      const auto r = r32.run(s);
      auto brow = row_of(name, order, "uniform-binary32", "", 0, 0, r);
      brow.weighted_cost = brow.tile_cost = c.mix.cost_of(sim::formats::binary32) / c.mix.cost_of(c.mix.high);
      brow.fraction = 0;
      std::fill(brow.fraction_per_layer.begin(), brow.fraction_per_layer.end(), 0.0);
      pair_with(brow, r, "uniform-low", low);
      o += to_csv(brow);
      // each intermediate level of a ladder, uniformly
      for (const auto& f : c.mix.ladder) {
        mixed_config uf = mix;
        uf.precision.acc = {f};
        const mixed_runner rf(nets[head.network], tests[head.network], c.samples, uf, c.threads,
                              &R.reference_outputs());
        const auto ru = rf.run(s);
        auto urow = row_of(name, order, "uniform-" + sim::to_string(f), "", 0, 0, ru);
        urow.weighted_cost = urow.tile_cost = c.mix.cost_of(f) / c.mix.cost_of(c.mix.high);
        urow.fraction = 0;
        std::fill(urow.fraction_per_layer.begin(), urow.fraction_per_layer.end(), 0.0);
        pair_with(urow, ru, "uniform-low", low);
        o += to_csv(urow);
      }
      // the reference pass itself: its accuracy (errors 0 by definition; cost not applicable)
      result_row e;
      e.network = name;
      e.order = order;
      e.strategy = "exact";
      e.samples = R.samples();
      e.correct = static_cast<std::size_t>(std::llround(R.reference_accuracy() * static_cast<double>(R.samples())));
      e.fraction = 1;
      e.weighted_cost = e.tile_cost = std::nan("");
      e.fraction_per_layer.assign(low.fraction_per_layer.size(), 1.0);
      o += to_csv(e);
      if (c.diagnostics)
        write_atomic(c.out / ("diag-" + name + "-" + file_safe(order) + ".dat"),
                     diagnostics_data(R.diagnostics(), mix.low(0).unit_roundoff()));
      ++done;
      progress(jb);
    }
    bool threshold = false, kappa = false;
    for (std::size_t q = first; q < last; ++q) {
      threshold |= !all[mine[q]].uniform;
      kappa |= all[mine[q]].indicator == "kappa";
    }
    if (threshold) R.precompute(kappa);
    // the calibration runner of the static configurations: the first training images
    std::unique_ptr<mixed_runner> Rc;
    if (threshold && !c.calibration_quantiles.empty()) {
      auto calib = io::load_dataset(data_dir, ns.dataset, true, c.calibration_samples);
      if (c.input_scale != 1)
        for (auto& x : calib.x) x *= c.input_scale;
      Rc = std::make_unique<mixed_runner>(nets[head.network], calib, c.calibration_samples, mix, c.threads);
      Rc->precompute(kappa);
    }
    const auto n_jobs = static_cast<std::ptrdiff_t>(last - first);
    const int workers = sim::thread_count(c.threads);
    std::string error;
#pragma omp parallel for num_threads(workers) schedule(dynamic)
    for (std::ptrdiff_t q = 0; q < n_jobs; ++q) {
      const job& jb = all[mine[first + static_cast<std::size_t>(q)]];
      if (jb.uniform) continue;
      try {
        std::string o;
        selection s;
        s.type = selection::kind::threshold;
        s.indicator = jb.indicator;
        s.tau = jb.tau;
        const auto a1 = R.run(s, 1);
        auto arow = row_of(name, order, "algorithm1", jb.indicator, jb.tau, 0, a1);
        pair_with(arow, a1, "uniform-low", low);
        o += to_csv(arow);
        for (const auto& [b, seed] : rows_of(c, jb)) {
          if (std::find(c.baselines.begin(), c.baselines.end(), b) == c.baselines.end()) continue;  // not a baseline
          selection m;
          m.type = parse_baseline(b);
          m.counts = &a1.counts;
          m.seed = c.seed + 7919 * (seed + 1);  // the same seeds at every tau: smoother curves
          const auto r = R.run(m, 1);
          auto brow = row_of(name, order, b, jb.indicator, jb.tau, seed, r);
          pair_with(brow, r, "algorithm1", a1);
          o += to_csv(brow);
        }
        // beyond Algorithm 1: the ladder, overflow-aware recomputation, static configurations
        auto extra = [&](const std::string& strategy, const selection& e) {
          const auto r = R.run(e, 1);
          auto row = row_of(name, order, strategy, jb.indicator, jb.tau, 0, r);
          pair_with(row, r, "algorithm1", a1);
          o += to_csv(row);
        };
        if (!c.mix.ladder.empty()) {
          selection e = s;
          e.ladder = true;
          extra("ladder", e);
        }
        if (c.overflow_aware) {
          selection e = s;
          e.overflow_aware = true;
          extra("overflow-aware", e);
        }
        for (double qv : c.calibration_quantiles) {
          selection dyn = s;
          dyn.ladder = c.calibration_ladder;
          const auto levels = calibrate_levels(*Rc, dyn, qv, 1);
          selection e;
          e.type = selection::kind::static_map;
          e.ladder = c.calibration_ladder;
          e.static_levels = &levels;
          e.overflow_aware = c.overflow_aware;
          extra(static_name(qv), e);
        }
        text[static_cast<std::size_t>(q)] = std::move(o);
      } catch (const std::exception& ex) {
#pragma omp critical(mpacc_sweep_error)
        if (error.empty()) error = ex.what();
      }
#pragma omp critical(mpacc_sweep_progress)
      {
        ++done;
        progress(jb);
      }
    }
    if (!error.empty()) throw std::runtime_error(error);
    for (auto& t : text) out += t;
    std::fprintf(stderr, "%s%s, %s: %zu jobs in %.1f s\n", tty ? "\r" : "", name.c_str(), order.c_str(), last - first,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_group).count());
    first = last;
  }
  if (tty) std::fprintf(stderr, "\r%78s\r", "");
  write_atomic(c.out / ("shard-" + std::to_string(shard) + "-of-" + std::to_string(shards) + ".csv"), out);
}

std::vector<result_row> merge_sweep(const sweep_config& c, double wall_seconds) {
  // collect the rows of every shard file; each must be a shard of this
  // configuration, of one shard count, present exactly once, whole and parsable
  std::map<std::size_t, fs::path> found;  // shard index -> file
  std::size_t count = 0;
  std::vector<result_row> rows;
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
    if (!found.emplace(i, e.path()).second)
      throw std::runtime_error(f + ": shard " + std::to_string(i) + " appears twice");
    std::getline(ss, header);
    if (header + "\n" != csv_header()) throw std::runtime_error(f + ": not a sweep shard (bad header)");
    std::size_t line_no = 2;
    for (std::string line; std::getline(ss, line);) {
      ++line_no;
      try {
        rows.push_back(parse_csv_row(line));
      } catch (const std::exception& ex) {
        throw std::runtime_error(f + ":" + std::to_string(line_no) + ": not a result row (" + ex.what() + ")");
      }
    }
  }
  if (found.empty()) throw std::runtime_error(c.out.string() + ": no shard-*.csv to merge (run the sweep first)");
  for (std::size_t i = 0; i < count; ++i)
    if (!found.contains(i))
      throw std::runtime_error(c.out.string() + ": shard " + std::to_string(i) + " of " + std::to_string(count) +
                               " is missing");
  // canonical order: the job list, and within a job the order rows_of gives
  const auto all = jobs_of(c);
  std::map<std::string, std::size_t> pos;  // "network,order,strategy,indicator,tau,seed" -> rank
  std::size_t rank = 0;
  auto key_of = [](const std::string& net, const std::string& order, const std::string& strat, const std::string& ind,
                   double tau, std::size_t seed) {
    std::string k = net + "," + order + "," + strat + "," + ind + ",";
    put_number(k, tau);
    return k + "," + std::to_string(seed);
  };
  for (const auto& jb : all)
    for (const auto& [strat, seed] : rows_of(c, jb))
      pos[key_of(network_name(c.networks[jb.network]), sim::to_string(c.orders[jb.order]), strat, jb.indicator,
                 jb.uniform ? 0.0 : jb.tau, seed)] = rank++;
  std::vector<std::pair<std::size_t, result_row>> ranked;
  for (auto& r : rows) {
    const auto k = key_of(r.network, r.order, r.strategy, r.indicator, r.tau, r.seed);
    const auto it = pos.find(k);
    if (it == pos.end())
      throw std::runtime_error(c.out.string() + ": the shards hold a row the sweep does not have ('" + k.substr(0, 80) +
                               "')");
    ranked.emplace_back(it->second, std::move(r));
  }
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t k = 0; k < ranked.size(); ++k)
    if (ranked[k].first != k)
      throw std::runtime_error(c.out.string() + ": the shards' rows do not match the sweep (row " + std::to_string(k) +
                               (ranked[k].first < k ? " appears twice)" : " is missing)"));
  if (ranked.size() != rank)
    throw std::runtime_error(c.out.string() + ": the shards hold " + std::to_string(ranked.size()) +
                             " rows, the sweep has " + std::to_string(rank));
  rows.clear();
  std::string csv = csv_header();
  for (auto& [k, r] : ranked) {
    csv += to_csv(r);
    rows.push_back(std::move(r));
  }
  write_atomic(c.out / "results.csv", csv);

  nlohmann::json m;
  m["mpacc_version"] = MPACC_VERSION;
  m["git_hash"] = MPACC_GIT_HASH;
  m["compiler"] = __VERSION__;
  m["mpfr_version"] = mpfr_get_version();
  m["seed"] = c.seed;
  m["config"] = nlohmann::json::parse(to_json(c));
  if (!(wall_seconds > 0)) {
    // a merge on its own: keep the run's time from the manifest a whole run wrote
    try {
      std::ifstream old(c.out / "manifest.json");
      const auto j = nlohmann::json::parse(old);
      if (j.contains("wall_seconds") && j["wall_seconds"].is_number()) wall_seconds = j["wall_seconds"].get<double>();
    } catch (const std::exception&) {
      wall_seconds = 0;  // no manifest yet (sharded runs): the time is not known here
    }
  }
  m["wall_seconds"] = wall_seconds;
  m["shards"] = count;
  m["configuration_hash"] = hash;
  write_atomic(c.out / "manifest.json", m.dump(2) + "\n");
  write_sweep_report(c, rows, wall_seconds);
  return rows;
}

}  // namespace mpacc::analysis
