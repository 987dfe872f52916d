// SPDX-License-Identifier: MIT
// lib/src/sim/rounding.cpp for the fuzz build: clang 14 cannot multiversion
// function templates ("target_clones ... do not yet support function
// templates"), so its MPACC_CLONES attribute becomes [[gnu::unused]] here and the
// kernels are compiled once, for the baseline ISA. The code is otherwise the
// library's own (sim::round and the parsers are what the fuzz targets call).
#define target_clones(...) unused
#include "../../lib/src/sim/rounding.cpp"
