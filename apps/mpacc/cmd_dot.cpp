// SPDX-License-Identifier: MIT
// mpacc dot: one simulated inner product, its exact value, kappa_dot and the
// deterministic bound (README, Usage).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mpacc/analysis/bounds.hpp"
#include "mpacc/ref/accumulate.hpp"
#include "mpacc/ref/parse.hpp"
#include "mpacc/sim/accumulate.hpp"

namespace mpacc::app {

namespace {

struct dot_options {
  std::string acc;
  std::string product = "exact";
  std::string order = "recursive";
  std::string rounding = "nearest-even";
  std::string bias = "0";
  std::string saturate = "off";
  std::string subnormals;
  std::uint64_t seed = 0;
};

int run_dot(const dot_options& o) {
  sim::accumulation a;
  a.acc = option_value("--acc", [&] { return sim::parse_format(o.acc); });
  if (o.product != "exact") {
    a.product = option_value("--product", [&] { return sim::parse_format(o.product); });
  }
  a.ord = option_value("--order", [&] { return sim::parse_order(o.order); });
  a.mode = option_value("--rounding", [&] { return sim::parse_rounding(o.rounding); });
  a.saturate = parse_switch("--saturate", o.saturate);
  if (!o.subnormals.empty()) {
    a.acc.subnormals = parse_switch("--subnormals", o.subnormals);
    if (a.product) a.product->subnormals = a.acc.subnormals;
  }
  if (auto msg = sim::validate(a.acc); !msg.empty()) throw usage_error("--acc: " + msg);
  a.seed = o.seed;
  double bias = 0;
  if (!ref::parse_binary64(o.bias, bias) || !std::isfinite(bias))
    throw usage_error("--bias: '" + o.bias + "' is not a finite binary64 value");

  std::vector<double> w, x;
  std::string line;
  for (long line_no = 1; std::getline(std::cin, line); ++line_no) {
    std::vector<std::string> tokens;
    std::size_t pos = 0;
    while ((pos = line.find_first_not_of(" \t\r", pos)) != std::string::npos) {
      const std::size_t end = std::min(line.find_first_of(" \t\r", pos), line.size());
      tokens.push_back(line.substr(pos, end - pos));
      pos = end;
    }
    if (tokens.empty()) continue;
    const std::string where = "line " + std::to_string(line_no);
    if (tokens.size() != 2)
      throw usage_error("dot: " + where + ": expected a pair 'w x', got " + std::to_string(tokens.size()) + " values");
    double wv = 0, xv = 0;
    for (int k = 0; k < 2; ++k) {
      double& v = k == 0 ? wv : xv;
      if (!ref::parse_binary64(tokens[k], v))
        throw usage_error("dot: " + where + ", value " + std::to_string(k + 1) + ": '" + printable(tokens[k]) +
                          "' is not a number exactly representable in binary64");
      if (!std::isfinite(v))
        throw usage_error("dot: " + where + ", value " + std::to_string(k + 1) + ": '" + printable(tokens[k]) +
                          "' is not finite");
    }
    w.push_back(wv);
    x.push_back(xv);
  }

  sim::dot_result r;
  bool fast = sim::fast_path_applies(a);
  if (fast) {
    r = sim::dot(w, x, bias, a);
    fast = r.exact_model;
  }
  if (!fast) r = ref::dot_mpfr(w, x, bias, a);

  const auto ex = ref::dot_exact(w, x, bias);
  const double exact = mpfr_get_d(ex.value.get(), MPFR_RNDN);
  double kappa;
  if (mpfr_zero_p(ex.value.get())) {
    kappa = mpfr_zero_p(ex.abs_sum.get()) ? 1.0 : HUGE_VAL;
  } else {
    ref::mpfr_float k(64);
    mpfr_div(k.get(), ex.abs_sum.get(), ex.value.get(), MPFR_RNDN);
    mpfr_abs(k.get(), k.get(), MPFR_RNDN);
    kappa = mpfr_get_d(k.get(), MPFR_RNDN);
  }
  const double bound = analysis::deterministic_bound(w, x, bias, a);
  double err = HUGE_VAL;
  if (std::isfinite(r.value)) {
    ref::mpfr_float e(64);
    mpfr_sub_d(e.get(), ex.value.get(), r.value, MPFR_RNDN);
    mpfr_abs(e.get(), e.get(), MPFR_RNDN);
    err = mpfr_get_d(e.get(), MPFR_RNDN);
  } else if (std::isnan(r.value)) {
    err = std::nan("");
  }
  std::printf("simulated %s\n", hex(r.value).c_str());
  std::printf("exact %s\n", hex(exact).c_str());
  std::printf("kappa_dot %.17g\n", kappa);
  std::printf("bound_deterministic %.17g\n", bound);
  std::printf("error_abs %.17g\n", err);
  std::printf("terms %zu\n", w.size());
  std::printf("flags %s\n", sim::flags_to_string(r.flags).c_str());
  if (r.flags & sim::flag::overflow)
    std::printf("note overflow occurred: the rounding-error bound does not cover this result\n");
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

command add_dot_command(CLI::App& app) {
  auto opts = std::make_shared<dot_options>();
  auto* sub = app.add_subcommand("dot",
                                 "Simulate one inner product sum_j w_j x_j + bias read as pairs 'w x' (one per line,\n"
                                 "decimal or hex float, already in their storage format) and print: simulated, exact,\n"
                                 "kappa_dot, bound_deterministic, error_abs (then terms and flags).");
  sub->add_option("--acc", opts->acc, "accumulator format (name or p=..,emin=..,emax=..)")->required();
  sub->add_option("--product", opts->product, "exact (FMA) or a format products are rounded to")->capture_default_str();
  sub->add_option("--order", opts->order, "recursive | pairwise | blocked:B")->capture_default_str();
  sub->add_option("--rounding", opts->rounding,
                  "nearest-even | nearest-away | toward-zero | upward | downward | odd | stochastic")
      ->capture_default_str();
  sub->add_option("--bias", opts->bias, "bias b, added last")->capture_default_str();
  sub->add_option("--saturate", opts->saturate, "on|off")->capture_default_str();
  sub->add_option("--subnormals", opts->subnormals, "on|off (default: the formats' own, on)");
  sub->add_option("--seed", opts->seed, "stochastic rounding seed")->capture_default_str();
  return [opts] { return run_dot(*opts); };
}

}  // namespace mpacc::app
