"""Exact integer widths (itpl.method.rounding) against enumeration of every choice."""

import itertools
import math

import numpy as np
import pytest

from itpl.method.rounding import best_widths
from itpl.method.solve import solve
from itpl.method.widths import allowed_widths
from itpl.model.cost import QuadraticCost
from tests.test_solve_prune import _chain_cost


def _enumerate(options, term, cost, budget, full):
    """Best objective and its widths over every combination within the budget."""
    best, arg = -math.inf, None
    for widths in itertools.product(*options):
        alpha = np.array(widths) / full
        if cost(alpha) <= budget:
            value = sum(term(g, a) for g, a in enumerate(alpha))
            if value > best:
                best, arg = value, list(widths)
    return best, arg


def _random_form(rng, groups, signed):
    """A form coupling neighbours and skips (like a residual net), optionally with negative terms."""
    t = np.zeros((groups + 1, groups + 1))
    t[0, 1:] = t[1:, 0] = rng.uniform(0, 5, groups)
    for g in range(1, groups + 1):
        t[g, g] = rng.uniform(0, 2)
        for h in (g + 1, g + 2):
            if h <= groups:
                v = rng.uniform(-3 if signed else 0, 10)
                t[g, h] = t[h, g] = v
    t[0, 0] = 1.0
    return QuadraticCost("latency", t, "ms")


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("ratio", [0.35, 0.6, 0.85])
def test_best_widths_is_the_best_combination(ratio, signed, rng):
    full = np.array([32, 48, 24, 64, 40])
    options = [allowed_widths(c, 0.1, 8) for c in full]
    cost = _random_form(rng, len(full), signed)
    weights = rng.uniform(0.2, 2.0, len(full))
    peaks = rng.uniform(-1.0, 0.0, len(full))

    def term(g, a):  # concave in log width, peaking inside the range
        return weights[g] * (math.log(a) - (math.log(a) - peaks[g]) ** 2)

    budget = ratio * cost.full()
    best, arg = _enumerate(options, term, cost, budget, full)
    # windows of one step around the smallest widths: the answer lies beyond
    # them and is only reached by widening
    widths = best_widths(options, term, cost, budget, full, [0] * len(full), window=1)
    alpha = np.array(widths) / full
    assert cost(alpha) <= budget * (1 + 1e-12)
    assert sum(term(g, a) for g, a in enumerate(alpha)) == pytest.approx(best, abs=1e-9)
    assert widths == arg


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_exact_rounding_reaches_eq11s_integer_optimum(ratio, rng):
    full = [16, 32, 32, 48, 64]
    cost = _chain_cost(full)
    imp = rng.uniform(0.1, 1.0, len(full))
    budget = ratio * cost.full()
    options = [allowed_widths(c, 0.1, 8) for c in full]
    best, _ = _enumerate(options, lambda g, a: imp[g] * a, cost, budget, np.array(full))
    exact = solve(imp, cost, budget, full, objective="linear", rounding="exact")
    greedy = solve(imp, cost, budget, full, objective="linear")
    assert exact.objective == pytest.approx(best, rel=1e-12)
    assert greedy.objective <= exact.objective and exact.cost <= budget


@pytest.mark.parametrize("objective", ["linear", "log"])
def test_exact_rounding_never_loses_to_greedy(objective, rng):
    full = [16, 16, 32, 32, 64, 64, 64]
    cost = _chain_cost(full)
    gained = 0
    for _ in range(12):
        imp = rng.uniform(0.2, 1.0, len(full))
        budget = rng.uniform(0.25, 0.9) * cost.full()
        exact = solve(imp, cost, budget, full, objective=objective, rounding="exact")
        greedy = solve(imp, cost, budget, full, objective=objective)
        assert exact.cost <= budget
        assert exact.objective >= greedy.objective - 1e-9 * abs(greedy.objective)
        gained += exact.objective > greedy.objective
    assert gained > 0  # on coarse steps the greedy repair is often not optimal


def test_a_flat_objective_keeps_the_greedy_widths():
    # zero importance in Eq. 11: every choice is optimal, so the repair's tie
    # rules decide, as before
    full = [16, 32, 32, 64, 64]
    cost = _chain_cost(full)
    for ratio in (0.3, 0.5, 0.8):
        budget = ratio * cost.full()
        exact = solve(np.zeros(5), cost, budget, full, objective="linear", rounding="exact")
        greedy = solve(np.zeros(5), cost, budget, full, objective="linear")
        assert exact.widths == greedy.widths


def test_bad_rounding():
    cost = _chain_cost([16, 16])
    with pytest.raises(ValueError, match="rounding must be one of exact, greedy"):
        solve([1, 1], cost, cost.full() / 2, [16, 16], rounding="nearest")
