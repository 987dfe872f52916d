// SPDX-License-Identifier: MIT
// Link-time stand-ins for the fuzz build of the text parsers. analysis/src/algorithm1.cpp
// (needed for the indicator and baseline names and wilson()) also holds the
// runner of mixed-precision passes, which calls the layer kernels and the
// reference forward pass; those sources (lib/src/sim/layer.cpp with its AVX-512
// target regions, lib/src/nn/reference.cpp and simulate.cpp with MPFR and
// OpenBLAS) are not built with clang here. No parser reaches them: each stand-in
// stops the fuzzer if it is ever called. A changed signature shows up as an
// undefined reference when the fuzz preset links: update the stand-in to match.
#include <cstdio>
#include <cstdlib>

#include "mpacc/nn/reference.hpp"
#include "mpacc/nn/simulate.hpp"
#include "mpacc/sim/layer.hpp"

namespace {
[[noreturn]] void not_in_the_fuzz_build(const char* what) {
  std::fprintf(stderr, "fuzz build: %s called, but the parsers never run a network\n", what);
  std::abort();
}
}  // namespace

namespace mpacc::sim {
prepared_dense::prepared_dense(matrix_view, std::span<const double>, const layer_spec&) {
  not_in_the_fuzz_build("sim::prepared_dense");
}
layer_flags prepared_dense::run(matrix_view, std::vector<double>&, int, std::vector<unsigned>*, std::size_t,
                                matrix_view, std::size_t) const {
  not_in_the_fuzz_build("sim::prepared_dense::run");
}
layer_flags prepared_dense::run_selected(matrix_view, std::span<const std::uint8_t>, std::vector<double>&, int,
                                         std::vector<unsigned>*, std::size_t) const {
  not_in_the_fuzz_build("sim::prepared_dense::run_selected");
}
void prepared_dense::run_values(matrix_view, std::vector<double>&, int, std::size_t) const {
  not_in_the_fuzz_build("sim::prepared_dense::run_values");
}
void prepared_dense::run_selected_values(matrix_view, std::span<const std::uint8_t>, std::vector<double>&, int,
                                         std::size_t) const {
  not_in_the_fuzz_build("sim::prepared_dense::run_selected_values");
}
std::string dense_kernel_choice() { not_in_the_fuzz_build("sim::dense_kernel_choice"); }
}  // namespace mpacc::sim

namespace mpacc::nn {
forward_result fast_forward(const mlp&, sim::matrix_view, int) { not_in_the_fuzz_build("nn::fast_forward"); }
unsigned apply_activation(const dense_layer&, const sim::format&, std::vector<double>&, int, std::vector<unsigned>*,
                          sim::rounding, bool, std::uint64_t) {
  not_in_the_fuzz_build("nn::apply_activation");
}
}  // namespace mpacc::nn
