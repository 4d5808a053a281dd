// Register-only FMA loops, one per vector width (and one of bf16 dot products
// for the bf16 kernel): no memory traffic, enough independent accumulators
// (12) to cover two pipes of 4-cycle-latency FMAs.
#include "itpl/peak.hpp"

#include <chrono>
#include <stdexcept>
#include <string>

#include "itpl/gram_kernels.hpp"
#include "itpl/parallel.hpp"

#ifdef ITPL_X86_KERNELS
#include <immintrin.h>
#endif
#ifdef ITPL_NEON_KERNEL
#include <arm_neon.h>
#endif

namespace itpl {
namespace {

constexpr int kAcc = 12;

// Returns a value that depends on every FMA, so none is optimised away.
double loop_generic(long iters, float* flops_per_iter) {
    float acc[kAcc];
    for (int r = 0; r < kAcc; ++r) acc[r] = static_cast<float>(r);
    for (long it = 0; it < iters; ++it)
        for (int r = 0; r < kAcc; ++r) acc[r] = acc[r] * 0.999999f + 1e-7f;
    *flops_per_iter = 2.0f * kAcc;
    double s = 0;
    for (float v : acc) s += v;
    return s;
}

#ifdef ITPL_X86_KERNELS
__attribute__((target("avx2,fma"))) double loop_avx2(long iters, float* flops_per_iter) {
    __m256 acc[kAcc];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
#pragma GCC unroll 12
    for (int r = 0; r < kAcc; ++r) acc[r] = _mm256_set1_ps(static_cast<float>(r));
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int r = 0; r < kAcc; ++r) acc[r] = _mm256_fmadd_ps(acc[r], a, b);
    }
    *flops_per_iter = 2.0f * 8 * kAcc;
    alignas(32) float out[8];
    __m256 s = acc[0];
#pragma GCC unroll 12
    for (int r = 1; r < kAcc; ++r) s = _mm256_add_ps(s, acc[r]);
    _mm256_store_ps(out, s);
    return out[0];
}

// 16-bit integer products (vpmaddwd, then vpaddd into the sums): 2 products
// and 2 adds per 32-bit lane, the rate of the avx2int16 Gram kernel's work.
__attribute__((target("avx2"))) double loop_avx2int16(long iters, float* flops_per_iter) {
    __m256i acc[kAcc];
    const __m256i a = _mm256_set1_epi16(1), b = _mm256_set1_epi16(1);
#pragma GCC unroll 12
    for (int r = 0; r < kAcc; ++r) acc[r] = _mm256_set1_epi32(r);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int r = 0; r < kAcc; ++r) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(a, b));
    }
    *flops_per_iter = 4.0f * 8 * kAcc;
    __m256i s = acc[0];
#pragma GCC unroll 12
    for (int r = 1; r < kAcc; ++r) s = _mm256_add_epi32(s, acc[r]);
    alignas(32) int out[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
    return out[0];
}

__attribute__((target("avx512f"))) double loop_avx512(long iters, float* flops_per_iter) {
    __m512 acc[kAcc];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 12
    for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_set1_ps(static_cast<float>(r));
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_fmadd_ps(acc[r], a, b);
    }
    *flops_per_iter = 2.0f * 16 * kAcc;
    __m512 s = acc[0];
#pragma GCC unroll 12
    for (int r = 1; r < kAcc; ++r) s = _mm512_add_ps(s, acc[r]);
    return _mm512_reduce_add_ps(s);
}

// bf16 dot products (vdpbf16ps): 2 products and 2 adds per float32 lane, the
// rate the avx512bf16 Gram kernel's work is measured against. 1 + 2^-20 per
// step keeps the sums normal and growing slowly.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) double loop_avx512bf16(
    long iters, float* flops_per_iter) {
    __m512 acc[kAcc];
    const __m512bh one = (__m512bh)_mm512_set1_epi32(0x3f803f80);   // bf16 1.0 pairs
    const __m512bh tiny = (__m512bh)_mm512_set1_epi32(0x35803580);  // bf16 2^-20 pairs
#pragma GCC unroll 12
    for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_set1_ps(static_cast<float>(r));
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], one, tiny);
    }
    *flops_per_iter = 4.0f * 16 * kAcc;
    __m512 s = acc[0];
#pragma GCC unroll 12
    for (int r = 1; r < kAcc; ++r) s = _mm512_add_ps(s, acc[r]);
    return _mm512_reduce_add_ps(s);
}

// 8-bit dot products (vpdpbusd): 4 products and 4 adds per 32-bit lane, the
// rate of the avx512vnni Gram kernel's work (integer operations, not flops).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) double loop_avx512vnni(
    long iters, float* flops_per_iter) {
    __m512i acc[kAcc];
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
#pragma GCC unroll 12
    for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_set1_epi32(r);
    for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
        for (int r = 0; r < kAcc; ++r) acc[r] = _mm512_dpbusd_epi32(acc[r], a, b);
    }
    *flops_per_iter = 8.0f * 16 * kAcc;
    __m512i s = acc[0];
#pragma GCC unroll 12
    for (int r = 1; r < kAcc; ++r) s = _mm512_add_epi32(s, acc[r]);
    return _mm512_reduce_add_epi32(s);
}
#endif

#ifdef ITPL_NEON_KERNEL
double loop_neon(long iters, float* flops_per_iter) {
    float32x4_t acc[kAcc];
    const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
    for (int r = 0; r < kAcc; ++r) acc[r] = vdupq_n_f32(static_cast<float>(r));
    for (long it = 0; it < iters; ++it)
        for (int r = 0; r < kAcc; ++r) acc[r] = vfmaq_f32(b, acc[r], a);
    *flops_per_iter = 2.0f * 4 * kAcc;
    float32x4_t s = acc[0];
    for (int r = 1; r < kAcc; ++r) s = vaddq_f32(s, acc[r]);
    return vaddvq_f32(s);
}
#endif

using Loop = double (*)(long, float*);

Loop loop_for(const std::string& name) {
#ifdef ITPL_X86_KERNELS
    if (name == "avx2") return loop_avx2;
    if (name == "avx2int16") return loop_avx2int16;
    if (name == "avx512") return loop_avx512;
    if (name == "avx512bf16") return loop_avx512bf16;
    if (name == "avx512vnni") return loop_avx512vnni;
#endif
#ifdef ITPL_NEON_KERNEL
    if (name == "neon") return loop_neon;
#endif
    return loop_generic;
}

}  // namespace

double fma_peak_gflops(GramKernel kernel, int num_threads, double seconds) {
    if (!gram_kernel_supported(kernel))
        throw std::invalid_argument("the " + resolve_kernel_name(kernel) +
                                    " kernel is not available on this CPU or build");
    if (num_threads < 0) throw std::invalid_argument("num_threads must be >= 0");
    const Loop loop = loop_for(resolve_kernel_name(kernel));
    const int threads = resolve_threads(num_threads);
    using clock = std::chrono::steady_clock;
    // Calibrate on one thread, then run every thread for about `seconds`.
    float per_iter = 0;
    long iters = 1 << 16;
    for (;;) {
        const auto t0 = clock::now();
        volatile double sink = loop(iters, &per_iter);
        (void)sink;
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        if (dt > 0.02 || iters > (1L << 40)) {
            iters = static_cast<long>(static_cast<double>(iters) * (seconds > 0 ? seconds : 0.1) / dt) + 1;
            break;
        }
        iters *= 4;
    }
    double elapsed = 0;
#pragma omp parallel num_threads(threads) default(none) shared(loop, iters, elapsed)
    {
        float unused = 0;
#pragma omp barrier
        const auto t0 = clock::now();
        volatile double sink = loop(iters, &unused);
        (void)sink;
#pragma omp barrier
#pragma omp single
        elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    }
    return static_cast<double>(per_iter) * static_cast<double>(iters) * threads / elapsed / 1e9;
}

}  // namespace itpl
