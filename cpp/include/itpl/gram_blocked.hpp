// Tiling and threading of the Gram product, shared by every ISA kernel.
// Internal to the core (included by the gram_*.cpp files only). No Python here.
//
// Layout of one packed block of B features: panels of MR samples, each panel
// B x MR values (feature-major), so a micro-kernel reads MR samples of one
// feature with vector loads. The same samples are also copied into strips of
// NR columns, B x NR values each: a tile's columns then take B * NR values of
// cache instead of the B * MR of the panel they sit in, so one row panel and
// one strip stay in L1 together while a panel meets every strip in turn
// (NR divides MR: a strip never straddles two panels).
//
// A kernel is a struct with
//   value_type (the input's), MR (panel rows), VL (rows per vector, divides MR),
//   NR (tile columns);
//   optionally packed_type and KP (features per packed element, default
//       value_type and 1): a kernel whose products take pairs of narrower
//       values (bf16 dot products) packs KP consecutive features of a sample
//       into one element, the last one of a block zero-padded. Below, k counts
//       packed elements: a block of kb features is ceil(kb / KP) of them deep;
//   pack(x, d, x0, rows, kb, panel): panel[k * MR + r] = x[r * d + k] - x0[k]
//       for r < rows (KP = 1; the caller pre-zeroes padded rows; pack may
//       write zeros there);
//   micro<V>(a, b, kp, out, ldo, rows, cols), 1 <= V <= MR / VL: the last V
//       vectors of a panel (`a` already points at the first of them), and a
//       strip b, kp packed elements deep: for i < rows, j < cols,
//       out[j * ldo + i] += (double) sum_k a[k * MR + i] * b[k * NR + j]
//       (the tile's products in the kernel's precision, added in float64 to
//       the transposed spot, where its columns are contiguous; K is symmetric).
// Subtracting one sample x0 from every sample removes the features' large
// common offset before the products are taken (H 1 = 0, so the centred Gram
// is unchanged); exact centring of the n x n result follows in float64.
// A kernel that quantizes each block as a whole names its own `driver`
// instead, with its own pack and micro (gram_quantized.hpp); it shares the
// tiles, strips, prefetch and threading here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

namespace itpl::gram_detail {

// Features per block by default. Within a block, products are summed in T
// (the register tile); blocks are summed in float64.
constexpr std::size_t kDefaultBlock = 256;
// Packed block target size: half of a typical 2 MiB L2 (the strips copy it
// once more; at n = 256 both together take 540 KB at the default block).
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

// Portable kernel: the fallback, and the shape every SIMD kernel follows.
template <class T, int MR_, int NR_>
struct GenericKernel {
    using value_type = T;
    static constexpr int MR = MR_;
    static constexpr int VL = MR_ / 2;
    static constexpr int NR = NR_;

    static void pack(const T* x, std::size_t d, const T* x0, std::size_t rows, std::size_t kb,
                     T* panel) {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* row = x + r * d;
            for (std::size_t k = 0; k < kb; ++k) panel[k * MR + r] = row[k] - x0[k];
        }
    }

    template <int V>
    static void micro(const T* a, const T* b, std::size_t kb, double* out, std::size_t ldo,
                      std::size_t rows, std::size_t cols) {
        constexpr int M = VL * V;
        T acc[NR][M] = {};
        for (std::size_t k = 0; k < kb; ++k) {
            const T* ak = a + k * MR;
            const T* bk = b + k * NR;
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

// packed_type and KP of a kernel, with their defaults.
template <class Kernel, class = void>
struct Packing {
    using type = typename Kernel::value_type;
    static constexpr int per = 1;
};
template <class Kernel>
struct Packing<Kernel, std::void_t<typename Kernel::packed_type>> {
    using type = typename Kernel::packed_type;
    static constexpr int per = Kernel::KP;
};

// Packed elements that hold `features` features.
template <class Kernel>
constexpr std::size_t packed_depth(std::size_t features) {
    return (features + Packing<Kernel>::per - 1) / Packing<Kernel>::per;
}

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

// Calls Kernel::micro<v> for a run-time v in 1 .. V; `extra` follows micro's
// common arguments (a quantized kernel's block scale, gram_quantized.hpp).
template <class Kernel, int V = Kernel::MR / Kernel::VL, class... Extra>
inline void call_micro(int v, const typename Packing<Kernel>::type* a,
                       const typename Packing<Kernel>::type* b, std::size_t kb, double* out,
                       std::size_t ldo, std::size_t rows, std::size_t cols, Extra... extra) {
    if constexpr (V >= 1) {
        if (v == V) {
            Kernel::template micro<V>(a, b, kb, out, ldo, rows, cols, extra...);
            return;
        }
        call_micro<Kernel, V - 1>(v, a, b, kb, out, ldo, rows, cols, extra...);
    }
}

// Copies the columns of a packed block into NR-wide strips, each element
// through `encode` (a quantized kernel's other operand encoding; default: as is).
struct AsIs {
    template <class T>
    T operator()(T v) const { return v; }
};
template <int MR, int NR, class T, class Encode = AsIs>
void pack_strips(const T* packed, std::size_t npad, std::size_t block, std::size_t kb,
                 T* strips, Encode encode = {}) {
    for (std::size_t p = 0; p < npad / MR; ++p) {
        const T* panel = packed + p * block * MR;
        for (int t = 0; t < MR / NR; ++t) {
            T* strip = strips + (p * (MR / NR) + t) * block * NR;
            for (std::size_t k = 0; k < kb; ++k)
                for (int j = 0; j < NR; ++j) strip[k * NR + j] = encode(panel[k * MR + t * NR + j]);
        }
    }
}

// Calls run(tile) for every tile of a packed block while the next block's
// rows (`bytes` each, from `next`) come in toward L2, a few rows per tile:
// the rows are d apart, which defeats the hardware prefetcher, and DRAM
// latency would otherwise stall the next block's packing.
template <class T, class Run>
inline void run_tiles(const std::vector<Tile>& tiles, const T* next, std::size_t d,
                      std::size_t n, std::size_t bytes, Run run) {
    std::size_t row = 0;
    for (std::size_t t = 0; t < tiles.size(); ++t) {
        const std::size_t row_end = bytes ? n * (t + 1) / tiles.size() : 0;
        for (; row < row_end; ++row) {
            const char* p = reinterpret_cast<const char*>(next + row * d);
            for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 2);
        }
        run(tiles[t]);
    }
}

// Bytes per row of the block after the one at c0 of kb features, up to c_end.
template <class T>
inline std::size_t next_block_bytes(std::size_t c0, std::size_t kb, std::size_t c_end,
                                    std::size_t block) {
    const std::size_t next = c0 + kb;
    return next < c_end ? std::min(block, c_end - next) * sizeof(T) : 0;
}

// One lower-triangle tile of a packed block: the rows i >= columns j of the
// tile land at acc[j][i], the upper triangle. Vectors of a diagonal panel
// wholly above the strip's first column are skipped. `extra` goes to micro.
template <class Kernel, class... Extra>
inline void run_tile(const Tile& tl, const typename Packing<Kernel>::type* packed,
                     const typename Packing<Kernel>::type* strips, std::size_t depth,
                     std::size_t kp, std::size_t n, double* acc, Extra... extra) {
    constexpr int MR = Kernel::MR;
    constexpr int VL = Kernel::VL;
    constexpr int NR = Kernel::NR;
    const auto* a = packed + tl.panel * depth * MR;
    const auto* b = strips + (tl.col / NR) * depth * NR;
    const std::size_t i0 = tl.panel * MR;
    const std::size_t cols = std::min<std::size_t>(NR, n - tl.col);
    const std::size_t skip = tl.col > i0 ? (tl.col - i0) / VL : 0;
    const std::size_t h0 = i0 + skip * VL;
    call_micro<Kernel>(static_cast<int>(MR / VL - skip), a + skip * VL, b, kp,
                       acc + tl.col * n + h0, n, std::min<std::size_t>(MR - skip * VL, n - h0),
                       cols, extra...);
}

// Adds the upper-triangle Gram of features [c_begin, c_end) of x into acc,
// one packed block at a time. `packed` and `strips` hold npad x
// packed_depth(block) elements each.
template <class Kernel>
void accumulate_features(const typename Kernel::value_type* x, std::size_t n, std::size_t d,
                         std::size_t c_begin, std::size_t c_end, std::size_t block,
                         const std::vector<Tile>& tiles, typename Packing<Kernel>::type* packed,
                         typename Packing<Kernel>::type* strips, double* acc) {
    using T = typename Kernel::value_type;
    constexpr int MR = Kernel::MR;
    constexpr int VL = Kernel::VL;
    constexpr int NR = Kernel::NR;
    static_assert(MR % VL == 0 && MR % NR == 0, "a tile's rows are whole vectors; strips fit a panel");
    const std::size_t depth = packed_depth<Kernel>(block);
    for (std::size_t c0 = c_begin; c0 < c_end; c0 += block) {
        const std::size_t kb = std::min(block, c_end - c0);
        const std::size_t kp = packed_depth<Kernel>(kb);
        for (std::size_t i0 = 0; i0 < n; i0 += MR)
            Kernel::pack(x + i0 * d + c0, d, x + c0, std::min<std::size_t>(MR, n - i0), kb,
                         packed + (i0 / MR) * depth * MR);
        const std::size_t npad = ((n + MR - 1) / MR) * MR;
        pack_strips<MR, NR>(packed, npad, depth, kp, strips);
        run_tiles(tiles, x + c0 + kb, d, n, next_block_bytes<T>(c0, kb, c_end, block),
                  [&](const Tile& tl) { run_tile<Kernel>(tl, packed, strips, depth, kp, n, acc); });
    }
}

// How the slices of a kernel are accumulated: block by block as above, or by
// the kernel's own `driver` (gram_quantized.hpp), which may need per-slice
// scratch memory and caps the block.
template <class Kernel>
struct BlockDriver {
    static constexpr std::size_t max_block = ~std::size_t(0);
    static std::size_t scratch_bytes(std::size_t /*npad*/, std::size_t /*block*/) { return 0; }
    static void accumulate(const typename Kernel::value_type* x, std::size_t n, std::size_t d,
                           std::size_t c_begin, std::size_t c_end, std::size_t block,
                           const std::vector<Tile>& tiles, typename Packing<Kernel>::type* packed,
                           typename Packing<Kernel>::type* strips, unsigned char* /*scratch*/,
                           double* acc) {
        accumulate_features<Kernel>(x, n, d, c_begin, c_end, block, tiles, packed, strips, acc);
    }
};
template <class Kernel, class = void>
struct DriverOf {
    using type = BlockDriver<Kernel>;
};
template <class Kernel>
struct DriverOf<Kernel, std::void_t<typename Kernel::driver>> {
    using type = typename Kernel::driver;
};

// The upper triangle (j >= i) of sum_k (x_ik - x_0k)(x_jk - x_0k) into out
// (a quantized kernel shifts by another per-feature constant); the lower
// triangle is left unspecified.
//
// Threads split the features into contiguous slices of whole blocks, each with
// its own packed block and float64 accumulator (no sharing, no barriers); the
// accumulators are then summed in slice order. One slice is the serial path.
template <class Kernel>
void gram_upper(const typename Kernel::value_type* x, std::size_t n, std::size_t d, double* out,
                std::size_t block, int threads) {
    using P = typename Packing<Kernel>::type;
    using Driver = typename DriverOf<Kernel>::type;
    constexpr int MR = Kernel::MR;
    const std::size_t npad = ((n + MR - 1) / MR) * MR;
    if (block == 0) {
        const std::size_t bytes_per_feature = npad * sizeof(P) / Packing<Kernel>::per;
        block = std::clamp<std::size_t>(kPackedBytes / bytes_per_feature, 64, kDefaultBlock);
    }
    block = std::min({block, d, Driver::max_block});
    const std::size_t nblocks = (d + block - 1) / block;
    const std::size_t depth = packed_depth<Kernel>(block);
    const int slices = static_cast<int>(std::min<std::size_t>(threads, nblocks));
    const std::vector<Tile> tiles = lower_tiles<MR, Kernel::NR>(n);
    // Everything is allocated before the parallel region: nothing there throws.
    const std::size_t slice_elems = npad * depth;
    const std::size_t scratch = (Driver::scratch_bytes(npad, block) + 63) / 64 * 64;
    const auto packed = aligned_zeros<P>(static_cast<std::size_t>(slices) * slice_elems);
    const auto strips = aligned_zeros<P>(static_cast<std::size_t>(slices) * slice_elems);
    const auto scratches = aligned_zeros<unsigned char>(static_cast<std::size_t>(slices) * scratch);
    std::vector<double> partial(static_cast<std::size_t>(slices - 1) * n * n, 0.0);
    std::fill_n(out, n * n, 0.0);
    P* const pk = packed.get();
    P* const st = strips.get();
    unsigned char* const sc = scratches.get();
    double* const part = partial.data();

#pragma omp parallel for num_threads(slices) if (slices > 1) schedule(static, 1) default(none) \
    shared(x, n, d, out, block, nblocks, slices, tiles, pk, st, sc, part, slice_elems, scratch)
    for (int s = 0; s < slices; ++s) {
        const std::size_t b0 = nblocks * static_cast<std::size_t>(s) / slices;
        const std::size_t b1 = nblocks * static_cast<std::size_t>(s + 1) / slices;
        double* acc = s == 0 ? out : part + static_cast<std::size_t>(s - 1) * n * n;
        const auto us = static_cast<std::size_t>(s);
        Driver::accumulate(x, n, d, b0 * block, std::min(b1 * block, d), block, tiles,
                           pk + us * slice_elems, st + us * slice_elems, sc + us * scratch, acc);
    }
    for (int s = 1; s < slices; ++s) {
        const double* acc = part + static_cast<std::size_t>(s - 1) * n * n;
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = i; j < n; ++j) out[i * n + j] += acc[i * n + j];
    }
}

}  // namespace itpl::gram_detail
