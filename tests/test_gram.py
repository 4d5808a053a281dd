"""The centred Gram kernel against the float64 reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itpl import _core

from itpl.method import hsic
from tests import reference as ref
from tests.conftest import BF16_KERNELS, EXACT_KERNEL, INTEGER_KERNELS, KERNELS, ROUNDING_KERNELS

# d < n and d >> n; n below, at, and between multiples of every tile (8, 12, 16, 24, 32 rows).
SHAPES = [(2, 1), (3, 7), (5, 3), (8, 8), (17, 33), (24, 50), (33, 17), (40, 1000), (49, 3000),
          (64, 5), (100, 40), (129, 300), (256, 2048)]


def rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def assert_float32_gram(got, x, kernel, exact_tol=2e-6):
    """A float32 x's centred Gram within its kernel's error: float32 rounding, or
    the bf16 or 8-bit bound (tests/reference.py) for a kernel that rounds x."""
    expected = ref.centered_gram(x)
    if kernel in ROUNDING_KERNELS:
        assert np.abs(got - expected).max() <= ref.gram_bound(kernel, x)
    else:
        assert rel_err(got, expected) < exact_tol


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(rng, shape, dtype, kernel):
    # An offset far from zero, as after ReLU, exposes centring done late.
    x = (rng.standard_normal(shape) * 2.0 + 5.0).astype(dtype)
    expected = ref.centered_gram(x)
    got = hsic.centered_gram(x, kernel=kernel)
    assert got.dtype == np.float64 and got.shape == (shape[0], shape[0])
    if dtype == np.float64:
        assert rel_err(got, expected) < 1e-12
    else:
        assert_float32_gram(got, x, kernel)
    np.testing.assert_array_equal(got, got.T)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block", [1, 5, 64, 1000])
def test_block_sizes_give_the_same_gram(rng, kernel, block):
    x = rng.standard_normal((37, 517))
    assert rel_err(hsic.centered_gram(x, kernel=kernel, block=block), ref.centered_gram(x)) < 1e-12


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_counts_agree_to_rounding(rng, kernel, dtype):
    x = rng.standard_normal((70, 20000)).astype(dtype)
    serial = hsic.centered_gram(x, num_threads=1, kernel=kernel)
    for threads in (2, 3, 4):
        parallel = hsic.centered_gram(x, num_threads=threads, kernel=kernel)
        assert rel_err(parallel, serial) < 1e-13


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "generic"] or ["none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_kernel_agrees_with_generic(rng, dtype, kernel):
    if kernel == "none":
        pytest.skip("no SIMD kernel on this CPU")
    x = rng.standard_normal((45, 1234)).astype(dtype)
    a = hsic.centered_gram(x, kernel=kernel)
    b = hsic.centered_gram(x, kernel="generic")
    if dtype == np.float32 and kernel in ROUNDING_KERNELS:
        assert np.abs(a - b).max() <= ref.gram_bound(kernel, x)
    else:
        assert rel_err(a, b) < (1e-13 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("kernel", BF16_KERNELS or ["none"])
@pytest.mark.parametrize("shape", SHAPES + [(31, 9), (70, 20001)])
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_kernel_is_bf16_rounding_then_exact_sums(rng, shape, kernel, threads):
    # The rounding emulated in float64 leaves only the float32 sums within a
    # block: a feature dropped, doubled or paired with the wrong one shows.
    if kernel == "none":
        pytest.skip("no bf16 kernel on this CPU")
    x = (rng.standard_normal(shape) * 2.0 + 5.0).astype(np.float32)
    got = hsic.centered_gram(x, kernel=kernel, num_threads=threads)
    expected = ref.centered_gram(ref.bf16_shifted(x))
    assert np.abs(got - expected).max() <= ref.bf16_accumulation_bound(x)
    assert np.abs(got - ref.centered_gram(x)).max() <= ref.bf16_gram_bound(x)


@pytest.mark.parametrize("kernel", BF16_KERNELS or ["none"])
@pytest.mark.parametrize("block", [1, 2, 5, 64, 255, 1000])
def test_bf16_kernel_with_odd_and_even_blocks(rng, kernel, block):
    # An odd block ends with a feature paired with zero padding.
    if kernel == "none":
        pytest.skip("no bf16 kernel on this CPU")
    x = rng.standard_normal((37, 517)).astype(np.float32)
    got = hsic.centered_gram(x, kernel=kernel, block=block)
    expected = ref.centered_gram(ref.bf16_shifted(x))
    assert np.abs(got - expected).max() <= ref.bf16_accumulation_bound(x, block)
    serial = hsic.centered_gram(x, kernel=kernel, block=block, num_threads=1)
    assert rel_err(hsic.centered_gram(x, kernel=kernel, block=block, num_threads=2),
                   serial) < 1e-13


@pytest.mark.parametrize("kernel", BF16_KERNELS or ["none"])
def test_bf16_kernel_keeps_float64_input_exact(rng, kernel):
    if kernel == "none":
        pytest.skip("no bf16 kernel on this CPU")
    x = rng.standard_normal((45, 1234)) * 2.0 + 5.0
    np.testing.assert_array_equal(hsic.centered_gram(x, kernel=kernel),
                                  hsic.centered_gram(x, kernel="avx512"))
    assert rel_err(hsic.centered_gram(x, kernel=kernel), ref.centered_gram(x)) < 1e-12


@pytest.mark.parametrize("kernel", INTEGER_KERNELS or ["none"])
@pytest.mark.parametrize("shape", SHAPES + [(31, 9), (70, 20001)])
@pytest.mark.parametrize("threads", [1, 2])
def test_integer_kernel_is_quantization_then_exact_products(rng, shape, kernel, threads):
    # Integer products are exact: against the quantization emulated in float64
    # only float64 rounding is left, so a feature dropped, doubled or
    # quantized with the wrong step shows.
    if kernel == "none":
        pytest.skip("no integer kernel on this CPU")
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 3.0, shape[1])
         + rng.uniform(-5.0, 5.0, shape[1])).astype(np.float32)
    got = hsic.centered_gram(x, kernel=kernel, num_threads=threads)
    expected = ref.centered_gram(ref.multiplied(kernel, x))
    assert rel_err(got, expected) < 1e-12
    assert np.abs(got - ref.centered_gram(x)).max() <= ref.gram_bound(kernel, x)


@pytest.mark.parametrize("kernel", INTEGER_KERNELS or ["none"])
@pytest.mark.parametrize("block", [1, 2, 3, 4, 5, 17, 33, 63, 64, 65, 255, 1000, 20000])
def test_integer_kernel_blocks_and_padding(rng, kernel, block):
    # Blocks that end inside a packed element, a vector or a group of
    # vectors are padded with features that add nothing; the step is per
    # block, so the block size is part of the emulation (20000 is cut to the
    # kernel's largest exact block).
    if kernel == "none":
        pytest.skip("no integer kernel on this CPU")
    x = np.maximum(rng.standard_normal((37, 517)), 0).astype(np.float32)  # ReLU-like
    got = hsic.centered_gram(x, kernel=kernel, block=block)
    assert rel_err(got, ref.centered_gram(ref.multiplied(kernel, x, block))) < 1e-12
    serial = hsic.centered_gram(x, kernel=kernel, block=block, num_threads=1)
    assert rel_err(hsic.centered_gram(x, kernel=kernel, block=block, num_threads=2),
                   serial) < 1e-13


@pytest.mark.parametrize("kernel", INTEGER_KERNELS or ["none"])
def test_integer_kernel_with_constant_features_and_blocks(rng, kernel):
    # A constant block (range 0) adds nothing; a constant feature beside others
    # quantizes to 0 and does not change their step.
    if kernel == "none":
        pytest.skip("no integer kernel on this CPU")
    x = rng.standard_normal((40, 700)).astype(np.float32)
    x[:, :256] = 7.5
    x[:, 300] = -2.0
    got = hsic.centered_gram(x, kernel=kernel)
    assert rel_err(got, ref.centered_gram(ref.multiplied(kernel, x))) < 1e-12
    np.testing.assert_array_equal(hsic.centered_gram(np.full((9, 300), 3.25, np.float32),
                                                     kernel=kernel), np.zeros((9, 9)))


@pytest.mark.parametrize("kernel", INTEGER_KERNELS or ["none"])
@pytest.mark.parametrize("outliers", [1, 4, 5])
def test_integer_kernel_adds_a_few_wide_features_exactly(rng, kernel, outliers):
    # Up to four features far wider than the rest of their block are added
    # exactly, so an extreme value does not set every step of its block: the
    # error stays within the bound of the block without them. Five are
    # quantized with the rest (the emulation follows the same rule).
    if kernel == "none":
        pytest.skip("no integer kernel on this CPU")
    x = np.maximum(rng.standard_normal((40, 600)), 0).astype(np.float32)
    cols = rng.choice(256, outliers, replace=False)
    x[rng.integers(40, size=outliers), cols] = 1e3
    got = hsic.centered_gram(x, kernel=kernel)
    assert rel_err(got, ref.centered_gram(ref.multiplied(kernel, x))) < 1e-12
    rest = x.copy()
    rest[:, cols] = 0
    error = np.abs(got - ref.centered_gram(x)).max()
    if outliers <= 4:
        assert error <= ref.gram_bound(kernel, rest)
    else:
        assert error > ref.gram_bound(kernel, rest)  # the steps follow the outliers


@pytest.mark.parametrize("kernel", INTEGER_KERNELS or ["none"])
def test_integer_kernel_keeps_float64_input_exact(rng, kernel):
    if kernel == "none":
        pytest.skip("no integer kernel on this CPU")
    x = rng.standard_normal((45, 1234)) * 2.0 + 5.0
    fallback = "avx2" if kernel == "avx2int16" else "avx512"
    np.testing.assert_array_equal(hsic.centered_gram(x, kernel=kernel),
                                  hsic.centered_gram(x, kernel=fallback))


def test_auto_picks_the_last_supported_kernel():
    assert hsic.gram_kernels()[0] == "generic"
    assert hsic.gram_kernel("auto") == hsic.gram_kernels()[-1]


@pytest.mark.parametrize("kernel", KERNELS)
def test_environment_variable_forces_the_kernel(monkeypatch, rng, kernel):
    monkeypatch.setenv(hsic.KERNEL_ENV, kernel)
    assert hsic.gram_kernel() == kernel
    x = rng.standard_normal((30, 200))
    np.testing.assert_array_equal(hsic.centered_gram(x), hsic.centered_gram(x, kernel=kernel))


def test_bad_kernel_in_the_environment_names_the_variable(monkeypatch, rng):
    monkeypatch.setenv(hsic.KERNEL_ENV, "sse9")
    with pytest.raises(ValueError, match="ITPL_GRAM_KERNEL='sse9'"):
        hsic.centered_gram(rng.standard_normal((4, 3)))


def test_kernel_this_cpu_cannot_run_is_a_value_error(rng):
    missing = [k for k in ("avx2", "avx2int16", "avx512", "avx512vnni", "neon")
               if k not in KERNELS]
    assert missing  # no CPU has both the x86-64 kernels and NEON
    with pytest.raises(ValueError, match="not available on this CPU"):
        hsic.centered_gram(rng.standard_normal((4, 3)), kernel=missing[0])


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_error_does_not_grow_with_features(rng, kernel):
    # Block-wise float32 sums added in float64: the relative error at 400k
    # features stays at the float32 input-rounding level. A kernel that rounds
    # x is held to the same figure against its own rounding, emulated in float64.
    x = (rng.standard_normal((16, 400_000)) + 1.0).astype(np.float32)
    got = hsic.centered_gram(x, kernel=kernel)
    exact = ref.centered_gram(ref.multiplied(kernel, x))
    assert rel_err(got, exact) < 1e-6


def test_activation_tensors_are_flattened(rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(hsic.centered_gram(x), hsic.centered_gram(x.reshape(6, -1)))
    assert_float32_gram(hsic.centered_gram(x), x.reshape(6, -1), hsic.gram_kernel(), 1e-5)


def test_non_contiguous_and_float16_inputs_are_accepted(rng):
    x = rng.standard_normal((20, 30))
    np.testing.assert_allclose(hsic.centered_gram(x[:, ::2]), ref.centered_gram(x[:, ::2]),
                               rtol=1e-12, atol=1e-12)
    h = x.astype(np.float16)
    np.testing.assert_array_equal(hsic.centered_gram(h), hsic.centered_gram(h.astype(np.float32)))
    assert_float32_gram(hsic.centered_gram(h), h.astype(np.float32), hsic.gram_kernel(), 1e-5)


def test_core_makes_no_hidden_copies(rng):
    x = rng.standard_normal((10, 20))
    with pytest.raises(TypeError):
        _core.centered_gram(x[:, ::2])  # not C-contiguous: the core refuses, never copies
    with pytest.raises(TypeError):
        _core.centered_gram(x.astype(np.int64))


def test_constant_layer_gives_zero_gram():
    x = np.full((9, 50), 3.25, dtype=np.float32)
    np.testing.assert_array_equal(hsic.centered_gram(x), np.zeros((9, 9)))


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros(5), "sample axis"),
        (np.zeros((1, 5)), "at least 2 samples"),
        (np.zeros((4, 0)), "no features"),
        (np.zeros((4, 3), dtype=np.int32), "float32 or float64"),
        (np.zeros((4, 3), dtype=np.complex128), "float32 or float64"),
    ],
)
def test_bad_input_is_a_value_error(x, match):
    with pytest.raises(ValueError, match=match):
        hsic.centered_gram(x)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (5, 77), (11, 299)])
def test_nan_and_inf_are_rejected(kernel, bad, where):
    x = np.ones((12, 300), dtype=np.float32)
    x[where] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        hsic.centered_gram(x, kernel=kernel)


def test_float32_overflow_names_the_remedy():
    x = np.zeros((4, 3), dtype=np.float32)
    x[1, 0] = 3e30
    with pytest.raises(ValueError, match="pass X as float64"):
        hsic.centered_gram(x, kernel=EXACT_KERNEL)
    assert np.isfinite(hsic.centered_gram(x.astype(np.float64))).all()
    for kernel in INTEGER_KERNELS:  # their scale is float64: 3e30 squared is fine
        np.testing.assert_allclose(hsic.centered_gram(x, kernel=kernel),
                                   ref.centered_gram(x), rtol=1e-6)
        wide = x.copy()
        wide[1, 0], wide[2, 0] = 3e38, -3e38  # but a range past float32's is not
        with pytest.raises(ValueError, match="pass X as float64"):
            hsic.centered_gram(wide, kernel=kernel)


def test_bad_options_are_value_errors(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="unknown Gram kernel"):
        hsic.centered_gram(x, kernel="cuda")
    with pytest.raises(ValueError, match="num_threads"):
        hsic.centered_gram(x, num_threads=0)
    with pytest.raises(ValueError, match="block"):
        hsic.centered_gram(x, block=0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 300),
    offset=st.floats(-100, 100),
    seed=st.integers(0, 2**32 - 1),
    threads=st.integers(1, 3),
)
def test_property_matches_reference(n, d, offset, seed, threads):
    x = np.random.default_rng(seed).standard_normal((n, d)) + offset
    got = hsic.centered_gram(x, num_threads=threads)
    expected = ref.centered_gram(x)
    scale = np.abs(expected).max()
    # Centring data that sits far from 0 cancels: the kernel's rounding error is
    # about eps * offset^2 * d in absolute terms, however small the entries are
    # (hypothesis found n=2, d=1, offset=32: entries 3e-4, error 4e-14).
    cancellation = 64 * np.finfo(np.float64).eps * (offset**2 + 1) * d
    assert np.abs(got - expected).max() <= 1e-10 * scale + cancellation
    # Centred: rows sum to zero.
    assert np.abs(got.sum(axis=1)).max() <= 1e-9 * max(scale, 1.0) * n


def test_gil_is_released_during_the_kernel():
    # While one thread is inside the kernel, another Python thread keeps running.
    import threading
    import time

    x = np.ones((256, 300_000), dtype=np.float32)
    x[::2] = 2.0
    window = {}

    def work():
        window["start"] = time.perf_counter()
        hsic.centered_gram(x, num_threads=1)
        window["end"] = time.perf_counter()

    worker = threading.Thread(target=work)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    start, end = window["start"], window["end"]
    inside = [t for t in ticks if start + 0.1 * (end - start) < t < end - 0.1 * (end - start)]
    assert len(inside) >= 5, f"main thread ran {len(inside)} times during a {end - start:.3f} s call"
