// The portable Gram kernel: the fallback on every CPU.
#include "itpl/gram_blocked.hpp"
#include "itpl/gram_kernels.hpp"

namespace itpl::gram_detail {

using GenericF32 = GenericKernel<float, 8, 4>;
using GenericF64 = GenericKernel<double, 8, 4>;

ITPL_GRAM_ENTRY_DEFINE(gram_upper_generic, float, GenericF32)
ITPL_GRAM_ENTRY_DEFINE(gram_upper_generic, double, GenericF64)

}  // namespace itpl::gram_detail
