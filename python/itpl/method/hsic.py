"""Centred Gram matrices and the nHSIC matrix between layers (ITPruner Eq. 6-8, 12).

This module owns dtype and memory-layout policy; the kernels in ``itpl._core``
take C-contiguous typed buffers as they are and never copy.

Precision: Grams are returned in float64. A float64 ``X`` is accumulated in
float64 throughout, whatever the kernel. For a float32 ``X``, every sample is
shifted by sample 0 (which leaves the centred Gram unchanged and keeps the
features' common offset out of the products), products are summed in float32
within blocks of 256 features (the ``block`` argument; one register tile of the
kernel), the block results are summed in float64, and the result is centred
exactly in float64, so the rounding error does not grow with the number of
features the way a float32 GEMM's does. Pass float64 for float64 products at
about half the speed.

Three kernels round float32 input before their products, for speed:

- ``avx2int16`` (CPUs with AVX2; by name only) quantizes each block of
  features to 10 bits as ``avx512vnni`` does to 8 (below): 1023 steps, every
  value off by at most 1/2046 of its block's widest range, exact 16-bit
  integer products, 1.3x the ``avx2`` kernel on AMD Zen 4 (not measured on
  an AVX2-only CPU, so ``auto`` keeps ``avx2`` there).
- ``avx512vnni`` (CPUs with AVX512_VNNI; the automatic kernel there) quantizes
  each block of features to 8 bits: ``x - min`` of each feature over the
  samples (a per-feature shift, which leaves the centred Gram unchanged), in
  255 steps of the block's widest range, so every value is off by at most
  1/510 of that range. Up to four features of a block far wider than the
  rest (over 4x the fifth widest: an extreme value) are added exactly
  instead, so they do not coarsen the block's steps. The integer products
  are exact and run at four times the float32 rate. On a trained ResNet-20
  this moved nHSIC by at most 9e-5, about 800x less than two calibration
  batches differ, and no width of a plan; with one value per block set to
  50x its layer's largest, by 1e-5 (``bench/gram_precision.py``).
- ``avx512bf16`` (CPUs with AVX512_BF16) rounds each shifted value to bf16 (8
  significant bits), at twice the float32 rate: a Gram entry moves by at most
  2**-6 of the largest squared distance of a sample to sample 0, and in
  practice by far less (against float64, 3e-5 of the largest entry at
  d = 401,408: the errors of many products cancel); nHSIC moved by at most
  3e-5 on the same ResNet-20.

Name another kernel (``kernel="avx512"`` or ``ITPL_GRAM_KERNEL=avx512``) for
float32 products.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from itpl import _core

__all__ = [
    "centered_gram",
    "nhsic_matrix",
    "nhsic",
    "default_threads",
    "has_openmp",
    "gram_kernel",
    "gram_kernels",
    "KERNEL_ENV",
]

#: Environment variable that chooses the Gram kernel when a call names none
#: (``auto``, ``generic``, ``avx2``, ``avx2int16``, ``avx512``, ``avx512bf16``,
#: ``avx512vnni`` or ``neon``): for tests and benchmarks of one kernel on a CPU that would pick
#: another, or for float32 products where ``auto`` picks rounded ones.
KERNEL_ENV = "ITPL_GRAM_KERNEL"

#: True when the compiled core was built with OpenMP.
has_openmp: bool = _core.has_openmp


def default_threads() -> int:
    """Threads the kernels use when ``num_threads`` is None (OpenMP's default)."""
    return _core.default_threads()


def gram_kernels() -> list[str]:
    """Gram kernels this build and CPU can run, the portable one first.

    Returns
    -------
    list of str
        A subset of ``["generic", "neon", "avx2int16", "avx2", "avx512",
        "avx512bf16", "avx512vnni"]``;
        ``"auto"`` picks the last.
    """
    return list(_core.gram_kernels())


def _kernel(name: str | None) -> str:
    if name is not None:
        return name
    chosen = os.environ.get(KERNEL_ENV, "").strip() or "auto"
    try:
        _core.gram_kernel(chosen)
    except ValueError as err:
        raise ValueError(f"{KERNEL_ENV}={chosen!r}: {err}") from None
    return chosen


def gram_kernel(name: str | None = None) -> str:
    """Name of the Gram kernel that ``name`` selects on this CPU.

    Parameters
    ----------
    name : str, optional
        ``"auto"``, ``"generic"``, ``"avx2"``, ``"avx2int16"``, ``"avx512"``,
        ``"avx512bf16"``, ``"avx512vnni"`` or ``"neon"``. ``"auto"`` picks the
        fastest kernel this CPU supports. None: the ``ITPL_GRAM_KERNEL``
        environment variable, else ``"auto"``.

    Returns
    -------
    str
        One of those names but ``"auto"``.
    """
    return _core.gram_kernel(_kernel(name))


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return 0
    if int(num_threads) < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads}")
    return int(num_threads)


def _as_activation_matrix(x) -> np.ndarray:
    """Flatten ``x`` to (samples, features) with a dtype the core accepts."""
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(
            f"X must have a sample axis and at least one feature axis, got shape {arr.shape}"
        )
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):
        raise ValueError(f"X must be a float32 or float64 array, got dtype {arr.dtype}")
    # reshape is a view for a C-contiguous array; anything else is copied once.
    return np.ascontiguousarray(arr.reshape(arr.shape[0], -1))


def centered_gram(
    x,
    *,
    num_threads: int | None = None,
    kernel: str | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Centred Gram matrix ``K = H X X^T H`` of one layer's activations.

    Parameters
    ----------
    x : array_like, shape (n, d) or (n, ...)
        Activations of ``n`` samples; trailing axes are flattened into the
        ``d`` features (a view for C-contiguous input). float32 or float64
        (float16 is widened to float32). A non-C-contiguous array is copied once.
    num_threads : int, optional
        OpenMP threads; None uses the default. The result is bitwise the same
        for every thread count.
    kernel : str, optional
        Inner kernel (a name :func:`gram_kernels` lists, or ``"auto"``);
        ``"auto"`` picks the fastest one this CPU supports (``avx512vnni``
        where the CPU has it, which rounds float32 input: see the module's
        Precision note). None: the ``ITPL_GRAM_KERNEL``
        environment variable, else ``"auto"``. A kernel this CPU cannot run
        raises ValueError.
    block : int, optional
        Features per block: the span of float32 partial sums, or of one
        quantization step for the integer kernels (at most 16,384 for
        ``avx512vnni``, 2,048 for ``avx2int16``). None picks the default, 256
        (fewer when n is large, to keep a block in cache).

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        The symmetric centred Gram matrix. An all-constant layer gives zeros.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 dimensions or 2 samples, no features, a
        non-float dtype, or a NaN/Inf value; or for an unknown or unsupported
        kernel.
    """
    mat = _as_activation_matrix(x)
    if block is not None and int(block) < 1:
        raise ValueError(f"block must be a positive integer or None, got {block}")
    return _core.centered_gram(
        mat, num_threads=_threads(num_threads), kernel=_kernel(kernel), block=int(block or 0)
    )


def _stack_grams(grams) -> np.ndarray:
    if isinstance(grams, np.ndarray) and grams.ndim == 3:
        stacked = grams
    else:
        if isinstance(grams, np.ndarray) or not isinstance(grams, Sequence):
            raise ValueError("grams must be a sequence of (n, n) arrays or an (L, n, n) array")
        if len(grams) == 0:
            raise ValueError("grams is empty: pass at least one layer's centred Gram")
        mats = [np.asarray(g) for g in grams]
        for idx, g in enumerate(mats):
            if g.ndim != 2 or g.shape[0] != g.shape[1]:
                raise ValueError(f"Gram {idx} must be square (n, n), got shape {g.shape}")
            if g.shape != mats[0].shape:
                raise ValueError(
                    f"Gram {idx} is {g.shape[0]} x {g.shape[0]} but Gram 0 is "
                    f"{mats[0].shape[0]} x {mats[0].shape[0]}: every layer must be "
                    "computed on the same samples"
                )
        stacked = np.stack(mats)
    if stacked.shape[1] != stacked.shape[2]:
        raise ValueError(f"grams must have shape (L, n, n), got {stacked.shape}")
    if not np.issubdtype(stacked.dtype, np.floating):
        raise ValueError(f"grams must be floating point, got dtype {stacked.dtype}")
    return np.ascontiguousarray(stacked, dtype=np.float64)


def nhsic_matrix(grams, *, debiased: bool = False, num_threads: int | None = None) -> np.ndarray:
    """The L x L matrix of normalised HSIC between layers.

    Parameters
    ----------
    grams : sequence of array_like (n, n), or array_like (L, n, n)
        Centred Gram matrices (from :func:`centered_gram`) of L layers on the
        same n samples.
    debiased : bool
        False: ITPruner's Eq. 8, ``tr(K_i K_j) / (||K_i||_F ||K_j||_F)``, in
        [0, 1]; it is close to 1 even for independent features when n << d.
        True: the same ratio with the unbiased HSIC estimator (Song et al.,
        2012), near 0 for independent features; its off-diagonal values can be
        slightly negative.
    num_threads : int, optional
        OpenMP threads; None uses the default.

    Returns
    -------
    numpy.ndarray, shape (L, L), float64
        Symmetric with unit diagonal. A layer whose centred Gram is zero
        (constant activations) shares nothing: its row and column are 0 off
        the diagonal.

    Raises
    ------
    ValueError
        On Grams of different sizes, n < 2 (biased) or n < 4 (debiased), or a
        NaN/Inf entry.
    """
    stacked = _stack_grams(grams)
    return _core.nhsic_matrix(stacked, debiased=bool(debiased), num_threads=_threads(num_threads))


def nhsic(x, y, *, debiased: bool = False, num_threads: int | None = None) -> float:
    """nHSIC between two activation matrices on the same samples.

    Parameters
    ----------
    x, y : array_like, shape (n, ...)
        Activations of the same n samples.
    debiased : bool
        See :func:`nhsic_matrix`.
    num_threads : int, optional
        OpenMP threads; None uses the default.

    Returns
    -------
    float
    """
    grams = [centered_gram(x, num_threads=num_threads), centered_gram(y, num_threads=num_threads)]
    return float(nhsic_matrix(grams, debiased=debiased, num_threads=num_threads)[0, 1])
