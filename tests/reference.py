"""Float64 NumPy references written straight from the equations.

ITPruner (arXiv 2108.08532): Eq. 6-7 (HSIC with centring matrix H), Eq. 8
(normalised HSIC), Eq. 12 (linear kernel, K = X X^T). Song et al. (2012),
Eq. 5: the unbiased HSIC estimator on Grams with zeroed diagonals.
"""

import numpy as np


def centering_matrix(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def centered_gram(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    h = centering_matrix(len(x))
    return h @ (x @ x.T) @ h


def hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    h = centering_matrix(n)
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    n = len(k)
    kt = k - np.diag(np.diag(k))
    lt = l - np.diag(np.diag(l))
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(value) / (n * (n - 3))


def nhsic(x, y, debiased: bool = False) -> float:
    """nHSIC from raw (uncentred) linear Grams, as the equations state it."""
    gx = np.asarray(x, np.float64).reshape(len(x), -1)
    gy = np.asarray(y, np.float64).reshape(len(y), -1)
    kx, ky = gx @ gx.T, gy @ gy.T
    f = hsic_unbiased if debiased else hsic_biased
    return f(kx, ky) / np.sqrt(f(kx, kx) * f(ky, ky))


def nhsic_matrix(xs, debiased: bool = False) -> np.ndarray:
    m = len(xs)
    out = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            out[i, j] = out[j, i] = nhsic(xs[i], xs[j], debiased)
    return out
