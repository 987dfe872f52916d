// SPDX-License-Identifier: MIT
#include "mpacc/analysis/validate.hpp"
#include "validate_internal.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include <boost/math/special_functions/beta.hpp>

#include "mpacc/nn/simulate.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/sim/rounding.hpp"
#include "mpacc/sim/threads.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::analysis {

std::string_view to_string(uncovered_cause c) noexcept {
  switch (c) {
    case uncovered_cause::none:
      return "none";
    case uncovered_cause::input:
      return "input";
    case uncovered_cause::inherited:
      return "inherited";
    case uncovered_cause::accumulation:
      return "accumulation";
    case uncovered_cause::activation:
      return "activation";
    case uncovered_cause::reference:
      return "reference";
    case uncovered_cause::bound:
      return "bound";
  }
  return "none";
}

std::size_t validation_result::violations() const {
  std::size_t n = 0;
  for (const auto& l : layers)
    if (l.layer) n += l.violations_v + l.violations_y + l.local_violations;
  return n;
}

namespace validate_detail {

void check_reference(const reference_data& refd, const nn::precision_config& p, std::size_t inputs) {
  auto same = [](const std::optional<sim::format>& a, const std::optional<sim::format>& b) {
    return a.has_value() == b.has_value() && (!a || *a == *b);
  };
  if (!same(refd.weights, p.weights) || !same(refd.biases, p.biases))
    throw std::invalid_argument(
        "validate: the reference was computed on weights stored differently from the configuration's");
  if (refd.cols != inputs) throw std::invalid_argument("validate: reference inputs do not match the network");
  if (refd.kind == reference_inputs::stored && !(refd.input_format == p.inputs))
    throw std::invalid_argument("validate: the reference was computed on inputs stored in " +
                                sim::to_string(refd.input_format) + ", the configuration stores them in " +
                                sim::to_string(p.inputs));
}

std::vector<double> stored_inputs(const reference_data& refd, const nn::precision_config& p, validation_result& res,
                                  std::vector<unsigned>& in_flags) {
  std::vector<double> xin = nn::store_inputs({refd.inputs.data(), refd.rows, refd.cols}, p.inputs, &in_flags);
  res.inputs_stored = xin.size();
  for (unsigned f : in_flags) {
    res.inputs_inexact += (f & sim::flag::inexact) != 0;
    res.inputs_overflow += (f & kOutOfRange) != 0;
  }
  return xin;
}

layer_models make_layer_models(std::size_t n, const sim::layer_spec& spec, const validate_options& opt) {
  layer_models m;
  const std::size_t NL = opt.lambdas.size();
  m.fail_local.assign(NL, 0);
  for (std::size_t f = 0; f < spec.acc.formats.size(); ++f) {
    sim::accumulation a = spec.base;
    a.acc = spec.acc.formats[f];
    m.det.push_back(analysis::make_bound_model(n, a, analysis::gamma_deterministic, 0));
    m.prob.push_back(analysis::make_bound_model(n, a, analysis::gamma_probabilistic, opt.lambda));
    m.lprob.emplace_back();
    for (double lam : opt.lambdas)
      m.lprob[f].push_back(analysis::make_bound_model(n, a, analysis::gamma_probabilistic, lam));
    const auto counts = sim::rounding_counts(n, a.ord);
    const int kmax = counts.empty() ? 1 : *std::max_element(counts.begin(), counts.end());
    const double u = analysis::unit_roundoff(a.acc, a.mode);
    m.u_acc.push_back(u);
    m.gamma_k.push_back(analysis::gamma_deterministic(kmax, u, 0));
    // the union runs over the rounding errors of the inner product: one per step
    const std::uint64_t steps = sim::words_per_dot(n, a);
    if (f == 0) {
      m.u0 = u;
      m.gamma0 = m.gamma_k.back();
      m.kmax0 = kmax;
      m.steps0 = steps;
    }
    m.fail_prop = std::max(m.fail_prop, 1 - probabilistic_confidence(steps, u, opt.lambda));
    for (std::size_t t = 0; t < NL; ++t)
      m.fail_local[t] = std::max(m.fail_local[t], 1 - probabilistic_confidence(steps, u, opt.lambdas[t]));
  }
  return m;
}

act_model make_act_model(const nn::precision_config& p) {
  // activations in p.act_rounding (a directed or stochastic rounding errs by up
  // to a whole ulp, subnormal quantum included)
  act_model a;
  a.u_act = analysis::unit_roundoff(p.act, p.act_rounding);
  const bool act_nearest =
      p.act_rounding == sim::rounding::nearest_even || p.act_rounding == sim::rounding::nearest_away;
  a.eta_act = act_nearest ? p.act.min_positive() / 2 : p.act.min_positive();
  return a;
}

void record_component(const component_result& c, uncovered_cause cause, bool unexplained, double u, double u_act,
                      double kn, const double* st_term, layer_stats& st) {
  ++st.components;
  if (unexplained) {
    // a non-finite simulated value that nothing explains
    st.viol_v += !std::isfinite(c.v_sim);
    st.viol_y += 1;
  } else if (cause != uncovered_cause::none) {
    ++st.uncovered;
    ++st.causes[static_cast<std::size_t>(cause)];
  } else {
    // !(a <= b): a NaN counts as a violation
    st.viol_v += !(c.err_v <= c.bound_v);
    st.viol_y += !(c.err_y <= c.bound_y);
    st.pviol_v += !(c.err_v <= c.prob_bound_v);
    st.pviol_y += !(c.err_y <= c.prob_bound_y);
    st.ratio_v.add(ratio(c.err_v, c.bound_v));
    st.ratio_y.add(ratio(c.err_y, c.bound_y));
    // relative size of the bound, where it has one (exact zeros, e.g. inactive ReLU units, left out)
    if (c.v_ref != 0) st.relb_v.add(c.bound_v / std::fabs(c.v_ref));
    if (c.y_ref != 0) st.relb_y.add(c.bound_y / std::fabs(c.y_ref));
    const double est_v = u * kn;  // kappa_dot u |v|
    const double kk = c.kappa_act * c.kappa_dot;
    const double est_y = (std::isfinite(kk) ? kk * u + u_act : kInf) * std::fabs(c.y_ref);
    if (c.err_v > 0)
      st.est_v.add(est_v / c.err_v);
    else
      ++st.zero_v;
    if (c.err_y > 0) {
      if (!std::isnan(est_y)) st.est_y.add(est_y / c.err_y);
    } else {
      ++st.zero_y;
    }
    st.act_dom += c.act_dominated;
    st.pratio_max = std::max(st.pratio_max, ratio(c.err_y, c.prob_bound_y));
    if (c.y_ref != 0 && std::isfinite(kk) && c.kappa_act > 0) {
      st.rank_pairs.add(st.id, c.err_y / std::fabs(c.y_ref), kk);
    }
    if (std::isfinite(c.kappa_dot)) st.kdot.add(c.kappa_dot);
    if (st_term) {
      st.store_max = std::max(st.store_max, *st_term);
      st.store_rel_max = std::max(st.store_rel_max, ratio(*st_term, c.bound_v));
    }
  }
}

component_result inner_component(const inner_operands& o, const layer_models& M, const act_model& A,
                                 const sim::activation_fn& act, const nn::layer_values& R,
                                 const nn::simulated_layer& sim_layer, std::size_t at, unsigned upstream,
                                 bool first_layer, std::size_t NL, layer_stats& st) {
  // sd, sp: accumulation bounds on the simulated inputs; pd, pp: propagated
  // input errors; kn: |w|^T|x| + |b| on the reference's inputs; an: on the
  // simulated ones; st_term: the storage error of the data (layer 1)
  const double* w = o.w;
  const std::size_t n_in = o.n;
  const double bias = o.b;
  const auto& D = M.det[o.format];
  const auto& Pm = M.prob[o.format];
  std::vector<const double*> lth(NL);
  std::vector<double> sl(NL, 0.0);
  for (std::size_t t = 0; t < NL; ++t) lth[t] = M.lprob[o.format][t].theta.data();
  const double infl = 1 + 2 * (static_cast<double>(n_in) + 2) * kU64;
  double sd = 0, sp = 0, pd = 0, pp = 0, kn = std::fabs(bias), an = std::fabs(bias), st_term = 0;
  for (std::size_t j = 0; j < n_in; ++j) {
    const double aw = std::fabs(w[j]);
    const double t = std::fabs(w[j] * o.x_sim[j]);
    if (t != 0) {  // theta can be huge: never 0 * inf
      sd += t * D.theta[j];
      sp += t * Pm.theta[j];
      for (std::size_t q = 0; q < NL; ++q) sl[q] += t * lth[q][j];
      an += t;
    }
    if (aw != 0) {
      pd += aw * o.eps[j];
      pp += aw * o.eps_p[j];
    }
    kn += std::fabs(w[j] * o.x_ref[j]);
    if (o.x_exact) st_term += aw * std::fabs(o.x_exact[j] - o.x_sim[j]);
  }
  component_result c;
  c.v_ref = R.v_hi[at];
  c.y_ref = R.y_hi[at];
  c.v_sim = sim_layer.v[at];
  c.y_sim = sim_layer.y[at];
  c.flags = sim_layer.flags[at];
  c.flags_act = sim_layer.act_flags[at];
  c.flags_in = upstream;
  c.err_v = dd_error(c.v_sim, R.v_hi[at], R.v_lo[at]);
  c.err_y = dd_error(c.y_sim, R.y_hi[at], R.y_lo[at]);
  c.kappa_dot = kappa_ratio(kn, c.v_ref);
  c.kappa_act = sim::kappa_act(act, c.v_ref);

  // why this component could not be bounded, if it cannot
  auto cause = uncovered_cause::none;
  const auto from_upstream = first_layer ? uncovered_cause::input : uncovered_cause::inherited;
  bool unexplained = false;  // a non-finite value with no cause: a violation
  if (!std::isfinite(pd))
    cause = from_upstream;
  else if (c.flags & (sim::flag::overflow | sim::flag::saturated))
    cause = uncovered_cause::accumulation;
  else if (!std::isfinite(c.v_sim)) {
    if (!o.in_finite || (c.flags & sim::flag::invalid))
      cause = from_upstream;
    else
      unexplained = true;
  } else if ((c.flags_act & kOutOfRange) || !std::isfinite(c.y_sim)) {
    if (c.flags_act & kOutOfRange)
      cause = uncovered_cause::activation;
    else
      unexplained = true;
  } else if (!std::isfinite(c.v_ref) || !std::isfinite(c.y_ref))
    cause = uncovered_cause::reference;

  // the per-inner-product checks (need finite inputs and no overflow in the sum)
  c.err_local = kNaN;
  c.bound_local = (sd + std::fabs(bias) * D.bias_coef + D.eta) * D.margin;
  const bool local_ok =
      o.in_finite && std::isfinite(c.v_sim) && !(c.flags & (sim::flag::overflow | sim::flag::saturated));
  if (local_ok) {
    local_error le(w, o.x_sim, n_in, bias, c.v_sim, an);
    c.err_local = le.approx();
    ++st.local_checked;
    if (le.exceeds(c.bound_local)) ++st.local_viol;
    if (c.bound_local >= an) ++st.local_vacuous;
    for (std::size_t q = 0; q < NL; ++q) {
      const auto& Mq = M.lprob[o.format][q];
      const double b = (sl[q] + std::fabs(bias) * Mq.bias_coef + Mq.eta) * Mq.margin;
      const bool vac = b >= an;
      const bool v = le.exceeds(b);
      st.lp_vacuous[q] += vac;
      st.lp_viol[q] += v;
      st.lp_viol_nv[q] += v && !vac;
    }
  }

  if (cause == uncovered_cause::none && !unexplained) {
    c.bound_v = (sd + std::fabs(bias) * D.bias_coef + D.eta) * D.margin + pd * infl + R.v_bound[at];
    c.prob_bound_v = (sp + std::fabs(bias) * Pm.bias_coef + Pm.eta) * Pm.margin + pp * infl + R.v_bound[at];
    // output: mean-value bound over [v_sim - bound, v_sim + bound], libm's
    // error (0 for identity/ReLU), the rounding to the activation format
    const double phi = sim::apply(act, c.v_sim);
    const bool exact_act = act.kind == sim::activation::identity || act.kind == sim::activation::relu;
    // libm's error: relative (4 ulps, tested against MPFR) plus two subnormal quanta
    // for results below 2^-1022
    const double libm =
        exact_act ? 0.0 : (act.kind == sim::activation::leaky_relu ? kU64 : 8 * kU64) * std::fabs(phi) + 0x1p-1073;
    const double round_act = A.u_act / (1 - A.u_act) * std::fabs(c.y_sim) + A.eta_act;
    double pre = 0;
    auto out_bound = [&](double bv) {
      pre = max_derivative(act, c.v_sim - bv, c.v_sim + bv) * bv;
      return (pre + libm + round_act) * (1 + 4 * kU64) + R.y_bound[at];
    };
    c.bound_y = out_bound(c.bound_v);
    // only where the pre-activation's error reaches the output at all (not for a
    // ReLU unit inactive on the whole interval, whose bound is the rounding alone)
    c.act_dominated = pre > 0 && libm + round_act > pre;
    c.prob_bound_y = out_bound(c.prob_bound_v);
    c.first_order = c.kappa_act * c.kappa_dot * M.gamma_k[o.format] + A.u_act;
    if (!std::isfinite(c.bound_v) || !std::isfinite(c.bound_y)) cause = uncovered_cause::bound;
  }
  if (cause != uncovered_cause::none || unexplained) {
    c.bound_v = c.bound_y = c.prob_bound_v = c.prob_bound_y = kInf;
    c.first_order = kInf;
  }
  c.cause = static_cast<std::uint8_t>(cause);

  record_component(c, cause, unexplained, M.u_acc[o.format], A.u_act, kn, first_layer ? &st_term : nullptr, st);
  return c;
}

void summarize(std::vector<std::vector<layer_stats>>& stats, const std::vector<double>& fail_prop,
               const std::vector<std::vector<double>>& fail_local, const std::vector<std::size_t>& outputs,
               const validate_options& opt, validation_result& res) {
  const std::size_t L = outputs.size(), NL = opt.lambdas.size();
  const bool sketch = !stats.empty() && !stats[0].empty() && stats[0][0].sketch;
  layer_stats total(NL, sketch);
  double upstream_failure = 0;  // sum over the inner products of earlier layers
  for (std::size_t k = 0; k <= L; ++k) {
    layer_stats merged(NL, sketch);
    if (k < L) {
      for (auto& t : stats) merged.merge(t[k]);
    } else {
      std::swap(merged, total);  // the last pass: total is not used after it
    }
    layer_summary sm;
    sm.layer = k < L ? k + 1 : 0;
    sm.components = merged.components;
    sm.uncovered = merged.uncovered;
    sm.uncovered_by_cause = merged.causes;
    sm.violations_v = merged.viol_v;
    sm.violations_y = merged.viol_y;
    sm.local_checked = merged.local_checked;
    sm.local_violations = merged.local_viol;
    sm.local_vacuous = merged.local_vacuous;
    sm.prob_violations_v = merged.pviol_v;
    sm.prob_violations_y = merged.pviol_y;
    sm.prob_ratio_max = merged.pratio_max;
    sm.zero_error_v = merged.zero_v;
    sm.zero_error_y = merged.zero_y;
    sm.act_dominated = merged.act_dom;
    sm.input_storage_term_max = merged.store_max;
    sm.input_storage_term_over_bound_max = merged.store_rel_max;
    for (std::size_t q = 0; q < NL; ++q) {
      local_check lc;
      lc.lambda = opt.lambdas[q];
      if (k < L) {
        lc.stated_failure = fail_local[k][q];
      } else {
        for (std::size_t kk = 0; kk < L; ++kk) lc.stated_failure = std::max(lc.stated_failure, fail_local[kk][q]);
      }
      lc.checked = merged.local_checked;
      lc.violations = merged.lp_viol[q];
      lc.vacuous = merged.lp_vacuous[q];
      lc.violations_non_vacuous = merged.lp_viol_nv[q];
      lc.frequency = lc.checked ? static_cast<double>(lc.violations) / static_cast<double>(lc.checked) : 0.0;
      binomial_interval(lc.violations, lc.checked, lc.ci_low, lc.ci_high);
      sm.local.push_back(lc);
    }
    if (k < L) {
      const double f = upstream_failure + fail_prop[k];
      if (f < 1) sm.prob_propagated_failure = f;
      upstream_failure += static_cast<double>(outputs[k]) * fail_prop[k];
    }
    sm.spearman = merged.rank_pairs.correlation();
    sm.spearman_n = merged.rank_pairs.size();
    sm.err_over_bound_v = merged.ratio_v.summary();
    sm.err_over_bound_y = merged.ratio_y.summary();
    sm.bound_over_exact_v = merged.relb_v.summary();
    sm.bound_over_exact_y = merged.relb_y.summary();
    sm.estimate_over_error_v = merged.est_v.summary();
    sm.estimate_over_error_y = merged.est_y.summary();
    sm.kappa_dot_median = merged.kdot.quantile(0.5);
    sm.kappa_dot_max = merged.kdot.max();
    res.layers.push_back(sm);
    if (k < L) total.merge(merged);
  }
}

}  // namespace validate_detail

using namespace validate_detail;

std::vector<double> stored_reference_inputs(const io::dataset& data, std::size_t rows,
                                            const sim::format& input_format) {
  rows = std::min(rows, data.rows);
  auto stored = nn::store_inputs({data.x.data(), rows, data.cols}, input_format);
  for (std::size_t t = 0; t < stored.size(); ++t)
    if (!std::isfinite(stored[t]))
      throw std::invalid_argument("input " + std::to_string(t % data.cols) + " of sample " +
                                  std::to_string(t / data.cols) + " (" + std::to_string(data.x[t]) +
                                  ") is not finite once stored in " + sim::to_string(input_format) +
                                  ": use a wider input format, or exact reference inputs");
  return stored;
}

reference_data compute_reference(const nn::mlp& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p) {
  return compute_reference_with(data, opt, p, [&](sim::matrix_view X, const nn::reference_options& ro) {
    const nn::mlp stored_net = nn::stored_network(net, p);
    return nn::reference_engine(stored_net).forward(X, ro);
  });
}

validation_result validate(const nn::mlp& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt) {
  model.validate();
  p.check(model.layers.size());
  const nn::mlp net = nn::stored_network(model, p);  // what both passes compute with
  const std::size_t rows = refd.rows, L = net.layers.size();
  check_reference(refd, p, net.inputs());
  validation_result res;
  res.config = p.to_string();
  res.precision = p;
  res.ref_inputs = refd.kind;
  const auto t0 = std::chrono::steady_clock::now();

  // 1. the simulated pass, all samples, and the stored inputs with their flags
  const auto run = nn::simulate(model, {refd.inputs.data(), rows, refd.cols}, p, opt.threads);
  for (const auto& l : net.layers) res.layer_sizes.push_back(l.n_out);
  std::vector<unsigned> in_flags;
  const std::vector<double> xin = stored_inputs(refd, p, res, in_flags);
  res.seconds_simulation = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  // 2. bound models per layer and accumulator format
  const std::size_t NL = opt.lambdas.size();
  std::vector<sim::layer_spec> specs;
  std::vector<layer_models> models;
  std::vector<double> fail_prop;
  std::vector<std::vector<double>> fail_local;
  for (std::size_t k = 0; k < L; ++k) {
    specs.push_back(p.layer_spec(k).resolved());
    models.push_back(make_layer_models(net.layers[k].n_in, specs[k], opt));
    res.layer_u.push_back(models[k].u0);
    res.layer_gamma.push_back(models[k].gamma0);
    res.layer_kmax.push_back(models[k].kmax0);
    res.layer_steps.push_back(models[k].steps0);
    fail_prop.push_back(models[k].fail_prop);
    fail_local.push_back(models[k].fail_local);
  }
  // inputs are stored with nearest-even
  const double u_in = p.inputs.unit_roundoff();
  const double eta_in = p.inputs.min_positive() / 2;
  const act_model A = make_act_model(p);
  res.u_act = A.u_act;
  const bool exact_inputs = refd.kind == reference_inputs::exact;

  const std::size_t csv_n = std::min(opt.csv_samples, rows);
  res.csv_rows.assign(csv_n, {});
  const int nt = sim::thread_count(opt.threads);
  std::vector<std::vector<layer_stats>> stats(static_cast<std::size_t>(nt),
                                              std::vector<layer_stats>(L, layer_stats(NL)));
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
      const unsigned* xf = in_flags.data() + s * refd.cols;
      // errors of the layer's inputs against the reference's inputs
      eps.resize(refd.cols);
      unsigned upstream = 0;
      for (std::size_t j = 0; j < refd.cols; ++j) {
        upstream |= xf[j];
        if ((xf[j] & kOutOfRange) || !std::isfinite(x_sim[j]))
          eps[j] = kInf;
        else
          eps[j] = exact_inputs ? u_in * std::fabs(x_exact[j]) + eta_in : 0.0;
      }
      eps_p = eps;
      for (std::size_t k = 0; k < L; ++k) {
        const auto& l = net.layers[k];
        const auto& R = refd.ref.layers[k];
        const auto& r = run[k];
        inner_operands ops;
        ops.n = l.n_in;
        ops.x_sim = k == 0 ? x_sim : run[k - 1].y.data() + s * l.n_in;
        for (std::size_t j = 0; j < l.n_in && ops.in_finite; ++j) ops.in_finite = std::isfinite(ops.x_sim[j]);
        ops.x_ref = k == 0 ? (exact_inputs ? x_exact : x_sim) : refd.ref.layers[k - 1].y_hi.data() + s * l.n_in;
        ops.x_exact = k == 0 ? x_exact : nullptr;
        ops.eps = eps.data();
        ops.eps_p = eps_p.data();
        next_eps.assign(l.n_out, 0);
        next_eps_p.assign(l.n_out, 0);
        unsigned next_upstream = upstream;
        for (std::size_t i = 0; i < l.n_out; ++i) {
          const std::size_t at = s * l.n_out + i;
          ops.format = specs[k].acc.index.empty() ? 0 : specs[k].acc.index[i];
          ops.w = l.row(i);
          ops.b = l.b[i];
          const component_result c = inner_component(ops, models[k], A, l.act, R, r, at, upstream, k == 0, NL, my[k]);
          next_upstream |= c.flags | c.flags_act;
          next_eps[i] = c.bound_y;
          next_eps_p[i] = c.prob_bound_y;
          if (s < csv_n) res.csv_rows[s].push_back(c);
        }
        upstream = next_upstream;
        eps.swap(next_eps);
        eps_p.swap(next_eps_p);
      }
    }
  }
  // 3. summaries
  std::vector<std::size_t> outputs;
  for (const auto& l : net.layers) outputs.push_back(l.n_out);
  summarize(stats, fail_prop, fail_local, outputs, opt, res);
  res.seconds_bounds = seconds_since(t1);
  return res;
}

}  // namespace mpacc::analysis
