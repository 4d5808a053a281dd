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


# bf16 kernels (avx512bf16) round each shifted float32 value x_ik - x_0k to
# bf16 (round to nearest even, 8 significant bits: relative error <= U_BF16)
# and sum the products of a block in float32, the blocks in float64.
U_BF16 = 2.0**-9


def bf16(x32: np.ndarray) -> np.ndarray:
    """float32 values rounded to bf16 (nearest, ties to even), as float32. Finite input."""
    bits = np.ascontiguousarray(x32, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def bf16_shifted(x) -> np.ndarray:
    """What a bf16 kernel multiplies: x - x_0 in float32, rounded to bf16, as float64."""
    x32 = np.asarray(x, np.float32).reshape(len(x), -1)
    return bf16(x32 - x32[0]).astype(np.float64)


def bf16_gram_bound(x, block: int = 256) -> float:
    """Largest error of a bf16 kernel's centred Gram of float32 x, any entry.

    A product of two values each off by <= u carries a relative error <= 2u + u^2;
    float32 sums within a block of b features (b/2 pair steps, two adds each)
    add <= b * 2^-24 relative; the float32 subtraction x - x_0 2^-24 per value.
    So entry (i, j) of the shifted Gram is off by at most
    (2u + u^2 + (b + 4) 2^-24) sum_k |y_ik y_jk| <= that times max_i ||y_i||^2
    (Cauchy-Schwarz), and centring (H E H, H's rows sum to 2 in absolute value)
    at most quadruples the largest error.
    """
    x64 = np.asarray(x, np.float64).reshape(len(x), -1)
    y = x64 - x64[0]
    per_product = 2 * U_BF16 + U_BF16**2 + (block + 4) * 2.0**-24
    return 4 * per_product * float((y * y).sum(axis=1).max())


def bf16_accumulation_bound(x, block: int = 256) -> float:
    """Largest error of a bf16 kernel's centred Gram against ``centered_gram(bf16_shifted(x))``:
    the float32 sums within blocks alone (see :func:`bf16_gram_bound`)."""
    y = bf16_shifted(x)
    return 4 * (block + 4) * 2.0**-24 * float((y * y).sum(axis=1).max())


# Integer kernels quantize each block of b features as a whole: lo_f = min
# over samples of feature f, s = max_f (max - min of f) / L, and each value
# becomes s * round((x - lo_f) / s), off by at most s / 2; L (LEVELS) is 255
# for the 8-bit kernel, 1023 for the 16-bit one. Up to WIDE_MAX features whose
# range exceeds WIDE_RATIO times the fifth widest of their block are left out
# of s and kept exact. The integer products are exact and the blocks are
# summed in float64.
LEVELS = {"avx512vnni": 255, "avx2int16": 1023}
# The largest block each keeps exact in int32 (a larger `block` is cut to it).
MAX_BLOCK = {"avx512vnni": 16384, "avx2int16": 2048}
WIDE_RATIO, WIDE_MAX = np.float32(4), 4


def wide_features(ranges: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """The features of a block kept exact, and the widest range of the rest."""
    order = np.argsort(-ranges, kind="stable")  # widest first, ties: lower feature first
    count = 0
    if ranges.size > WIDE_MAX:
        fifth = ranges[order[WIDE_MAX]]
        while count < WIDE_MAX and ranges[order[count]] > WIDE_RATIO * fifth:
            count += 1
    return order[:count], np.float32(ranges[order[count]])


def quantized(x, block: int = 256, levels: int = 255) -> np.ndarray:
    """What an integer kernel multiplies, as float64: the quantization above,
    computed in float32 as the kernel does (x - lo, times L / range, rounded
    to nearest even). Subtracting lo_f leaves the centred Gram unchanged."""
    x32 = np.asarray(x, np.float32).reshape(len(x), -1)
    out = np.empty(x32.shape)
    for c in range(0, x32.shape[1], block):
        b = x32[:, c:c + block]
        lo = b.min(axis=0)
        wide, cap = wide_features(b.max(axis=0) - lo)
        inv = np.full(b.shape[1], np.float32(levels) / cap if cap > 0 else 0, np.float32)
        inv[wide] = 0
        q = np.rint((b - lo) * inv).astype(np.float64) * (float(cap) / levels)
        q[:, wide] = (b[:, wide] - lo[wide]).astype(np.float64)
        out[:, c:c + block] = q
    return out


def quantized_gram_bound(x, block: int = 256, levels: int = 255) -> float:
    """Largest error of an integer kernel's centred Gram of float32 x, any entry.

    With y = x - lo and its quantized value q (|y - q| <= s / 2, |y|, |q| <=
    w, the block's widest range, s = w / L), |y_i y_j - q_i q_j| <=
    (|y_i| + |q_j|) s / 2 <= w s per feature: w^2 / L for each of a block's
    features. Centring at most quadruples the largest error; 1e-6 covers the
    float32 rounding of (x - lo) / s.
    """
    x32 = np.asarray(x, np.float32).reshape(len(x), -1).astype(np.float64)
    total = 0.0
    for c in range(0, x32.shape[1], block):
        b = x32[:, c:c + block]
        w = float((b.max(axis=0) - b.min(axis=0)).max())
        total += b.shape[1] * w * w / levels
    return 4 * total * (1 + 1e-6)


def multiplied(kernel: str, x, block: int = 256) -> np.ndarray:
    """The float64 values a kernel multiplies for float32 x: bf16-rounded,
    quantized, or x itself for a kernel with float32 products."""
    if kernel == "avx512bf16":
        return bf16_shifted(x)
    if kernel in LEVELS:
        return quantized(x, min(block, MAX_BLOCK[kernel]), LEVELS[kernel])
    return np.asarray(x, np.float64).reshape(len(x), -1)


def gram_bound(kernel: str, x, block: int = 256) -> float:
    """Largest error of a rounding kernel's centred Gram of float32 x."""
    if kernel in LEVELS:
        return quantized_gram_bound(x, min(block, MAX_BLOCK[kernel]), LEVELS[kernel])
    return bf16_gram_bound(x, block)
