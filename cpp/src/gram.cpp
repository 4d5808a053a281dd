// Centred Gram: argument checks, kernel choice, and the float64 finish
// (mirroring, the NaN/Inf check, centring). The products are in gram_*.cpp.
#include "itpl/gram.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "itpl/gram_kernels.hpp"
#include "itpl/parallel.hpp"

namespace itpl {
namespace {

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

struct KernelName {
    GramKernel kernel;
    const char* name;
};
// Fastest last: `automatic` takes the last supported entry.
constexpr KernelName kKernels[] = {
    {GramKernel::generic, "generic"},
    {GramKernel::neon, "neon"},
    // Named only: on Zen 4's AVX2 units 16-bit products peak at 1.26x float32
    // FMAs, but older AVX2 CPUs multiply integers on fewer pipes (unmeasured).
    {GramKernel::avx2int16, "avx2int16"},
    {GramKernel::avx2, "avx2"},
    {GramKernel::avx512, "avx512"},
    {GramKernel::avx512bf16, "avx512bf16"},
    {GramKernel::avx512vnni, "avx512vnni"},
};

template <class T>
void run_kernel(GramKernel kernel, const T* x, std::size_t n, std::size_t d, double* out,
                std::size_t block, int threads) {
    using namespace gram_detail;
    switch (kernel) {
#ifdef ITPL_X86_KERNELS
        case GramKernel::avx512vnni: return gram_upper_avx512vnni(x, n, d, out, block, threads);
        case GramKernel::avx512bf16: return gram_upper_avx512bf16(x, n, d, out, block, threads);
        case GramKernel::avx512: return gram_upper_avx512(x, n, d, out, block, threads);
        case GramKernel::avx2: return gram_upper_avx2(x, n, d, out, block, threads);
        case GramKernel::avx2int16: return gram_upper_avx2int16(x, n, d, out, block, threads);
#endif
#ifdef ITPL_NEON_KERNEL
        case GramKernel::neon: return gram_upper_neon(x, n, d, out, block, threads);
#endif
        default: return gram_upper_generic(x, n, d, out, block, threads);
    }
}

}  // namespace

bool gram_kernel_supported(GramKernel kernel) noexcept {
    switch (kernel) {
        case GramKernel::automatic:
        case GramKernel::generic: return true;
#ifdef ITPL_X86_KERNELS
        case GramKernel::avx2:
        case GramKernel::avx2int16:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case GramKernel::avx512:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx512f");
        case GramKernel::avx512bf16:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512bf16");
        case GramKernel::avx512vnni:
            __builtin_cpu_init();
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vnni");
#endif
#ifdef ITPL_NEON_KERNEL
        case GramKernel::neon: return true;
#endif
        default: return false;
    }
}

std::vector<std::string> supported_gram_kernels() {
    std::vector<std::string> names;
    for (const KernelName& k : kKernels)
        if (gram_kernel_supported(k.kernel)) names.emplace_back(k.name);
    return names;
}

GramKernel parse_gram_kernel(const std::string& name) {
    if (name == "auto") return GramKernel::automatic;
    for (const KernelName& k : kKernels)
        if (name == k.name) return k.kernel;
    std::string names;
    for (const KernelName& k : kKernels) names += std::string(", '") + k.name + "'";
    throw std::invalid_argument("unknown Gram kernel '" + name + "'; use 'auto'" + names);
}

std::string resolve_kernel_name(GramKernel kernel) {
    if (kernel == GramKernel::automatic) return supported_gram_kernels().back();
    for (const KernelName& k : kKernels)
        if (kernel == k.kernel) return k.name;
    return "generic";
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
    if (!gram_kernel_supported(options.kernel))
        throw std::invalid_argument("the " + resolve_kernel_name(options.kernel) +
                                    " kernel is not available on this CPU or build; use 'auto'");
    const GramKernel kernel = parse_gram_kernel(resolve_kernel_name(options.kernel));
    run_kernel(kernel, x, n, d, out, options.block, resolve_threads(options.num_threads));

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

template void centered_gram<float>(const float*, std::size_t, std::size_t, double*,
                                   const GramOptions&);
template void centered_gram<double>(const double*, std::size_t, std::size_t, double*,
                                    const GramOptions&);

}  // namespace itpl
