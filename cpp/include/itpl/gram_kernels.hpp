// One entry point per ISA kernel: each writes the upper triangle of the
// shifted, uncentred Gram (see gram_blocked.hpp, gram_upper). gram.cpp checks
// the CPU, dispatches, and finishes the result. Internal; no Python here.
#pragma once

#include <cstddef>

// The x86-64 kernels are compiled with function target attributes, so the
// build itself keeps the baseline ISA and the CPU is checked at run time.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define ITPL_X86_KERNELS 1
#endif
// NEON is part of the ARM64 baseline: no run-time check is needed.
#if defined(__aarch64__)
#define ITPL_NEON_KERNEL 1
#endif

namespace itpl::gram_detail {

#define ITPL_GRAM_ENTRY(name)                                                              \
    void name(const float* x, std::size_t n, std::size_t d, double* out, std::size_t block, \
              int threads);                                                                \
    void name(const double* x, std::size_t n, std::size_t d, double* out, std::size_t block, \
              int threads);

ITPL_GRAM_ENTRY(gram_upper_generic)
#ifdef ITPL_X86_KERNELS
ITPL_GRAM_ENTRY(gram_upper_avx2)
ITPL_GRAM_ENTRY(gram_upper_avx2int16)  // 16-bit integer products for float32 input only
ITPL_GRAM_ENTRY(gram_upper_avx512)
ITPL_GRAM_ENTRY(gram_upper_avx512bf16)  // bf16 products for float32 input only
ITPL_GRAM_ENTRY(gram_upper_avx512vnni)  // 8-bit products for float32 input only
#endif
#ifdef ITPL_NEON_KERNEL
ITPL_GRAM_ENTRY(gram_upper_neon)
#endif

#undef ITPL_GRAM_ENTRY

// Defines one overload of an entry point above: `name` runs gram_upper (gram_blocked.hpp)
// with `Kernel` on `type` input. Used by the gram_*.cpp files after their kernels.
#define ITPL_GRAM_ENTRY_DEFINE(name, type, Kernel)                                   \
    void name(const type* x, std::size_t n, std::size_t d, double* out, std::size_t block, \
              int threads) {                                                              \
        gram_upper<Kernel>(x, n, d, out, block, threads);                                 \
    }

// Defines one overload of an entry point above as another kernel's: a kernel
// that rounds float32 input sends float64 input, which asked for float64
// products, to a float64 kernel unchanged.
#define ITPL_GRAM_ENTRY_FORWARD(name, type, other)                                       \
    void name(const type* x, std::size_t n, std::size_t d, double* out, std::size_t block, \
              int threads) {                                                              \
        other(x, n, d, out, block, threads);                                              \
    }

}  // namespace itpl::gram_detail
