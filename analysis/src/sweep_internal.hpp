// SPDX-License-Identifier: MIT
// Shared by sweep.cpp and sweep_report.cpp: the job list of a sweep and the
// report writer.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "mpacc/analysis/sweep.hpp"

namespace mpacc::analysis::detail {

// One job: a network and an order, and either the uniform strategies or an
// (indicator, tau) with its matched baselines. Jobs are numbered in a fixed order.
struct job {
  std::size_t network = 0, order = 0;
  bool uniform = false;
  std::string indicator;
  double tau = 0;
};
std::vector<job> jobs_of(const sweep_config& c);
// the (strategy, seed) rows a job writes, in order
std::vector<std::pair<std::string, std::size_t>> rows_of(const sweep_config& c, const job& jb);
// the strategy name of a static configuration calibrated at quantile q ("static-q0.9")
std::string static_name(double q);
// "blocked:8" -> "blocked-8" (file names)
std::string file_safe(std::string s);

}  // namespace mpacc::analysis::detail
