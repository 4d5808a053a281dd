import numpy as np
import pytest

from itpl import _core

# Every Gram kernel this CPU can run (generic, avx2, avx512 on x86-64 with AVX-512).
KERNELS = _core.gram_kernels()


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
