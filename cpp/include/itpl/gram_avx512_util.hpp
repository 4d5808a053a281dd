// AVX-512F helpers shared by the AVX-512 Gram kernels (gram_avx512.cpp,
// gram_avx512bf16.cpp, gram_avx512vnni.cpp). Internal; included only where ITPL_X86_KERNELS is set.
// No Python here.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>

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

// o[r] += v[r] * scale for the first min(rows, 8) of 8 doubles: rows past n are
// masked off. A scale of 1 adds v exactly.
ITPL_AVX512 inline void add_rows(double* o, std::size_t rows, __m512d v, __m512d scale) {
    const __mmask8 m = static_cast<__mmask8>((1u << std::min<std::size_t>(8, rows)) - 1u);
    _mm512_mask_storeu_pd(o, m, _mm512_fmadd_pd(v, scale, _mm512_maskz_loadu_pd(m, o)));
}

// Rows (or features) left for the group starting at `first`.
inline std::size_t rows_from(std::size_t rows, std::size_t first) {
    return rows > first ? rows - first : 0;
}

// The first min(count, 16) lanes of a 16-lane mask.
inline __mmask16 first_lanes(std::size_t count) {
    return count >= 16 ? static_cast<__mmask16>(0xffff)
                       : static_cast<__mmask16>((1u << count) - 1u);
}

// Lanes 0-7 and 8-15 of a float32 or int32 accumulator, as doubles (exact).
ITPL_AVX512 inline __m512d low_half(__m512 v) {
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}
ITPL_AVX512 inline __m512d high_half(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
ITPL_AVX512 inline __m512d low_half(__m512i v) {
    return _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
}
ITPL_AVX512 inline __m512d high_half(__m512i v) {
    return _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
}

// out[j * ldo + i] += scale * acc[j][i / 16][i % 16] for the tile's first `rows`
// rows and `cols` columns: the float32 (or int32) register tile of a 32 x 8
// kernel (V vectors of 16 rows per column) added in float64. Each 16-lane
// half is two 8-double groups.
template <int V, class Acc>
ITPL_AVX512 inline void add_tile(const Acc (&acc)[8][2], double* out, std::size_t ldo,
                                 std::size_t rows, std::size_t cols, double scale = 1.0) {
    const __m512d s = _mm512_set1_pd(scale);
    for (std::size_t j = 0; j < std::min<std::size_t>(8, cols); ++j) {
        double* o = out + j * ldo;
        for (int h = 0; h < V; ++h) {
            add_rows(o + h * 16, rows_from(rows, h * 16), low_half(acc[j][h]), s);
            add_rows(o + h * 16 + 8, rows_from(rows, h * 16 + 8), high_half(acc[j][h]), s);
        }
    }
}

}  // namespace
}  // namespace itpl::gram_detail
