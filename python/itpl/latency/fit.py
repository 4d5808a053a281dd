"""The latency model of a profile: per-layer fits of micro-model timings, and the
whole-model calibration that maps their sum onto the network as it runs.

Each profiled layer's latency is fitted as ``a + b c_in + c c_out + d c_in c_out``
(:func:`fit_layer`). Channel counts are affine in the group ratios, so every sum
of layers is a quadratic form over ``[1, alpha]``.

A layer timed alone is not the layer inside the network: its weights stay in
cache, its input does not come from the previous op, and the network runs ops
no layer covers (residual adds, padding, pooling, the input transpose, the
interpreter's per-op overhead). The calibration (:func:`calibrate`) therefore
fits, on whole models timed at several widths, one positive scale per kind of
layer (dense conv, depthwise, linear), one for the bytes the network's layers
write (memory-bound work grows with the feature maps, not the arithmetic), and
a constant. Each term is a quadratic form, so T stays one.
"""

from __future__ import annotations

import numpy as np

from itpl.deploy.flatbuffer import LayerShape
from itpl.method.widths import allowed_widths
from itpl.model.cost import QuadraticCost, _add_affine, _add_product
from itpl.model.graph import Layer, ModelGraph

# Calibration terms besides the constant, in the order of Calibration.scales.
TERMS = ("conv", "depthwise", "linear", "feature maps")


def layer_shape(graph: ModelGraph, layer: Layer) -> LayerShape | None:
    """The micro-model shape of a layer, or None where it is not profiled alone
    (grouped convs, 1-D convs and parameter-free ops: the calibration covers them)."""
    if layer.kind == "linear":
        return LayerShape("linear", None, bias=layer.bias, activation=layer.activation)
    if layer.kind not in ("conv", "depthwise") or len(layer.in_shape) != 3:
        return None
    m = graph.module(layer.name)
    kernel, dilation = tuple(m.kernel_size), tuple(m.dilation)
    if isinstance(m.padding, str):  # "valid" or "same" (stride 1 only in PyTorch)
        padding = (0, 0) if m.padding == "valid" else tuple(d * (k - 1) // 2
                                                            for k, d in zip(kernel, dilation))
    else:
        padding = tuple(m.padding)
    if m.padding_mode != "zeros":
        return None
    # Converted convs always carry a bias (folded batch norm, or zeros).
    return LayerShape(layer.kind, tuple(layer.in_shape[1:]), kernel, tuple(m.stride), padding,
                      dilation, layer.activation, True)


def rows(layer: Layer) -> int:
    """Rows of a linear layer per sample (tokens), 1 for vectors."""
    return max(1, layer.positions) if layer.kind == "linear" else 1


def grid(layer: Layer, widths: list[int], lows: list[int], levels: int, alpha_min: float,
         round_to: int) -> list[tuple[int, int]]:
    """(c_in, c_out) grid of a layer: each varying side moves its groups through
    ``levels`` allowed widths from the smallest to the full one."""
    def counts(dim):
        if not dim.coefs:
            return [round(dim.const)]
        out = []
        for r in np.linspace(0.0, 1.0, levels):
            alpha = np.ones(len(widths))
            for g in dim.coefs:
                w = widths[g]
                alpha[g] = nearest(w, lows[g] + r * (w - lows[g]), alpha_min, round_to) / w
            out.append(round(dim.at(alpha)))
        return sorted(set(out))

    if layer.in_dim == layer.out_dim or set(layer.in_dim.coefs) & set(layer.out_dim.coefs):
        # the sides move together: one line through the grid
        line = []
        for r in np.linspace(0.0, 1.0, levels):
            alpha = np.array([nearest(w, lo + r * (w - lo), alpha_min, round_to) / w
                              for lo, w in zip(lows, widths)])
            line.append((round(layer.in_dim.at(alpha)), round(layer.out_dim.at(alpha))))
        return sorted(set(line))
    return [(ci, co) for ci in counts(layer.in_dim) for co in counts(layer.out_dim)]


def nearest(full: int, target: float, alpha_min: float, round_to: int) -> int:
    return min(allowed_widths(full, alpha_min, round_to), key=lambda w: abs(w - target))


def columns(layer: Layer) -> list[str]:
    vary_in, vary_out = bool(layer.in_dim.coefs), bool(layer.out_dim.coefs)
    if layer.in_dim == layer.out_dim:
        return ["1", "in"] if vary_in else ["1"]
    return ["1"] + (["in"] if vary_in else []) + (["out"] if vary_out else []) + \
        (["in*out"] if vary_in and vary_out else [])


def fit_layer(cols: list[str], points: list[tuple[int, int, float]]) -> tuple[list[float], float]:
    """Least squares on relative error; returns coefficients and relative RMS error."""
    ci, co, t = (np.array(v, dtype=np.float64) for v in zip(*points))
    feats = {"1": np.ones_like(t), "in": ci, "out": co, "in*out": ci * co}
    x = np.stack([feats[c] for c in cols], axis=1)
    coef, *_ = np.linalg.lstsq(x / t[:, None], np.ones_like(t), rcond=None)
    rel = (x @ coef - t) / t
    return coef.tolist(), float(np.sqrt(np.mean(rel ** 2)))


def add_layer(matrix: np.ndarray, layer: Layer, cols: list[str], coef: list[float]) -> None:
    """Add a layer's fitted latency (channel counts as affine forms) to T."""
    for c, v in zip(cols, coef):
        if c == "1":
            matrix[0, 0] += v
        elif c == "in":
            _add_affine(matrix, layer.in_dim, v)
        elif c == "out":
            _add_affine(matrix, layer.out_dim, v)
        else:
            _add_product(matrix, layer.in_dim, layer.out_dim, v)


def term_of(layer: Layer) -> str:
    return {"depthwise": "depthwise", "linear": "linear"}.get(layer.kind, "conv")


def feature_map_form(graph: ModelGraph, layers: list[Layer]) -> np.ndarray:
    """Output elements per sample of ``layers``, as a quadratic form over [1, alpha]."""
    matrix = np.zeros((len(graph.widths) + 1,) * 2)
    for layer in layers:
        _add_affine(matrix, layer.out_dim, float(max(1, layer.positions)))
    return matrix


def evaluate(matrix: np.ndarray, alpha) -> float:
    a = np.concatenate([[1.0], np.asarray(alpha, dtype=np.float64)])
    return float(a @ matrix @ a)


def calibrate(forms: list[np.ndarray], configs: list[np.ndarray],
              measured: np.ndarray) -> tuple[float, list[float]]:
    """``offset + sum_k scale_k form_k(alpha) ~ measured`` in relative error.

    ``forms`` are the terms of :data:`TERMS` (zero forms for kinds the model
    lacks); scales are non-negative (non-negative least squares), the offset
    free. Returns ``(offset, scales)``.
    """
    from scipy.optimize import nnls

    x = np.array([[evaluate(f, a) for f in forms] for a in configs])
    # Features scaled to the measured times keep nnls well conditioned.
    norm = np.maximum(np.abs(x).max(axis=0), 1e-30) / max(float(np.max(measured)), 1e-30)
    design = np.hstack([np.ones((len(measured), 1)), -np.ones((len(measured), 1)), x / norm])
    weights = design / measured[:, None]
    coef, _ = nnls(weights, np.ones_like(measured))
    offset = float(coef[0] - coef[1])
    return offset, [float(c / n) for c, n in zip(coef[2:], norm)]


def configurations(widths, lows, alpha_min, round_to, rng, count, levels=()) -> list[list[int]]:
    """Uniform-scaling configurations at ``levels``, then random ones, all distinct."""
    options = [allowed_widths(w, alpha_min, round_to) for w in widths]
    out = [[nearest(w, lo + r * (w - lo), alpha_min, round_to) for lo, w in zip(lows, widths)]
           for r in levels]
    tries = 0
    while len(out) < count and tries < 100 * count:
        tries += 1
        c = [int(rng.choice(o)) for o in options]
        if c not in out:
            out.append(c)
    return out


def solver_like(cost: QuadraticCost, widths, alpha_min, round_to, rng, count,
                exclude=()) -> list[list[int]]:
    """Width configurations like the solver's answers: both objectives, tilted by
    random importance, at budgets from 30% to 85% of the unpruned cost."""
    from itpl.method.solve import solve
    from itpl.method.widths import AllowedWidths

    full, floor = cost.full(), cost(np.asarray([allowed_widths(w, alpha_min, round_to)[0] / w
                                                for w in widths]))
    out, seen = [], {tuple(c) for c in exclude}
    for i in range(4 * count):
        if len(out) == count:
            break
        ratio = rng.uniform(0.3, 0.85)
        scores = rng.uniform(0.0, 1.0, len(widths)) ** 2
        objective = "linear" if i % 3 == 2 else "log"
        goal = max(ratio * full, floor * 1.05)
        try:
            got = solve(scores, cost, goal, widths, allowed=AllowedWidths(alpha_min, round_to),
                        objective=objective).widths
        except ValueError:
            continue
        if tuple(got) not in seen and list(got) != list(widths):
            seen.add(tuple(got))
            out.append([int(w) for w in got])
    return out
