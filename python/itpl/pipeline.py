"""``itpl prune`` as a library call: model -> data -> importance -> widths -> pruned model.

Each stage lives in its own module; this one wires them together, compares
the allocation with the zero-importance one and assembles the plan. The
public entry is :func:`itpl.prune`; the CLI calls :func:`prune_model`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from itpl.budget import Budget
from itpl.config import ItplWarning, PruneConfig
from itpl.method.importance import Importance, compute_importance
from itpl.method.solve import Allocation, solve
from itpl.model.cost import QuadraticCost, build_cost
from itpl.model.graph import ModelGraph, analyze
from itpl.model.plan import GroupPlan, Plan
from itpl.model.source import ModelSource, load_weights


@dataclass
class PruneResult:
    """Outcome of :func:`itpl.prune`.

    Attributes
    ----------
    pruned : bool
        False when the budget is at or above the unpruned cost; then only
        ``model`` (unchanged), ``graph``, ``cost``, ``budget`` and ``profile``
        are set.
    model : torch.nn.Module
        The pruned model, in eval mode.
    plan : Plan
        What was kept and why (:mod:`itpl.model.plan`); :meth:`save` writes it.
    budget : float
        The budget in the cost's unit (ms for latency).
    cost : QuadraticCost
        The resource form the widths were solved under.
    importance, allocation, zero_allocation
        Per-layer importance, the chosen widths and those zero importance gives.
    moved : list of int
        Per group, kept minus zero-importance kept channels.
    profile : Profile or None
        The device profile of a latency budget.
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

    def __repr__(self) -> str:  # the dataclass's would print the whole model and plan
        if not self.pruned:
            return f"PruneResult(pruned=False, budget {self.budget:.6g} {self.cost.unit})"
        b = self.plan.budget
        return (f"PruneResult({self.plan.model}: {b['kind']} {b['full']:.6g} -> "
                f"{b['predicted']:.6g} {b['unit']}, widths {self.plan.widths})")

    def save(self, prefix: str, plot: str | None = None) -> tuple[str, str]:
        """Write ``PREFIX.pt`` (weights) and ``PREFIX.plan.json``, all or nothing.

        ``plot``: a folder to draw ``nhsic.png`` and ``widths.png`` into (needs
        matplotlib). Returns the weights and plan paths; :func:`itpl.load`
        reads them back.
        """
        if not self.pruned:
            raise ValueError("nothing was pruned (the budget is at or above the unpruned "
                             "cost): there is no plan to save")
        return save_result(self, prefix, plot)


def load_model(source: ModelSource, weights: str | None = None, input_shape=None):
    """Build the model, load weights, and settle its input shape."""
    model = source.build()
    if weights:
        load_weights(model, weights)
    shape = tuple(input_shape) if input_shape else source.input_shape(model)
    if shape is None:
        raise ValueError(f"cannot infer the input shape of {source.name}; pass `input_shape` "
                         "C,H,W")
    return model.eval(), shape


def load_any(spec: str, weights: str | None = None, input_shape=None, kwargs=None):
    """A model from a spec: a ``*.plan.json`` (pruned) or a model source.

    Returns ``(model in eval mode, input shape, label)``.
    """
    if spec.endswith(".json"):
        from itpl.model.plan import load, read_plan

        plan = read_plan(spec)
        return load(spec, weights), tuple(plan.input_shape), label_of(spec)
    model, shape = load_model(ModelSource(spec, dict(kwargs or {})), weights, input_shape)
    return model, shape, label_of(spec)


def label_of(spec: str) -> str:
    """How results name a model spec: a plan or .tflite by its file name, else the spec."""
    if spec.endswith(".plan.json"):
        return os.path.basename(spec)[: -len(".plan.json")]
    return os.path.basename(spec) if spec.endswith(".tflite") else spec


def prune_model(source: ModelSource, budget: Budget, *, weights: str | None = None,
                input_shape=None, config: PruneConfig | None = None, **inputs) -> PruneResult:
    """Build ``source`` (with ``weights``) and prune it: :func:`prune_module`."""
    model, shape = load_model(source, weights, input_shape)
    return prune_module(model, shape, budget, config=config, name=source.name,
                        kwargs=source.kwargs, weights=weights, **inputs)


def prune_module(
    model: nn.Module,
    shape: tuple[int, ...],
    budget: Budget,
    *,
    config: PruneConfig | None = None,
    name: str,
    kwargs: dict | None = None,
    weights: str | None = None,
    data: torch.Tensor | Callable[[tuple], torch.Tensor] | None = None,
    data_label: str | None = None,
    profile=None,
    device=None,
) -> PruneResult:
    """Prune ``model`` (in place) to a FLOPs, params or latency budget with nHSIC importance.

    Parameters
    ----------
    model : nn.Module
        The model, pruned in place.
    shape : tuple of int
        One sample's input shape.
    budget : Budget
        :class:`itpl.Flops`, :class:`itpl.Params` or :class:`itpl.Latency`.
    config : PruneConfig, optional
        How to prune; default ``PruneConfig()``.
    name, kwargs, weights
        The model's source and weights file, recorded in the plan so
        :func:`itpl.load` can rebuild it.
    data : torch.Tensor or callable, optional
        Calibration batch ``(n, *shape)``, or a function of the input shape
        returning one; random with a warning when absent.
    data_label : str, optional
        Where ``data`` came from, recorded in the plan.
    profile : Profile or callable, optional
        The device profile of a latency budget (:mod:`itpl.profile`), or a
        function of the model graph that makes one.
    device : Device, optional
        For a latency budget with ``config.refine``: time the solver's
        candidates on this device and correct the goal until the measured
        latency meets the budget (:mod:`itpl.latency.refine`).
    """
    from itpl.model.surgery import apply_pruning, pruned_copy, select_channels
    from itpl.train.data import random_calibration

    config = config or PruneConfig()
    if callable(data):
        data = data(shape)
    graph = analyze(model, shape)
    allowed = config.widths
    if budget.kind == "latency":
        from itpl.latency.profile import check_profile

        if profile is None:
            raise ValueError("a latency budget needs a device profile: pass `profile` "
                             "or `device` to profile first")
        if callable(profile):
            profile = profile(graph)
        check_profile(profile, graph)
        cost = profile.cost()
        allowed = allowed.with_default_step(profile.settings["round_to"])
    else:
        cost = build_cost(graph, budget.kind)
    allowed = allowed.with_default_step(allowed.step)
    full_cost = cost.full()
    # A latency ratio is of the unpruned model as measured in the profile, not as predicted.
    target = budget.resolve(full_cost if budget.kind != "latency" else profile.reference["ms"])
    if target >= full_cost:
        return PruneResult(pruned=False, model=model, graph=graph, cost=cost, budget=target,
                           profile=profile)
    allowed.check_feasible(cost, target, graph.widths)  # before the slow part
    real_data = data is not None
    if data is None:
        warnings.warn("no `data`: importance from random inputs carries no information about "
                      "your model; pass `data` with a few hundred real images", ItplWarning,
                      stacklevel=3)
        data = random_calibration(shape, samples=config.samples, seed=config.seed)
        data_label = f"random (seed {config.seed})"
    importance = compute_importance(graph, data, debiased=config.debiased, beta=config.beta,
                                    num_threads=config.threads, progress=config.progress)
    widths = graph.widths
    beta_check = None
    if config.objective == "log" and config.beta is None:
        from itpl.method.beta import BETA_SCALES, choose_beta

        scales = tuple(BETA_SCALES if config.beta_scales is None else config.beta_scales)
        if len(scales) > 1:
            importance, beta_check = choose_beta(
                graph.model, importance,
                lambda imp: solve(imp.group_mean_importance, cost, target, widths,
                                  allowed=allowed, rounding=config.rounding).widths,
                lambda w: pruned_copy(graph.model, shape, w, config.criterion), data,
                scales=scales, progress=config.progress)
    scores = (importance.group_mean_importance if config.objective == "log"
              else importance.group_importance)

    def solve_for(goal, scores=scores):
        return solve(scores, cost, goal, widths, allowed=allowed, objective=config.objective,
                     rounding=config.rounding)

    refined = None
    if budget.kind == "latency" and device is not None and config.refine:
        from itpl.latency.refine import refine_on_device

        refined = refine_on_device(graph, solve_for, budget, profile, device,
                                   progress=config.progress)
        allocation, goal, target = refined.allocation, refined.goal, refined.target_ms
    else:
        allocation = solve_for(target)
        goal = target
    zero = solve_for(goal, np.zeros(len(widths)))
    channels = select_channels(graph, allocation.widths, config.criterion)
    groups = [
        GroupPlan(root=g.root, full=g.width, kept=w, channels=ch,
                  importance=float(imp), alpha=float(a), zero_importance_kept=z,
                  members=list(g.members))
        for g, w, ch, imp, a, z in zip(graph.groups, allocation.widths, channels, scores,
                                       allocation.alpha, zero.widths)
    ]
    budget_record = _budget_record(budget, target, cost, full_cost, allocation, profile, refined)
    plan = Plan(
        model=name, model_kwargs=dict(kwargs or {}), input_shape=list(shape),
        budget=budget_record,
        settings={"samples": importance.samples, "data": data_label or "tensor",
                  "estimator": "debiased" if config.debiased else "biased",
                  "beta": importance.beta, "alpha_min": allowed.alpha_min,
                  "round_to": allowed.step, "objective": config.objective,
                  "rounding": config.rounding, "beta_check": beta_check,
                  "criterion": config.criterion,
                  "weights": os.path.basename(weights) if weights else None,
                  "bn_reestimated": int(data.shape[0]) if real_data else None},
        groups=groups,
    )
    apply_pruning(graph, channels)
    if real_data:
        from itpl.train.finetune import reestimate_bn_on

        # The survivors' batch-norm statistics were measured with the removed channels
        # feeding them: re-measured, the pruned model starts far closer to the unpruned
        # one (ResNet-20 on shapes10: chance -> most of the accuracy). Random inputs
        # would give statistics of noise, so without data they stay as they were.
        reestimate_bn_on(model, data)
    return PruneResult(
        pruned=True, model=model, graph=graph, cost=cost, budget=target, plan=plan,
        importance=importance, allocation=allocation, zero_allocation=zero,
        moved=[w - z for w, z in zip(allocation.widths, zero.widths)], profile=profile,
    )


def _budget_record(budget, target, cost, full_cost, allocation, profile, refined) -> dict:
    """The plan's ``budget``: as set, as solved for, and (latency) the device it is for."""
    latency = budget.kind == "latency"
    record = {"kind": budget.kind, "value": target, "unit": cost.unit, "full": full_cost,
              "predicted": allocation.cost}
    if latency:
        record.update(device=profile.device, batch=profile.settings["batch"],
                      precision=profile.precision)
    record["set_as"] = budget.set_as
    if budget.ratio is not None:
        record["ratio"] = budget.ratio
    if latency:
        record.update(unpruned_ms=profile.reference["ms"], profile_reference=profile.reference)
    if refined:
        record["refined"] = {"met": refined.met, "target_ratio": refined.target_ratio,
                             "reference": refined.reference.to_dict(), "steps": refined.steps}
    return record


def save_result(result: PruneResult, prefix: str, plot: str | None = None) -> tuple[str, str]:
    """Write ``PREFIX.pt`` (pruned state_dict) and ``PREFIX.plan.json`` and, with
    ``plot``, the figures into that folder: all together or none."""
    from itpl.util.fileio import check_prefix, dump_json, staged_outputs

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
