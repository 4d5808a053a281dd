// AVX-512 BF16 Gram kernel (x86-64 CPUs with AVX512_BF16: AMD Zen 4 and later,
// Intel Cooper Lake, Sapphire Rapids and later; chosen at run time). The
// contract it meets is in gram_blocked.hpp.
//
// vdpbf16ps multiplies two pairs of bf16 values per float32 lane and adds both
// products into the lane: twice the products per instruction of a float32 FMA.
// Precision: pack rounds every shifted value x_ik - x_0k to bf16 (8-bit
// significand, relative error <= 2^-9), so each product carries a relative
// error of at most about 2^-8. The products of a block are summed in float32
// registers and the blocks in float64, as in the float32 kernels, so the
// rounding does not build up with the number of features; tests/test_gram.py
// bounds the error and checks the kernel against bf16 rounding emulated in
// float64. float64 input never goes through bf16: it takes the AVX-512F
// float64 kernel unchanged.
//
// The tile comes from the register file: 32 zmm registers. A panel of 32
// samples is 2 vectors of 16 lanes; 8 columns make 16 accumulators, which
// cover the dot product's latency (5-6 cycles) at one or two issues per
// cycle, with 2 row vectors and 1 broadcast beside them (19 registers). 48
// rows (24 accumulators + 3 + 1 = 28) would load a little less per product,
// but the loads are not what limits it (10 per 16 dot products) and 48 rows
// pad n = 256 to 288; profiled on Zen 4, a quarter of the time is packing
// (reading X from memory, as every kernel must), not the tile.
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>

#include <cstdint>

#include "itpl/gram_avx512_util.hpp"
#include "itpl/gram_blocked.hpp"

#define ITPL_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

namespace itpl::gram_detail {
namespace {

// float32 in, bf16 pairs packed: element k of a panel row holds features
// 2k (low half) and 2k + 1 (high half) of the block, the pair vdpbf16ps
// multiplies within one lane.
struct Avx512Bf16 {
    using value_type = float;
    using packed_type = std::uint32_t;
    static constexpr int KP = 2;
    static constexpr int MR = 32;
    static constexpr int VL = 16;
    static constexpr int NR = 8;

    // 32 features of 16 samples at a time: two float32 vectors per sample
    // become one vector of 16 bf16 pairs, and a 16 x 16 transpose of those
    // 32-bit pairs puts each pair column in one vector. Features past kb load
    // as 0 (shift included), so an odd block ends with a zero-padded pair.
    ITPL_AVX512BF16 static void pack(const float* x, std::size_t d, const float* x0,
                                     std::size_t rows, std::size_t kb, std::uint32_t* panel) {
        for (std::size_t k = 0; k < kb; k += 32) {
            const std::size_t width = std::min<std::size_t>(32, kb - k);
            const __mmask16 mlo = first_lanes(width);
            const __mmask16 mhi = first_lanes(rows_from(width, 16));
            const __m512 slo = _mm512_maskz_loadu_ps(mlo, x0 + k);
            const __m512 shi = _mm512_maskz_loadu_ps(mhi, x0 + k + 16);
            const std::size_t pairs = (width + 1) / 2;
            for (int half = 0; half < 2; ++half) {
                __m512 r[16];
                for (int q = 0; q < 16; ++q) {
                    const std::size_t row = static_cast<std::size_t>(half * 16 + q);
                    if (row >= rows) {
                        r[q] = _mm512_setzero_ps();
                        continue;
                    }
                    const float* xr = x + row * d + k;
                    const __m512 lo = _mm512_sub_ps(_mm512_maskz_loadu_ps(mlo, xr), slo);
                    const __m512 hi = _mm512_sub_ps(_mm512_maskz_loadu_ps(mhi, xr + 16), shi);
                    // Round to nearest even; lanes 0-15 from lo, 16-31 from hi:
                    // bf16 j is feature k + j, so 32-bit lane c holds pair c.
                    r[q] = _mm512_castsi512_ps(
                        reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
                }
                transpose16(r);
                for (std::size_t c = 0; c < pairs; ++c)
                    _mm512_store_ps(reinterpret_cast<float*>(panel + (k / 2 + c) * MR + half * 16),
                                    r[c]);
            }
        }
    }

    template <int V>
    ITPL_AVX512BF16 static void micro(const std::uint32_t* a, const std::uint32_t* b,
                                      std::size_t kp, double* out, std::size_t ldo,
                                      std::size_t rows, std::size_t cols) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kp; ++k) {
            const std::uint32_t* ak = a + k * 32;
            const std::uint32_t* bk = b + k * 8;
            const __m512bh a0 = reinterpret_cast<__m512bh>(_mm512_load_si512(ak));
            const __m512bh a1 =
                V == 2 ? reinterpret_cast<__m512bh>(_mm512_load_si512(ak + 16)) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512bh bj =
                    reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(bk[j])));
                acc[j][0] = _mm512_dpbf16_ps(acc[j][0], a0, bj);
                if constexpr (V == 2) acc[j][1] = _mm512_dpbf16_ps(acc[j][1], a1, bj);
            }
        }
        add_tile<V>(acc, out, ldo, rows, cols);
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_avx512bf16, float, Avx512Bf16)

ITPL_GRAM_ENTRY_FORWARD(gram_upper_avx512bf16, double, gram_upper_avx512)

}  // namespace itpl::gram_detail
#endif
