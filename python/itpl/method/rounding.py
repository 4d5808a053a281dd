"""Exact integer widths: the solver's objective over allowed widths, as a MILP.

Rounding the continuous solution and repairing it greedily (see
:mod:`itpl.method.solve`) lands far from the best integer widths when the steps are
coarse: on a CIFAR ResNet-20 at multiples of 8 a 16-channel group can only be
8 or 16, and one such step costs as much as several steps of a 64-channel
group. There the greedy widths at 50% FLOPs gave a below-average group 16
channels and cut the three most important groups below uniform scaling's.

The objective is separable (one term per group) and the cost a quadratic form
over ``[1, alpha]``, so with one binary ``z[g, o]`` per group and allowed
width, and the product ``alpha_g alpha_h`` of every pair of groups the cost
couples written as ``sum y[g, h, o, p] a_o a_p`` with ``y``'s rows summing to
``z[g, .]`` and its columns to ``z[h, .]``, the problem is a mixed-integer
linear program whose integer solutions are exactly the width choices. SciPy's
HiGHS solves it in about a second or less for the built-in models (ResNet-50
at most) when each group may range over a window of steps around the
continuous solution; a window is widened and the problem solved again while a
choice sits on its inner edge. Small programs try every allowed width.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from itpl.model.cost import QuadraticCost


def _program(options, term, cost: QuadraticCost, budget: float):
    """``(c, constraints, integrality, z index per group)`` of the MILP, minimising ``c``."""
    from scipy.optimize import LinearConstraint
    from scipy.sparse import coo_matrix

    T = cost.matrix
    count = len(options)
    z, n = [], 0
    for opts in options:
        z.append(np.arange(n, n + len(opts)))
        n += len(opts)
    binaries = n
    y = {}
    for g in range(count):
        for h in range(g + 1, count):
            if T[g + 1, h + 1] != 0:
                y[g, h] = np.arange(n, n + len(options[g]) * len(options[h])).reshape(
                    len(options[g]), len(options[h]))
                n += y[g, h].size
    gain = np.zeros(n)
    spend = np.zeros(n)
    for g, opts in enumerate(options):
        a = np.asarray(opts)
        gain[z[g]] = [term(g, float(v)) for v in a]
        spend[z[g]] = 2 * T[0, g + 1] * a + T[g + 1, g + 1] * a * a
    for (g, h), idx in y.items():
        spend[idx] = 2 * T[g + 1, h + 1] * np.outer(options[g], options[h])
    rows, cols, vals = [], [], []
    equations = 0

    def equation(left, right=None):
        # sum(left) - right = 0, or sum(left) = 1 without ``right``
        nonlocal equations
        rows.extend([equations] * (len(left) + (right is not None)))
        cols.extend(left)
        vals.extend([1.0] * len(left))
        if right is not None:
            cols.append(right)
            vals.append(-1.0)
        equations += 1

    for idx in z:
        equation(list(idx))
    for (g, h), idx in y.items():
        for k in range(idx.shape[0]):
            equation(list(idx[k]), int(z[g][k]))
        for k in range(idx.shape[1]):
            equation(list(idx[:, k]), int(z[h][k]))
    rhs = np.zeros(equations)
    rhs[:count] = 1.0
    matrix = coo_matrix((vals, (rows, cols)), shape=(equations, n)).tocsr()
    # Scaled to order one so HiGHS's tolerances mean the same for any model.
    scale = abs(budget - T[0, 0]) or 1.0
    constraints = [LinearConstraint(matrix, rhs, rhs),
                   LinearConstraint(spend[None, :] / scale, -np.inf, (budget - T[0, 0]) / scale)]
    integrality = np.zeros(n)
    integrality[:binaries] = 1
    norm = np.abs(gain).max() or 1.0
    return -gain / norm, constraints, integrality, z


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1: HiGHS prints debugging lines there even with display off."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# Pair variables up to which every allowed width is tried: HiGHS solves that
# many in about a second here, and the answer is then exact.
WHOLE_RANGE_PAIRS = 4096


def _pair_variables(options, cost: QuadraticCost) -> int:
    T = cost.matrix
    return sum(len(options[g]) * len(options[h]) for g in range(len(options))
               for h in range(g + 1, len(options)) if T[g + 1, h + 1] != 0)


def best_widths(options, term, cost: QuadraticCost, budget: float, full, centre,
                window: int | None = None, time_limit: float = 20.0):
    """Allowed widths that maximise ``sum_g term(g, w_g / full_g)`` within ``budget``.

    Parameters
    ----------
    options : list of list of int
        Allowed widths per group, ascending.
    term : callable
        ``term(g, ratio)``, the objective's term of group g.
    cost : QuadraticCost
        The budgeted resource.
    budget : float
        Upper bound on the cost.
    full : list of int
        Unpruned width per group.
    centre : list of int
        Index into each group's options to centre its window on (the
        continuous solution's nearest).
    window : int, optional
        Steps either side of ``centre`` a group may take at first. Default:
        every allowed width when the program is small (up to
        :data:`WHOLE_RANGE_PAIRS` pair variables), which makes the answer
        exact, else 4.
    time_limit : float
        Seconds HiGHS may spend on one solve.

    Returns
    -------
    list of int or None
        The widths, or None when HiGHS found no solution in time (the caller
        keeps its greedy widths).
    """
    from scipy.optimize import Bounds, milp

    full = np.asarray(full, dtype=np.float64)
    if window is None:
        small = _pair_variables(options, cost) <= WHOLE_RANGE_PAIRS
        window = max(map(len, options)) if small else 4
    lows = [max(0, c - window) for c in centre]
    highs = [min(len(o) - 1, c + window) for o, c in zip(options, centre)]
    for _ in range(8):
        sub = [o[lo:hi + 1] for o, lo, hi in zip(options, lows, highs)]
        c, constraints, integrality, z = _program(
            [[w / f for w in opts] for opts, f in zip(sub, full)], term, cost, budget)
        with _quiet_stdout():
            result = milp(c, constraints=constraints, integrality=integrality,
                          bounds=Bounds(0, 1), options={"time_limit": time_limit})
        if result.x is None:
            return None
        picks = [lo + int(np.argmax(result.x[idx])) for lo, idx in zip(lows, z)]
        widened = False
        for g, (pick, opts) in enumerate(zip(picks, options)):
            span = highs[g] - lows[g] + 1
            if pick == lows[g] > 0:  # on the window's inner edge: the best may lie beyond
                lows[g] = max(0, lows[g] - span)
                widened = True
            if pick == highs[g] < len(opts) - 1:
                highs[g] = min(len(opts) - 1, highs[g] + span)
                widened = True
        if not widened:
            break
    return [opts[p] for opts, p in zip(options, picks)]
