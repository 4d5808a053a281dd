// Driver for Gram kernels with integer products (gram_avx512vnni.cpp,
// gram_avx2int16.cpp). Internal to the core; no Python here.
//
// Each block of kb features is quantized as a whole before it is packed:
//   lo_f  = min over the n samples of feature f          (one per feature)
//   s     = max_f (max_i x_if - lo_f) / L                (one per block)
//   u_if  = round((x_if - lo_f) / s), an integer in 0 .. L
// with L = Kernel::levels (255 for bytes, 1023 for 16-bit integers). Up to
// four features far wider than the rest are left out of s and added exactly
// (wide_features, below).
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
//   bounds(x, n, d, kb, lo, hi): lo[f], hi[f] = min, max of x[., f] over the
//       n rows; returns whether every x was finite;
//   pack(x, d, lo, inv, rows, kb, panel, corr): panel as in gram_blocked.hpp
//       holding round((x_f - lo_f) * inv_f) in the kernel's encoding (0 in
//       padding rows and features; inv_f = 0 for a feature added exactly),
//       and corr[r] for r < MR where the kernel has one;
//   encode(p): the strip form of a packed element;
//   micro<V>(a, b, kp, out, ldo, rows, cols, corr, scale2): as in
//       gram_blocked.hpp, with column j's sums starting at corr[j] and the
//       tile added to out times scale2.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {

// acc[j * n + i] += y[j] * y[i] for i >= j: one feature's products, exact in
// float64 for float32 values, into the upper triangle.
inline void add_outer_upper(const double* y, std::size_t n, double* acc) {
    for (std::size_t j = 0; j < n; ++j) {
        const double yj = y[j];
        double* row = acc + j * n;
        for (std::size_t i = j; i < n; ++i) row[i] += yj * y[i];
    }
}

// A feature whose range is over kWideRatio times the fifth widest of its
// block (at most kWideMax of them per block) is added exactly, as a float64
// rank-one update, and left out of the quantization: a single extreme value
// would otherwise set every step of its block. The trained ResNet-20's
// activations never trigger it. With one value per block at 10x and 50x a
// layer's largest, the 8-bit kernel moved nHSIC by 7e-3 and 4e-2 without it
// and by 6e-5 and 1e-5 with it (bench/gram_precision.py prints the latter).
constexpr float kWideRatio = 4.0f;
constexpr std::size_t kWideMax = 4;

// The features of a block added exactly: those among the kWideMax widest
// whose range exceeds kWideRatio times that of the (kWideMax + 1)-th widest.
// Returns how many (written to wide[]) and sets *cap to the widest range of
// the others.
inline std::size_t wide_features(const float* lo, const float* hi, std::size_t kb,
                                 std::size_t wide[kWideMax], float* cap) {
    // The kWideMax + 1 widest, largest first (ties: lower feature first).
    std::size_t top[kWideMax + 1];
    float range[kWideMax + 1];
    std::size_t count = 0;
    for (std::size_t f = 0; f < kb; ++f) {
        const float r = hi[f] - lo[f];
        std::size_t at = count;
        while (at > 0 && range[at - 1] < r) --at;
        if (at > kWideMax) continue;
        for (std::size_t m = std::min(count, kWideMax); m > at; --m) {
            top[m] = top[m - 1];
            range[m] = range[m - 1];
        }
        top[at] = f;
        range[at] = r;
        count = std::min(count + 1, kWideMax + 1);
    }
    std::size_t nwide = 0;
    if (count == kWideMax + 1)
        while (nwide < kWideMax && range[nwide] > kWideRatio * range[kWideMax]) {
            wide[nwide] = top[nwide];
            ++nwide;
        }
    *cap = count > nwide ? range[nwide] : 0.0f;
    return nwide;
}

template <class Kernel>
struct QuantizedDriver {
    using P = typename Packing<Kernel>::type;
    static constexpr std::size_t max_block = Kernel::max_block;

    // lo, hi and inv per feature, then corr for each padded sample, then one
    // feature's values over the samples (float64, for a wide feature).
    static std::size_t scratch_bytes(std::size_t npad, std::size_t block) {
        return 3 * block * sizeof(float) + npad * sizeof(std::int32_t) + npad * sizeof(double);
    }

    static void accumulate(const float* x, std::size_t n, std::size_t d, std::size_t c_begin,
                           std::size_t c_end, std::size_t block, const std::vector<Tile>& tiles,
                           P* packed, P* strips, unsigned char* scratch, double* acc) {
        constexpr int MR = Kernel::MR;
        const std::size_t npad = ((n + MR - 1) / MR) * MR;
        auto* y = reinterpret_cast<double*>(scratch);  // 8-byte aligned first
        float* lo = reinterpret_cast<float*>(y + npad);
        float* hi = lo + block;
        float* inv = hi + block;
        auto* corr = reinterpret_cast<std::int32_t*>(inv + block);
        const std::size_t depth = packed_depth<Kernel>(block);
        for (std::size_t c0 = c_begin; c0 < c_end; c0 += block) {
            const std::size_t kb = std::min(block, c_end - c0);
            const std::size_t kp = packed_depth<Kernel>(kb);
            // A NaN or Inf makes the scale NaN, and so the result, which
            // gram.cpp reports; a constant block (cap 0) packs zeros.
            const bool finite = Kernel::bounds(x + c0, n, d, kb, lo, hi);
            std::size_t wide[kWideMax];
            float cap = 0.0f;
            const std::size_t nwide = finite ? wide_features(lo, hi, kb, wide, &cap) : 0;
            const float step = cap > 0 ? static_cast<float>(Kernel::levels) / cap : 0.0f;
            std::fill_n(inv, kb, step);
            for (std::size_t w = 0; w < nwide; ++w) inv[wide[w]] = 0.0f;  // packs as 0
            const double scale = finite ? static_cast<double>(cap) / Kernel::levels
                                        : std::numeric_limits<double>::quiet_NaN();
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
            for (std::size_t w = 0; w < nwide; ++w) {
                const std::size_t f = c0 + wide[w];
                for (std::size_t i = 0; i < n; ++i)
                    y[i] = static_cast<double>(x[i * d + f] - lo[wide[w]]);
                add_outer_upper(y, n, acc);
            }
        }
    }
};

}  // namespace itpl::gram_detail
