#include "mpacc/analysis/validate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::analysis {

namespace {

constexpr double kU64 = 0x1p-53;
constexpr double kInf = std::numeric_limits<double>::infinity();

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// |a - (hi + lo)|, the error of a binary64 value against a double-double
double dd_error(double a, double hi, double lo) {
  if (!std::isfinite(a)) return kInf;
  return std::fabs((a - hi) - lo);
}

// Average ranks (ties share their mean rank).
std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double mean = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = mean;
    i = j + 1;
  }
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() < 3) return 0;
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  const double mean = (n + 1) / 2;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

double quantile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// per-thread accumulation of the summaries
struct layer_stats {
  std::size_t components = 0, uncovered = 0, viol_v = 0, viol_y = 0, pviol_v = 0, pviol_y = 0;
  double conf_min = 1, ratio_max = 0, pratio_max = 0;
  std::vector<double> ratios, rel_err, kappa, kdot;
  void merge(layer_stats& o) {
    components += o.components;
    uncovered += o.uncovered;
    viol_v += o.viol_v;
    viol_y += o.viol_y;
    pviol_v += o.pviol_v;
    pviol_y += o.pviol_y;
    conf_min = std::min(conf_min, o.conf_min);
    ratio_max = std::max(ratio_max, o.ratio_max);
    pratio_max = std::max(pratio_max, o.pratio_max);
    ratios.insert(ratios.end(), o.ratios.begin(), o.ratios.end());
    rel_err.insert(rel_err.end(), o.rel_err.begin(), o.rel_err.end());
    kappa.insert(kappa.end(), o.kappa.begin(), o.kappa.end());
    kdot.insert(kdot.end(), o.kdot.begin(), o.kdot.end());
  }
};

std::string describe(const simulation_config& cfg) {
  std::string s = "acc=";
  for (std::size_t k = 0; k < cfg.layer.acc.formats.size(); ++k)
    s += (k ? "|" : "") + sim::to_string(cfg.layer.acc.formats[k]);
  s += " order=" + sim::to_string(cfg.layer.base.ord);
  s += " product=" + (cfg.layer.base.product ? sim::to_string(*cfg.layer.base.product) : std::string("exact"));
  s += " rounding=" + std::string(sim::to_string(cfg.layer.base.mode));
  s += " saturate=" + std::string(cfg.layer.base.saturate ? "on" : "off");
  s += " inputs=" + sim::to_string(cfg.input_format) + " activations=" + sim::to_string(cfg.act_format);
  return s;
}

}  // namespace

reference_data compute_reference(const nn::mlp& net, const nn::dataset& data, const validate_options& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  reference_data r;
  r.rows = opt.samples > 0 ? std::min(opt.samples, data.rows) : data.rows;
  r.cols = data.cols;
  r.inputs.assign(data.x.begin(), data.x.begin() + static_cast<std::ptrdiff_t>(r.rows * r.cols));
  nn::reference_options ro;
  ro.precision = opt.precision;
  ro.threads = opt.threads;
  r.ref = nn::reference_engine(net).forward({r.inputs.data(), r.rows, r.cols}, ro);
  r.seconds = seconds_since(t0);
  return r;
}

validation_result validate(const nn::mlp& net, const reference_data& refd, const simulation_config& cfg,
                           const validate_options& opt) {
  net.validate();
  const std::size_t rows = refd.rows, L = net.layers.size();
  if (refd.cols != net.inputs()) throw std::invalid_argument("validate: reference inputs do not match the network");
  validation_result res;
  res.config = describe(cfg);
  const auto t0 = std::chrono::steady_clock::now();

  // 1. the simulated pass, all samples
  const auto run = nn::simulate(net, {refd.inputs.data(), rows, refd.cols}, cfg.layer, cfg.input_format,
                                cfg.act_format, opt.threads);
  for (const auto& l : net.layers) res.layer_sizes.push_back(l.n_out);
  // the stored inputs (the same rounding simulate applied)
  std::vector<double> xin = refd.inputs;
  sim::round_array(xin, xin, {cfg.input_format, sim::rounding::nearest_even, false, 0});
  res.seconds_simulation = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  // 2. bound models per layer and accumulator format
  const std::size_t nf = cfg.layer.acc.formats.size();
  std::vector<std::vector<sim::bound_model>> det(L), prob(L);
  std::vector<std::vector<double>> gamma_k(L), confidence(L);
  for (std::size_t k = 0; k < L; ++k)
    for (std::size_t f = 0; f < nf; ++f) {
      sim::accumulation a = cfg.layer.base;
      a.acc = cfg.layer.acc.formats[f];
      det[k].push_back(sim::make_bound_model(net.layers[k].n_in, a, sim::gamma_deterministic, 0));
      prob[k].push_back(sim::make_bound_model(net.layers[k].n_in, a, sim::gamma_probabilistic, opt.lambda));
      const auto counts = sim::rounding_counts(net.layers[k].n_in, a.ord);
      const int kmax = counts.empty() ? 1 : *std::max_element(counts.begin(), counts.end());
      const double u = sim::unit_roundoff(a.acc, a.mode);
      gamma_k[k].push_back(sim::gamma_deterministic(kmax, u, 0));
      const std::size_t roundings = sim::words_per_dot(net.layers[k].n_in, a);
      if (f == 0) {
        res.layer_u.push_back(u);
        res.layer_gamma.push_back(gamma_k[k].back());
      }
      confidence[k].push_back(probabilistic_confidence(roundings, u, opt.lambda));
    }
  const double u_in = cfg.input_format.unit_roundoff();
  const double eta_in = cfg.input_format.min_positive() / 2;
  const double u_act = cfg.act_format.unit_roundoff();
  res.u_act = u_act;
  const double eta_act = cfg.act_format.min_positive() / 2;

  const std::size_t csv_n = std::min(opt.csv_samples, rows);
  res.csv_rows.assign(csv_n, {});
  const int nt = sim::thread_count(opt.threads);
  std::vector<std::vector<layer_stats>> stats(static_cast<std::size_t>(nt), std::vector<layer_stats>(L));
  const auto nrows = static_cast<std::ptrdiff_t>(rows);
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    auto& my = stats[static_cast<std::size_t>(omp_get_thread_num())];
#else
    auto& my = stats[0];
#endif
    std::vector<double> eps, eps_p, next_eps, next_eps_p;
#pragma omp for schedule(dynamic, 8)
    for (std::ptrdiff_t si = 0; si < nrows; ++si) {
      const auto s = static_cast<std::size_t>(si);
      const double* x_exact = refd.inputs.data() + s * refd.cols;
      const double* x_sim = xin.data() + s * refd.cols;
      eps.resize(refd.cols);
      eps_p.resize(refd.cols);
      for (std::size_t j = 0; j < refd.cols; ++j) eps[j] = eps_p[j] = u_in * std::fabs(x_exact[j]) + eta_in;
      for (std::size_t k = 0; k < L; ++k) {
        const auto& l = net.layers[k];
        const auto& R = refd.ref.layers[k];
        const auto& r = run[k];
        const double* in_sim = k == 0 ? x_sim : run[k - 1].y.data() + s * l.n_in;
        const double* in_ref = k == 0 ? x_exact : refd.ref.layers[k - 1].y_hi.data() + s * l.n_in;
        next_eps.assign(l.n_out, 0);
        next_eps_p.assign(l.n_out, 0);
        auto& st = my[k];
        const double infl = 1 + 2 * (static_cast<double>(l.n_in) + 2) * kU64;
        for (std::size_t i = 0; i < l.n_out; ++i) {
          const std::size_t at = s * l.n_out + i;
          const std::size_t fi = cfg.layer.acc.index.empty() ? 0 : cfg.layer.acc.index[i];
          const auto& D = det[k][fi];
          const auto& Pm = prob[k][fi];
          const double* w = l.row(i);
          double sd = 0, sp = 0, pd = 0, pp = 0, kn = std::fabs(l.b[i]);
          for (std::size_t j = 0; j < l.n_in; ++j) {
            const double aw = std::fabs(w[j]);
            const double t = std::fabs(w[j] * in_sim[j]);
            if (t != 0) {  // theta can be huge: never 0 * inf
              sd += t * D.theta[j];
              sp += t * Pm.theta[j];
            }
            if (aw != 0) {
              pd += aw * eps[j];
              pp += aw * eps_p[j];
            }
            kn += std::fabs(w[j] * in_ref[j]);
          }
          component_result c;
          c.v_ref = R.v_hi[at];
          c.y_ref = R.y_hi[at];
          c.v_sim = r.v[at];
          c.y_sim = r.y[at];
          c.flags = r.flags[at];
          c.err_v = dd_error(c.v_sim, R.v_hi[at], R.v_lo[at]);
          c.err_y = dd_error(c.y_sim, R.y_hi[at], R.y_lo[at]);
          c.kappa_dot = c.v_ref == 0 ? (kn == 0 ? 1.0 : kInf) : kn / std::fabs(c.v_ref);
          c.kappa_act = sim::kappa_act(l.act, c.v_ref);
          const bool covered = c.covered() && std::isfinite(pd) && std::isfinite(c.v_sim);
          if (covered) {
            c.bound_v = (sd + std::fabs(l.b[i]) * D.bias_coef + D.eta) * D.margin + pd * infl + R.v_bound[at];
            c.prob_bound_v = (sp + std::fabs(l.b[i]) * Pm.bias_coef + Pm.eta) * Pm.margin + pp * infl + R.v_bound[at];
            // output: mean-value bound over [v_sim - bound, v_sim + bound], libm's
            // error (0 for identity/ReLU), the rounding to the activation format
            const double phi = sim::apply(l.act, c.v_sim);
            const bool exact_act = l.act.kind == sim::activation::identity || l.act.kind == sim::activation::relu;
            const double libm = exact_act ? 0.0 : (l.act.kind == sim::activation::leaky_relu ? kU64 : 8 * kU64) * std::fabs(phi);
            const double round_act = u_act / (1 - u_act) * std::fabs(c.y_sim) + eta_act;
            auto out_bound = [&](double bv) {
              const double Ld = max_derivative(l.act, c.v_sim - bv, c.v_sim + bv);
              return (Ld * bv + libm + round_act) * (1 + 4 * kU64) + R.y_bound[at];
            };
            c.bound_y = out_bound(c.bound_v);
            c.prob_bound_y = out_bound(c.prob_bound_v);
            c.first_order = c.kappa_act * c.kappa_dot * gamma_k[k][fi] + u_act;
          } else {
            c.bound_v = c.bound_y = c.prob_bound_v = c.prob_bound_y = kInf;
            c.first_order = kInf;
          }
          next_eps[i] = c.bound_y;
          next_eps_p[i] = c.prob_bound_y;
          // statistics
          ++st.components;
          if (!covered) {
            ++st.uncovered;
          } else {
            st.viol_v += c.err_v > c.bound_v;
            st.viol_y += c.err_y > c.bound_y;
            st.pviol_v += c.err_v > c.prob_bound_v;
            st.pviol_y += c.err_y > c.prob_bound_y;
            st.conf_min = std::min(st.conf_min, confidence[k][fi]);
            const double ratio = c.bound_y > 0 ? c.err_y / c.bound_y : (c.err_y > 0 ? kInf : 0.0);
            st.ratios.push_back(ratio);
            st.ratio_max = std::max(st.ratio_max, ratio);
            st.pratio_max = std::max(st.pratio_max, c.prob_bound_y > 0 ? c.err_y / c.prob_bound_y : 0.0);
            if (c.y_ref != 0 && std::isfinite(c.kappa_dot) && c.kappa_act > 0) {
              st.rel_err.push_back(c.err_y / std::fabs(c.y_ref));
              st.kappa.push_back(c.kappa_dot * c.kappa_act);
            }
            if (std::isfinite(c.kappa_dot)) st.kdot.push_back(c.kappa_dot);
          }
          if (s < csv_n) res.csv_rows[s].push_back(c);
        }
        eps.swap(next_eps);
        eps_p.swap(next_eps_p);
      }
    }
  }
  // 3. summaries
  layer_stats total;
  for (std::size_t k = 0; k <= L; ++k) {
    layer_stats merged;
    if (k < L) {
      for (auto& t : stats) merged.merge(t[k]);
    } else {
      merged = std::move(total);
    }
    layer_summary sm;
    sm.layer = k < L ? k + 1 : 0;
    sm.components = merged.components;
    sm.uncovered = merged.uncovered;
    sm.violations_v = merged.viol_v;
    sm.violations_y = merged.viol_y;
    sm.prob_violations_v = merged.pviol_v;
    sm.prob_violations_y = merged.pviol_y;
    sm.prob_confidence_min = merged.conf_min;
    sm.ratio_max = merged.ratio_max;
    sm.prob_ratio_max = merged.pratio_max;
    sm.spearman = spearman(merged.rel_err, merged.kappa);
    sm.spearman_n = merged.rel_err.size();
    {
      auto r = merged.ratios;
      sm.ratio_q50 = quantile(r, 0.5);
      sm.ratio_q90 = quantile(r, 0.9);
      sm.ratio_q99 = quantile(r, 0.99);
      auto kd = merged.kdot;
      sm.kappa_dot_median = quantile(kd, 0.5);
      sm.kappa_dot_max = kd.empty() ? 0 : *std::max_element(kd.begin(), kd.end());
    }
    res.layers.push_back(sm);
    if (k < L) total.merge(merged);
  }
  res.seconds_bounds = seconds_since(t1);
  return res;
}

}  // namespace mpacc::analysis
