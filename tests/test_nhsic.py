"""The nHSIC matrix against the float64 reference, and the paper's theorems."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

from itpl.method import hsic
from tests import reference as ref
from tests.conftest import EXACT_KERNEL, ROUNDING_KERNELS


def layers(rng, n, dims, shared=0.5):
    """Activations that share a common signal, so nHSIC values are spread out."""
    base = rng.standard_normal((n, 8))
    out = []
    for d in dims:
        mix = base @ rng.standard_normal((8, d))
        out.append(shared * mix + rng.standard_normal((n, d)) + rng.uniform(-3, 3))
    return out


def matrix(xs, debiased=False, kernel=None, **kw):
    grams = [hsic.centered_gram(x, kernel=kernel, **kw) for x in xs]
    return hsic.nhsic_matrix(grams, debiased=debiased, **kw)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n, dims", [(4, [3, 5]), (10, [1, 20, 7]), (64, [300, 30, 1000, 2]),
                                     (200, [50, 50, 5000])])
def test_matches_reference(rng, n, dims, debiased):
    xs = layers(rng, n, dims)
    np.testing.assert_allclose(matrix(xs, debiased), ref.nhsic_matrix(xs, debiased),
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kernel", [EXACT_KERNEL, *ROUNDING_KERNELS])
def test_float32_activations_match_reference(rng, debiased, kernel):
    # A kernel that rounds float32 input (bf16, 8 bits) is held to the same
    # figure against its rounding emulated in float64 (tests/reference.py).
    xs = [x.astype(np.float32) for x in layers(rng, 50, [400, 60, 2000])]
    expected = ref.nhsic_matrix([ref.multiplied(kernel, x) for x in xs], debiased)
    np.testing.assert_allclose(matrix(xs, debiased, kernel=kernel), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts_agree(rng, threads):
    grams = np.stack([hsic.centered_gram(x) for x in layers(rng, 30, [10, 20, 30, 40, 50])])
    for debiased in (False, True):
        a = hsic.nhsic_matrix(grams, debiased=debiased, num_threads=1)
        b = hsic.nhsic_matrix(grams, debiased=debiased, num_threads=threads)
        np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-15)


def test_independent_features_biased_near_one_debiased_near_zero(rng):
    # n << d: the biased estimator says two independent layers are nearly the
    # same; the debiased one says they share nothing.
    n, d = 100, 50_000
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32)
    assert hsic.nhsic(x, y) > 0.98
    assert abs(hsic.nhsic(x, y, debiased=True)) < 0.02


def test_debiased_still_sees_dependence(rng):
    # y keeps x's information (permuted, rescaled, slightly noisy); z keeps a
    # quarter of it, so its population value is sqrt(1/4).
    x = rng.standard_normal((100, 2000))
    y = 3.0 * x[:, ::-1] + 0.1 * rng.standard_normal((100, 2000))
    z = x[:, :500]
    assert hsic.nhsic(x, y, debiased=True) > 0.95
    assert hsic.nhsic(x, z, debiased=True) == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("debiased", [False, True])
def test_constant_layer_is_defined(rng, debiased):
    xs = layers(rng, 12, [5, 9])
    xs.insert(1, np.full((12, 4), 2.0))
    m = matrix(xs, debiased)
    np.testing.assert_array_equal(np.diag(m), np.ones(3))
    np.testing.assert_array_equal(m[1, [0, 2]], [0.0, 0.0])
    np.testing.assert_array_equal(m[[0, 2], 1], [0.0, 0.0])
    np.testing.assert_allclose(m[0, 2], ref.nhsic(xs[0], xs[2], debiased), rtol=1e-10)


def test_all_constant_layers(rng):
    grams = np.zeros((3, 5, 5))
    np.testing.assert_array_equal(hsic.nhsic_matrix(grams), np.eye(3))


@pytest.mark.parametrize(
    "grams, kwargs, match",
    [
        ([], {}, "empty"),
        ([np.eye(1)], {}, "at least 2 samples"),
        ([np.eye(3)], {"debiased": True}, "at least 4 samples"),
        ([np.eye(4), np.eye(5)], {}, "same samples"),
        ([np.ones((4, 3))], {}, "square"),
        (np.ones((2, 4, 3)), {}, r"\(L, n, n\)"),
        (np.eye(4), {}, "sequence"),
        ([np.eye(4, dtype=np.int64)], {}, "floating point"),
        ([np.eye(4), np.full((4, 4), np.nan)], {}, "Gram matrix 1 contains NaN or Inf"),
        ([np.full((4, 4), np.inf)], {"debiased": True}, "NaN or Inf"),
    ],
)
def test_bad_input_is_a_value_error(grams, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hsic.nhsic_matrix(grams, **kwargs)


# ---- the paper's theorems, as properties --------------------------------

samples = st.integers(4, 30)
seeds = st.integers(0, 2**32 - 1)


def draw_pair(n, seed, dx=12, dy=9):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, dx))
    y = np.tanh(x @ r.standard_normal((dx, dy))) + 0.5 * r.standard_normal((n, dy))
    return x, y


@settings(max_examples=50, deadline=None)
@given(n=samples, seed=seeds, scale=st.floats(1e-3, 1e3), debiased=st.booleans())
def test_theorem1_scale_invariance(n, seed, scale, debiased):
    x, y = draw_pair(n, seed)
    a = hsic.nhsic(x, y, debiased=debiased)
    b = hsic.nhsic(scale * x, y, debiased=debiased)
    assert b == pytest.approx(a, rel=1e-9, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(n=samples, seed=seeds, debiased=st.booleans())
def test_theorem2_orthogonal_invariance(n, seed, debiased):
    x, y = draw_pair(n, seed)
    q = ortho_group.rvs(x.shape[1], random_state=seed % (2**31))
    a = hsic.nhsic(x, y, debiased=debiased)
    b = hsic.nhsic(x @ q, y, debiased=debiased)
    assert b == pytest.approx(a, rel=1e-9, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(n=samples, seed=seeds, debiased=st.booleans(), nlayers=st.integers(1, 5))
def test_symmetric_unit_diagonal_and_bounded(n, seed, debiased, nlayers):
    r = np.random.default_rng(seed)
    xs = [r.standard_normal((n, int(r.integers(1, 40)))) + r.uniform(-5, 5) for _ in range(nlayers)]
    m = matrix(xs, debiased)
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(np.diag(m), np.ones(nlayers))
    if not debiased:
        assert (m >= 0).all() and (m <= 1).all()
    np.testing.assert_allclose(m, ref.nhsic_matrix(xs, debiased), rtol=1e-8, atol=1e-9)
