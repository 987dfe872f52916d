// SPDX-License-Identifier: MIT
#include <cstdio>

#include "commands.hpp"
#include "mpacc/sim/format.hpp"

namespace mpacc::app {

command add_formats_command(CLI::App& app) {
  auto* sub = app.add_subcommand("formats", "List the named number formats and their parameters");
  return [] {
    std::printf("%-10s %3s %6s %5s %4s %4s %-13s %-13s %-13s %-13s\n", "name", "p", "emin", "emax", "inf", "bits",
                "max", "min_normal", "min_subnorm", "unit_roundoff");
    for (const auto& nf : sim::named_formats()) {
      const auto& f = nf.fmt;
      std::printf("%-10s %3d %6d %5d %4s %4d %-13.6g %-13.6g %-13.6g %-13.6g\n", std::string(nf.name).c_str(), f.p,
                  f.emin, f.emax, f.has_inf ? "yes" : "no", f.bit_width(), f.max_finite, f.min_normal(),
                  f.min_positive(), f.unit_roundoff());
    }
    std::printf("custom: p=P,emin=E,emax=E[,subnormals=off][,inf=off][,max=X]\n");
    return 0;
  };
  (void)sub;
}

}  // namespace mpacc::app
