// SPDX-License-Identifier: MIT
// Adding a new indicator to Algorithm 1 in a few lines, and running it through
// the same sweep as the built-in ones.
//
//   build/dev/apps/examples/mpacc_example_indicator apps/configs/example-custom.json
//
// The indicator here, "kdot-abs", recomputes a component when its estimated
// inner-product condition number alone is large: score = (||w_i|| ||x|| + |b_i|)/|v_i| * u_low
// (kappa-norm without the activation's condition number).
#include <cmath>
#include <cstdio>
#include <exception>

#include "mpacc/analysis/sweep.hpp"

using namespace mpacc;

int main(int argc, char** argv) try {
  analysis::register_indicator({
      "kdot-abs",
      [](const analysis::layer_view& lv, std::vector<double>& score) {
        for (std::size_t s = 0; s < lv.batch; ++s) {
          double xn = 0;
          for (std::size_t j = 0; j < lv.n_in; ++j) xn += lv.x[s * lv.n_in + j] * lv.x[s * lv.n_in + j];
          for (std::size_t i = 0; i < lv.n_out; ++i) {
            const double v = lv.v_low[s * lv.n_out + i];
            const double num = (*lv.row_norms)[i] * std::sqrt(xn) + std::fabs(lv.weights->b[i]);
            score[s * lv.n_out + i] = num / std::fabs(v) * lv.config->low(lv.layer).unit_roundoff();
          }
        }
      },
      [](const analysis::layer_view& lv) { return static_cast<double>(lv.n_in + lv.n_out); },
  });
  auto cfg = analysis::load_sweep_config(argc > 1 ? argv[1] : "apps/configs/example-custom.json");
  analysis::run_sweep(cfg);
  analysis::merge_sweep(cfg, 0);
  std::printf("results in %s/results.csv\n", cfg.out.string().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mpacc_example_indicator: %s\n", e.what());
  return 2;
}
