// ARM64 Advanced SIMD (NEON) Gram kernels, chosen on ARM64 builds.
// The contract they meet is in gram_blocked.hpp.
//
// The tile comes from the register file: 32 q registers of 4 floats. A tile
// of V x 4 accumulators needs V row vectors and one vector of 4 column values
// (the FMA takes its multiplier from a lane, so no broadcasts): 6 x 4 + 6 + 1
// = 31 registers, a 24 x 4 float32 tile. float64 (2 lanes): 4 x 4 + 4 + 2 =
// 22 registers, an 8 x 4 tile (6 x 4 would take all 32).
#include "itpl/gram_kernels.hpp"

#ifdef ITPL_NEON_KERNEL
#include <arm_neon.h>

#include "itpl/gram_blocked.hpp"

namespace itpl::gram_detail {
namespace {

inline std::size_t rows_from(std::size_t rows, std::size_t first) {
    return rows > first ? rows - first : 0;
}

// o[r] += v[r] for the first min(rows, 2) of 2 doubles.
inline void add_rows(double* o, std::size_t rows, float64x2_t v) {
    if (rows >= 2) {
        vst1q_f64(o, vaddq_f64(vld1q_f64(o), v));
    } else if (rows == 1) {
        o[0] += vgetq_lane_f64(v, 0);
    }
}

struct NeonF32 {
    using value_type = float;
    static constexpr int MR = 24;
    static constexpr int VL = 4;
    static constexpr int NR = 4;

    static void pack(const float* x, std::size_t d, const float* x0, std::size_t rows,
                     std::size_t kb, float* panel) {
        GenericKernel<float, MR, NR>::pack(x, d, x0, rows, kb, panel);
    }

    template <int V>
    static void micro(const float* a, const float* b, std::size_t kb, double* out,
                      std::size_t ldo, std::size_t rows, std::size_t cols) {
        float32x4_t acc[NR][V];
        for (int j = 0; j < NR; ++j)
            for (int v = 0; v < V; ++v) acc[j][v] = vdupq_n_f32(0.0f);
        for (std::size_t k = 0; k < kb; ++k) {
            const float* ak = a + k * MR;
            const float32x4_t bk = vld1q_f32(b + k * NR);
            float32x4_t av[V];
            for (int v = 0; v < V; ++v) av[v] = vld1q_f32(ak + 4 * v);
            for (int v = 0; v < V; ++v) {
                acc[0][v] = vfmaq_laneq_f32(acc[0][v], av[v], bk, 0);
                acc[1][v] = vfmaq_laneq_f32(acc[1][v], av[v], bk, 1);
                acc[2][v] = vfmaq_laneq_f32(acc[2][v], av[v], bk, 2);
                acc[3][v] = vfmaq_laneq_f32(acc[3][v], av[v], bk, 3);
            }
        }
        for (std::size_t j = 0; j < std::min<std::size_t>(NR, cols); ++j) {
            double* o = out + j * ldo;
            for (int v = 0; v < V; ++v) {
                add_rows(o + v * 4, rows_from(rows, v * 4), vcvt_f64_f32(vget_low_f32(acc[j][v])));
                add_rows(o + v * 4 + 2, rows_from(rows, v * 4 + 2), vcvt_high_f64_f32(acc[j][v]));
            }
        }
    }
};

struct NeonF64 {
    using value_type = double;
    static constexpr int MR = 8;
    static constexpr int VL = 2;
    static constexpr int NR = 4;

    static void pack(const double* x, std::size_t d, const double* x0, std::size_t rows,
                     std::size_t kb, double* panel) {
        GenericKernel<double, MR, NR>::pack(x, d, x0, rows, kb, panel);
    }

    template <int V>
    static void micro(const double* a, const double* b, std::size_t kb, double* out,
                      std::size_t ldo, std::size_t rows, std::size_t cols) {
        float64x2_t acc[NR][V];
        for (int j = 0; j < NR; ++j)
            for (int v = 0; v < V; ++v) acc[j][v] = vdupq_n_f64(0.0);
        for (std::size_t k = 0; k < kb; ++k) {
            const double* ak = a + k * MR;
            const float64x2_t b01 = vld1q_f64(b + k * NR);
            const float64x2_t b23 = vld1q_f64(b + k * NR + 2);
            float64x2_t av[V];
            for (int v = 0; v < V; ++v) av[v] = vld1q_f64(ak + 2 * v);
            for (int v = 0; v < V; ++v) {
                acc[0][v] = vfmaq_laneq_f64(acc[0][v], av[v], b01, 0);
                acc[1][v] = vfmaq_laneq_f64(acc[1][v], av[v], b01, 1);
                acc[2][v] = vfmaq_laneq_f64(acc[2][v], av[v], b23, 0);
                acc[3][v] = vfmaq_laneq_f64(acc[3][v], av[v], b23, 1);
            }
        }
        for (std::size_t j = 0; j < std::min<std::size_t>(NR, cols); ++j) {
            double* o = out + j * ldo;
            for (int v = 0; v < V; ++v) add_rows(o + v * 2, rows_from(rows, v * 2), acc[j][v]);
        }
    }
};

}  // namespace

ITPL_GRAM_ENTRY_DEFINE(gram_upper_neon, float, NeonF32)
ITPL_GRAM_ENTRY_DEFINE(gram_upper_neon, double, NeonF64)

}  // namespace itpl::gram_detail
#endif
