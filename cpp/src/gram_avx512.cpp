// AVX-512F Gram kernels (x86-64; chosen at run time when the CPU has AVX-512F).
// The contract they meet is in gram_blocked.hpp.
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include "itpl/gram_avx512_util.hpp"
#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {
namespace {

// float32: 32 x 8 tile, 16 zmm accumulators, 2 loads and 8 broadcasts per feature.
struct Avx512F32 {
    using value_type = float;
    static constexpr int MR = 32;
    static constexpr int VL = 16;
    static constexpr int NR = 8;

    ITPL_AVX512 static void pack(const float* x, std::size_t d, const float* x0,
                                 std::size_t rows, std::size_t kb, float* panel) {
        for (std::size_t k = 0; k < kb; k += 16) {
            const std::size_t width = std::min<std::size_t>(16, kb - k);
            const __mmask16 mask = static_cast<__mmask16>((1u << width) - 1u);
            const __m512 shift = _mm512_maskz_loadu_ps(mask, x0 + k);
            for (int half = 0; half < 2; ++half) {
                __m512 r[16];
                for (int q = 0; q < 16; ++q) {
                    const std::size_t row = static_cast<std::size_t>(half * 16 + q);
                    r[q] = row < rows ? _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + row * d + k),
                                                      shift)
                                      : _mm512_setzero_ps();
                }
                transpose16(r);
                for (std::size_t c = 0; c < width; ++c)
                    _mm512_store_ps(panel + (k + c) * MR + half * 16, r[c]);
            }
        }
    }

    template <int V>
    ITPL_AVX512 static void micro(const float* a, const float* b, std::size_t kb, double* out,
                                  std::size_t ldo, std::size_t rows, std::size_t cols) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kb; ++k) {
            const float* ak = a + k * 32;
            const float* bk = b + k * 8;
            const __m512 a0 = _mm512_load_ps(ak);
            const __m512 a1 = V == 2 ? _mm512_load_ps(ak + 16) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512 bj = _mm512_set1_ps(bk[j]);
                acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
                if constexpr (V == 2) acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
            }
        }
        add_tile<V>(acc, out, ldo, rows, cols);
    }
};

// float64: 16 x 8 tile; packing is the generic loop (the float64 path is
// bound by its products, which run at half the float32 rate).
struct Avx512F64 {
    using value_type = double;
    static constexpr int MR = 16;
    static constexpr int VL = 8;
    static constexpr int NR = 8;

    static void pack(const double* x, std::size_t d, const double* x0, std::size_t rows,
                     std::size_t kb, double* panel) {
        GenericKernel<double, MR, NR>::pack(x, d, x0, rows, kb, panel);
    }

    template <int V>
    ITPL_AVX512 static void micro(const double* a, const double* b, std::size_t kb,
                                  double* out, std::size_t ldo, std::size_t rows,
                                  std::size_t cols) {
        __m512d acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_pd();
        for (std::size_t k = 0; k < kb; ++k) {
            const double* ak = a + k * 16;
            const double* bk = b + k * 8;
            const __m512d a0 = _mm512_load_pd(ak);
            const __m512d a1 = V == 2 ? _mm512_load_pd(ak + 8) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512d bj = _mm512_set1_pd(bk[j]);
                acc[j][0] = _mm512_fmadd_pd(a0, bj, acc[j][0]);
                if constexpr (V == 2) acc[j][1] = _mm512_fmadd_pd(a1, bj, acc[j][1]);
            }
        }
        for (std::size_t j = 0; j < std::min<std::size_t>(8, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < V; ++h)
                add_rows(o + h * 8, rows_from(rows, h * 8), acc[j][h], _mm512_set1_pd(1.0));
        }
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx512, float, Avx512F32)
ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx512, double, Avx512F64)

}  // namespace itpl::gram_detail
#endif
