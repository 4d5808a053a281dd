// The machine's float32 FMA peak, measured: the yardstick benchmarks print
// their GFLOP/s against. No Python here.
#pragma once

#include "itpl/gram.hpp"

namespace itpl {

// GFLOP/s of independent float32 FMAs in registers with the vector width of
// `kernel` (generic: whatever the compiler makes of a scalar loop; avx512bf16:
// bf16 dot products, 4 flops per float32 lane; avx512vnni: 8-bit dot products,
// 8 integer operations per 32-bit lane; avx2int16: 16-bit ones, 4 per lane), on num_threads threads
// (0: OpenMP default) for about `seconds`.
// Throws std::invalid_argument for a kernel this CPU or build cannot run.
double fma_peak_gflops(GramKernel kernel, int num_threads, double seconds);

}  // namespace itpl
