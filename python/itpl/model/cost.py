"""Resource models as one quadratic form ``alpha~^T T alpha~`` over ``alpha~ = [1, alpha]``.

``T[0, 0]`` holds the constant cost, ``T[0, g]`` half of group g's linear
coefficient and ``T[g, h]`` half of the bilinear coefficient of ``alpha_g alpha_h``
(the diagonal holds square terms whole). FLOPs and params are built from the
layer geometry of :mod:`itpl.model.graph`: every channel count is an affine function
of alpha, so products of two of them are exact, and at ``alpha_g = w_g / C_g``
the form equals the cost of the physically pruned model. Latency forms, fitted
from device measurements, use the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from itpl.model.graph import Affine, ModelGraph

KINDS = ("flops", "params")


@dataclass
class QuadraticCost:
    """A resource as a quadratic form over ``[1, alpha]``.

    Attributes
    ----------
    kind : str
        ``"flops"`` (multiply-accumulates), ``"params"`` or ``"latency"``.
    matrix : numpy.ndarray
        Symmetric ``(G + 1, G + 1)`` float64 matrix ``T``.
    unit : str
        Unit of the value (``"MACs"``, ``"params"``, ``"ms"``).
    """

    kind: str
    matrix: np.ndarray
    unit: str

    def _tilde(self, alpha) -> np.ndarray:
        alpha = np.asarray(alpha, dtype=np.float64)
        if alpha.shape != (self.matrix.shape[0] - 1,):
            raise ValueError(f"expected {self.matrix.shape[0] - 1} width ratios, got {alpha.shape}")
        return np.concatenate(([1.0], alpha))

    def __call__(self, alpha) -> float:
        """Cost at width ratios ``alpha`` (one per group)."""
        t = self._tilde(alpha)
        return float(t @ self.matrix @ t)

    def gradient(self, alpha) -> np.ndarray:
        """d cost / d alpha."""
        t = self._tilde(alpha)
        return 2.0 * (self.matrix[1:] @ t)

    def full(self) -> float:
        """Cost of the unpruned model (every alpha = 1)."""
        return float(self.matrix.sum())


def _add_product(matrix: np.ndarray, a: Affine, b: Affine, scale: float) -> None:
    """Add ``scale * a(alpha) * b(alpha)`` to the form."""
    ta = [(0, a.const)] + [(g + 1, c) for g, c in a.coefs.items()]
    tb = [(0, b.const)] + [(g + 1, c) for g, c in b.coefs.items()]
    for i, ca in ta:
        for j, cb in tb:
            v = scale * ca * cb
            if i == j:
                matrix[i, i] += v
            else:  # split between the two symmetric entries
                matrix[i, j] += v / 2
                matrix[j, i] += v / 2


def _add_affine(matrix: np.ndarray, a: Affine, scale: float) -> None:
    _add_product(matrix, a, Affine(1.0), scale)


def build_cost(graph: ModelGraph, kind: str) -> QuadraticCost:
    """Exact FLOPs (multiply-accumulates per sample) or parameter count of ``graph``.

    Parameters
    ----------
    graph : ModelGraph
        From :func:`itpl.model.graph.analyze`.
    kind : {"flops", "params"}
        FLOPs count the multiply-accumulates of convolutions and linear layers
        (the ITPruner paper's convention); params count every parameter.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown cost kind '{kind}'; use one of {', '.join(KINDS)}")
    g = len(graph.groups)
    matrix = np.zeros((g + 1, g + 1))
    for layer in graph.layers:
        if kind == "flops":
            if layer.kind in ("conv", "linear"):
                _add_product(matrix, layer.in_dim, layer.out_dim, layer.positions * layer.kernel)
            elif layer.kind == "depthwise":
                _add_affine(matrix, layer.out_dim, layer.positions * layer.kernel)
            elif layer.kind == "grouped":  # its groups are never pruned: constant
                _add_product(matrix, layer.in_dim, layer.out_dim,
                             layer.positions * layer.kernel / layer.groups)
            continue
        if layer.kind in ("conv", "linear"):
            _add_product(matrix, layer.in_dim, layer.out_dim, layer.kernel)
        elif layer.kind == "depthwise":
            _add_affine(matrix, layer.out_dim, layer.kernel)
        elif layer.kind == "grouped":
            _add_product(matrix, layer.in_dim, layer.out_dim, layer.kernel / layer.groups)
        else:
            _add_affine(matrix, layer.out_dim, layer.per_channel)
            matrix[0, 0] += layer.fixed_params
        if layer.bias and layer.kind in ("conv", "depthwise", "grouped", "linear"):
            _add_affine(matrix, layer.out_dim, 1.0)
    unit = "MACs" if kind == "flops" else "params"
    return QuadraticCost(kind=kind, matrix=matrix, unit=unit)


def format_amount(value: float) -> str:
    """283000000 -> '283.00M'."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"
