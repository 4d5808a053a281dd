// Driver for Gram kernels with integer products (gram_avx512vnni.cpp,
// gram_avx2int16.cpp). Internal to the core; no Python here.
//
// Each block of kb features is quantized as a whole before it is packed:
//   lo_f  = min over the n samples of feature f          (one per feature)
//   s     = max_f (max_i x_if - lo_f) / L                (one per block)
//   u_if  = round((x_if - lo_f) / s), an integer in 0 .. L
// with L = Kernel::levels (255 for bytes, 1023 for 16-bit integers).
// Subtracting lo_f, a per-feature constant, leaves the centred Gram unchanged
// (H 1 = 0), like the float kernels' shift by sample 0, and the shared step
// s gives every feature of the block the resolution of its block's widest
// range. The integer products are exact, so the only rounding is that of x
// to u: |x_if - lo_f - s u_if| <= s / 2.
//
// Byte products (vpdpbusd) take one operand as u8 and the other as s8, so
// that kernel's panel holds v = u - 128 and its strips u:
//   sum_f u_kf v_if = sum_f u_kf u_if - 128 S_k,   S_k = sum_f u_kf,
// and the accumulators of column k start at 128 S_k (corr). Padding features
// are v = 0 (u = 128), which adds nothing. 16-bit products (vpmaddwd) are
// signed x signed: both operands hold u, and corr stays 0. A block's integer
// sums are exact in int32 while L^2 kb < 2^31 (Kernel::max_block), and each
// one is scaled by s^2 in float64 and added to the float64 result.
//
// A quantized kernel is a struct with value_type (float), packed_type and KP
// (features per 32-bit element), MR, VL, NR as in gram_blocked.hpp, levels,
// max_block, a `using driver = QuantizedDriver<Kernel>;`, and
//   range(x, n, d, kb, lo, hi): lo[f], hi[f] = min, max of x[., f] over the
//       n rows; returns max_f (hi[f] - lo[f]), NaN if any x is not finite;
//   pack(x, d, lo, inv, rows, kb, panel, corr): panel as in gram_blocked.hpp
//       holding round((x - lo) * inv) in the kernel's encoding (0 in padding
//       rows and features), and corr[r] for r < MR where the kernel has one;
//   encode(p): the strip form of a packed element;
//   micro<V>(a, b, kp, out, ldo, rows, cols, corr, scale2): as in
//       gram_blocked.hpp, with column j's sums starting at corr[j] and the
//       tile added to out times scale2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {

template <class Kernel>
struct QuantizedDriver {
    using P = typename Packing<Kernel>::type;
    static constexpr std::size_t max_block = Kernel::max_block;

    // lo and hi per feature, then corr for each padded sample.
    static std::size_t scratch_bytes(std::size_t npad, std::size_t block) {
        return 2 * block * sizeof(float) + npad * sizeof(std::int32_t);
    }

    static void accumulate(const float* x, std::size_t n, std::size_t d, std::size_t c_begin,
                           std::size_t c_end, std::size_t block, const std::vector<Tile>& tiles,
                           P* packed, P* strips, unsigned char* scratch, double* acc) {
        constexpr int MR = Kernel::MR;
        float* lo = reinterpret_cast<float*>(scratch);
        float* hi = lo + block;
        auto* corr = reinterpret_cast<std::int32_t*>(hi + block);
        const std::size_t depth = packed_depth<Kernel>(block);
        const std::size_t npad = ((n + MR - 1) / MR) * MR;
        for (std::size_t c0 = c_begin; c0 < c_end; c0 += block) {
            const std::size_t kb = std::min(block, c_end - c0);
            const std::size_t kp = packed_depth<Kernel>(kb);
            const float range = Kernel::range(x + c0, n, d, kb, lo, hi);
            // A constant block (range 0) packs zeros; a NaN range makes the
            // scale NaN, and so the result, which gram.cpp reports.
            const float inv = range > 0 ? static_cast<float>(Kernel::levels) / range : 0.0f;
            const double scale = static_cast<double>(range) / Kernel::levels;
            for (std::size_t i0 = 0; i0 < n; i0 += MR)
                Kernel::pack(x + i0 * d + c0, d, lo, inv, std::min<std::size_t>(MR, n - i0), kb,
                             packed + (i0 / MR) * depth * MR, corr + i0);
            pack_strips<MR, Kernel::NR>(packed, npad, depth, kp, strips,
                                        [](P v) { return Kernel::encode(v); });
            run_tiles(tiles, x + c0 + kb, d, n, next_block_bytes<float>(c0, kb, c_end, block),
                      [&](const Tile& tl) {
                          run_tile<Kernel>(tl, packed, strips, depth, kp, n, acc,
                                           static_cast<const std::int32_t*>(corr + tl.col),
                                           scale * scale);
                      });
        }
    }
};

}  // namespace itpl::gram_detail
