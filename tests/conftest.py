import numpy as np
import pytest

from itpl import _core

KERNELS = ["generic"] + (["avx512"] if _core.cpu_has_avx512() else [])


@pytest.fixture
def rng():
    return np.random.default_rng(20261121)
