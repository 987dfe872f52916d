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

namespace mpacc::analysis {

namespace {
namespace fs = std::filesystem;
void put(std::string& s, double v) { put_number(s, v); }
void draw(const fs::path& d, const std::string& n, const std::string& b) { draw_plot(d, n, b); }
}  // namespace

void write_report(const validation_result& r, const fs::path& dir, const std::string& manifest_json, bool plots) {
  fs::create_directories(dir);
  // 1. per-component CSV
  std::string csv =
      "sample,layer,component,v_ref,v_sim,y_ref,y_sim,error_v,error_y,kappa_dot,kappa_act,bound_v,bound_y,"
      "prob_bound_v,prob_bound_y,first_order_rel,error_over_bound,flags\n";
  for (std::size_t s = 0; s < r.csv_rows.size(); ++s) {
    std::size_t layer = 0, comp = 0;
    for (const auto& c : r.csv_rows[s]) {
      csv += std::to_string(s) + "," + std::to_string(layer + 1) + "," + std::to_string(comp) + ",";
      for (double v : {c.v_ref, c.v_sim, c.y_ref, c.y_sim, c.err_v, c.err_y, c.kappa_dot, c.kappa_act, c.bound_v,
                       c.bound_y, c.prob_bound_v, c.prob_bound_y, c.first_order,
                       c.bound_y > 0 ? c.err_y / c.bound_y : 0.0}) {
        put(csv, v);
        csv += ',';
      }
      csv += std::to_string(c.flags) + "\n";
      if (++comp == r.layer_sizes[layer]) {
        comp = 0;
        ++layer;
      }
    }
  }
  write_atomic(dir / "components.csv", csv);

  // 2. summary JSON
  nlohmann::json j;
  j["config"] = r.config;
  j["seconds_simulation"] = r.seconds_simulation;
  j["seconds_bounds"] = r.seconds_bounds;
  for (const auto& l : r.layers) {
    nlohmann::json e;
    e["layer"] = l.layer == 0 ? nlohmann::json("all") : nlohmann::json(l.layer);
    e["components"] = l.components;
    e["uncovered_overflow_or_saturation"] = l.uncovered;
    e["violations_deterministic_v"] = l.violations_v;
    e["violations_deterministic_y"] = l.violations_y;
    e["violations_probabilistic_v"] = l.prob_violations_v;
    e["violations_probabilistic_y"] = l.prob_violations_y;
    const double covered = static_cast<double>(l.components - l.uncovered);
    e["probabilistic_violation_frequency_y"] = covered > 0 ? static_cast<double>(l.prob_violations_y) / covered : 0.0;
    e["probabilistic_stated_failure_probability"] = 1 - l.prob_confidence_min;
    e["error_over_bound_quantiles"] = {{"q50", l.ratio_q50}, {"q90", l.ratio_q90}, {"q99", l.ratio_q99}, {"max", l.ratio_max}};
    e["error_over_probabilistic_bound_max"] = l.prob_ratio_max;
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
  std::map<int, std::size_t> rhist;
  double min_u = 1;
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
        if (std::isfinite(c.kappa_dot) && c.kappa_dot > 0) ++khist[layer + 1][static_cast<int>(std::floor(4 * std::log10(c.kappa_dot)))].first;
        if (c.kappa_act > 0) ++khist[layer + 1][static_cast<int>(std::floor(4 * std::log10(c.kappa_act)))].second;
        if (c.err_y > 0 && c.bound_y > 0) ++rhist[static_cast<int>(std::floor(4 * std::log10(c.err_y / c.bound_y)))];
      }
      if (++comp == r.layer_sizes[layer]) {
        comp = 0;
        ++layer;
      }
    }
  }
  (void)min_u;
  std::string data = "# layer  kappa_dot*kappa_act  relative_error_of_y\n";
  std::string plot = "set logscale xy\nset format xy '1e%T'\nset xlabel 'kappa_dot * kappa_act'\n"
                     "set ylabel 'relative error of the output'\nset key top left\nset grid\nset yrange [*:1e3]\n"
                     "set title '" + r.config + "'\nplot ";
  bool first = true;
  for (const auto& [layer, lines] : scatter) {
    data += "\n\n# layer " + std::to_string(layer) + "\n" + lines;
    plot += std::string(first ? "" : ", ") + "'err_vs_kappa.dat' index " + std::to_string(layer - 1) +
            " using 1:2 with points pt 7 ps 0.3 title 'layer " + std::to_string(layer) + "'";
    first = false;
  }
  if (!r.layer_u.empty()) {
    char line[256];
    std::snprintf(line, sizeof line,
                  ", %.17g * x with lines lw 2 dt 2 title 'kappa * u', %.17g * x + %.17g with lines lw 2 "
                  "title 'first-order bound kappa * gamma_k(u) + u_act (layer 1)'",
                  r.layer_u[0], r.layer_gamma[0], r.u_act);
    plot += line;
  }
  // keep gnuplot's 'index' numbering aligned: empty layers get empty blocks
  {
    std::string aligned = "# layer  kappa_dot*kappa_act  relative_error_of_y";
    for (std::size_t layer = 1; layer <= r.layer_sizes.size(); ++layer)
      aligned += "\n\n# layer " + std::to_string(layer) + "\n" + (scatter.count(layer) ? scatter[layer] : "1 nan\n");
    data = aligned + "\n";
  }
  write_atomic(dir / "err_vs_kappa.dat", data);
  if (!first) draw(dir, "err_vs_kappa", plot + "\n");

  std::string kh = "# layer log10_bin_left count_kappa_dot count_kappa_act\n";
  std::string kplot = "set multiplot layout 1,2\nset style fill solid 0.5\nset xlabel 'log10 kappa_dot'\nset ylabel 'components'\nplot ";
  std::string kplot2 = "set xlabel 'log10 kappa_act'\nplot ";
  for (std::size_t layer = 1; layer <= r.layer_sizes.size(); ++layer) {
    kh += "\n\n# layer " + std::to_string(layer) + "\n";
    for (const auto& [bin, counts] : khist[layer]) {
      put(kh, bin / 4.0);
      kh += ' ' + std::to_string(counts.first) + ' ' + std::to_string(counts.second) + '\n';
    }
    if (khist[layer].empty()) kh += "0 0 0\n";
    const std::string sep = layer > 1 ? ", " : "";
    kplot += sep + "'kappa_hist.dat' index " + std::to_string(layer - 1) + " using 1:2 with steps title 'layer " + std::to_string(layer) + "'";
    kplot2 += sep + "'kappa_hist.dat' index " + std::to_string(layer - 1) + " using 1:3 with steps title 'layer " + std::to_string(layer) + "'";
  }
  write_atomic(dir / "kappa_hist.dat", kh);
  draw(dir, "kappa_hist", kplot + "\n" + kplot2 + "\nunset multiplot\n");

  std::string rh = "# log10(error/bound)_bin_left count\n";
  for (const auto& [bin, count] : rhist) {
    put(rh, bin / 4.0);
    rh += ' ' + std::to_string(count) + '\n';
  }
  if (rhist.empty()) rh += "0 0\n";
  write_atomic(dir / "ratio_hist.dat", rh);
  draw(dir, "ratio_hist",
       "set xlabel 'log10(error / deterministic bound), outputs'\nset ylabel 'components'\nset grid\n"
       "set arrow from 0, graph 0 to 0, graph 1 nohead lc rgb 'red'\n"
       "plot 'ratio_hist.dat' using 1:2 with steps title 'all layers (1 = the bound)'\n");
}

}  // namespace mpacc::analysis
