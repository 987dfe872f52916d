// SPDX-License-Identifier: MIT
// mpacc round: reads numbers from standard input and writes each correctly
// rounded value as a C99 hex float (README, Usage).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "mpacc/ref/parse.hpp"
#include "mpacc/sim/rounding.hpp"

namespace mpacc::app {

namespace {

struct round_options {
  std::string format;
  std::string rounding = "nearest-even";
  std::string subnormals;  // empty: the format's own setting (on for named formats)
  std::string saturate = "off";
  std::uint64_t seed = 0;
};

int run_round(const round_options& o) {
  sim::round_spec spec;
  spec.fmt = option_value("--format", [&] { return sim::parse_format(o.format); });
  spec.mode = option_value("--rounding", [&] { return sim::parse_rounding(o.rounding); });
  if (!o.subnormals.empty()) spec.fmt.subnormals = parse_switch("--subnormals", o.subnormals);
  if (auto msg = sim::validate(spec.fmt); !msg.empty()) throw usage_error("--format " + o.format + ": " + msg);
  spec.saturate = parse_switch("--saturate", o.saturate);
  spec.seed = o.seed;

  // Everything is read and checked before anything is written: bad input
  // leaves standard output empty.
  std::string out;
  std::string line;
  std::uint64_t index = 0;
  unsigned flags = 0;
  for (long line_no = 1; std::getline(std::cin, line); ++line_no) {
    std::size_t pos = 0;
    while (true) {
      pos = line.find_first_not_of(" \t\r\f\v", pos);
      if (pos == std::string::npos) break;
      const std::size_t end = std::min(line.find_first_of(" \t\r\f\v", pos), line.size());
      const std::string token = line.substr(pos, end - pos);
      const std::uint64_t word = spec.mode == sim::rounding::stochastic ? sim::random_bits(spec.seed, index) : 0;
      // binary64 values by sim::round, anything else (0.1, 1e-400) by MPFR from
      // its round-to-odd value: decimals are never rounded twice
      double r = 0;
      if (!ref::round_token(token, spec.fmt, spec.mode, spec.saturate, flags, word, r))
        throw usage_error("round: input value " + std::to_string(index + 1) + " (line " + std::to_string(line_no) +
                          ", column " + std::to_string(pos + 1) + "): '" + printable(token) + "' is not a number");
      out += hex(r);
      out += '\n';
      ++index;
      pos = end;
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

command add_round_command(CLI::App& app) {
  auto opts = std::make_shared<round_options>();
  auto* sub =
      app.add_subcommand("round",
                         "Round numbers read from standard input (decimal or C99 hex floats, nan, inf) to a format;\n"
                         "print each result as a C99 hex float, one per line. Decimals are rounded from their\n"
                         "exact value (never through binary64).");
  sub->add_option("--format", opts->format,
                  "target format: a name from 'mpacc formats' or p=P,emin=E,emax=E[,subnormals=off]"
                  "[,inf=off][,max=X]")
      ->required();
  sub->add_option("--rounding", opts->rounding,
                  "nearest-even | nearest-away | toward-zero | upward | downward | odd | stochastic")
      ->capture_default_str();
  sub->add_option("--subnormals", opts->subnormals,
                  "on|off (default: the format's own setting, on for every named format)");
  sub->add_option("--saturate", opts->saturate, "on|off: overflow and inf give +-max")->capture_default_str();
  sub->add_option("--seed", opts->seed, "stochastic rounding seed; the k-th value uses SplitMix64(seed) word k")
      ->capture_default_str();
  return [opts] { return run_round(*opts); };
}

}  // namespace mpacc::app
