import numpy as np
import pytest

from itpl import _core

# Every Gram kernel this CPU can run (generic, avx2, avx512 on x86-64 with AVX-512).
KERNELS = _core.gram_kernels()
# Those that round float32 input before their products: to bf16, or to
# integers per block of features (float64 input stays float64 in every
# kernel); tests/reference.py emulates the rounding and bounds their error.
BF16_KERNELS = [k for k in KERNELS if k == "avx512bf16"]
INTEGER_KERNELS = [k for k in KERNELS if k in ("avx2int16", "avx512vnni")]
ROUNDING_KERNELS = BF16_KERNELS + INTEGER_KERNELS
# The fastest kernel whose float32 products are float32 products.
EXACT_KERNEL = [k for k in KERNELS if k not in ROUNDING_KERNELS][-1]


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
