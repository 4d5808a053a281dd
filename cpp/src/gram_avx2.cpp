// AVX2 + FMA Gram kernels (x86-64 CPUs without AVX-512; chosen at run time).
// The contract they meet is in gram_blocked.hpp.
//
// The tile comes from the register file: 16 ymm registers. Two FMA pipes with
// a 4-cycle latency need at least 8 independent accumulators; 12 leave room
// for the operands: 12 accumulators + 3 row vectors + 1 broadcast = 16. Of the
// shapes with 12 accumulators, 3 vectors x 4 columns loads 7 times per 12 FMAs
// (2 x 6 loads 8 times), and 4 columns divide a 24-row panel, so both operands
// come from the one packed copy. float32: 24 x 4; float64: 12 x 4.
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include "itpl/gram_avx2_util.hpp"
#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {
namespace {

struct Avx2F32 {
    using value_type = float;
    static constexpr int MR = 24;
    static constexpr int VL = 8;
    static constexpr int NR = 4;

    ITPL_AVX2 static void pack(const float* x, std::size_t d, const float* x0, std::size_t rows,
                               std::size_t kb, float* panel) {
        for (std::size_t k = 0; k < kb; k += 8) {
            const std::size_t width = std::min<std::size_t>(8, kb - k);
            const __m256i mask = lanes32(width);
            const __m256 shift = _mm256_maskload_ps(x0 + k, mask);
            for (std::size_t g = 0; g * 8 < rows; ++g) {
                __m256 r[8];
                for (std::size_t q = 0; q < 8; ++q) {
                    const std::size_t row = g * 8 + q;
                    r[q] = row < rows
                               ? _mm256_sub_ps(_mm256_maskload_ps(x + row * d + k, mask), shift)
                               : _mm256_setzero_ps();
                }
                transpose8(r);
                for (std::size_t c = 0; c < width; ++c)
                    _mm256_store_ps(panel + (k + c) * MR + g * 8, r[c]);
            }
        }
    }

    template <int V>
    ITPL_AVX2 static void micro(const float* a, const float* b, std::size_t kb, double* out,
                                std::size_t ldo, std::size_t rows, std::size_t cols) {
        __m256 acc[NR][V];
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) acc[j][v] = _mm256_setzero_ps();
        for (std::size_t k = 0; k < kb; ++k) {
            const float* ak = a + k * MR;
            const float* bk = b + k * NR;
            __m256 av[V];
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) av[v] = _mm256_load_ps(ak + 8 * v);
#pragma GCC unroll 4
            for (int j = 0; j < NR; ++j) {
                const __m256 bj = _mm256_broadcast_ss(bk + j);
#pragma GCC unroll 3
                for (int v = 0; v < V; ++v) acc[j][v] = _mm256_fmadd_ps(av[v], bj, acc[j][v]);
            }
        }
        // Spilled once here: indexed by the run-time column count, the
        // accumulators would otherwise be kept in memory through the k loop.
        alignas(32) float tile[NR][V * 8];
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) _mm256_store_ps(&tile[j][v * 8], acc[j][v]);
        // Each 8-float vector is two 4-double groups of the output column.
        for (std::size_t j = 0; j < std::min<std::size_t>(NR, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < 2 * V; ++h)
                add_rows(o + h * 4, rows_from(rows, h * 4), _mm256_cvtps_pd(_mm_load_ps(&tile[j][h * 4])));
        }
    }
};

// float64 packing is the generic loop: the float64 path is bound by its
// products, which run at half the float32 rate.
struct Avx2F64 {
    using value_type = double;
    static constexpr int MR = 12;
    static constexpr int VL = 4;
    static constexpr int NR = 4;

    static void pack(const double* x, std::size_t d, const double* x0, std::size_t rows,
                     std::size_t kb, double* panel) {
        GenericKernel<double, MR, NR>::pack(x, d, x0, rows, kb, panel);
    }

    template <int V>
    ITPL_AVX2 static void micro(const double* a, const double* b, std::size_t kb, double* out,
                                std::size_t ldo, std::size_t rows, std::size_t cols) {
        __m256d acc[NR][V];
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) acc[j][v] = _mm256_setzero_pd();
        for (std::size_t k = 0; k < kb; ++k) {
            const double* ak = a + k * MR;
            const double* bk = b + k * NR;
            __m256d av[V];
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) av[v] = _mm256_load_pd(ak + 4 * v);
#pragma GCC unroll 4
            for (int j = 0; j < NR; ++j) {
                const __m256d bj = _mm256_broadcast_sd(bk + j);
#pragma GCC unroll 3
                for (int v = 0; v < V; ++v) acc[j][v] = _mm256_fmadd_pd(av[v], bj, acc[j][v]);
            }
        }
        alignas(32) double tile[NR][V * 4];
#pragma GCC unroll 4
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) _mm256_store_pd(&tile[j][v * 4], acc[j][v]);
        for (std::size_t j = 0; j < std::min<std::size_t>(NR, cols); ++j) {
            double* o = out + j * ldo;
            for (int v = 0; v < V; ++v)
                add_rows(o + v * 4, rows_from(rows, v * 4), _mm256_load_pd(&tile[j][v * 4]));
        }
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx2, float, Avx2F32)
ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx2, double, Avx2F64)

}  // namespace itpl::gram_detail
#endif
