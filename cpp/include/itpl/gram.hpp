// Centred Gram matrix K = H X X^T H of an activation matrix X (n samples x d
// features), streamed over blocks of features. No Python here.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace itpl {

// Which inner kernel computes the block products.
enum class GramKernel {
    automatic,  // the fastest one this CPU supports
    generic,    // portable C++; the fallback everywhere
    avx2,       // AVX2 + FMA register-tiled micro-kernel (x86-64)
    avx2int16,  // AVX2: float32 input quantized to 10 bits per block of features,
                // exact 16-bit integer products (x86-64); float64 input as avx2
    avx512,     // AVX-512F register-tiled micro-kernel (x86-64)
    avx512bf16, // AVX-512 BF16: float32 input rounded to bf16, products summed
                // in float32 per block (x86-64); float64 input as avx512
    avx512vnni, // AVX-512 VNNI: float32 input quantized to 8 bits per block of
                // features, exact integer products (x86-64); float64 input as avx512
    neon,       // Advanced SIMD micro-kernel (ARM64 builds)
};

struct GramOptions {
    int num_threads = 0;                  // 0: OpenMP default; 1: serial path
    GramKernel kernel = GramKernel::automatic;
    std::size_t block = 0;                // features per block; 0: the kernel's default
};

// True when this build has `kernel` and the running CPU can execute it
// (`automatic` and `generic` always can).
bool gram_kernel_supported(GramKernel kernel) noexcept;

// Names of the kernels this build and CPU can run, the portable one first and
// the one `automatic` picks last.
std::vector<std::string> supported_gram_kernels();

// Name of the kernel `kernel` resolves to on this CPU ("generic", "avx2",
// "avx2int16", "avx512", "avx512bf16", "avx512vnni" or "neon"); `automatic`
// resolves to the fastest supported one.
std::string resolve_kernel_name(GramKernel kernel);

// Parses "auto" or one of the names above; throws std::invalid_argument
// otherwise.
GramKernel parse_gram_kernel(const std::string& name);

// Writes the n x n centred Gram of x (row-major, n x d) into out (row-major, n x n).
//
// Every sample is shifted by sample 0 while its block is packed (this leaves
// the centred Gram unchanged and keeps the features' common offset out of the
// products), products are accumulated in T within a block of `block` features
// (the register tile; the avx512bf16 kernel first rounds float32 values to bf16,
// then sums their products in float32; the integer kernels, avx2int16 and
// avx512vnni, quantize each block instead: gram_quantized.hpp), block results
// are summed in float64, and the n x n result is centred exactly in float64. Only one triangle is computed,
// then mirrored. Threads take contiguous slices of the features, each with its
// own accumulator, summed in slice order: 1 and N threads agree to float64
// rounding.
//
// Throws std::invalid_argument for n < 2, d < 1, a NaN/Inf in x, or a kernel
// this CPU or build cannot run.
template <class T>
void centered_gram(const T* x, std::size_t n, std::size_t d, double* out,
                   const GramOptions& options = {});

extern template void centered_gram<float>(const float*, std::size_t, std::size_t,
                                          double*, const GramOptions&);
extern template void centered_gram<double>(const double*, std::size_t, std::size_t,
                                           double*, const GramOptions&);

}  // namespace itpl
