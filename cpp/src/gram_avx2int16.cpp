// AVX2 16-bit integer Gram kernel (x86-64 CPUs with AVX2 + FMA; chosen by
// name). The quantization and the contract it meets are in gram_quantized.hpp.
//
// vpmaddwd multiplies two pairs of 16-bit integers per 32-bit lane and adds
// both products into the lane: twice the products per instruction of a
// float32 FMA, but it needs a vpaddd beside it, and on Zen 4's AVX2 units the
// pair peaks at 1.26x the FMA rate (fma_peak_gflops); this kernel is 1.3x
// the avx2 kernel there. AVX2 CPUs that multiply integers on fewer pipes than
// FMAs would gain less, so `auto` keeps the avx2 kernel. Values are quantized
// to 1023 steps of their block's widest range (10 bits: an error of at most
// 1/2046 of that range, a quarter of the 8-bit kernel's), so a lane's pair
// sums to at most 2 x 1023^2 and a block of up to 2048 features stays exact
// in int32. float64 input never goes through integers: it takes the AVX2
// float64 kernel unchanged.
//
// Tile: 16 ymm registers. vpmaddwd's result needs a register of its own
// before it is added, so 9 accumulators (24 rows x 3 columns) + 3 row
// vectors + 1 broadcast + 1 product = 14, loading 6 times per 9 products.
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include <cstdint>

#include "itpl/gram_avx2_util.hpp"
#include "itpl/gram_quantized.hpp"

namespace itpl::gram_detail {
namespace {

struct Avx2Int16 {
    using value_type = float;
    using packed_type = std::uint32_t;
    using driver = QuantizedDriver<Avx2Int16>;
    static constexpr int KP = 2;
    static constexpr int MR = 24;
    static constexpr int VL = 8;
    static constexpr int NR = 3;
    static constexpr int levels = 1023;
    static constexpr std::size_t max_block = 2048;  // 1023^2 * 2048 < 2^31

    // 32 features (4 vectors) at a time, down all n rows (the block is in L2).
    ITPL_AVX2 static bool bounds(const float* x, std::size_t n, std::size_t d, std::size_t kb,
                                 float* lo, float* hi) {
        __m256 bad = _mm256_setzero_ps();  // becomes NaN at a NaN or Inf
        const __m256 zero = _mm256_setzero_ps();
        for (std::size_t k = 0; k < kb; k += 32) {
            __m256i m[4];
            for (int t = 0; t < 4; ++t) m[t] = lanes32(rows_from(kb - k, 8 * t));
            __m256 l[4], h[4];
            for (int t = 0; t < 4; ++t) l[t] = h[t] = _mm256_maskload_ps(x + k + 8 * t, m[t]);
            for (std::size_t i = 0; i < n; ++i) {
                const float* row = x + i * d + k;
#pragma GCC unroll 4
                for (int t = 0; t < 4; ++t) {
                    const __m256 v = _mm256_maskload_ps(row + 8 * t, m[t]);
                    l[t] = _mm256_min_ps(l[t], v);
                    h[t] = _mm256_max_ps(h[t], v);
                    bad = _mm256_fmadd_ps(v, zero, bad);
                }
            }
            for (int t = 0; t < 4; ++t) {
                _mm256_maskstore_ps(lo + k + 8 * t, m[t], l[t]);
                _mm256_maskstore_ps(hi + k + 8 * t, m[t], h[t]);
            }
        }
        return _mm256_movemask_ps(_mm256_cmp_ps(bad, bad, _CMP_UNORD_Q)) == 0;
    }

    // One row's 8 features as 8 integers round((x - lo) * inv) (0 past kb:
    // the masked loads give x = lo = 0).
    ITPL_AVX2 static __m256i quantize8(const float* row, __m256 lo, __m256 inv, __m256i m) {
        return _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(row, m), lo), inv));
    }

    // 16 features of 8 samples at a time: each sample's 16 integers, packed
    // to 16 bits in order, fill one vector of 8 pairs, and an 8 x 8 transpose
    // of those 32-bit pairs puts each pair column in one vector. Rows past
    // `rows` are never written: the driver's panels start zeroed and padding
    // rows stay so.
    ITPL_AVX2 static void pack(const float* x, std::size_t d, const float* lo, const float* inv,
                               std::size_t rows, std::size_t kb, std::uint32_t* panel,
                               std::int32_t* /*corr: none, both operands hold u*/) {
        for (std::size_t k = 0; k < kb; k += 16) {
            const std::size_t width = std::min<std::size_t>(16, kb - k);
            const __m256i m0 = lanes32(rows_from(width, 0)), m1 = lanes32(rows_from(width, 8));
            const __m256 l0 = _mm256_maskload_ps(lo + k, m0);
            const __m256 l1 = _mm256_maskload_ps(lo + k + 8, m1);
            const __m256 s0 = _mm256_maskload_ps(inv + k, m0);
            const __m256 s1 = _mm256_maskload_ps(inv + k + 8, m1);
            const std::size_t pairs = (width + 1) / 2;
            for (std::size_t g = 0; g * 8 < rows; ++g) {
                __m256 r[8];
                for (std::size_t q = 0; q < 8; ++q) {
                    const std::size_t row = g * 8 + q;
                    if (row >= rows) {
                        r[q] = _mm256_setzero_ps();
                        continue;
                    }
                    const float* xr = x + row * d + k;
                    // packs works within 128-bit lanes: a0-3 b0-3 a4-7 b4-7,
                    // then the 64-bit permute restores feature order.
                    const __m256i packed = _mm256_packs_epi32(quantize8(xr, l0, s0, m0),
                                                              quantize8(xr + 8, l1, s1, m1));
                    r[q] = _mm256_castsi256_ps(_mm256_permute4x64_epi64(packed, 0xD8));
                }
                transpose8(r);
                for (std::size_t c = 0; c < pairs; ++c)
                    _mm256_store_ps(reinterpret_cast<float*>(panel + (k / 2 + c) * MR + g * 8), r[c]);
            }
        }
    }

    static std::uint32_t encode(std::uint32_t v) { return v; }

    template <int V>
    ITPL_AVX2 static void micro(const std::uint32_t* a, const std::uint32_t* b, std::size_t kp,
                                double* out, std::size_t ldo, std::size_t rows, std::size_t cols,
                                const std::int32_t* /*corr*/, double scale2) {
        __m256i acc[NR][V];
#pragma GCC unroll 3
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v) acc[j][v] = _mm256_setzero_si256();
        for (std::size_t k = 0; k < kp; ++k) {
            const std::uint32_t* ak = a + k * MR;
            const std::uint32_t* bk = b + k * NR;
            __m256i av[V];
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v)
                av[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(ak + 8 * v));
#pragma GCC unroll 3
            for (int j = 0; j < NR; ++j) {
                const __m256i bj = _mm256_set1_epi32(static_cast<int>(bk[j]));
#pragma GCC unroll 3
                for (int v = 0; v < V; ++v)
                    acc[j][v] = _mm256_add_epi32(acc[j][v], _mm256_madd_epi16(av[v], bj));
            }
        }
        // Spilled once here (see gram_avx2.cpp), then scaled into float64.
        alignas(32) std::int32_t tile[NR][V * 8];
#pragma GCC unroll 3
        for (int j = 0; j < NR; ++j)
#pragma GCC unroll 3
            for (int v = 0; v < V; ++v)
                _mm256_store_si256(reinterpret_cast<__m256i*>(&tile[j][v * 8]), acc[j][v]);
        const __m256d s = _mm256_set1_pd(scale2);
        for (std::size_t j = 0; j < std::min<std::size_t>(NR, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < 2 * V; ++h) {
                const __m128i q = _mm_load_si128(reinterpret_cast<const __m128i*>(&tile[j][h * 4]));
                add_rows(o + h * 4, rows_from(rows, h * 4), _mm256_mul_pd(_mm256_cvtepi32_pd(q), s));
            }
        }
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx2int16, float, Avx2Int16)

ITPL_GRAM_ENTRY_FORWARD(gram_upper_avx2int16, double, gram_upper_avx2)

}  // namespace itpl::gram_detail
#endif
