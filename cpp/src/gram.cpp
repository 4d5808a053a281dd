// Centred Gram matrix, blocked over features, register-tiled, OpenMP.
//
// Layout of one packed block of B features: panels of MR samples, each panel
// B x MR values (feature-major), so a micro-kernel reads MR samples of one
// feature with one vector load. Both operands of X X^T are the same matrix, so
// one packed copy serves both: column j of a tile is lane j % MR of panel j / MR
// (NR divides MR, so an NR-wide column strip never straddles two panels).
#include "itpl/gram.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "itpl/parallel.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define ITPL_AVX512_KERNEL 1
#include <immintrin.h>
#endif

namespace itpl {
namespace {

// Features per block by default. Within a block, products are summed in T
// (the register tile); blocks are summed in float64. 256 features keep one
// 32-sample float32 panel (32 KiB) in L1 while a thread sweeps its columns.
template <class T>
constexpr std::size_t default_block() {
    return 256;
}
// Packed block target size: half of a typical 2 MiB L2.
constexpr std::size_t kPackedBytes = std::size_t(1) << 20;

struct AlignedFree {
    void operator()(void* p) const noexcept { std::free(p); }
};

template <class T>
std::unique_ptr<T[], AlignedFree> aligned_zeros(std::size_t count) {
    const std::size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    std::fill_n(static_cast<T*>(p), bytes / sizeof(T), T(0));
    return std::unique_ptr<T[], AlignedFree>(static_cast<T*>(p));
}

// A kernel is a pair of functions over one block of `kb` features:
//   pack(x, d, x0, rows, kb, panel): panel[k * MR + r] = x[r * d + k] - x0[k]
//       for r < rows (the caller pre-zeroes padded rows and never packs them);
//   micro(a, b, kb, out, ldo, rows, cols): for i < rows, j < cols,
//       out[j * ldo + i] += (double) sum_k a[k * MR + i] * b[k * MR + j]
//       (the tile's products in T, added in float64 to the transposed spot,
//       where its columns are contiguous; K is symmetric).
// Subtracting one sample x0 from every sample removes the features' large
// common offset before the products are taken (H 1 = 0, so the centred Gram
// is unchanged); exact centring of the n x n result follows in float64.

template <class T, int MR_, int NR_>
struct GenericKernel {
    using value_type = T;
    static constexpr int MR = MR_;
    static constexpr int NR = NR_;

    static void pack(const T* x, std::size_t d, const T* x0, std::size_t rows, std::size_t kb,
                     T* panel) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* row = x + r * d;
            for (std::size_t k = 0; k < kb; ++k) panel[k * MR + r] = row[k] - x0[k];
        }
    }

    template <int Halves>
    static void micro(const T* a, const T* b, std::size_t kb, double* out, std::size_t ldo,
                      std::size_t rows, std::size_t cols) {
        constexpr int M = MR / 2 * Halves;
        T acc[NR][M] = {};
        for (std::size_t k = 0; k < kb; ++k) {
            const T* ak = a + k * MR;
            const T* bk = b + k * MR;
            for (int j = 0; j < NR; ++j) {
                const T bj = bk[j];
                for (int i = 0; i < M; ++i) acc[j][i] += ak[i] * bj;
            }
        }
        for (std::size_t j = 0; j < cols; ++j)
            for (std::size_t i = 0; i < rows; ++i)
                out[j * ldo + i] += static_cast<double>(acc[j][i]);
    }
};

#ifdef ITPL_AVX512_KERNEL
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

    template <int Halves>
    ITPL_AVX512 static void micro(const float* a, const float* b, std::size_t kb, double* out,
                                  std::size_t ldo, std::size_t rows, std::size_t cols) {
        __m512 acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
        for (std::size_t k = 0; k < kb; ++k) {
            const float* ak = a + k * 32;
            const float* bk = b + k * 32;
            const __m512 a0 = _mm512_load_ps(ak);
            const __m512 a1 = Halves == 2 ? _mm512_load_ps(ak + 16) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512 bj = _mm512_set1_ps(bk[j]);
                acc[j][0] = _mm512_fmadd_ps(a0, bj, acc[j][0]);
                if constexpr (Halves == 2) acc[j][1] = _mm512_fmadd_ps(a1, bj, acc[j][1]);
            }
        }
        // Each 16-float half is two 8-double groups of the output column.
        for (std::size_t j = 0; j < std::min<std::size_t>(8, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < Halves; ++h) {
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
    static constexpr int NR = 8;

    static void pack(const double* x, std::size_t d, const double* x0, std::size_t rows,
                     std::size_t kb, double* panel) {
        GenericKernel<double, MR, NR>::pack(x, d, x0, rows, kb, panel);
    }

    template <int Halves>
    ITPL_AVX512 static void micro(const double* a, const double* b, std::size_t kb,
                                  double* out, std::size_t ldo, std::size_t rows,
                                  std::size_t cols) {
        __m512d acc[8][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_pd();
        for (std::size_t k = 0; k < kb; ++k) {
            const double* ak = a + k * 16;
            const double* bk = b + k * 16;
            const __m512d a0 = _mm512_load_pd(ak);
            const __m512d a1 = Halves == 2 ? _mm512_load_pd(ak + 8) : a0;
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                const __m512d bj = _mm512_set1_pd(bk[j]);
                acc[j][0] = _mm512_fmadd_pd(a0, bj, acc[j][0]);
                if constexpr (Halves == 2) acc[j][1] = _mm512_fmadd_pd(a1, bj, acc[j][1]);
            }
        }
        for (std::size_t j = 0; j < std::min<std::size_t>(8, cols); ++j) {
            double* o = out + j * ldo;
            for (int h = 0; h < Halves; ++h) add_rows(o + h * 8, rows_from(rows, h * 8), acc[j][h]);
        }
    }
};
#endif

struct Tile {
    std::size_t panel;  // row panel: samples panel*MR .. panel*MR + MR - 1
    std::size_t col;    // first column (sample) of the NR-wide strip
};

// Tiles (row panel x column strip) that touch the lower triangle, diagonal
// included; by symmetry each is stored to the upper triangle.
template <int MR, int NR>
std::vector<Tile> lower_tiles(std::size_t n) {
    std::vector<Tile> tiles;
    const std::size_t panels = (n + MR - 1) / MR;
    for (std::size_t p = 0; p < panels; ++p) {
        const std::size_t col_end = std::min((p + 1) * MR, n);
        for (std::size_t j0 = 0; j0 < col_end; j0 += NR) tiles.push_back({p, j0});
    }
    return tiles;
}

// Scans x for the first non-finite value (error path only).
template <class T>
bool all_finite(const T* x, std::size_t count) {
    for (std::size_t e = 0; e < count; ++e)
        if (!std::isfinite(x[e])) return false;
    return true;
}

// out <- H out H for a symmetric out, in float64.
void center_in_place(double* out, std::size_t n) {
    std::vector<double> mean(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (std::size_t j = 0; j < n; ++j) s += out[i * n + j];
        mean[i] = s / static_cast<double>(n);
    }
    double grand = 0.0;
    for (std::size_t i = 0; i < n; ++i) grand += mean[i];
    grand /= static_cast<double>(n);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j <= i; ++j) {
            const double v = out[i * n + j] + (grand - mean[i] - mean[j]);
            out[i * n + j] = v;
            out[j * n + i] = v;  // mirrored, so the result is exactly symmetric
        }
    }
}

// Adds the upper-triangle Gram of features [c_begin, c_end) of x into acc,
// one packed block at a time. `packed` holds npad x block values.
template <class Kernel>
void accumulate_features(const typename Kernel::value_type* x, std::size_t n, std::size_t d,
                         std::size_t c_begin, std::size_t c_end, std::size_t block,
                         const std::vector<Tile>& tiles, typename Kernel::value_type* packed,
                         double* acc) {
    using T = typename Kernel::value_type;
    constexpr int MR = Kernel::MR;
    constexpr int NR = Kernel::NR;
    for (std::size_t c0 = c_begin; c0 < c_end; c0 += block) {
        const std::size_t kb = std::min(block, c_end - c0);
        for (std::size_t i0 = 0; i0 < n; i0 += MR)
            Kernel::pack(x + i0 * d + c0, d, x + c0, std::min<std::size_t>(MR, n - i0), kb,
                         packed + (i0 / MR) * block * MR);
        // While this block's tiles run, pull the next block's rows toward L2,
        // a few rows per tile: the rows are d apart, which defeats the
        // hardware prefetcher, and DRAM latency would otherwise stall packing.
        const std::size_t next = c0 + kb;
        const std::size_t next_bytes = next < c_end ? std::min(block, c_end - next) * sizeof(T) : 0;
        std::size_t prefetch_row = 0;
        for (std::size_t t = 0; t < tiles.size(); ++t) {
            const Tile& tl = tiles[t];
            const std::size_t row_end = next_bytes ? n * (t + 1) / tiles.size() : 0;
            for (; prefetch_row < row_end; ++prefetch_row) {
                const char* p = reinterpret_cast<const char*>(x + prefetch_row * d + next);
                for (std::size_t off = 0; off < next_bytes; off += 64) __builtin_prefetch(p + off, 0, 2);
            }
            const T* a = packed + tl.panel * block * MR;
            const T* b = packed + (tl.col / MR) * block * MR + (tl.col % MR);
            const std::size_t i0 = tl.panel * MR;
            const std::size_t cols = std::min<std::size_t>(NR, n - tl.col);
            // Rows i >= columns j of the tile land at acc[j][i]: the upper triangle.
            // A strip in the lower half of a diagonal block needs only that half.
            if (tl.col >= i0 + MR / 2) {
                const std::size_t h0 = i0 + MR / 2;
                Kernel::template micro<1>(a + MR / 2, b, kb, acc + tl.col * n + h0, n,
                                          std::min<std::size_t>(MR / 2, n - h0), cols);
            } else {
                Kernel::template micro<2>(a, b, kb, acc + tl.col * n + i0, n,
                                          std::min<std::size_t>(MR, n - i0), cols);
            }
        }
    }
}

// Threads split the features into contiguous slices of whole blocks, each with
// its own packed block and float64 accumulator (no sharing, no barriers); the
// accumulators are then summed in slice order. One slice is the serial path.
template <class Kernel>
void gram_blocked(const typename Kernel::value_type* x, std::size_t n, std::size_t d,
                  double* out, std::size_t block, int threads) {
    using T = typename Kernel::value_type;
    constexpr int MR = Kernel::MR;
    const std::size_t npad = ((n + MR - 1) / MR) * MR;
    if (block == 0) {
        block = std::clamp<std::size_t>(kPackedBytes / (npad * sizeof(T)), 64,
                                        default_block<T>());
    }
    block = std::min(block, d);
    const std::size_t nblocks = (d + block - 1) / block;
    const int slices = static_cast<int>(std::min<std::size_t>(threads, nblocks));
    const std::vector<Tile> tiles = lower_tiles<MR, Kernel::NR>(n);
    // Everything is allocated before the parallel region: nothing there throws.
    const auto packed = aligned_zeros<T>(static_cast<std::size_t>(slices) * npad * block);
    std::vector<double> partial(static_cast<std::size_t>(slices - 1) * n * n, 0.0);
    std::fill_n(out, n * n, 0.0);
    T* const pk = packed.get();
    double* const part = partial.data();

#pragma omp parallel for num_threads(slices) if (slices > 1) schedule(static, 1) \
    default(none) shared(x, n, d, out, block, nblocks, slices, tiles, pk, part, npad)
    for (int s = 0; s < slices; ++s) {
        const std::size_t b0 = nblocks * static_cast<std::size_t>(s) / slices;
        const std::size_t b1 = nblocks * static_cast<std::size_t>(s + 1) / slices;
        double* acc = s == 0 ? out : part + static_cast<std::size_t>(s - 1) * n * n;
        accumulate_features<Kernel>(x, n, d, b0 * block, std::min(b1 * block, d), block, tiles,
                                    pk + static_cast<std::size_t>(s) * npad * block, acc);
    }
    for (int s = 1; s < slices; ++s) {
        const double* acc = part + static_cast<std::size_t>(s - 1) * n * n;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = i; j < n; ++j) out[i * n + j] += acc[i * n + j];
    }

    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < i; ++j) out[i * n + j] = out[j * n + i];
    // A NaN or Inf anywhere in x reaches a diagonal element (x_i - x_0 is
    // non-finite, and so is its square), so the diagonal is the whole check.
    for (std::size_t i = 0; i < n; ++i) {
        if (std::isfinite(out[i * n + i])) continue;
        if (!all_finite(x, n * d))
            throw std::invalid_argument("X contains NaN or Inf; check the layer's activations");
        throw std::invalid_argument(
            "the Gram matrix overflowed: activations are too large for float32 products; "
            "pass X as float64");
    }
    center_in_place(out, n);
}

}  // namespace

bool cpu_has_avx512() noexcept {
#ifdef ITPL_AVX512_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

GramKernel parse_gram_kernel(const std::string& name) {
    if (name == "auto") return GramKernel::automatic;
    if (name == "generic") return GramKernel::generic;
    if (name == "avx512") return GramKernel::avx512;
    throw std::invalid_argument("unknown Gram kernel '" + name +
                                "'; use 'auto', 'generic' or 'avx512'");
}

std::string resolve_kernel_name(GramKernel kernel) {
    switch (kernel) {
        case GramKernel::generic: return "generic";
        case GramKernel::avx512: return "avx512";
        case GramKernel::automatic: break;
    }
    return cpu_has_avx512() ? "avx512" : "generic";
}

template <class T>
void centered_gram(const T* x, std::size_t n, std::size_t d, double* out,
                   const GramOptions& options) {
    if (n < 2)
        throw std::invalid_argument("a centred Gram needs at least 2 samples (rows of X), got " +
                                    std::to_string(n));
    if (d < 1) throw std::invalid_argument("X has no features (0 columns)");
    if (options.num_threads < 0)
        throw std::invalid_argument("num_threads must be >= 0 (0 = OpenMP default)");
    const int threads = resolve_threads(options.num_threads);
    const std::string kernel = resolve_kernel_name(options.kernel);
    if (kernel == "avx512") {
        if (!cpu_has_avx512())
            throw std::invalid_argument(
                "the avx512 kernel is not available on this CPU or build; use 'auto'");
#ifdef ITPL_AVX512_KERNEL
        if constexpr (sizeof(T) == 4) {
            gram_blocked<Avx512F32>(x, n, d, out, options.block, threads);
        } else {
            gram_blocked<Avx512F64>(x, n, d, out, options.block, threads);
        }
        return;
#endif
    }
    gram_blocked<GenericKernel<T, 8, 4>>(x, n, d, out, options.block, threads);
}

template void centered_gram<float>(const float*, std::size_t, std::size_t, double*,
                                   const GramOptions&);
template void centered_gram<double>(const double*, std::size_t, std::size_t, double*,
                                    const GramOptions&);

}  // namespace itpl
