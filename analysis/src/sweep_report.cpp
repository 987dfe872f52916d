// SPDX-License-Identifier: MIT
// What a merged sweep says: the printed conclusions, report.md and the figures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mpacc/analysis/plot.hpp"
#include "sweep_internal.hpp"

namespace mpacc::analysis {

namespace fs = std::filesystem;

namespace {

// the low accumulator(s): one format, or one per layer joined by '+'
std::string low_name(const mixed_config& m) {
  std::string s;
  for (const auto& f : m.precision.acc) s += (s.empty() ? "" : "+") + sim::to_string(f);
  return s;
}

}  // namespace

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
std::string sci(double v) { return std::isfinite(v) ? fmt("%.2e", v) : (std::isnan(v) ? "nan" : "inf"); }
std::string pct(double v) { return fmt("%.2f", 100 * v); }

std::string interval_pct(std::size_t k, std::size_t n) {
  const auto w = wilson(k, n);
  return "[" + pct(w.lo) + ", " + pct(w.hi) + "]";
}

// Random baselines at one (indicator, tau): the seeds' spread
struct spread {
  std::size_t n = 0;
  double kl_mean = 0, kl_min = 0, kl_max = 0, cost = 0, tile = 0, dis = 0, p_max = 0, rel_q50 = 0;
};
spread spread_of(const std::vector<const result_row*>& rs) {
  spread s;
  s.n = rs.size();
  if (rs.empty()) return s;
  s.kl_min = s.kl_max = rs[0]->kl_mean;
  for (const auto* r : rs) {
    s.kl_mean += r->kl_mean / static_cast<double>(rs.size());
    s.kl_min = std::min(s.kl_min, r->kl_mean);
    s.kl_max = std::max(s.kl_max, r->kl_mean);
    s.cost += r->weighted_cost / static_cast<double>(rs.size());
    s.tile += r->tile_cost / static_cast<double>(rs.size());
    s.dis += static_cast<double>(r->disagreements) / static_cast<double>(r->samples) / static_cast<double>(rs.size());
    s.rel_q50 += r->rel_logits.q50 / static_cast<double>(rs.size());
    s.p_max = std::max(s.p_max, r->mcnemar_p);
  }
  return s;
}

// The rows of one (network, order), looked up by strategy, indicator, tau.
struct group {
  std::string network, order;
  std::vector<std::string> indicators;  // the sweep's indicators for this order
  std::vector<const result_row*> rows;
  std::vector<std::string> layer_names;  // network_spec::layer_names
  const result_row* find(const std::string& strat, const std::string& ind = "", double tau = 0) const {
    for (const auto* r : rows)
      if (r->strategy == strat && r->indicator == ind && r->tau == tau) return r;
    return nullptr;
  }
  std::vector<const result_row*> all(const std::string& strat, const std::string& ind, double tau) const {
    std::vector<const result_row*> v;
    for (const auto* r : rows)
      if (r->strategy == strat && r->indicator == ind && r->tau == tau) v.push_back(r);
    return v;
  }
};

std::vector<group> groups_of(const sweep_config& c, const std::vector<result_row>& rows) {
  std::vector<group> g;
  for (const auto& n : c.networks)
    for (const auto& o : c.orders) {
      group x{network_name(n), sim::to_string(o), c.indicators_for(n, o), {}, n.layer_names};
      for (const auto& r : rows)
        if (r.network == x.network && r.order == x.order) x.rows.push_back(&r);
      g.push_back(std::move(x));
    }
  return g;
}

// Algorithm 1 against random-active at the same rate, by KL: below every seed,
// above every seed, or within their spread.
std::string verdict(const result_row& a, const spread& s) {
  if (s.n == 0) return "";
  if (a.kl_mean < s.kl_min) return "better";
  if (a.kl_mean > s.kl_max) return "worse";
  return "tie";
}

std::string dis_text(const result_row& r) {
  return pct(static_cast<double>(r.disagreements) / static_cast<double>(r.samples)) + " % " +
         interval_pct(r.disagreements, r.samples);
}

// "a, b, c", or "none" for an empty list
std::string list_or_none(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& t : v) s += (s.empty() ? "" : ", ") + t;
  return s.empty() ? std::string("none") : s;
}

// "better at tau = 0.1, 0.01; worse at tau = 1": the non-empty lists only
std::string clauses(const std::vector<std::pair<std::string, std::vector<std::string>>>& parts) {
  std::string s;
  for (const auto& [label, taus] : parts)
    if (!taus.empty()) s += (s.empty() ? "" : "; ") + label + " at tau = " + list_or_none(taus);
  return s.empty() ? std::string("no tau") : s;
}

std::vector<double> sorted_taus(const sweep_config& c) {
  auto t = c.taus;
  std::sort(t.begin(), t.end(), std::greater<>());
  return t;
}

bool has_baseline(const sweep_config& c, const std::string& b) {
  return std::find(c.baselines.begin(), c.baselines.end(), b) != c.baselines.end();
}

}  // namespace

std::string conclusions(const sweep_config& c, const std::vector<result_row>& rows) {
  std::string out;
  const bool rnd = has_baseline(c, "random-active");
  for (const auto& g : groups_of(c, rows)) {
    const auto* lo = g.find("uniform-low");
    const auto* hi = g.find("uniform-high");
    const auto* ex = g.find("exact");
    if (!lo || !hi || !ex) continue;
    out += g.network + ", " + g.order + " (" + std::to_string(lo->samples) + " test images; reference accuracy " +
           pct(static_cast<double>(ex->correct) / static_cast<double>(ex->samples)) + " %):\n";
    out += "  uniform " + low_name(c.mix) + ": KL " + sci(lo->kl_mean) + ", argmax disagreement " + dis_text(*lo) +
           ", accuracy " + pct(static_cast<double>(lo->correct) / static_cast<double>(lo->samples)) + " % " +
           interval_pct(lo->correct, lo->samples) + "; uniform " + sim::to_string(c.mix.high) + ": KL " +
           sci(hi->kl_mean) + ", disagreement " + dis_text(*hi) + ", accuracy " +
           pct(static_cast<double>(hi->correct) / static_cast<double>(hi->samples)) + " % " +
           interval_pct(hi->correct, hi->samples) + " (McNemar p = " + fmt("%.2g", hi->mcnemar_p) + ").\n";
    for (const auto& ind : g.indicators) {
      std::vector<std::string> better, tie, worse;
      for (double tau : sorted_taus(c)) {
        const auto* a = g.find("algorithm1", ind, tau);
        if (!a) continue;
        const auto s = spread_of(g.all("random-active", ind, tau));
        const auto v = verdict(*a, s);
        (v == "better" ? better : v == "worse" ? worse : tie).push_back(fmt("%g", tau));
      }
      // the paper's tolerance closest to 0.1 that is in the sweep: one sentence with numbers
      for (double tau : {0.1, 0.3, 0.01, 1.0, 0.5}) {
        const auto* a = g.find("algorithm1", ind, tau);
        if (!a) continue;
        out += "  " + ind + " at tau = " + fmt("%g", tau) + " recomputes " + pct(a->fraction) +
               " % of the components (cost " + fmt("%.3f", a->weighted_cost) + " per term, " +
               fmt("%.3f", a->tile_cost) + " per " + std::to_string(c.mix.tile_rows) + "x" +
               std::to_string(c.mix.tile_samples) + " tile, uniform high = 1): KL " + sci(a->kl_mean) +
               ", disagreement " + dis_text(*a) + " (against uniform low: McNemar p = " + fmt("%.2g", a->mcnemar_p) +
               ")";
        if (rnd) {
          const auto s = spread_of(g.all("random-active", ind, tau));
          out += "; random-active at the same rate: KL " + sci(s.kl_mean) + " (" + sci(s.kl_min) + " to " +
                 sci(s.kl_max) + " over " + std::to_string(s.n) + " seeds), disagreement " + pct(s.dis) +
                 " % (largest McNemar p against Algorithm 1: " + fmt("%.2g", s.p_max) + ")";
        }
        if (const auto* o = g.find("oracle-local", ind, tau)) out += "; greedy local oracle: KL " + sci(o->kl_mean);
        out += ".\n";
        break;
      }
      {
        std::vector<std::string> cheaper, dearer;
        for (double tau : sorted_taus(c)) {
          const auto* a = g.find("algorithm1", ind, tau);
          if (!a) continue;
          if (a->weighted_cost < 1)
            cheaper.push_back(fmt("%g", tau) + " (cost " + fmt("%.2f", a->weighted_cost) + ", KL x" +
                              fmt("%.3g", a->kl_mean / hi->kl_mean) + ")");
          else
            dearer.push_back(fmt("%g", tau));
        }
        out += "  " + ind + " against uniform " + sim::to_string(c.mix.high) + " (cost 1): " +
               clauses({{"cheaper (KL as a multiple of uniform high's)", cheaper}, {"at least as costly", dearer}}) +
               ".\n";
      }
      if (rnd)
        out += "  " + ind + " against random-active at the same rate (KL below / within / above the range of " +
               std::to_string(c.seeds) + " seeds): " + clauses({{"better", better}, {"tie", tie}, {"worse", worse}}) +
               ".\n";
    }
  }
  return out;
}

namespace detail {

namespace {

// one data file per (network, order) for the figures; gnuplot blocks:
//   0 .. I-1      per indicator, rows by tau (descending):
//                 tau cost tile kl fraction_l1..L | ra_cost ra_tile ra_kl_mean ra_kl_min ra_kl_max | ol_cost ol_tile
//                 ol_kl
//   I             uniform points: cost tile kl name
std::string figure_data(const sweep_config& c, const group& g, std::size_t layers) {
  std::string d = "# per indicator: tau cost tile kl fraction_l1..l" + std::to_string(layers) +
                  " ra_cost ra_tile ra_kl_mean ra_kl_min ra_kl_max ol_cost ol_tile ol_kl\n";
  auto num = [&](double v) {
    put_number(d, v);
    d += ' ';
  };
  for (const auto& ind : g.indicators) {
    d += "\n\n# " + ind + "\n";
    for (double tau : sorted_taus(c)) {
      const auto* a = g.find("algorithm1", ind, tau);
      if (!a) continue;
      num(tau);
      num(a->weighted_cost);
      num(a->tile_cost);
      num(a->kl_mean);
      for (std::size_t k = 0; k < layers; ++k) num(k < a->fraction_per_layer.size() ? a->fraction_per_layer[k] : NAN);
      const auto s = spread_of(g.all("random-active", ind, tau));
      for (double v : {s.cost, s.tile, s.kl_mean, s.kl_min, s.kl_max}) num(s.n ? v : NAN);
      const auto* o = g.find("oracle-local", ind, tau);
      for (double v : {o ? o->weighted_cost : NAN, o ? o->tile_cost : NAN, o ? o->kl_mean : NAN}) num(v);
      d += "\n";
    }
  }
  d += "\n\n# uniform\n";
  for (const char* u : {"uniform-low", "uniform-high"})  // binary32 (far below) is in the table
    if (const auto* r = g.find(u)) {
      num(r->weighted_cost);
      num(r->tile_cost);
      num(r->kl_mean);
      d += std::string(u) + "\n";
    }
  return d;
}

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"};

// The strategies beyond Algorithm 1 in a group (ladder, overflow-aware,
// static-q<q>), in the order of the configuration.
std::vector<std::string> extension_strategies(const sweep_config& c) {
  std::vector<std::string> v;
  if (!c.mix.ladder.empty()) v.emplace_back("ladder");
  if (c.overflow_aware) v.emplace_back("overflow-aware");
  for (double q : c.calibration_quantiles) v.push_back(static_name(q));
  return v;
}

// Error against per-term cost of each strategy family, one curve over tau per
// family (the first indicator), uniform strategies as points.
std::string extensions_script(const sweep_config& c, const group& g, const std::string& dat,
                              const std::vector<std::string>& fams) {
  const std::string f = gnuplot_quote(dat);
  std::string s =
      "set title " +
      gnuplot_quote(g.network + " (" + g.order + "), " + g.indicators[0] +
                    ": output error against cost per strategy family, uniform " + sim::to_string(c.mix.high) + " = 1") +
      " font ',10'\nset logscale y\nset format y '10^%L'\nset grid\nset key inside bottom left font ',9' box opaque\n"
      "set offsets graph 0.04, graph 0.04, 0, 0\n"
      "set xlabel 'cost per accumulated term (estimates included)'\n"
      "set ylabel 'mean KL(softmax(reference) || softmax(mixed))'\nplot ";
  std::string sep;
  for (std::size_t k = 0; k < fams.size(); ++k) {
    bool finite = false;  // a family whose KL is infinite everywhere (inf or NaN logits) has no point
    for (const auto* r : g.rows)
      finite |=
          r->strategy == fams[k] && r->indicator == g.indicators[0] && r->kl_mean > 0 && std::isfinite(r->kl_mean);
    s += sep + f + " index " + std::to_string(k) + " using 2:3 with linespoints pt 7 ps 0.8 lc rgb '" +
         kColours[k % 7] + "' title " +
         gnuplot_quote(fams[k] + (finite ? " (tau from right to left)" : ": KL infinite at every tau, not drawn"));
    sep = ", ";
  }
  s += sep + f + " index " + std::to_string(fams.size()) +
       " using 2:3:4 with labels point pt 5 ps 1 offset 1,0.6 font ',8' notitle\n";
  return s;
}

std::string extensions_data(const sweep_config& c, const group& g, const std::vector<std::string>& fams) {
  std::string d;
  for (const auto& fam : fams) {
    d += "# " + fam + ": tau cost kl\n";
    bool any = false;
    for (double tau : sorted_taus(c))
      if (const auto* r = g.find(fam, g.indicators[0], tau))
        if (r->kl_mean > 0 && std::isfinite(r->kl_mean)) {
          d += fmt("%.6g", tau) + " " + fmt("%.6g", r->weighted_cost) + " " + fmt("%.6g", r->kl_mean) + "\n";
          any = true;
        }
    if (!any) d += "0 nan nan\n";  // keeps the block, so that the next ones keep their index
    d += "\n\n";
  }
  d += "# uniform strategies: name cost kl\n";
  std::vector<std::string> uni{"uniform-low", "uniform-high"};
  for (const auto& f : c.mix.ladder) uni.push_back("uniform-" + sim::to_string(f));
  for (const auto& u : uni)
    if (const auto* r = g.find(u))
      if (r->kl_mean > 0 && std::isfinite(r->kl_mean))
        d += "0 " + fmt("%.6g", r->weighted_cost) + " " + fmt("%.6g", r->kl_mean) + " " + std::string(u) + "\n";
  return d;
}

std::string pareto_script(const sweep_config& c, const group& g, const std::string& dat) {
  const std::string f = gnuplot_quote(dat);
  const std::size_t I = g.indicators.size();
  const bool rnd = has_baseline(c, "random-active"), orc = has_baseline(c, "oracle-local");
  // ranges from the plotted points, with room for the labels
  double y0 = INFINITY, y1 = 0, x0 = INFINITY, x1 = 0;
  for (const auto* r : g.rows) {
    if (r->strategy == "exact" || r->strategy == "uniform-binary32") continue;
    if (r->kl_mean > 0 && std::isfinite(r->kl_mean)) {
      y0 = std::min(y0, r->kl_mean);
      y1 = std::max(y1, r->kl_mean);
    }
    for (double x : {r->weighted_cost, r->tile_cost})
      if (std::isfinite(x)) {
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
      }
  }
  std::string ranges;
  if (y1 > 0 && x1 > 0)
    ranges = "set yrange [" + fmt("%.6g", y0 / 3) + ":" + fmt("%.6g", y1 * 8) + "]\nset xrange [" +
             fmt("%.4g", x0 - 0.05 * (x1 - x0 + 0.2)) + ":" + fmt("%.4g", x1 + 0.08 * (x1 - x0 + 0.2)) + "]\n";
  double t0 = INFINITY, t1 = -INFINITY;
  for (const auto* r : g.rows)
    if (r->strategy != "exact" && r->strategy != "uniform-binary32" && r->strategy != "uniform-low" &&
        r->strategy != "uniform-high" && std::isfinite(r->tile_cost)) {
      t0 = std::min(t0, r->tile_cost);
      t1 = std::max(t1, r->tile_cost);
    }
  const int panels = t1 - t0 > 0.02 ? 2 : 1;
  std::string s = ranges + "set multiplot layout 1," + std::to_string(panels) + " title " +
                  gnuplot_quote(g.network + " (" + g.order + "): output error against cost, uniform " +
                                sim::to_string(c.mix.high) + " = 1") +
                  "\nset logscale y\nset format y '10^%L'\nset grid\nset key outside bottom center horizontal "
                  "maxrows 3 font ',9'\nset ylabel 'mean KL(softmax(reference) || softmax(mixed))'\n";
  for (int panel = 0; panel < panels; ++panel) {
    const int col = panel == 0 ? 2 : 3, rcol = panel == 0 ? 0 : 1;
    if (panel == 1) s += "unset key\n";  // one legend, under the first panel (same series)
    const std::size_t L = g.find("uniform-low") ? g.find("uniform-low")->fraction_per_layer.size() : 0;
    const std::size_t ra = 5 + L;  // first random-active column (1-based: tau=1 cost=2 tile=3 kl=4, fractions 5..4+L)
    s += std::string("set xlabel ") +
         (panel == 0 ? "'cost per accumulated term'"
                     : gnuplot_quote("cost per " + std::to_string(c.mix.tile_rows) + "x" +
                                     std::to_string(c.mix.tile_samples) + " tile (rows x samples)")) +
         "\nplot ";
    std::string sep;
    // Algorithm 1 with more than 3 indicators would crowd the figure: the first 3
    for (std::size_t k = 0; k < std::min<std::size_t>(I, 3); ++k) {
      const std::string colour = kColours[k % 7];
      if (rnd && k < 2) {
        s += sep + f + " index " + std::to_string(k) + " using " + std::to_string(ra + rcol) + ":" +
             std::to_string(ra + 3) + ":" + std::to_string(ra + 4) +
             " with filledcurves fs transparent solid 0.25 noborder lc rgb '" + colour + "' title " +
             gnuplot_quote("random-active at the rate of " + g.indicators[k] + " (mean, min-max over " +
                           std::to_string(c.seeds) + " seeds)");
        s += ", " + f + " index " + std::to_string(k) + " using " + std::to_string(ra + rcol) + ":" +
             std::to_string(ra + 2) + " with lines dt 3 lw 1.5 lc rgb '" + colour + "' notitle";
        sep = ", ";
      }
      s += sep + f + " index " + std::to_string(k) + " using " + std::to_string(col) +
           ":4 with linespoints lw 2 pt 7 lc rgb '" + colour + "' title " +
           gnuplot_quote("Algorithm 1, " + g.indicators[k]);
      sep = ", ";
    }
    if (orc)
      s += sep + f + " index 0 using " + std::to_string(ra + 5 + rcol) + ":" + std::to_string(ra + 7) +
           " with linespoints dt 2 pt 6 lc rgb 'black' title " +
           gnuplot_quote("greedy local oracle at the rate of " + g.indicators[0]);
    s += sep + f + " index " + std::to_string(I) + " using " + std::to_string(1 + rcol) +
         ":3 with points pt 5 ps 1.3 lc rgb '#555555' title 'uniform low and high', " + f + " index " +
         std::to_string(I) + " using " + std::to_string(1 + rcol) + ":3:4 with labels offset 0,1 font ',8' notitle\n";
  }
  return s + "unset multiplot\n";
}

// histograms of log10 kappa_dot per layer from the diagnostics file
std::string kappa_histogram(const fs::path& diag) {
  std::ifstream in(diag);
  std::map<std::size_t, std::map<int, std::size_t>> h;
  std::map<std::size_t, std::size_t> n;
  std::size_t layer = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# layer ", 0) == 0) {
      layer = std::stoul(line.substr(8));
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const double kd = std::strtod(line.c_str(), nullptr);
    ++n[layer];
    if (std::isfinite(kd) && kd > 0) ++h[layer][static_cast<int>(std::floor(std::log10(kd) * 10))];
  }
  std::string d = "# per layer: log10(kappa_dot) bin centre, share of the layer's components\n";
  for (const auto& [l, bins] : h) {
    d += "\n\n# layer " + std::to_string(l) + "\n";
    for (const auto& [b, k] : bins) {
      put_number(d, (b + 0.5) / 10);
      d += ' ';
      put_number(d, static_cast<double>(k) / static_cast<double>(n[l]));
      d += '\n';
    }
  }
  return d;
}

void write_report(const sweep_config& c, const std::vector<result_row>& rows, double wall_seconds) {
  std::string md = "# " + c.name +
                   "\n\nWritten by `mpacc` from `results.csv` (every number below is in it, at full "
                   "precision); the configuration is in `manifest.json`.\n\n";
  md += "Low accumulator " + low_name(c.mix) + ", high " + sim::to_string(c.mix.high) + ", products " +
        (c.mix.precision.product ? sim::to_string(*c.mix.precision.product) : std::string("exact")) + ", rounding " +
        std::string(sim::to_string(c.mix.precision.rounding)) + ", saturation " +
        (c.mix.precision.saturate ? "on" : "off") +
        (c.mix.precision.via ? ", each rounding through " + sim::to_string(*c.mix.precision.via) : std::string()) +
        ", orders " +
        [&] {
          std::string s;
          for (const auto& o : c.orders) s += (s.empty() ? "" : ", ") + sim::to_string(o);
          return s;
        }() +
        (wall_seconds > 0 ? ". Run time " + fmt("%.0f", wall_seconds) + " s.\n\n"
                          : std::string(". Run time: not known to this merge (sharded run).\n\n"));
  md +=
      "Metrics (docs/experiments.md): KL = mean over the test images of KL(softmax(reference logits) || "
      "softmax(mixed logits)); disagreement = share of images whose argmax differs from the reference pass's, "
      "with its Wilson 95 % interval; rel. error = componentwise |y - y_ref| / |y_ref| of the logits (median); "
      "cost = accumulated terms weighted by the format's cost, relative to uniform high, estimation included; tile "
      "cost = the same when any recomputed component makes its whole " +
      std::to_string(c.mix.tile_rows) + " x " + std::to_string(c.mix.tile_samples) +
      " tile (rows x samples) recomputed. random-active = uniformly random choice among the components that can "
      "matter (kappa_act > 0), as many per layer and image as Algorithm 1 recomputed; its columns give the mean "
      "over seeds and, for KL, the range. Verdict: Algorithm 1's KL below every seed (better), above every seed "
      "(worse), or within the range (tie).\n\n";
  md += "## Conclusions\n\n```\n" + conclusions(c, rows) + "```\n\n";
  const bool rnd = has_baseline(c, "random-active");
  for (const auto& g : groups_of(c, rows)) {
    md += "## " + g.network + ", " + g.order + "\n\n";
    md +=
        "| strategy | indicator | tau | recomputed % | cost | tile cost | KL | disagreement % [95 %] | accuracy % [95 "
        "%] | "
        "logit rel. error (median) |" +
        std::string(rnd ? " random-active KL (range) | verdict |" : "") + "\n";
    md += "|---|---|---|---|---|---|---|---|---|---|" + std::string(rnd ? "---|---|" : "") + "\n";
    auto line = [&](const result_row& r) {
      md += "| " + r.strategy + " | " + r.indicator + " | " + (r.strategy == "algorithm1" ? fmt("%g", r.tau) : "") +
            " | " + pct(r.fraction) + " | " + fmt("%.3f", r.weighted_cost) + " | " + fmt("%.3f", r.tile_cost) + " | " +
            sci(r.kl_mean) + " | " + dis_text(r) + " | " +
            pct(static_cast<double>(r.correct) / static_cast<double>(r.samples)) + " " +
            interval_pct(r.correct, r.samples) + " | " + sci(r.rel_logits.q50) + " |";
      if (rnd) {
        if (r.strategy == "algorithm1") {
          const auto s = spread_of(g.all("random-active", r.indicator, r.tau));
          md += " " + sci(s.kl_mean) + " (" + sci(s.kl_min) + " to " + sci(s.kl_max) + ") | " + verdict(r, s) + " |";
        } else {
          md += " | |";
        }
      }
      md += "\n";
    };
    for (const char* u : {"uniform-low", "uniform-high", "uniform-binary32"})
      if (const auto* r = g.find(u)) line(*r);
    for (const auto& f : c.mix.ladder)
      if (const auto* r = g.find("uniform-" + sim::to_string(f))) line(*r);
    for (const auto& ind : g.indicators)
      for (double tau : sorted_taus(c))
        if (const auto* a = g.find("algorithm1", ind, tau)) line(*a);
    md += "\n";
    const auto ext = extension_strategies(c);
    if (!ext.empty() && !g.indicators.empty()) {
      md +=
          "Beyond Algorithm 1 (docs/extensions.md): at each tau, each row is paired with Algorithm 1 on the same "
          "images (McNemar exact p of the argmax disagreements; b = only this row disagrees, c = only Algorithm 1).\n\n"
          "| strategy | indicator | tau | recomputed % | cost | tile cost | KL | disagreement % [95 %] | McNemar b/c, "
          "p "
          "|\n|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& ind : g.indicators)
        for (double tau : sorted_taus(c))
          for (const auto& strat : ext)
            if (const auto* r = g.find(strat, ind, tau))
              md += "| " + r->strategy + " | " + ind + " | " + fmt("%g", tau) + " | " + pct(r->fraction) + " | " +
                    fmt("%.3f", r->weighted_cost) + " | " + fmt("%.3f", r->tile_cost) + " | " + sci(r->kl_mean) +
                    " | " + dis_text(*r) + " | " + std::to_string(r->mcnemar_b) + "/" + std::to_string(r->mcnemar_c) +
                    ", " + fmt("%.2g", r->mcnemar_p) + " |\n";
      md += "\n";
      std::vector<std::string> fams{"algorithm1"};
      fams.insert(fams.end(), ext.begin(), ext.end());
      const std::string est = g.network + "-" + file_safe(g.order) + "-extensions";
      write_atomic(c.out / (est + ".dat"), extensions_data(c, g, fams));
      draw_plot(c.out, est, extensions_script(c, g, est + ".dat", fams), 1100, 600);
      md += "![extensions](" + est + ".png)\n\n";
    }
    // figures
    const std::size_t L = g.find("uniform-low") ? g.find("uniform-low")->fraction_per_layer.size() : 0;
    const std::string stem = g.network + "-" + file_safe(g.order);
    write_atomic(c.out / (stem + ".dat"), figure_data(c, g, L));
    if (!g.indicators.empty()) {
      draw_plot(c.out, stem + "-pareto", pareto_script(c, g, stem + ".dat"), 1300, 650);
      double tmin = INFINITY, tmax = -INFINITY;
      for (const auto* r : g.rows)
        if (r->strategy != "exact" && r->strategy.rfind("uniform", 0) != 0 && std::isfinite(r->tile_cost)) {
          tmin = std::min(tmin, r->tile_cost);
          tmax = std::max(tmax, r->tile_cost);
        }
      md += "![](" + stem +
            "-pareto.png)\n\n*Output error (mean KL divergence to the reference, log scale) against "
            "cost per accumulated term" +
            (tmax - tmin > 0.02
                 ? std::string(" (left) and per tile (right)")
                 : " (the tile cost is " + fmt("%.3f", tmin) + (tmax > tmin ? " to " + fmt("%.3f", tmax) : "") +
                       " for every Algorithm 1 and baseline point: nearly every tile holds a recomputed "
                       "component, so the whole high pass is paid)") +
            ": Algorithm 1 per indicator (one point per tau), the "
            "random-active baseline at the same per-layer rates (band: range over seeds), the greedy local oracle "
            "(not an upper bound), and uniform low and high" +
            (g.find("uniform-binary32") ? std::string(" (uniform binary32 is in the table)") : std::string()) +
            ".*\n\n";
      // recomputed fraction per layer against tau
      {
        std::string s =
            "set logscale x\nset grid\nset xlabel 'tau'\nset ylabel 'fraction recomputed'\nset yrange [0:1.05]\n"
            "set key outside right font ',9'\nset title " +
            gnuplot_quote(g.network + " (" + g.order + "): recomputed fraction per layer") + "\nplot ";
        std::string sep;
        // the layers drawn, with their names (unnamed entries of a named list, e.g. pooling, are not drawn)
        std::vector<std::pair<std::size_t, std::string>> drawn;
        for (std::size_t l = 0; l < L; ++l)
          if (g.layer_names.empty())
            drawn.emplace_back(l, "layer " + std::to_string(l + 1));
          else if (l < g.layer_names.size() && !g.layer_names[l].empty())
            drawn.emplace_back(l, g.layer_names[l]);
        const std::size_t inds = drawn.size() * g.indicators.size() <= 10 ? g.indicators.size() : 1;
        for (std::size_t k = 0; k < inds; ++k)
          for (std::size_t j = 0; j < drawn.size(); ++j) {
            s += sep + gnuplot_quote(stem + ".dat") + " index " + std::to_string(k) +
                 " using 1:" + std::to_string(5 + drawn[j].first) + " with linespoints lw 2 dt " +
                 std::to_string(k + 1) + " lc rgb '" + kColours[j % 7] + "' title " +
                 gnuplot_quote(g.indicators[k] + ", " + drawn[j].second);
            sep = ", ";
          }
        draw_plot(c.out, stem + "-fraction-tau", s + "\n", 1000, 600);
        md += "![](" + stem + "-fraction-tau.png)\n\n*Share of each layer's components recomputed against tau" +
              std::string(inds < g.indicators.size() ? " (first indicator only)" : "") + ".*\n\n";
      }
    }
    // error against kappa, and the kappa histograms
    const fs::path diag = c.out / ("diag-" + g.network + "-" + file_safe(g.order) + ".dat");
    if (c.diagnostics && fs::exists(diag) && L > 0) {
      const std::string df = gnuplot_quote(diag.filename().string());
      const std::size_t cols = std::min<std::size_t>(L, 4), lines = (L + cols - 1) / cols;
      std::string s = "set multiplot layout " + std::to_string(lines) + "," + std::to_string(cols) + " title " +
                      gnuplot_quote(g.network + " (" + g.order + "), uniform " + low_name(c.mix) +
                                    ": local error of each inner product against kappa_dot * u") +
                      "\nset logscale xy\nset format x '10^%L'\nset format y '10^%L'\nset grid\nunset key\n"
                      "set xlabel 'kappa_dot * u'\nset ylabel '|v_low - v| / |v|'\n";
      for (std::size_t l = 0; l < L; ++l)
        s += "set title 'layer " + std::to_string(l + 1) + "'\nplot " + df + " index " + std::to_string(l) +
             " using 4:($3 > 0 ? $3 : 1/0) with points pt 7 ps 0.25 lc rgb '#c01f77b4', x with lines lw 2 lc rgb "
             "'black'\n";
      draw_plot(c.out, stem + "-kappa-error", s + "unset multiplot\n", 400 * static_cast<int>(cols) + 100,
                380 * static_cast<int>(lines) + 60);
      write_atomic(c.out / (stem + "-kappa-hist.dat"), kappa_histogram(diag));
      std::string h =
          "set grid\nset xlabel 'log10 kappa_dot'\nset ylabel 'share of the components'\nset key outside right\n"
          "set title " +
          gnuplot_quote(g.network + " (" + g.order + "): condition numbers of the inner products") + "\nplot ";
      for (std::size_t l = 0; l < L; ++l)
        h += (l ? ", " : "") + gnuplot_quote(stem + "-kappa-hist.dat") + " index " + std::to_string(l) +
             " using 1:2 with steps lw 2 lc rgb '" + kColours[l % 7] + "' title 'layer " + std::to_string(l + 1) + "'";
      draw_plot(c.out, stem + "-kappa-hist", h + "\n", 1000, 550);
      md += "![](" + stem +
            "-kappa-error.png)\n\n*Per layer, each point one inner product of the uniform-low pass "
            "(a sample of at most 20,000): its relative error against kappa_dot times the low format's unit roundoff; "
            "the line is y = x. Components with no error are not drawn.*\n\n";
      md += "![](" + stem +
            "-kappa-hist.png)\n\n*Distribution of log10 kappa_dot per layer (true pre-activations of "
            "the uniform-low pass).*\n\n";
    }
  }
  // depth: networks of one data set and activation whose hidden layers all have
  // the same width, at the first order: uniform low / high and Algorithm 1
  // (first indicator, tau = 0.1 or the closest) against the number of hidden layers
  std::map<std::string, std::vector<const network_spec*>> families;
  for (const auto& n : c.networks)
    if (!n.hidden.empty() &&
        std::all_of(n.hidden.begin(), n.hidden.end(), [&](std::size_t w) { return w == n.hidden[0]; }))
      families[n.dataset + "-" + n.act + "-w" + std::to_string(n.hidden[0])].push_back(&n);
  const auto gs = groups_of(c, rows);
  for (auto& [fam, nets] : families) {
    if (nets.size() < 2) continue;
    std::sort(nets.begin(), nets.end(),
              [](const auto* a, const auto* b) { return a->hidden.size() < b->hidden.size(); });
    std::string d = "# hidden_layers kl_low kl_high kl_alg1 cost_alg1 fraction_alg1 tau indicator\n";
    std::string table =
        "| hidden layers | KL uniform low | KL uniform high | KL Algorithm 1 | cost | recomputed % "
        "|\n|---|---|---|---|---|---|\n";
    std::string ind_used;
    double tau_used = 0;
    for (const auto* n : nets) {
      const group* g = nullptr;
      for (const auto& x : gs)
        if (x.network == network_name(*n) && x.order == sim::to_string(c.orders[0])) g = &x;
      if (!g || g->indicators.empty()) continue;
      const auto* lo = g->find("uniform-low");
      const auto* hi = g->find("uniform-high");
      const result_row* a = nullptr;
      for (double tau : {0.1, 0.3, 0.01, 0.5, 1.0})
        if ((a = g->find("algorithm1", g->indicators[0], tau))) {
          tau_used = tau;
          break;
        }
      if (!lo || !hi || !a) continue;
      ind_used = g->indicators[0];
      put_number(d, static_cast<double>(n->hidden.size()));
      for (double v : {lo->kl_mean, hi->kl_mean, a->kl_mean, a->weighted_cost, a->fraction}) {
        d += ' ';
        put_number(d, v);
      }
      d += "\n";
      table += "| " + std::to_string(n->hidden.size()) + " | " + sci(lo->kl_mean) + " | " + sci(hi->kl_mean) + " | " +
               sci(a->kl_mean) + " | " + fmt("%.3f", a->weighted_cost) + " | " + pct(a->fraction) + " |\n";
    }
    if (ind_used.empty()) continue;
    write_atomic(c.out / ("depth-" + fam + ".dat"), d);
    const std::string f = gnuplot_quote("depth-" + fam + ".dat");
    draw_plot(c.out, "depth-" + fam,
              "set logscale y\nset format y '10^%L'\nset grid\nset xlabel 'hidden layers'\nset ylabel 'mean KL to the "
              "reference'\nset xtics 1\nset key below\nset title " +
                  gnuplot_quote(fam + " (" + sim::to_string(c.orders[0]) + "): error against depth") + "\nplot " + f +
                  " using 1:2 with linespoints lw 2 pt 5 title 'uniform low', " + f +
                  " using 1:4 with linespoints lw 2 pt 7 title " +
                  gnuplot_quote("Algorithm 1, " + ind_used + ", tau = " + fmt("%g", tau_used)) + ", " + f +
                  " using 1:3 with linespoints lw 2 pt 9 title 'uniform high'\n",
              1000, 550);
    md += "## Depth: " + fam + "\n\n" + table + "\n![](depth-" + fam +
          ".png)\n\n*Mean KL divergence to the reference "
          "against the number of hidden layers (all of width " +
          fam.substr(fam.rfind("-w") + 2) + "): uniform low, Algorithm 1 (" + ind_used +
          ", tau = " + fmt("%g", tau_used) + ") and uniform high.*\n\n";
  }
  write_atomic(c.out / "report.md", md);
}

}  // namespace

}  // namespace detail

void write_sweep_report(const sweep_config& c, const std::vector<result_row>& rows, double wall_seconds) {
  detail::write_report(c, rows, wall_seconds);
}

}  // namespace mpacc::analysis
