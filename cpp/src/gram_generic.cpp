// The portable Gram kernel: the fallback on every CPU.
#include "itpl/gram_blocked.hpp"
#include "itpl/gram_kernels.hpp"

namespace itpl::gram_detail {

void gram_upper_generic(const float* x, std::size_t n, std::size_t d, double* out,
                        std::size_t block, int threads) {
    gram_upper<GenericKernel<float, 8, 4>>(x, n, d, out, block, threads);
}

void gram_upper_generic(const double* x, std::size_t n, std::size_t d, double* out,
                        std::size_t block, int threads) {
    gram_upper<GenericKernel<double, 8, 4>>(x, n, d, out, block, threads);
}

}  // namespace itpl::gram_detail
