"""Widths under a budget ``alpha~^T T alpha~ <= budget``: Eq. 11 and a log objective.

Two objectives:

- ``linear``, the paper's Eq. 11: maximise ``i^T alpha``. A linear objective
  over a quadratic budget sits in a corner: groups are kept whole or cut to the
  minimum. On a trained ResNet-20 (bench/quality.py) it kept the residual
  streams whole and cut every inner conv of the last stage to 8 channels, and
  lost to plain uniform scaling after fine-tuning.
- ``log`` (the default): uniform width scaling tilted by importance. In
  ``x = log alpha`` it maximises ``sum_g s_g (c m_g x_g - (x_g - u_g)^2 / 2)``:
  ``u`` the uniform allocation that meets the budget, ``c = -log`` of its
  ratio (the uniform log-cut), ``s_g`` the group's share of the marginal cost
  there, ``m_g`` its importance over the mean. With equal importances uniform
  scaling is the optimum; otherwise each group's log-cut is about
  ``c (2 - m_g)``, so importance shares out the cut. In ``x`` the budget
  is convex (a sum of exponentials of sums of ``x``) and the objective
  strictly concave, so the optimum is unique and moves smoothly with the
  importances.

SLSQP with analytic gradients finds continuous ratios in ``[alpha_min, 1]``.
They are then rounded to hardware-friendly integer widths (multiples of
``round_to``, or the full width) and repaired greedily: widths come down while
the exact cost is over budget, then go up while a step still fits, each step
chosen by objective gained (or lost) per unit of cost. The result is at or
under the budget and as close to it as the rounding allows.

Where steps are coarse the greedy widths can be far from the best integer
ones (a 16-channel group at multiples of 8 is 8 or 16 wide); with
``rounding="exact"`` the objective is then maximised over the allowed widths
themselves (:mod:`itpl.method.rounding`) and that answer kept where it gains. It is
not the default: on ResNet-20 (bench/quality.py) the exact optimum of the
``log`` objective was no more accurate after fine-tuning than the greedy
widths (86.8% vs 86.9% at 50% FLOPs, 86.2% vs 86.3-86.4% at 60% latency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from itpl.method import OBJECTIVES, ROUNDINGS
from itpl.method.widths import AllowedWidths
from itpl.model.cost import QuadraticCost


@dataclass
class Allocation:
    """Widths chosen for one budget.

    Attributes
    ----------
    alpha : numpy.ndarray
        Continuous SLSQP solution per group.
    widths : list of int
        Integer widths after rounding and repair.
    cost : float
        Exact cost of ``widths``.
    objective : float
        The objective at the integer widths.
    solver_message : str
        SLSQP's exit message.
    """

    alpha: np.ndarray
    widths: list[int]
    cost: float
    objective: float
    solver_message: str


def _ratios(widths, full) -> np.ndarray:
    return np.asarray(widths, dtype=np.float64) / np.asarray(full, dtype=np.float64)


def check_objective(objective: str) -> None:
    """Raise a ValueError unless ``objective`` is one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def check_rounding(rounding: str) -> None:
    """Raise a ValueError unless ``rounding`` is one of :data:`ROUNDINGS`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")


class _Linear:
    """Eq. 11's ``i^T alpha``."""

    def __init__(self, importance):
        self.weights = np.asarray(importance, dtype=np.float64)

    def terms(self, alpha):
        return self.weights * alpha

    def term(self, g: int, a: float) -> float:
        return float(self.weights[g] * a)

    def gradient(self, alpha):
        return self.weights


class _TiltedLog:
    """``sum_g s_g (c m_g x_g - (x_g - u_g)^2 / 2)`` in ``x = log alpha``.

    ``s_g = a_g dC/da_g`` at the uniform allocation ``a`` (each group's share
    of the marginal cost), ``u = log a``, ``c = -log max(a)`` the uniform
    log-cut and ``m`` the importance over its mean. With equal importances
    the uniform allocation meets the optimality conditions exactly; otherwise
    group g's log-cut is about ``c (2 - m_g)``: importance decides
    how the cut is shared, and the tilt vanishes as the budget nears the full
    cost.

    The quadratic keeps the problem strictly concave in ``x``: the budget
    alone is flat along some directions (in a chain of layers, widening one
    group while narrowing its neighbours costs the same), and a plain
    ``m^T x`` ran along them to the bounds on the slightest tilt.
    """

    def __init__(self, importance, cost: QuadraticCost, uniform):
        importance = np.asarray(importance, dtype=np.float64)
        mean = importance.mean()
        relative = importance / mean if mean > 0 else np.ones_like(importance)
        # Scaled by the uniform log-cut, importance shares out the cut rather
        # than moving widths by a fixed amount whatever the budget: a 95%
        # budget with an unscaled tilt cut one group 3x as deep as uniform
        # scaling and kept five whole.
        cut = -math.log(float(uniform.max()))
        self.tilt = cut * relative
        share = np.maximum(uniform * cost.gradient(uniform), 0.0)
        # A group that costs nothing still gets a little weight, which keeps it full.
        self.weights = np.maximum(share, 1e-9 * (share.sum() or 1.0))
        self.centre = np.log(uniform)

    def terms(self, alpha):
        x = np.log(alpha)
        return self.weights * (self.tilt * x - 0.5 * (x - self.centre) ** 2)

    def term(self, g: int, a: float) -> float:
        x = math.log(a)
        return float(self.weights[g] * (self.tilt[g] * x - 0.5 * (x - self.centre[g]) ** 2))

    def gradient(self, alpha):
        x = np.log(alpha)
        return self.weights * (self.tilt - (x - self.centre)) / alpha


def _slsqp(objective, cost: QuadraticCost, budget, lower, x0):
    from scipy.optimize import minimize

    # Both scaled to order one so SLSQP's tolerances mean the same for any model.
    scale = float(np.abs(objective.weights).sum()) or 1.0
    result = minimize(
        lambda a: -float(objective.terms(a).sum()) / scale,
        x0,
        jac=lambda a: -objective.gradient(a) / scale,
        bounds=list(zip(lower, np.ones_like(lower))),
        constraints=[{
            "type": "ineq",
            "fun": lambda a: 1.0 - cost(a) / budget,
            "jac": lambda a: -cost.gradient(a) / budget,
        }],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-9},
    )
    return result


def _uniform_start(cost, budget, lower):
    """Largest common ratio meeting the budget (bisection; cost grows with ratio)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if cost(np.maximum(np.full_like(lower, mid), lower)) <= budget:
            lo = mid
        else:
            hi = mid
    return np.maximum(np.full_like(lower, lo), lower)


def _repair(widths, options, objective, full, cost, budget, target):
    """Greedy steps between allowed widths until the exact cost fits the budget tightly."""
    idx = [opts.index(w) for w, opts in zip(widths, options)]
    full = np.asarray(full, dtype=np.float64)

    def current():
        return _ratios([opts[i] for opts, i in zip(options, idx)], full)

    def gain(g, old, new):
        return objective.term(g, new) - objective.term(g, old)

    def step_cost(alpha, g, new):
        trial = alpha.copy()
        trial[g] = new
        return cost(trial)

    # Down: cheapest importance loss per cost saved; ties go to the group
    # furthest above its continuous target (all ties when importance is zero).
    alpha = current()
    value = cost(alpha)
    while value > budget:
        best = None
        for g, opts in enumerate(options):
            if idx[g] == 0:
                continue
            new = opts[idx[g] - 1] / full[g]
            saved = value - step_cost(alpha, g, new)
            if saved <= 0:
                continue
            key = (gain(g, new, alpha[g]) / saved, -(alpha[g] - target[g]), -saved)
            if best is None or key < best[0]:
                best = (key, g)
        if best is None:
            break
        idx[best[1]] -= 1
        alpha = current()
        value = cost(alpha)
    # Up: best importance gain per cost added among steps that still fit.
    while True:
        best = None
        for g, opts in enumerate(options):
            if idx[g] + 1 >= len(opts):
                continue
            new = opts[idx[g] + 1] / full[g]
            new_value = step_cost(alpha, g, new)
            if new_value > budget:
                continue
            added = max(new_value - value, 1e-12)
            key = (gain(g, alpha[g], new) / added, target[g] - alpha[g], -added)
            if best is None or key > best[0]:
                best = (key, g, new_value)
        if best is None:
            break
        idx[best[1]] += 1
        alpha = current()
        value = best[2]
    return [opts[i] for opts, i in zip(options, idx)], value


def _exact(widths, value, rounded, options, goal, full, cost, budget):
    """The MILP's widths where they gain on the greedy ones, else the greedy ones.

    Gains within rounding noise keep the greedy widths, so a flat objective
    (zero importance in ``linear``) keeps the repair's tie rules.
    """
    from itpl.method.rounding import best_widths

    def total(w):
        return float(goal.terms(_ratios(w, full)).sum())

    centre = [opts.index(w) for w, opts in zip(rounded, options)]
    exact = best_widths(options, goal.term, cost, budget, full, centre)
    if exact is None:
        return widths, value
    exact_value = cost(_ratios(exact, full))
    before, after = total(widths), total(exact)
    if exact_value > budget or after <= before + 1e-9 * max(1.0, abs(before)):
        return widths, value
    return exact, exact_value


def solve(
    importance,
    cost: QuadraticCost,
    budget: float,
    full: list[int],
    *,
    allowed: AllowedWidths = AllowedWidths(),
    objective: str = "log",
    rounding: str = "greedy",
) -> Allocation:
    """Widths per group that maximise ``objective`` within ``budget``, rounded.

    Parameters
    ----------
    importance : array_like
        Per-group importance. Zeros are allowed: ``linear`` then follows the
        cost structure alone, as the authors' settings effectively did, and
        ``log`` gives uniform scaling (with ``rounding="greedy"``; exact
        rounding may move whole steps between groups for a tighter fit).
    cost : QuadraticCost
        Resource form over ``[1, alpha]``.
    budget : float
        Upper bound on the cost, in the cost's unit.
    full : list of int
        Unpruned width per group.
    allowed : AllowedWidths
        The widths a group may take: multiples of ``allowed.step`` (or the
        full width), at least ``allowed.alpha_min`` of the full width.
    objective : {"log", "linear"}
        See the module docstring.
    rounding : {"greedy", "exact"}
        ``greedy`` (default): the continuous solution rounded to the nearest
        allowed widths and repaired greedily; with equal importances that is
        uniform scaling filled up to the budget. ``exact``: the best allowed
        widths for the objective (:mod:`itpl.method.rounding`), kept only where they
        beat the greedy ones.

    Raises
    ------
    ValueError
        When the budget is below the smallest achievable cost (the message
        names it) or the arguments are out of range.
    """
    importance = np.asarray(importance, dtype=np.float64)
    if importance.shape != (len(full),):
        raise ValueError(f"expected {len(full)} importances, got shape {importance.shape}")
    check_objective(objective)
    check_rounding(rounding)
    allowed.check_feasible(cost, budget, full)
    options = [allowed.options(c) for c in full]
    lower = _ratios([o[0] for o in options], full)
    uniform = _uniform_start(cost, budget, lower)
    if objective == "log":
        goal, x0 = _TiltedLog(importance, cost, uniform), uniform
    else:
        goal, x0 = _Linear(importance), np.ones(len(full))
    result = _slsqp(goal, cost, budget, lower, x0)
    alpha = np.clip(result.x, lower, 1.0)
    if not result.success or cost(alpha) > budget * (1 + 1e-6):
        retry = _slsqp(goal, cost, budget, lower, uniform)
        if retry.success:
            result, alpha = retry, np.clip(retry.x, lower, 1.0)
    rounded = [min(opts, key=lambda w: abs(w - a * c)) for opts, a, c in zip(options, alpha, full)]
    widths, value = _repair(rounded, options, goal, full, cost, budget, alpha)
    if rounding == "exact":
        widths, value = _exact(widths, value, rounded, options, goal, full, cost, budget)
    return Allocation(
        alpha=alpha, widths=widths, cost=value,
        objective=float(goal.terms(_ratios(widths, full)).sum()),
        solver_message=str(result.message),
    )
