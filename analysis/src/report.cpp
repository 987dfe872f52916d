// SPDX-License-Identifier: MIT
#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <gnuplot-iostream.h>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

#include "mpacc/analysis/plot.hpp"
#include "mpacc/analysis/validate.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::analysis {

namespace {
namespace fs = std::filesystem;
void put(std::string& s, double v) { put_number(s, v); }
void draw(const fs::path& d, const std::string& n, const std::string& b) { draw_plot(d, n, b); }
}  // namespace

void write_report(const validation_result& r, const fs::path& dir, const std::string& manifest_json, bool plots) {
  fs::create_directories(dir);
  // 1. per-component CSV
  auto names = [](unsigned f) {
    auto t = sim::flags_to_string(f);
    std::replace(t.begin(), t.end(), ',', '+');
    return t;
  };
  std::string csv =
      "sample,layer,component,v_ref,v_sim,y_ref,y_sim,error_v,error_y,kappa_dot,kappa_act,bound_v,bound_y,"
      "prob_bound_v,prob_bound_y,first_order_rel,error_over_bound,error_local_v,bound_local_v,act_dominated,"
      "uncovered,flags,flags_act,flags_upstream\n";
  for (std::size_t s = 0; s < r.csv_rows.size(); ++s) {
    std::size_t layer = 0, comp = 0;
    for (const auto& c : r.csv_rows[s]) {
      csv += std::to_string(s) + "," + std::to_string(layer + 1) + "," + std::to_string(comp) + ",";
      for (double v : {c.v_ref, c.v_sim, c.y_ref, c.y_sim, c.err_v, c.err_y, c.kappa_dot, c.kappa_act, c.bound_v,
                       c.bound_y, c.prob_bound_v, c.prob_bound_y, c.first_order,
                       c.bound_y > 0 ? c.err_y / c.bound_y : 0.0, c.err_local, c.bound_local}) {
        put(csv, v);
        csv += ',';
      }
      csv += std::string(c.act_dominated ? "1," : "0,");
      csv += std::string(to_string(static_cast<uncovered_cause>(c.cause))) + ",";
      csv += names(c.flags) + "," + names(c.flags_act) + "," + names(c.flags_in) + "\n";
      if (++comp == r.layer_sizes[layer]) {
        comp = 0;
        ++layer;
      }
    }
  }
  write_atomic(dir / "components.csv", csv);

  // 2. summary JSON
  auto qjson = [](const quantiles& q) {
    return nlohmann::json{{"n", q.n}, {"q50", q.q50}, {"q90", q.q90}, {"q99", q.q99}, {"max", q.max}};
  };
  nlohmann::json j;
  j["config"] = r.config;
  j["precision"] = nlohmann::json::parse(r.precision.to_json());
  j["reference_inputs"] = std::string(to_string(r.ref_inputs));
  j["inputs"] = {{"stored", r.inputs_stored}, {"inexact", r.inputs_inexact}, {"overflow_or_nan", r.inputs_overflow}};
  j["violations"] = r.violations();
  j["seconds_simulation"] = r.seconds_simulation;
  j["seconds_reference"] = r.seconds_reference;
  j["seconds_bounds"] = r.seconds_bounds;
  for (std::size_t li = 0; li < r.layers.size(); ++li) {
    const auto& l = r.layers[li];
    nlohmann::json e;
    e["layer"] = l.layer == 0 ? nlohmann::json("all") : nlohmann::json(l.layer);
    if (l.layer && l.layer <= r.layer_kinds.size()) e["kind"] = r.layer_kinds[l.layer - 1];
    if (l.layer) {
      e["unit_roundoff"] = r.layer_u[l.layer - 1];
      e["roundings_per_term_max"] = r.layer_kmax[l.layer - 1];
      e["rounding_steps_per_inner_product"] = r.layer_steps[l.layer - 1];
    }
    e["components"] = l.components;
    e["uncovered"] = l.uncovered;
    nlohmann::json causes;
    for (std::size_t c = 1; c < uncovered_causes; ++c)
      causes[std::string(to_string(static_cast<uncovered_cause>(c)))] = l.uncovered_by_cause[c];
    e["uncovered_by_cause"] = causes;
    e["violations_deterministic_v"] = l.violations_v;
    e["violations_deterministic_y"] = l.violations_y;
    e["per_inner_product"] = {{"checked", l.local_checked},
                              {"violations_deterministic", l.local_violations},
                              {"vacuous_deterministic", l.local_vacuous}};
    nlohmann::json probs = nlohmann::json::array();
    for (const auto& c : l.local)
      probs.push_back({{"lambda", c.lambda},
                       {"stated_failure_probability", c.stated_failure},
                       {"checked", c.checked},
                       {"violations", c.violations},
                       {"frequency", c.frequency},
                       {"frequency_ci95", {c.ci_low, c.ci_high}},
                       {"vacuous", c.vacuous},
                       {"violations_non_vacuous", c.violations_non_vacuous}});
    e["per_inner_product"]["probabilistic"] = probs;
    const double covered = static_cast<double>(l.components - l.uncovered);
    e["propagated_probabilistic"] = {
        {"violations_v", l.prob_violations_v},
        {"violations_y", l.prob_violations_y},
        {"frequency_y", covered > 0 ? static_cast<double>(l.prob_violations_y) / covered : 0.0},
        {"stated_failure_probability",
         l.prob_propagated_failure ? nlohmann::json(*l.prob_propagated_failure) : nlohmann::json(nullptr)},
        {"error_over_bound_max", l.prob_ratio_max}};
    e["tightness"] = {{"error_over_bound_v", qjson(l.err_over_bound_v)},
                      {"error_over_bound_y", qjson(l.err_over_bound_y)},
                      {"bound_over_exact_v", qjson(l.bound_over_exact_v)},
                      {"bound_over_exact_y", qjson(l.bound_over_exact_y)},
                      {"kappa_u_estimate_over_error_v", qjson(l.estimate_over_error_v)},
                      {"kappa_u_estimate_over_error_y", qjson(l.estimate_over_error_y)},
                      {"zero_error_v", l.zero_error_v},
                      {"zero_error_y", l.zero_error_y},
                      {"output_bound_dominated_by_activation", l.act_dominated}};
    if (l.layer == 1)
      e["input_storage_term"] = {{"max", l.input_storage_term_max},
                                 {"max_over_bound_v", l.input_storage_term_over_bound_max},
                                 {"in_bounds", r.ref_inputs == reference_inputs::exact}};
    e["spearman_relative_error_vs_kappa_dot_kappa_act"] = l.spearman;
    e["spearman_pairs"] = l.spearman_n;
    e["kappa_dot_median"] = l.kappa_dot_median;
    e["kappa_dot_max"] = l.kappa_dot_max;
    j["layers"].push_back(e);
  }
  if (!manifest_json.empty()) j["manifest"] = nlohmann::json::parse(manifest_json);
  write_atomic(dir / "summary.json", j.dump(2) + "\n");
  if (!plots) return;

  // 3. plots from the CSV samples
  std::map<std::size_t, std::string> scatter;  // per layer: "x y" lines
  std::map<std::size_t, std::map<int, std::pair<std::size_t, std::size_t>>> khist;
  std::map<std::size_t, std::map<int, std::size_t>> rhist;
  for (std::size_t s = 0; s < r.csv_rows.size(); ++s) {
    std::size_t layer = 0, comp = 0;
    for (const auto& c : r.csv_rows[s]) {
      if (c.covered()) {
        if (c.y_ref != 0 && c.err_y > 0 && std::isfinite(c.kappa_dot) && c.kappa_act > 0) {
          std::string& t = scatter[layer + 1];
          put(t, c.kappa_dot * c.kappa_act);
          t += ' ';
          put(t, c.err_y / std::fabs(c.y_ref));
          t += '\n';
        }
        if (std::isfinite(c.kappa_dot) && c.kappa_dot > 0)
          ++khist[layer + 1][static_cast<int>(std::floor(4 * std::log10(c.kappa_dot)))].first;
        if (c.kappa_act > 0) ++khist[layer + 1][static_cast<int>(std::floor(4 * std::log10(c.kappa_act)))].second;
        if (c.err_y > 0 && c.bound_y > 0)
          ++rhist[layer + 1][static_cast<int>(std::floor(4 * std::log10(c.err_y / c.bound_y)))];
      }
      if (++comp == r.layer_sizes[layer]) {
        comp = 0;
        ++layer;
      }
    }
  }
  // one colour per layer, distinct in print and for colour-blind readers
  static const char* const palette[] = {"#5e3c99", "#e66101", "#1b7837", "#b2182b", "#2166ac", "#878787"};
  auto colour = [](std::size_t layer) { return std::string(palette[(layer - 1) % 6]); };
  const std::string title = "set title " + gnuplot_quote(r.config) + " font ',9'\n";
  std::string plot =
      "set logscale xy\nset format xy '1e%T'\nset xlabel 'kappa_dot * kappa_act'\n"
      "set ylabel 'relative error of the output'\nset key bottom right box opaque\nset grid\n"
      "set yrange [*:10]\n" +
      title + "plot ";
  bool first = true;
  for (const auto& [layer, lines] : scatter) {
    plot += std::string(first ? "" : ", ") + "'err_vs_kappa.dat' index " + std::to_string(layer - 1) +
            " using 1:2 with points pt 7 ps 0.3 lc rgb '" + colour(layer) + "' title 'layer " + std::to_string(layer) +
            "'";
    first = false;
  }
  if (!r.layer_u.empty()) {
    char line[320];
    std::snprintf(line, sizeof line,
                  ", %.17g * x with lines lw 2 dt 2 lc rgb 'black' title 'kappa u (u of layer 1)', %.17g * x + %.17g "
                  "with lines lw 2 lc rgb '#777777' title 'first order: kappa gamma_k(u) + u_act (layer 1)'",
                  r.layer_u[0], r.layer_gamma[0], r.u_act);
    plot += line;
  }
  // keep gnuplot's 'index' numbering aligned: empty layers get empty blocks
  std::string data = "# layer  kappa_dot*kappa_act  relative_error_of_y";
  for (std::size_t layer = 1; layer <= r.layer_sizes.size(); ++layer)
    data += "\n\n# layer " + std::to_string(layer) + "\n" + (scatter.contains(layer) ? scatter[layer] : "1 nan\n");
  write_atomic(dir / "err_vs_kappa.dat", data + "\n");
  if (!first) draw(dir, "err_vs_kappa", plot + "\n");

  // condition numbers: counts on a log scale so the tails show; kappa_act = 0
  // (inactive ReLU units) has no logarithm and is left out
  std::string kh = "# layer log10_bin_left count_kappa_dot count_kappa_act\n";
  std::string kplot =
      "set multiplot layout 1,2 title " + gnuplot_quote(r.config) +
      " font ',9'\nset logscale y\nset grid\n"
      "set key top right\nset yrange [0.8:*]\nset xlabel 'log10 kappa_dot'\nset ylabel 'components'\nplot ";
  std::string kplot2 = "set key top left\nset xlabel 'log10 kappa_act (components with kappa_act > 0)'\nplot ";
  for (std::size_t layer = 1; layer <= r.layer_sizes.size(); ++layer) {
    kh += "\n\n# layer " + std::to_string(layer) + "\n";
    for (const auto& [bin, counts] : khist[layer]) {
      put(kh, bin / 4.0);
      kh += ' ' + std::to_string(counts.first) + ' ' + std::to_string(counts.second) + '\n';
    }
    if (khist[layer].empty()) kh += "0 0 0\n";
    const std::string sep = layer > 1 ? ", " : "";
    // boxes one bin (0.25 decade) wide: a single populated bin (ReLU's kappa_act = 1) still shows
    const std::string style = " with boxes fs transparent solid 0.25 lw 2 lc rgb '" + colour(layer) +
                              "' title 'layer " + std::to_string(layer) + "'";
    kplot += sep + "'kappa_hist.dat' index " + std::to_string(layer - 1) +
             " using ($2 > 0 ? $1 + 0.125 : NaN):2:(0.25)" + style;
    kplot2 += sep + "'kappa_hist.dat' index " + std::to_string(layer - 1) +
              " using ($3 > 0 ? $1 + 0.125 : NaN):3:(0.25)" + style;
  }
  write_atomic(dir / "kappa_hist.dat", kh);
  draw(dir, "kappa_hist", kplot + "\n" + kplot2 + "\nunset multiplot\n");

  // error over bound, per layer; the bound is at 0 and must stay right of every count
  std::string rh = "# layer log10(error/bound)_bin_left count (outputs)";
  std::string rplot =
      "set xlabel 'log10(error / deterministic bound), outputs'\nset ylabel 'components'\nset grid\n"
      "set logscale y\nset xrange [*:0.5]\nset key top left box opaque\n" +
      title +
      "set arrow from 0, graph 0 to 0, graph 1 nohead lw 2 lc rgb 'red'\n"
      "set label 'bound' at 0, graph 0.95 right offset -0.5, 0 tc rgb 'red'\nplot ";
  for (std::size_t layer = 1; layer <= r.layer_sizes.size(); ++layer) {
    rh += "\n\n# layer " + std::to_string(layer) + "\n";
    for (const auto& [bin, count] : rhist[layer]) {
      put(rh, bin / 4.0);
      rh += ' ' + std::to_string(count) + '\n';
    }
    if (rhist[layer].empty()) rh += "0 0\n";
    rplot += std::string(layer > 1 ? ", " : "") + "'ratio_hist.dat' index " + std::to_string(layer - 1) +
             " using 1:($2 > 0 ? $2 : NaN) with steps lw 2 lc rgb '" + colour(layer) + "' title 'layer " +
             std::to_string(layer) + "'";
  }
  write_atomic(dir / "ratio_hist.dat", rh + "\n");
  draw(dir, "ratio_hist", rplot + "\n");
}

}  // namespace mpacc::analysis
