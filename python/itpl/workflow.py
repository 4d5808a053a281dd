"""``itpl prune`` as a library call: model -> data -> importance -> widths -> pruned model.

Each stage lives in its own module; this one wires them together, compares
the allocation with the zero-importance one and writes the outputs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from itpl.cost import QuadraticCost, build_cost, format_amount
from itpl.graph import ModelGraph, analyze
from itpl.importance import Importance, compute_importance
from itpl.models.source import ModelSource, load_weights
from itpl.plan import GroupPlan, Plan
from itpl.solve import Allocation, check_feasible, check_objective, check_rounding, solve


@dataclass(frozen=True)
class Budget:
    """A resource budget: an absolute ``value`` or a ``ratio`` of the unpruned cost."""

    kind: str  # "flops", "params" or "latency" (ms, from a device profile)
    value: float | None = None
    ratio: float | None = None

    @property
    def kind_unit(self) -> str:
        """How an absolute value of this kind is given: ms, MACs or params."""
        return {"latency": "ms", "flops": "MACs"}.get(self.kind, self.kind)

    def resolve(self, full: float) -> float:
        if (self.value is None) == (self.ratio is None):
            raise ValueError("give the budget as a value or as a ratio, not both")
        if self.ratio is not None:
            if not 0 < self.ratio:
                raise ValueError(f"budget ratio must be positive, got {self.ratio}")
            return self.ratio * full
        return float(self.value)


@dataclass
class PruneResult:
    """Outcome of :func:`prune_model`.

    ``pruned`` is False when the budget is at or above the unpruned cost; then
    only ``graph``, ``cost``, ``budget`` and ``model`` (unchanged) are set.
    """

    pruned: bool
    model: nn.Module
    graph: ModelGraph
    cost: QuadraticCost
    budget: float
    plan: Plan | None = None
    importance: Importance | None = None
    allocation: Allocation | None = None
    zero_allocation: Allocation | None = None
    moved: list[int] = field(default_factory=list)  # kept - zero-importance kept, per group
    profile: object = None  # the device profile of a latency budget

    @property
    def channels_moved(self) -> int:
        """Sum over groups of |kept - zero-importance kept|."""
        return sum(abs(m) for m in self.moved)


def load_model(source: ModelSource, weights: str | None = None, input_shape=None):
    """Build the model, load weights, and settle its input shape."""
    model = source.build()
    if weights:
        load_weights(model, weights)
    shape = tuple(input_shape) if input_shape else source.input_shape(model)
    if shape is None:
        raise ValueError(f"cannot infer the input shape of {source.name}; pass --input-shape C,H,W")
    return model.eval(), shape


def load_any(spec: str, weights: str | None = None, input_shape=None, kwargs=None):
    """A model from a CLI spec: a ``*.plan.json`` (pruned) or a model source.

    Returns ``(model in eval mode, input shape, label)``.
    """
    if spec.endswith(".json"):
        from itpl.plan import load, read_plan

        plan = read_plan(spec)
        label = os.path.basename(spec)[: -len(".plan.json")] if spec.endswith(".plan.json") else spec
        return load(spec, weights), tuple(plan.input_shape), label
    model, shape = load_model(ModelSource(spec, dict(kwargs or {})), weights, input_shape)
    return model, shape, spec


def _warn(message: str) -> None:
    print(f"itpl: warning: {message}", file=sys.stderr)


def prune_model(
    source: ModelSource,
    budget: Budget,
    *,
    weights: str | None = None,
    input_shape=None,
    data: torch.Tensor | Callable[[tuple], torch.Tensor] | None = None,
    data_label: str | None = None,
    profile=None,
    seed: int = 0,
    samples: int = 256,
    debiased: bool = False,
    beta: float | None = None,
    alpha_min: float = 0.1,
    round_to: int | None = None,
    objective: str = "log",
    rounding: str = "greedy",
    beta_scales=None,
    criterion: str = "l1",
    num_threads: int | None = None,
    progress: bool = False,
    device=None,
) -> PruneResult:
    """Prune a model to a FLOPs, params or latency budget with nHSIC importance.

    Parameters
    ----------
    source : ModelSource
        The model to prune.
    budget : Budget
        Resource kind and amount.
    weights : str, optional
        Trained state_dict; without it the model's fresh initialisation is used.
    input_shape : tuple of int, optional
        Needed when the source cannot tell it.
    data : torch.Tensor or callable, optional
        Calibration batch ``(n, *input_shape)``, or a function of the input
        shape returning one (the shape may only be known once the model is
        built); random with a warning when absent.
    data_label : str, optional
        Where ``data`` came from, recorded in the plan.
    profile : Profile or callable, optional
        The device profile of a latency budget (:mod:`itpl.profile`), or a
        function of the model graph that makes one.
    round_to : int, optional
        Widths are multiples of this; default the profile's for latency
        budgets (the device's channel tile), else 8.
    seed, samples : int
        Random calibration data when ``data`` is None.
    debiased, beta, alpha_min, objective, rounding, criterion, num_threads
        See :func:`itpl.importance.compute_importance`, :func:`itpl.solve.solve`
        and :func:`itpl.prune.select_channels`. The ``log`` objective is
        tilted by each group's mean layer importance, ``linear`` (Eq. 11)
        weighs it by the sum.
    beta_scales : sequence of float, optional
        With the ``log`` objective and no fixed ``beta``: multiples of the
        default beta to try, keeping the one whose pruned model's outputs
        stay closest to the unpruned model's on the calibration images
        (:func:`itpl.fidelity.choose_beta`; default
        :data:`itpl.fidelity.BETA_SCALES`). One value turns the check off.
    progress : bool
        Progress bar during activation capture.
    device : Device, optional
        For a latency budget: time the solver's candidates on this device and
        correct the goal until the measured latency meets the budget
        (:mod:`itpl.refine`); a ratio budget is then of the measured unpruned
        latency. Without it the profile's prediction alone decides.
    """
    from itpl.data import random_calibration
    from itpl.prune import apply_pruning, pruned_copy, select_channels

    model, shape = load_model(source, weights, input_shape)
    if callable(data):
        data = data(shape)
    graph = analyze(model, shape)
    if budget.kind == "latency":
        from itpl.profile import check_profile

        if profile is None:
            raise ValueError("a latency budget needs a device profile: pass --profile FILE "
                             "or --device to profile first")
        if callable(profile):
            profile = profile(graph)
        check_profile(profile, graph)
        cost = profile.cost()
        round_to = round_to or profile.settings["round_to"]
    else:
        cost = build_cost(graph, budget.kind)
    round_to = round_to or 8
    full_cost = cost.full()
    # A latency ratio is of the unpruned model as measured in the profile, not as predicted.
    target = budget.resolve(full_cost if budget.kind != "latency" else profile.reference["ms"])
    if target >= full_cost:
        return PruneResult(pruned=False, model=model, graph=graph, cost=cost, budget=target,
                           profile=profile)
    check_objective(objective)
    check_rounding(rounding)
    check_feasible(cost, target, graph.widths, alpha_min, round_to)  # before the slow part
    if data is None:
        _warn("no --data: importance from random inputs carries no information about "
              "your model; pass --data with a few hundred real images")
        data = random_calibration(shape, samples=samples, seed=seed)
        data_label = f"random (seed {seed})"
    importance = compute_importance(graph, data, debiased=debiased, beta=beta,
                                    num_threads=num_threads, progress=progress)
    widths = graph.widths
    beta_check = None
    if objective == "log" and beta is None:
        from itpl.fidelity import BETA_SCALES, choose_beta

        scales = tuple(BETA_SCALES if beta_scales is None else beta_scales)
        if len(scales) > 1:
            importance, beta_check = choose_beta(
                graph.model, importance,
                lambda imp: solve(imp.group_mean_importance, cost, target, widths,
                                  alpha_min=alpha_min, round_to=round_to, rounding=rounding
                                  ).widths,
                lambda w: pruned_copy(graph.model, shape, w, criterion), data,
                scales=scales, progress=progress)
    scores = (importance.group_mean_importance if objective == "log"
              else importance.group_importance)

    def solve_for(goal, scores=scores):
        return solve(scores, cost, goal, widths, alpha_min=alpha_min, round_to=round_to,
                     objective=objective, rounding=rounding)

    refined = None
    if budget.kind == "latency" and device is not None:
        from itpl.refine import refine_on_device

        refined = refine_on_device(graph, solve_for, budget, profile, device, progress=progress)
        allocation, goal, target = refined.allocation, refined.goal, refined.target_ms
    else:
        allocation = solve_for(target)
        goal = target
    zero = solve_for(goal, np.zeros(len(widths)))
    channels = select_channels(graph, allocation.widths, criterion)
    groups = [
        GroupPlan(root=g.root, full=g.width, kept=w, channels=ch,
                  importance=float(imp), alpha=float(a), zero_importance_kept=z,
                  members=list(g.members))
        for g, w, ch, imp, a, z in zip(graph.groups, allocation.widths, channels, scores,
                                       allocation.alpha, zero.widths)
    ]
    plan = Plan(
        model=source.name, model_kwargs=dict(source.kwargs), input_shape=list(shape),
        budget={"kind": budget.kind, "value": target, "unit": cost.unit,
                "full": full_cost, "predicted": allocation.cost,
                **({"device": profile.device, "batch": profile.settings["batch"],
                    "precision": profile.precision} if budget.kind == "latency" else {}),
                "set_as": "ratio" if budget.ratio is not None else budget.kind_unit,
                **({"ratio": budget.ratio} if budget.ratio is not None else {}),
                **({"unpruned_ms": profile.reference["ms"],
                    "profile_reference": profile.reference} if budget.kind == "latency" else {}),
                **({"refined": {"met": refined.met, "target_ratio": refined.target_ratio,
                                "reference": refined.reference.to_dict(),
                                "steps": refined.steps}} if refined else {})},
        settings={"samples": importance.samples, "data": data_label or "tensor",
                  "estimator": "debiased" if debiased else "biased", "beta": importance.beta,
                  "alpha_min": alpha_min, "round_to": round_to, "objective": objective,
                  "rounding": rounding, "beta_check": beta_check,
                  "criterion": criterion,
                  "weights": os.path.basename(weights) if weights else None},
        groups=groups,
    )
    apply_pruning(graph, channels)
    return PruneResult(
        pruned=True, model=model, graph=graph, cost=cost, budget=target, plan=plan,
        importance=importance, allocation=allocation, zero_allocation=zero,
        moved=[w - z for w, z in zip(allocation.widths, zero.widths)], profile=profile,
    )


def save_result(result: PruneResult, prefix: str, plot: str | None = None) -> tuple[str, str]:
    """Write ``PREFIX.pt`` (pruned state_dict) and ``PREFIX.plan.json`` and, with
    ``plot``, the figures into that folder: all together or none."""
    from itpl.fileio import check_prefix, dump_json, staged_outputs

    check_prefix(prefix, "output prefix")
    weights_path, plan_path = f"{prefix}.pt", f"{prefix}.plan.json"
    result.plan.weights = os.path.basename(weights_path)
    with staged_outputs() as stage:
        if plot:
            from itpl.plot import write_plots

            write_plots(result, plot, stage)
        torch.save(result.model.state_dict(), stage.path(weights_path))
        with open(stage.path(plan_path), "w") as f:
            dump_json(result.plan.to_dict(), f)
    return weights_path, plan_path


def summary_lines(result: PruneResult) -> list[str]:
    """The console report: one row per group, then totals and the zero-importance comparison."""
    plan, cost = result.plan, result.cost
    lines = [f"{'group':>5}  {'root layer':<28} {'full':>6} {'kept':>6} {'importance':>10} "
             f"{'zero-imp':>8} {'moved':>6}"]
    for i, g in enumerate(plan.groups):
        lines.append(f"{i:>5}  {g.root[-28:]:<28} {g.full:>6} {g.kept:>6} {g.importance:>10.4f} "
                     f"{g.zero_importance_kept:>8} {g.kept - g.zero_importance_kept:>+6}")
    b = plan.budget
    fmt = (lambda v: f"{v:.3f}") if cost.kind == "latency" else format_amount
    refined = b.get("refined")
    if b.get("precision") == "int8":
        lines.append("latency of the int8 model (an int8 profile): export it with "
                     "itpl export PLAN --quantize int8 --data CALIB")
    if not refined:
        lines.append(f"{cost.kind}: {fmt(b['full'])} -> {fmt(b['predicted'])} "
                     f"{cost.unit} (budget {fmt(b['value'])}, "
                     f"{b['predicted'] / b['full']:.1%} of unpruned)")
    else:  # the budget is in measured ratios; the profile's numbers are predictions
        lines.append(f"{cost.kind} predicted by the profile: {fmt(b['full'])} -> "
                     f"{fmt(b['predicted'])} {cost.unit} ({b['predicted'] / b['full']:.1%})")
        last = min((s for s in refined["steps"] if s["predicted"] == b["predicted"]),
                   key=lambda s: s["ratio"])
        lines.append(f"timed {len(refined['steps'])} candidates beside the unpruned model: "
                     f"{last['ratio']:.1%} of its latency, budget {refined['target_ratio']:.1%} "
                     f"({b['value']:.3f} of {b['unpruned_ms']:.3f} ms in the profile)"
                     + ("" if refined["met"] else ": NOT MET, the fastest candidate is kept"))
    moved = result.channels_moved
    baseline = "zero importance"
    if plan.settings.get("objective") == "log":
        baseline = ("equal importance" if plan.settings.get("rounding") == "exact"
                    else "uniform scaling (zero importance)")
    check = plan.settings.get("beta_check")
    if check:
        kl = ", ".join(f"x{s:g} {k:.3f}" for s, k in zip(check["scales"], check["kl"]))
        lines.append(f"beta {plan.settings['beta']:.4g} (x{check['chosen_scale']:g} the default): "
                     f"its widths kept the outputs closest to the unpruned model's "
                     f"(KL on {check['samples']} images: {kl})")
    if moved:
        lines.append(f"importance moved {moved} channels across "
                     f"{sum(1 for m in result.moved if m)} groups vs {baseline}")
    else:
        lines.append(f"importance moved nothing: {baseline} gives the same widths")
    if result.importance.dead:
        lines.append(f"constant (dead) layers, importance 0: {', '.join(result.importance.dead)}")
    return lines
