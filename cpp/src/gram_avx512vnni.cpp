// AVX-512 VNNI Gram kernel: 8-bit integer products (x86-64 CPUs with
// AVX512_VNNI: Intel Cascade Lake, Ice Lake and later, AMD Zen 4 and later;
// chosen at run time). The quantization and the contract it meets are in
// gram_quantized.hpp.
//
// vpdpbusd multiplies four pairs of bytes per 32-bit lane and adds the four
// products into the lane: four times the products per instruction of a
// float32 FMA, twice those of vdpbf16ps, and measured at twice the bf16 rate
// on Zen 4. Precision: every value is rounded to one of 256 levels, 255 steps
// of its block's widest feature range (an error of at most half a step); the
// products are exact; tests/test_gram.py checks the kernel against that
// rounding emulated in float64 and bounds its error. float64 input never goes
// through bytes: it takes the AVX-512F float64 kernel unchanged.
//
// Tile: as the bf16 kernel, 32 x 8 from the 32 zmm registers (16 int32
// accumulators, 2 row vectors, 1 broadcast).
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include <cstdint>

#include "itpl/gram_avx512_util.hpp"
#include "itpl/gram_quantized.hpp"

#define ITPL_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

namespace itpl::gram_detail {
namespace {

// acc + the four byte products u x v of each 32-bit lane (u unsigned, v
// signed). GCC 12 copies every accumulator around _mm512_dpbusd_epi32 in an
// unrolled loop (16 extra moves per 16 products); the instruction itself
// updates its accumulator in place.
ITPL_AVX512VNNI inline __m512i dpbusd(__m512i acc, __m512i u, __m512i v) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(v));
    return acc;
}

struct Avx512Vnni {
    using value_type = float;
    using packed_type = std::uint32_t;
    using driver = QuantizedDriver<Avx512Vnni>;
    static constexpr int KP = 4;
    static constexpr int MR = 32;
    static constexpr int VL = 16;
    static constexpr int NR = 8;
    static constexpr int levels = 255;
    static constexpr std::size_t max_block = 16384;  // 255^2 * 16384 < 2^31

    // 64 features (4 vectors) at a time, down all n rows: the block is in L2
    // (the driver pulled it in while the previous block's tiles ran).
    ITPL_AVX512VNNI static bool bounds(const float* x, std::size_t n, std::size_t d,
                                       std::size_t kb, float* lo, float* hi) {
        __m512 bad = _mm512_setzero_ps();  // becomes NaN at a NaN or Inf
        const __m512 zero = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kb; k += 64) {
            __mmask16 m[4];
            for (int t = 0; t < 4; ++t) m[t] = first_lanes(rows_from(kb - k, 16 * t));
            __m512 l[4], h[4];
            for (int t = 0; t < 4; ++t) l[t] = h[t] = _mm512_maskz_loadu_ps(m[t], x + k + 16 * t);
            for (std::size_t i = 0; i < n; ++i) {
                const float* row = x + i * d + k;
#pragma GCC unroll 4
                for (int t = 0; t < 4; ++t) {
                    const __m512 v = _mm512_maskz_loadu_ps(m[t], row + 16 * t);
                    l[t] = _mm512_min_ps(l[t], v);
                    h[t] = _mm512_max_ps(h[t], v);
                    bad = _mm512_fmadd_ps(v, zero, bad);
                }
            }
            for (int t = 0; t < 4; ++t) {
                _mm512_mask_storeu_ps(lo + k + 16 * t, m[t], l[t]);
                _mm512_mask_storeu_ps(hi + k + 16 * t, m[t], h[t]);
            }
        }
        return _mm512_cmp_ps_mask(bad, bad, _CMP_UNORD_Q) == 0;
    }

    // One row's 16 features from `first` as 16 bytes v = u - 128 (0 past kb).
    ITPL_AVX512VNNI static __m128i quantize16(const float* row, __m512 lo, __m512 inv,
                                              __mmask16 m) {
        const __m512 scaled = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row), lo), inv);
        const __m512i v = _mm512_maskz_sub_epi32(m, _mm512_cvtps_epi32(scaled),
                                                 _mm512_set1_epi32(128));
        return _mm512_cvtsepi32_epi8(v);
    }

    // 64 features of 16 samples at a time: each sample's 64 bytes fill one
    // vector of 16 four-byte elements, and a 16 x 16 transpose of those
    // 32-bit elements puts each element column in one vector.
    ITPL_AVX512VNNI static void pack(const float* x, std::size_t d, const float* lo,
                                     const float* inv, std::size_t rows, std::size_t kb,
                                     std::uint32_t* panel, std::int32_t* corr) {
        const __m512i ones = _mm512_set1_epi8(1);
        __m512i sums[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (std::size_t k = 0; k < kb; k += 64) {
            const std::size_t width = std::min<std::size_t>(64, kb - k);
            __mmask16 m[4];
            __m512 l[4], s[4];
            for (int t = 0; t < 4; ++t) {
                m[t] = first_lanes(rows_from(width, 16 * t));
                l[t] = _mm512_maskz_loadu_ps(m[t], lo + k + 16 * t);
                s[t] = _mm512_maskz_loadu_ps(m[t], inv + k + 16 * t);
            }
            const std::size_t elements = (width + 3) / 4;
            for (int half = 0; half < 2; ++half) {
                __m512 r[16];
                for (int q = 0; q < 16; ++q) {
                    const std::size_t row = static_cast<std::size_t>(half * 16 + q);
                    __m512i bytes = _mm512_setzero_si512();
                    if (row < rows) {
                        const float* xr = x + row * d + k;
                        bytes = _mm512_inserti32x4(bytes, quantize16(xr, l[0], s[0], m[0]), 0);
                        if (width > 16)
                            bytes = _mm512_inserti32x4(bytes, quantize16(xr + 16, l[1], s[1], m[1]), 1);
                        if (width > 32)
                            bytes = _mm512_inserti32x4(bytes, quantize16(xr + 32, l[2], s[2], m[2]), 2);
                        if (width > 48)
                            bytes = _mm512_inserti32x4(bytes, quantize16(xr + 48, l[3], s[3], m[3]), 3);
                    }
                    r[q] = _mm512_castsi512_ps(bytes);
                }
                transpose16(r);
                for (std::size_t c = 0; c < elements; ++c) {
                    const __m512i col = _mm512_castps_si512(r[c]);
                    _mm512_store_si512(panel + (k / 4 + c) * MR + half * 16, col);
                    sums[half] = _mm512_dpbusd_epi32(sums[half], ones, col);  // sum of v per row
                }
            }
        }
        // S_r = sum of v + 128 kb (padding features are v = 0); corr = 128 S_r.
        const __m512i offset = _mm512_set1_epi32(static_cast<int>(128 * kb));
        for (int half = 0; half < 2; ++half) {
            const __mmask16 live = first_lanes(rows_from(rows, static_cast<std::size_t>(half * 16)));
            _mm512_storeu_si512(corr + half * 16,
                                _mm512_maskz_slli_epi32(live, _mm512_add_epi32(sums[half], offset), 7));
        }
    }

    static std::uint32_t encode(std::uint32_t v) { return v ^ 0x80808080u; }  // u = v + 128

    template <int V>
    ITPL_AVX512VNNI static void micro(const std::uint32_t* a, const std::uint32_t* b,
                                      std::size_t kp, double* out, std::size_t ldo,
                                      std::size_t rows, std::size_t cols,
                                      const std::int32_t* corr, double scale2) {
        __m512i acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_si512();
        for (std::size_t k = 0; k < kp; ++k) {
            const std::uint32_t* ak = a + k * 32;
            const std::uint32_t* bk = b + k * 8;
            const __m512i a0 = _mm512_load_si512(ak);
            const __m512i a1 = V == 2 ? _mm512_load_si512(ak + 16) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512i bj = _mm512_set1_epi32(static_cast<int>(bk[j]));
                acc[j][0] = dpbusd(acc[j][0], bj, a0);
                if constexpr (V == 2) acc[j][1] = dpbusd(acc[j][1], bj, a1);
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
            const __m512i c = _mm512_set1_epi32(corr[j]);
            acc[j][0] = _mm512_add_epi32(acc[j][0], c);
            acc[j][1] = _mm512_add_epi32(acc[j][1], c);
        }
        add_tile<V>(acc, out, ldo, rows, cols, scale2);
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx512vnni, float, Avx512Vnni)

ITPL_GRAM_ENTRY_FORWARD(gram_upper_avx512vnni, double, gram_upper_avx512)

}  // namespace itpl::gram_detail
#endif
