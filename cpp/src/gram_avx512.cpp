// AVX-512F Gram kernels (x86-64; chosen at run time when the CPU has AVX-512F).
// The contract they meet is in gram_blocked.hpp.
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {
namespace {

#define ITPL_AVX512 __attribute__((target("avx512f")))

// In-register transpose of 16 rows of 16 floats: on return r[c] holds column c.
ITPL_AVX512 inline void transpose16(__m512 r[16]) {
    __m512 a[16], b[16];
    for (int i = 0; i < 8; ++i) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
        const __m512d a0 = _mm512_castps_pd(a[4 * i]), a1 = _mm512_castps_pd(a[4 * i + 1]);
        const __m512d a2 = _mm512_castps_pd(a[4 * i + 2]), a3 = _mm512_castps_pd(a[4 * i + 3]);
        b[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    // b[4 q + m], 128-bit lane l, holds column 4 l + m of rows 4 q .. 4 q + 3.
    for (int m = 0; m < 4; ++m) {
        const __m512 c0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x88);
        const __m512 c1 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xdd);
        const __m512 c2 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x88);
        const __m512 c3 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xdd);
        r[m] = _mm512_shuffle_f32x4(c0, c2, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(c1, c3, 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(c0, c2, 0xdd);
        r[12 + m] = _mm512_shuffle_f32x4(c1, c3, 0xdd);
    }
}

// o[r] += v[r] for the first min(rows, 8) of 8 doubles: rows past n are masked off.
ITPL_AVX512 inline void add_rows(double* o, std::size_t rows, __m512d v) {
    const __mmask8 m = static_cast<__mmask8>((1u << std::min<std::size_t>(8, rows)) - 1u);
    _mm512_mask_storeu_pd(o, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, o), v));
}

// Rows left for the 8-row group starting at `first`.
inline std::size_t rows_from(std::size_t rows, std::size_t first) {
    return rows > first ? rows - first : 0;
}

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
        // Each 16-float half is two 8-double groups of the output column.
        for (std::size_t j = 0; j < std::min<std::size_t>(8, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < V; ++h) {
                const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc[j][h]));
                const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(
                    _mm512_extractf64x4_pd(_mm512_castps_pd(acc[j][h]), 1)));
                add_rows(o + h * 16, rows_from(rows, h * 16), lo);
                add_rows(o + h * 16 + 8, rows_from(rows, h * 16 + 8), hi);
            }
        }
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
            for (int h = 0; h < V; ++h) add_rows(o + h * 8, rows_from(rows, h * 8), acc[j][h]);
        }
    }
};

}  // namespace

void gram_upper_avx512(const float* x, std::size_t n, std::size_t d, double* out,
                       std::size_t block, int threads) {
    gram_upper<Avx512F32>(x, n, d, out, block, threads);
}

void gram_upper_avx512(const double* x, std::size_t n, std::size_t d, double* out,
                       std::size_t block, int threads) {
    gram_upper<Avx512F64>(x, n, d, out, block, threads);
}

}  // namespace itpl::gram_detail
#endif
