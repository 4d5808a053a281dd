// AVX2 helpers shared by the AVX2 Gram kernels (gram_avx2.cpp,
// gram_avx2int16.cpp). Internal; included only where ITPL_X86_KERNELS is set.
// No Python here.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace itpl::gram_detail {
namespace {

#define ITPL_AVX2 __attribute__((target("avx2,fma")))

// In-register transpose of 8 rows of 8 floats: on return r[c] holds column c.
ITPL_AVX2 inline void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // t[4 q + m] (q: rows 4q..4q+3, m: lo/hi of rows 2,3 paired with 0,1)
    for (int q = 0; q < 2; ++q) {
        s[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        s[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        s[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        s[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    // s[4 q + c], 128-bit lane l, holds column 4 l + c of rows 4 q .. 4 q + 3.
    for (int c = 0; c < 4; ++c) {
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

// Lanes < count set (all 8 from count 8 up), for masked loads and stores of
// 32-bit values.
ITPL_AVX2 inline __m256i lanes32(std::size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// o[r] += v[r] for the first min(rows, 4) of 4 doubles: rows past n are masked off.
ITPL_AVX2 inline void add_rows(double* o, std::size_t rows, __m256d v) {
    if (rows >= 4) {
        _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), v));
    } else if (rows > 0) {
        const __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(rows)),
                                             _mm256_setr_epi64x(0, 1, 2, 3));
        _mm256_maskstore_pd(o, m, _mm256_add_pd(_mm256_maskload_pd(o, m), v));
    }
}

// Rows (or features) left for the group starting at `first`.
inline std::size_t rows_from(std::size_t rows, std::size_t first) {
    return rows > first ? rows - first : 0;
}

}  // namespace
}  // namespace itpl::gram_detail
