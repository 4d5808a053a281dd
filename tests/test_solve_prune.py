"""Eq. 11 solver (rounding, repair, infeasible budgets) and physical channel removal."""

import itertools

import numpy as np
import pytest
import torch

from itpl.method.solve import solve
from itpl.method.widths import AllowedWidths, allowed_widths
from itpl.model.cost import QuadraticCost
from itpl.model.graph import analyze
from itpl.model.surgery import apply_pruning, select_channels
from tests.small_models import ConcatNet, ResidualNet


def _chain_cost(full):
    """FLOPs-like form of a chain: layer g costs C_{g-1} C_g alpha_{g-1} alpha_g."""
    g = len(full)
    t = np.zeros((g + 1, g + 1))
    t[0, 1] = t[1, 0] = 3 * full[0] / 2  # input layer: 3 fixed inputs
    for i in range(1, g):
        t[i, i + 1] = t[i + 1, i] = full[i - 1] * full[i] / 2
    return QuadraticCost("flops", t, "MACs")


def test_allowed_widths():
    assert allowed_widths(64, 0.1, 8) == [8, 16, 24, 32, 40, 48, 56, 64]
    assert allowed_widths(100, 0.5, 8) == [56, 64, 72, 80, 88, 96, 100]
    assert allowed_widths(6, 0.1, 8) == [6]  # narrower than one step: never pruned
    assert allowed_widths(64, 0.01, 1)[0] == 1  # never 0 channels


@pytest.mark.parametrize("objective", ["linear", "log"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.8])
def test_budget_met_and_no_step_left_that_fits(ratio, objective, rng):
    full = [32, 64, 64, 128, 128]
    cost = _chain_cost(full)
    imp = rng.uniform(0.2, 1.0, len(full))
    budget = ratio * cost.full()
    alloc = solve(imp, cost, budget, full, allowed=AllowedWidths(0.1, 8), objective=objective)
    alpha = np.array(alloc.widths) / np.array(full)
    assert alloc.cost == pytest.approx(cost(alpha)) and alloc.cost <= budget
    for g, w in enumerate(alloc.widths):
        assert w in allowed_widths(full[g], 0.1, 8)
        bigger = [o for o in allowed_widths(full[g], 0.1, 8) if o > w]
        if bigger:  # repair left no single step up unused
            up = alpha.copy()
            up[g] = bigger[0] / full[g]
            assert cost(up) > budget


def test_near_the_integer_optimum_on_a_small_problem():
    full = [16, 32, 32]
    cost = _chain_cost(full)
    imp = np.array([0.2, 1.0, 0.5])
    budget = 0.5 * cost.full()
    options = [allowed_widths(c, 0.1, 8) for c in full]
    best = max(float(imp @ (np.array(w) / full)) for w in itertools.product(*options)
               if cost(np.array(w) / full) <= budget)
    alloc = solve(imp, cost, budget, full, allowed=AllowedWidths(0.1, 8), objective="linear")
    assert alloc.objective >= 0.9 * best


def test_importance_moves_width_to_the_important_group():
    # two independent layers of equal cost
    t = np.diag([0.0, 100.0, 100.0])
    cost = QuadraticCost("flops", t, "MACs")
    for objective in ("linear", "log"):
        alloc = solve([1.0, 0.1], cost, 100.0, [64, 64], allowed=AllowedWidths(0.1, 8),
                      objective=objective)
        assert alloc.widths[0] > alloc.widths[1]
        swapped = solve([0.1, 1.0], cost, 100.0, [64, 64], allowed=AllowedWidths(0.1, 8),
                        objective=objective)
        assert swapped.widths == alloc.widths[::-1]


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_log_objective_with_equal_importance_is_uniform_scaling(ratio):
    full = [64, 128, 128, 256, 256, 512]
    cost = _chain_cost(full)
    budget = ratio * cost.full()
    alloc = solve(np.ones(len(full)), cost, budget, full, allowed=AllowedWidths(0.1, 1),
                  objective="log", rounding="greedy")
    # the continuous optimum is one common ratio; rounding moves it by a channel
    assert np.ptp(alloc.alpha) < 1e-3
    kept = np.array(alloc.widths) / full
    assert np.ptp(kept) < 2 / 64 and alloc.cost <= budget
    # and importance only scales: the same answer for any common value
    again = solve(np.full(len(full), 0.3), cost, budget, full, allowed=AllowedWidths(0.1, 1),
                  objective="log", rounding="greedy")
    assert again.widths == alloc.widths
    # exact rounding trades a few channels for a tighter fit, never more
    exact = solve(np.ones(len(full)), cost, budget, full, allowed=AllowedWidths(0.1, 1),
                  rounding="exact")
    assert np.ptp(np.array(exact.widths) / full) < 4 / 64
    assert alloc.objective <= exact.objective and exact.cost <= budget


def test_log_objective_tilts_widths_by_importance():
    full = [64, 64, 64, 64, 64]
    cost = _chain_cost(full)
    budget = 0.5 * cost.full()
    steps_of_one = AllowedWidths(round_to=1)
    even = solve(np.ones(5), cost, budget, full, allowed=steps_of_one, objective="log").widths
    imp = np.array([1.0, 1.0, 0.4, 1.0, 1.0])
    tilted = solve(imp, cost, budget, full, allowed=AllowedWidths(round_to=1), objective="log")
    assert tilted.widths[2] < even[2] - 4  # the unimportant group gives up channels
    assert all(t >= e for t, e in zip(np.delete(tilted.widths, 2), np.delete(even, 2)))
    assert sum(tilted.widths) > sum(even)  # what it gave up went to the others
    # a tilt, not a corner: nobody is cut to the minimum or kept whole
    assert all(8 < w < 64 for w in tilted.widths)
    with pytest.raises(ValueError, match="objective"):
        solve(imp, cost, budget, full, objective="quadratic")


def test_log_objective_shares_out_the_cut_whatever_the_budget():
    full = [64, 64, 64, 64, 64]
    cost = _chain_cost(full)
    imp = np.array([1.0, 1.0, 0.4, 1.0, 1.0])
    shares = []
    for ratio in (0.95, 0.8, 0.5, 0.3):
        ones = AllowedWidths(round_to=1)
        uniform = solve(np.ones(5), cost, ratio * cost.full(), full, allowed=ones).alpha[0]
        tilted = solve(imp, cost, ratio * cost.full(), full, allowed=ones).alpha
        shares.append(np.log(tilted) / np.log(uniform))  # each group's cut over uniform's
    shares = np.array(shares)
    # the unimportant group takes a larger share of the cut, by about the same
    # factor at a 95% budget as at 30%: the tilt scales with the cut
    assert np.all(shares[:, 2] > 1.3) and np.all(np.delete(shares, 2, axis=1) < 0.97)
    assert np.ptp(shares[:, 2]) < 0.2


def test_log_objective_keeps_a_group_that_costs_nothing_whole():
    t = np.diag([0.0, 100.0, 0.0])  # the second group's width costs nothing
    cost = QuadraticCost("flops", t, "MACs")
    alloc = solve([1.0, 0.2], cost, 50.0, [64, 64], allowed=AllowedWidths(0.1, 8))
    assert alloc.widths[1] == 64 and alloc.cost <= 50.0


def test_infeasible_budget_names_the_smallest_cost():
    full = [32, 64]
    cost = _chain_cost(full)
    floor = AllowedWidths(0.25, 8).minimum_cost(cost, full)
    assert floor == cost(np.array([8, 16]) / full)
    with pytest.raises(ValueError, match=f"smallest achievable flops is {floor:.6g}"):
        solve([1, 1], cost, floor * 0.99, full, allowed=AllowedWidths(0.25, 8))
    assert solve([1, 1], cost, floor, full, allowed=AllowedWidths(0.25, 8)).widths == [8, 16]


def test_zero_importance_is_deterministic(rng):
    full = [32, 64, 64, 128]
    cost = _chain_cost(full)
    a = solve(np.zeros(4), cost, 0.4 * cost.full(), full)
    b = solve(np.zeros(4), cost, 0.4 * cost.full(), full)
    assert a.widths == b.widths and a.cost <= 0.4 * cost.full()


def test_bad_solver_arguments():
    cost = _chain_cost([16, 16])
    with pytest.raises(ValueError, match="alpha_min"):
        solve([1, 1], cost, cost.full() / 2, [16, 16], allowed=AllowedWidths(0))
    with pytest.raises(ValueError, match="importances"):
        solve([1], cost, cost.full() / 2, [16, 16])


def test_l1_keeps_the_largest_filters_across_the_group():
    model = ResidualNet()
    graph = analyze(model, ResidualNet.input_shape)
    with torch.no_grad():
        for conv in (model.stem[0], model.b1[1]):  # both writers of the stream
            conv.weight.mul_(0.01)
            conv.weight[[3, 7, 11]] *= 1000
    stream = next(g for g in graph.groups if g.root == "stem.0")
    widths = [3 if g is stream else g.width for g in graph.groups]
    kept = select_channels(graph, widths, "l1")
    assert kept[stream.index] == [3, 7, 11]
    fpgm = select_channels(graph, widths, "fpgm")
    assert len(fpgm[stream.index]) == 3
    with pytest.raises(ValueError, match="criterion"):
        select_channels(graph, widths, "random")


def test_removed_channels_are_gone_and_kept_ones_untouched():
    torch.manual_seed(0)
    model = ConcatNet().eval()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    graph = analyze(model, ConcatNet.input_shape)
    b = next(g for g in graph.groups if g.root == "b.0")
    kept = [list(range(g.width)) for g in graph.groups]
    kept[b.index] = [1, 5, 20]
    apply_pruning(graph, kept)
    assert model.b[0].weight.shape[0] == 3
    torch.testing.assert_close(model.b[0].weight, reference["b.0.weight"][[1, 5, 20]])
    # the shared batch norm and the consumer lose the same channels (offset 16 by branch a)
    idx = list(range(16)) + [16 + 1, 16 + 5, 16 + 20]
    torch.testing.assert_close(model.bn.weight, reference["bn.weight"][idx])
    torch.testing.assert_close(model.pw.weight, reference["pw.weight"][:, idx])


def test_pruning_dead_channels_leaves_the_output_unchanged():
    """Channels that are exactly zero after their ReLU contribute nothing: cutting
    them must not change the function, whatever couplings the group has."""
    torch.manual_seed(1)
    model = ConcatNet().eval()
    dead = [2, 9, 30, 31]  # in the concatenated 40: two of branch a, two of branch b
    with torch.no_grad():
        for c in dead:
            model.bn.weight[c] = 0
            model.bn.bias[c] = -1  # ReLU(-1) = 0
    x = torch.randn(4, *ConcatNet.input_shape)
    with torch.no_grad():
        expected = model(x)
    graph = analyze(model, ConcatNet.input_shape)
    kept = [list(range(g.width)) for g in graph.groups]
    a = next(g for g in graph.groups if g.root == "a.0").index
    b = next(g for g in graph.groups if g.root == "b.0").index
    kept[a] = [i for i in range(16) if i not in (2, 9)]
    kept[b] = [i for i in range(24) if i + 16 not in (30, 31)]
    apply_pruning(graph, kept)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)
    assert model.bn.num_features == 36


def test_bad_kept_channels():
    graph = analyze(ResidualNet(), ResidualNet.input_shape)
    kept = [list(range(g.width)) for g in graph.groups]
    kept[0] = [0, 0, 1]
    with pytest.raises(ValueError, match="distinct"):
        apply_pruning(graph, kept)
    with pytest.raises(ValueError, match="width 0"):
        select_channels(graph, [0] + graph.widths[1:])

