"""Pruning plans as data (``*.plan.json``) and :func:`load`, which rebuilds the model.

A plan names the model source (built-in name or ``package.module:factory``
with its keyword arguments), the input shape, and per group the root layer,
full and kept widths, kept channel indices and importance. Rebuilding runs
the same dependency analysis on a fresh model and removes the same channels,
then loads the pruned weights: no pickled classes anywhere.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from torch import nn

FORMAT = "itpl.plan/1"


@dataclass
class GroupPlan:
    """One channel group of a plan."""

    root: str
    full: int
    kept: int
    channels: list[int]
    importance: float  # what the solver weighed: mean (log objective) or sum (linear) of its layers'
    alpha: float  # continuous solver ratio before rounding
    zero_importance_kept: int  # width the same solver gives with zero importance
    members: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Everything needed to rebuild a pruned model and to judge the choice.

    Attributes
    ----------
    model : str
        Built-in name or ``package.module:factory``.
    model_kwargs : dict
        Constructor/factory keyword arguments.
    input_shape : list of int
        One sample's shape.
    budget : dict
        ``kind`` (flops/params), ``value``, ``unit``, ``full`` (unpruned cost)
        and ``predicted`` (exact cost of the plan).
    settings : dict
        How the plan was made: samples, seed, data, estimator, beta, alpha_min,
        round_to, criterion.
    groups : list of GroupPlan
    weights : str or None
        The pruned state_dict file, relative to the plan's folder.
    """

    model: str
    model_kwargs: dict
    input_shape: list[int]
    budget: dict
    settings: dict
    groups: list[GroupPlan]
    weights: str | None = None
    format: str = FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not an itpl plan (format '{data.get('format') if isinstance(data, dict) else None}', "
                             f"expected '{FORMAT}')")
        try:
            groups = [GroupPlan(**g) for g in data["groups"]]
            fields = {k: data[k] for k in ("model", "model_kwargs", "input_shape", "budget", "settings")}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed plan: {type(exc).__name__}: {exc}") from None
        return cls(**fields, groups=groups, weights=data.get("weights"))

    @property
    def widths(self) -> list[int]:
        return [g.kept for g in self.groups]


def read_plan(path: str) -> Plan:
    """Read a ``*.plan.json`` file."""
    from itpl.util.fileio import read_json

    data = read_json(path, "plan")
    return Plan.from_dict(data)


def build_pruned(plan: Plan, model: nn.Module | None = None) -> nn.Module:
    """A freshly initialised model (or ``model``, cut in place) with the plan's
    channels removed (no weights loaded)."""
    from itpl.model.graph import analyze
    from itpl.model.source import ModelSource
    from itpl.model.surgery import apply_pruning

    if model is None:
        model = ModelSource(plan.model, plan.model_kwargs).build()
    graph = analyze(model, plan.input_shape)
    by_root = {g.root: g for g in plan.groups}
    kept = []
    for group in graph.groups:
        planned = by_root.get(group.root)
        if planned is None or planned.full != group.width:
            raise ValueError(f"the plan does not match the model: group '{group.root}' "
                             f"(width {group.width}) is {'missing' if planned is None else f'{planned.full} wide'} in the plan")
        kept.append(planned.channels)
    if len(by_root) != len(graph.groups):
        raise ValueError("the plan has groups the model does not have; was it made for another model?")
    return apply_pruning(graph, kept)


def load(plan, weights: str | None = None, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a pruned model from its plan and weights.

    Parameters
    ----------
    plan : str or Plan
        Path of a ``*.plan.json`` file, or a :class:`Plan`.
    weights : str, optional
        State_dict of the pruned model; defaults to the plan's ``weights``
        (relative to the plan file).
    model : nn.Module, optional
        An unpruned instance to cut in place instead of one built from the
        source the plan names.

    Returns
    -------
    torch.nn.Module
        The pruned model in eval mode.

    Raises
    ------
    FileNotFoundError
        When the plan or its weights are missing.
    ValueError
        When the plan is malformed or does not match the model it names.
    """
    from itpl.model.source import load_weights

    folder = "."
    if isinstance(plan, (str, os.PathLike)):
        folder = os.path.dirname(os.path.abspath(plan))
        plan = read_plan(str(plan))
    if weights is None:
        if plan.weights is None:
            raise ValueError("the plan names no weights file; pass `weights`")
        weights = os.path.join(folder, plan.weights)
    model = build_pruned(plan, model)
    load_weights(model, weights)
    return model.eval()
