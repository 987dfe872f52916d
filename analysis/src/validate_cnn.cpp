// SPDX-License-Identifier: MIT
// validate() for convolutional networks (docs/cnn.md, "Validation"): the
// MLP's per-component checks on every convolution output and dense neuron
// (validate_internal.hpp), and the pooling layers' own bounds.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "mpacc/analysis/validate.hpp"
#include "mpacc/nn/cnn_passes.hpp"
#include "mpacc/sim/accumulate.hpp"
#include "mpacc/sim/threads.hpp"
#include "validate_internal.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mpacc::analysis {

using namespace validate_detail;

namespace {

// the input positions of each output pixel's window (-1: padding), as the
// convolution's terms are ordered: (c_in, ky, kx) row-major
std::vector<std::int64_t> window_positions(std::size_t c_in, std::size_t h, std::size_t w, std::size_t kh,
                                           std::size_t kw, std::size_t sh, std::size_t sw, std::size_t ph,
                                           std::size_t pw, std::size_t oh, std::size_t ow) {
  std::vector<std::int64_t> at;
  at.reserve(oh * ow * c_in * kh * kw);
  for (std::size_t oy = 0; oy < oh; ++oy)
    for (std::size_t ox = 0; ox < ow; ++ox)
      for (std::size_t ci = 0; ci < c_in; ++ci)
        for (std::size_t ky = 0; ky < kh; ++ky)
          for (std::size_t kx = 0; kx < kw; ++kx) {
            const auto iy = static_cast<std::int64_t>(oy * sh + ky) - static_cast<std::int64_t>(ph);
            const auto ix = static_cast<std::int64_t>(ox * sw + kx) - static_cast<std::int64_t>(pw);
            const bool in =
                iy >= 0 && ix >= 0 && iy < static_cast<std::int64_t>(h) && ix < static_cast<std::int64_t>(w);
            at.push_back(in ? static_cast<std::int64_t>(ci * h * w) + iy * static_cast<std::int64_t>(w) + ix : -1);
          }
  return at;
}

std::size_t out_size(const nn::cnn_layer& layer, std::size_t in) {
  if (const auto* c = std::get_if<nn::conv_layer>(&layer)) return c->shape.out_size();
  if (const auto* p = std::get_if<nn::pool_layer>(&layer)) return p->shape.out_size();
  if (const auto* d = std::get_if<nn::dense_layer>(&layer)) return d->n_out;
  return in;
}

}  // namespace

reference_data compute_reference(const nn::cnn& net, const io::dataset& data, const validate_options& opt,
                                 const nn::precision_config& p) {
  return compute_reference_with(data, opt, p, [&](sim::matrix_view X, const nn::reference_options& ro) {
    return nn::reference_forward(nn::stored_network(net, p), X, ro);
  });
}

validation_result validate(const nn::cnn& model, const reference_data& refd, const nn::precision_config& p,
                           const validate_options& opt) {
  model.validate();
  p.check(model.layers.size());
  const nn::cnn net = nn::stored_network(model, p);
  const std::size_t rows = refd.rows, L = net.layers.size();
  check_reference(refd, p, net.inputs());
  if (refd.ref.layers.size() != L) throw std::invalid_argument("validate: the reference is of another network");
  validation_result res;
  res.config = p.to_string();
  res.precision = p;
  res.ref_inputs = refd.kind;
  const auto t0 = std::chrono::steady_clock::now();

  // 1. the simulated pass and the stored inputs with their flags
  const auto run = nn::simulate(model, {refd.inputs.data(), rows, refd.cols}, p, opt.threads);
  std::vector<std::size_t> in_sizes(L), out_sizes(L);
  {
    std::size_t cols = refd.cols;
    for (std::size_t k = 0; k < L; ++k) {
      in_sizes[k] = cols;
      out_sizes[k] = out_size(net.layers[k], cols);
      cols = out_sizes[k];
    }
  }
  res.layer_sizes = out_sizes;
  std::vector<unsigned> in_flags;
  const std::vector<double> xin = stored_inputs(refd, p, res, in_flags);
  res.seconds_simulation = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  // 2. per layer: its window positions, bound models and the summaries' constants
  const std::size_t NL = opt.lambdas.size();
  std::vector<sim::layer_spec> specs(L);
  std::vector<layer_models> models(L);
  std::vector<std::vector<std::int64_t>> windows(L);
  std::vector<double> fail_prop(L, 0), q_u(L, 0), q_eta(L, 0);
  std::vector<std::vector<double>> fail_local(L, std::vector<double>(NL, 0));
  for (std::size_t k = 0; k < L; ++k) {
    specs[k] = p.layer_spec(k).resolved();
    std::size_t terms = 0;
    std::string kind;
    if (const auto* c = std::get_if<nn::conv_layer>(&net.layers[k])) {
      const auto& q = c->shape;
      terms = q.patch();
      kind = "conv";
      windows[k] = window_positions(q.c_in, q.h, q.w, q.kh, q.kw, q.stride_h, q.stride_w, q.pad_h, q.pad_w, q.out_h(),
                                    q.out_w());
    } else if (const auto* d = std::get_if<nn::dense_layer>(&net.layers[k])) {
      terms = d->n_in;
      kind = "dense";
    } else if (const auto* pl = std::get_if<nn::pool_layer>(&net.layers[k])) {
      const auto& q = pl->shape;
      windows[k] =
          window_positions(1, q.h, q.w, q.kh, q.kw, q.stride_h, q.stride_w, q.pad_h, q.pad_w, q.out_h(), q.out_w());
      if (pl->type == nn::pool_layer::kind::avg) {
        terms = q.window();
        kind = "avgpool";
        // the quotient's one rounding (through via first when set): relative u, absolute eta
        const auto& a = specs[k].base;
        const sim::format& acc = specs[k].acc.formats.at(0);
        const double u = unit_roundoff(acc, a.mode);
        const double uv = a.via ? unit_roundoff(*a.via, sim::rounding::nearest_even) : 0.0;
        q_u[k] = a.via ? (u + uv + u * uv) * (1 + 0x1p-50) : u;
        q_eta[k] = acc.min_positive() + (a.via ? 2 * a.via->min_positive() : 0.0);
      } else {
        kind = "maxpool";
      }
    } else {
      kind = "flatten";
    }
    res.layer_kinds.push_back(kind);
    if (terms > 0) {
      models[k] = make_layer_models(terms, specs[k], opt);
      fail_prop[k] = models[k].fail_prop;
      fail_local[k] = models[k].fail_local;
    }
    res.layer_u.push_back(terms ? models[k].u0 : 0.0);
    res.layer_gamma.push_back(terms ? models[k].gamma0 : 0.0);
    res.layer_kmax.push_back(terms ? models[k].kmax0 : 0);
    res.layer_steps.push_back(terms ? models[k].steps0 + (kind == "avgpool" ? 1 : 0) : 0);
  }
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
    std::vector<double> g_sim, g_eps, g_eps_p, g_ref, g_exact;  // a window's gathered operands
    std::vector<component_result> comps;
#pragma omp for schedule(dynamic, 4)
    for (std::ptrdiff_t si = 0; si < nrows; ++si) {
      const auto s = static_cast<std::size_t>(si);
      const double* x_exact = refd.inputs.data() + s * refd.cols;
      const double* x_sim = xin.data() + s * refd.cols;
      const unsigned* xf = in_flags.data() + s * refd.cols;
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
        const std::size_t n_in = in_sizes[k], n_out = out_sizes[k];
        const auto& R = refd.ref.layers[k];
        const auto& r = run[k];
        const double* in_sim = k == 0 ? x_sim : run[k - 1].y.data() + s * n_in;
        const double* in_ref =
            k == 0 ? (exact_inputs ? x_exact : x_sim) : refd.ref.layers[k - 1].y_hi.data() + s * n_in;
        const double* in_exact = k == 0 ? x_exact : nullptr;
        next_eps.assign(n_out, 0);
        next_eps_p.assign(n_out, 0);
        comps.assign(n_out, {});
        unsigned next_upstream = upstream;
        auto& st = my[k];
        const auto from_upstream = k == 0 ? uncovered_cause::input : uncovered_cause::inherited;
        // gathers the window t..t+m of `at` into the g_ buffers (padding: exact zeros); false if an input is not finite
        auto gather = [&](const std::int64_t* at, std::size_t m, std::size_t offset) {
          g_sim.assign(m, 0.0);
          g_eps.assign(m, 0.0);
          g_eps_p.assign(m, 0.0);
          g_ref.assign(m, 0.0);
          g_exact.assign(m, 0.0);
          bool finite = true;
          for (std::size_t j = 0; j < m; ++j) {
            if (at[j] < 0) continue;
            const std::size_t idx = static_cast<std::size_t>(at[j]) + offset;
            g_sim[j] = in_sim[idx];
            g_eps[j] = eps[idx];
            g_eps_p[j] = eps_p[idx];
            g_ref[j] = in_ref[idx];
            if (in_exact) g_exact[j] = in_exact[idx];
            finite = finite && std::isfinite(g_sim[j]);
          }
          return finite;
        };
        std::visit(
            [&](const auto& l) {
              using T = std::decay_t<decltype(l)>;
              if constexpr (std::is_same_v<T, nn::conv_layer>) {
                const std::size_t K = l.shape.patch(), C = l.shape.c_out, ohw = l.shape.out_h() * l.shape.out_w();
                const std::size_t nidx = specs[k].acc.index.size();
                for (std::size_t pix = 0; pix < ohw; ++pix) {
                  inner_operands ops;
                  ops.n = K;
                  ops.in_finite = gather(windows[k].data() + pix * K, K, 0);
                  ops.x_sim = g_sim.data();
                  ops.eps = g_eps.data();
                  ops.eps_p = g_eps_p.data();
                  ops.x_ref = g_ref.data();
                  ops.x_exact = in_exact ? g_exact.data() : nullptr;
                  for (std::size_t c = 0; c < C; ++c) {
                    const std::size_t i = c * ohw + pix;
                    ops.w = l.W.data() + c * K;
                    ops.b = l.b[c];
                    ops.format = nidx == 0 ? 0 : specs[k].acc.index[nidx == C ? c : i];
                    comps[i] = inner_component(ops, models[k], A, l.act, R, r, s * n_out + i, upstream, k == 0, NL, st);
                  }
                }
              } else if constexpr (std::is_same_v<T, nn::dense_layer>) {
                inner_operands ops;
                ops.n = l.n_in;
                ops.x_sim = in_sim;
                for (std::size_t j = 0; j < l.n_in && ops.in_finite; ++j) ops.in_finite = std::isfinite(in_sim[j]);
                ops.x_ref = in_ref;
                ops.x_exact = in_exact;
                ops.eps = eps.data();
                ops.eps_p = eps_p.data();
                for (std::size_t i = 0; i < l.n_out; ++i) {
                  ops.format = specs[k].acc.index.empty() ? 0 : specs[k].acc.index[i];
                  ops.w = l.row(i);
                  ops.b = l.b[i];
                  comps[i] = inner_component(ops, models[k], A, l.act, R, r, s * n_out + i, upstream, k == 0, NL, st);
                }
              } else if constexpr (std::is_same_v<T, nn::pool_layer>) {
                const auto& q = l.shape;
                const std::size_t m = q.window(), ohw = q.out_h() * q.out_w(), hw = q.h * q.w;
                const bool is_max = l.type == nn::pool_layer::kind::max;
                const std::vector<double> ones(m, 1.0);
                for (std::size_t ch = 0; ch < q.c; ++ch)
                  for (std::size_t pix = 0; pix < ohw; ++pix) {
                    const std::size_t i = ch * ohw + pix, at = s * n_out + i;
                    const bool in_finite = gather(windows[k].data() + pix * m, m, ch * hw);
                    const std::int64_t* pos = windows[k].data() + pix * m;
                    component_result c;
                    c.v_ref = R.v_hi[at];
                    c.y_ref = R.y_hi[at];
                    c.v_sim = r.v[at];
                    c.y_sim = r.y[at];
                    c.flags = r.flags[at];
                    c.flags_act = 0;
                    c.flags_in = upstream;
                    c.err_v = dd_error(c.v_sim, R.v_hi[at], R.v_lo[at]);
                    c.err_y = dd_error(c.y_sim, R.y_hi[at], R.y_lo[at]);
                    c.kappa_act = 1;
                    c.err_local = kNaN;
                    // the window's propagated bounds and |x| on the reference's inputs
                    double e_max = 0, ep_max = 0, e_sum = 0, ep_sum = 0, abs_max = 0, abs_sum = 0;
                    for (std::size_t j = 0; j < m; ++j) {
                      if (pos[j] < 0) continue;
                      e_max = std::max(e_max, g_eps[j]);
                      ep_max = std::max(ep_max, g_eps_p[j]);
                      e_sum += g_eps[j];
                      ep_sum += g_eps_p[j];
                      abs_max = std::max(abs_max, std::fabs(g_ref[j]));
                      abs_sum += std::fabs(g_ref[j]);
                    }
                    auto cause = uncovered_cause::none;
                    bool unexplained = false;
                    if (!std::isfinite(e_sum))
                      cause = from_upstream;
                    else if (c.flags & (sim::flag::overflow | sim::flag::saturated))
                      cause = uncovered_cause::accumulation;
                    else if (!std::isfinite(c.y_sim)) {
                      if (!in_finite || (c.flags & sim::flag::invalid))
                        cause = from_upstream;
                      else
                        unexplained = true;
                    } else if (!std::isfinite(c.v_ref) || !std::isfinite(c.y_ref))
                      cause = uncovered_cause::reference;
                    double u = 0, kn = 0;
                    if (is_max) {
                      // |max x^ - max x| <= max |x^_j - x_j|: the reference's maximum is that of
                      // its inputs (exactly), which eps bounds as it bounds the exact values
                      c.kappa_dot = kappa_ratio(abs_max, c.y_ref);
                      c.bound_local = 0;
                      if (cause == uncovered_cause::none && !unexplained) {
                        // (1 + 4u): the measured error is itself computed in binary64
                        c.bound_v = c.bound_y = e_max * (1 + 4 * kU64);
                        c.prob_bound_v = c.prob_bound_y = ep_max * (1 + 4 * kU64);
                        c.first_order = 0;
                      }
                      kn = abs_max;
                    } else {
                      // the simulated window sum (sim::avg_pool2d's words) for the per-inner-product check
                      const auto& D = models[k].det[0];
                      const auto& Pm = models[k].prob[0];
                      double sd = 0, sp = 0, an = 0;
                      for (std::size_t j = 0; j < m; ++j) {
                        const double t = std::fabs(g_sim[j]);
                        if (t != 0) {
                          sd += t * D.theta[j];
                          sp += t * Pm.theta[j];
                          an += t;
                        }
                      }
                      c.kappa_dot = kappa_ratio(abs_sum / static_cast<double>(m), c.y_ref);
                      c.bound_local = (sd + D.eta) * D.margin;
                      sim::accumulation a = specs[k].base;
                      a.acc = specs[k].acc.formats[0];
                      if (in_finite && std::isfinite(c.y_sim) &&
                          !(c.flags & (sim::flag::overflow | sim::flag::saturated))) {
                        const std::uint64_t word = static_cast<std::uint64_t>(at) * (sim::words_per_dot(m, a) + 1);
                        const double sum = sim::dot(ones, g_sim, 0.0, a, word).value;
                        local_error le(ones.data(), g_sim.data(), m, 0.0, sum, an);
                        c.err_local = le.approx();
                        ++st.local_checked;
                        if (le.exceeds(c.bound_local)) ++st.local_viol;
                        if (c.bound_local >= an) ++st.local_vacuous;
                        for (std::size_t t = 0; t < NL; ++t) {
                          const auto& Mq = models[k].lprob[0][t];
                          double sl = 0;
                          for (std::size_t j = 0; j < m; ++j)
                            if (g_sim[j] != 0) sl += std::fabs(g_sim[j]) * Mq.theta[j];
                          const double b = (sl + Mq.eta) * Mq.margin;
                          const bool vac = b >= an, v = le.exceeds(b);
                          st.lp_vacuous[t] += vac;
                          st.lp_viol[t] += v;
                          st.lp_viol_nv[t] += v && !vac;
                        }
                      }
                      if (cause == uncovered_cause::none && !unexplained) {
                        const double infl = 1 + 2 * (static_cast<double>(m) + 2) * kU64;
                        const double md = static_cast<double>(m);
                        // |y^ - s^/m| <= (u |y^| + eta) / (1 - u), one rounding of the quotient
                        const double quot = (q_u[k] * std::fabs(c.y_sim) + q_eta[k]) / (1 - q_u[k]);
                        c.bound_y = ((c.bound_local + e_sum * infl) / md + quot) * (1 + 4 * kU64) + R.y_bound[at];
                        c.prob_bound_y =
                            (((sp + Pm.eta) * Pm.margin + ep_sum * infl) / md + quot) * (1 + 4 * kU64) + R.y_bound[at];
                        c.bound_v = c.bound_y;
                        c.prob_bound_v = c.prob_bound_y;
                        c.first_order = c.kappa_dot * models[k].gamma0 + q_u[k];
                      }
                      u = q_u[k];
                      kn = abs_sum / static_cast<double>(m);
                    }
                    if (cause == uncovered_cause::none && !unexplained &&
                        (!std::isfinite(c.bound_v) || !std::isfinite(c.bound_y)))
                      cause = uncovered_cause::bound;
                    if (cause != uncovered_cause::none || unexplained) {
                      c.bound_v = c.bound_y = c.prob_bound_v = c.prob_bound_y = kInf;
                      c.first_order = kInf;
                    }
                    c.cause = static_cast<std::uint8_t>(cause);
                    record_component(c, cause, unexplained, u, 0.0, kn, nullptr, st);
                    comps[i] = c;
                  }
              } else {
                // flatten: the same values, the same bounds
                for (std::size_t i = 0; i < n_out; ++i) {
                  const std::size_t at = s * n_out + i;
                  component_result c;
                  c.v_ref = R.v_hi[at];
                  c.y_ref = R.y_hi[at];
                  c.v_sim = r.v[at];
                  c.y_sim = r.y[at];
                  c.flags_in = upstream;
                  c.err_v = dd_error(c.v_sim, R.v_hi[at], R.v_lo[at]);
                  c.err_y = dd_error(c.y_sim, R.y_hi[at], R.y_lo[at]);
                  c.kappa_dot = c.kappa_act = 1;
                  c.err_local = kNaN;
                  auto cause = uncovered_cause::none;
                  if (!std::isfinite(eps[i]))
                    cause = from_upstream;
                  else if (!std::isfinite(c.v_ref))
                    cause = uncovered_cause::reference;
                  c.bound_v = c.bound_y = eps[i];
                  c.prob_bound_v = c.prob_bound_y = eps_p[i];
                  if (cause != uncovered_cause::none) {
                    c.bound_v = c.bound_y = c.prob_bound_v = c.prob_bound_y = kInf;
                    c.first_order = kInf;
                  }
                  c.cause = static_cast<std::uint8_t>(cause);
                  record_component(c, cause, false, 0.0, 0.0, std::fabs(c.y_ref), nullptr, st);
                  comps[i] = c;
                }
              }
            },
            net.layers[k]);
        for (std::size_t i = 0; i < n_out; ++i) {
          next_upstream |= comps[i].flags | comps[i].flags_act;
          next_eps[i] = comps[i].bound_y;
          next_eps_p[i] = comps[i].prob_bound_y;
        }
        if (s < csv_n) res.csv_rows[s].insert(res.csv_rows[s].end(), comps.begin(), comps.end());
        upstream = next_upstream;
        eps.swap(next_eps);
        eps_p.swap(next_eps_p);
      }
    }
  }
  // 3. summaries
  summarize(stats, fail_prop, fail_local, out_sizes, opt, res);
  res.seconds_bounds = seconds_since(t1);
  return res;
}

}  // namespace mpacc::analysis
