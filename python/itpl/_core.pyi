# Type stub of the compiled core; tests/test_core_stub.py keeps it in sync.
import numpy as np
import numpy.typing as npt

has_openmp: bool

def default_threads() -> int: ...
def gram_kernels() -> list[str]: ...
def gram_kernel(name: str = "auto") -> str: ...
def fma_peak_gflops(kernel: str = "auto", *, num_threads: int = 0, seconds: float = 0.2) -> float: ...
def centered_gram(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    *,
    num_threads: int = 0,
    kernel: str = "auto",
    block: int = 0,
) -> npt.NDArray[np.float64]: ...
def nhsic_matrix(
    grams: npt.NDArray[np.float64],
    *,
    debiased: bool = False,
    num_threads: int = 0,
) -> npt.NDArray[np.float64]: ...
