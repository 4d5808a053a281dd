// Every Gram kernel this build and CPU can run, against a naive float64
// reference. Built for ARM64 and run under qemu-user by tests/test_gram_neon.py,
// where it is the only proof of the NEON kernel. Prints one line per failure and
// exits non-zero on any; prints the kernels it checked on success.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "itpl/gram.hpp"

namespace {

// Deterministic uniform values in [-1, 1) (no <random>: the same numbers on every libc).
struct Lcg {
    unsigned long long s;
    double next() {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<double>(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    }
};

std::vector<double> reference(const std::vector<double>& x, std::size_t n, std::size_t d) {
    std::vector<double> g(n * n, 0.0), mean(n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0.0;
            for (std::size_t k = 0; k < d; ++k) s += x[i * d + k] * x[j * d + k];
            g[i * n + j] = s;
        }
    double grand = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) mean[i] += g[i * n + j] / n;
        grand += mean[i] / n;
    }
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) g[i * n + j] += grand - mean[i] - mean[j];
    return g;
}

int failures = 0;

// float32 input to the bf16 kernel is rounded to bf16 (relative error
// <= 2^-9 per value, about 2^-8 per product) before its products. Its
// worst case (tests/reference.py, bf16_gram_bound) is 8 x 2^-9 of the largest
// squared distance to sample 0, which is at most 4x the centred Gram's
// largest entry; on these shapes the error stays under 2.5e-3 of that entry,
// so 8 x 2^-9 of it holds with a margin and still catches a misplaced feature.
// The 8-bit kernel's values are off by at most 1/510 of their block's widest
// range (here 4, against a spread of about 1.15 per feature); on these shapes
// its error stays under 5e-3 of the largest entry, and it is held to the same
// figure, as is the 16-bit one (1/2046 of the range).
double float32_tol(const std::string& kernel) {
    const bool rounds = kernel == "avx512bf16" || kernel == "avx512vnni" || kernel == "avx2int16";
    return rounds ? 0.015625 : 2e-6;
}

void fail(const std::string& what) {
    std::printf("FAIL %s\n", what.c_str());
    ++failures;
}

template <class T>
void check(const std::string& kernel, std::size_t n, std::size_t d, int threads,
           std::size_t block, double tol) {
    Lcg rng{n * 7919 + d};
    std::vector<double> xd(n * d);
    // An offset far from zero, as after ReLU, exposes centring done late.
    for (double& v : xd) v = static_cast<double>(static_cast<T>(5.0 + 2.0 * rng.next()));
    std::vector<T> x(xd.begin(), xd.end());
    std::vector<double> got(n * n);
    itpl::GramOptions options;
    options.kernel = itpl::parse_gram_kernel(kernel);
    options.num_threads = threads;
    options.block = block;
    itpl::centered_gram<T>(x.data(), n, d, got.data(), options);
    const std::vector<double> want = reference(xd, n, d);
    double scale = 0.0, err = 0.0;
    for (std::size_t e = 0; e < n * n; ++e) {
        scale = std::fmax(scale, std::fabs(want[e]));
        err = std::fmax(err, std::fabs(got[e] - want[e]));
    }
    const std::string tag = kernel + (sizeof(T) == 4 ? " float32" : " float64") + " n=" +
                            std::to_string(n) + " d=" + std::to_string(d) + " threads=" +
                            std::to_string(threads) + " block=" + std::to_string(block);
    if (!(err <= tol * scale)) fail(tag + ": relative error " + std::to_string(err / scale));
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (got[i * n + j] != got[j * n + i]) {
                fail(tag + ": not symmetric");
                return;
            }
}

void check_rejects_nan(const std::string& kernel) {
    std::vector<float> x(12 * 300, 1.0f);
    x[5 * 300 + 77] = NAN;
    std::vector<double> out(12 * 12);
    itpl::GramOptions options;
    options.kernel = itpl::parse_gram_kernel(kernel);
    try {
        itpl::centered_gram<float>(x.data(), 12, 300, out.data(), options);
        fail(kernel + ": a NaN was not rejected");
    } catch (const std::invalid_argument&) {
    }
}

}  // namespace

int main() {
    // d < n, d >> n, n not a multiple of any tile, n a multiple of 24, block tails.
    const std::size_t shapes[][2] = {{2, 1},   {3, 7},    {5, 3},    {17, 33}, {33, 17},
                                     {24, 96}, {25, 300}, {48, 260}, {50, 7},  {64, 1000},
                                     {100, 40}, {131, 517}};
    const std::vector<std::string> kernels = itpl::supported_gram_kernels();
    for (const std::string& kernel : kernels) {
        for (const auto& s : shapes) {
            for (int threads : {1, 2, 3}) {
                check<float>(kernel, s[0], s[1], threads, 0, float32_tol(kernel));
                check<double>(kernel, s[0], s[1], threads, 0, 1e-12);
            }
            check<float>(kernel, s[0], s[1], 2, 5, float32_tol(kernel));
            check<double>(kernel, s[0], s[1], 1, 64, 1e-12);
        }
        check_rejects_nan(kernel);
    }
    std::printf("kernels:");
    for (const std::string& kernel : kernels) std::printf(" %s", kernel.c_str());
    std::printf("\nauto: %s\n", itpl::resolve_kernel_name(itpl::GramKernel::automatic).c_str());
    if (failures) std::printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
