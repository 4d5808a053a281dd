"""Physical channel removal: pick the kept channels of each group and cut them out.

The kept channels of a group are chosen by a magnitude criterion over every
coupled layer at once (torch-pruning's group importance), so a residual
stream keeps the same channels in every block that writes to it. Removal
itself is torch-pruning's: it slices the weights of convs, batch norms and
linear layers on both sides of each group.
"""

from __future__ import annotations

import torch

from itpl.model import CRITERIA
from itpl.model.graph import ModelGraph, analyze


def _scorer(criterion: str):
    import torch_pruning as tp

    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
    if criterion == "fpgm":
        return tp.importance.FPGMImportance(p=2, group_reduction="mean", normalizer=None)
    raise ValueError(f"unknown channel criterion '{criterion}'; use one of {', '.join(CRITERIA)}")


def _group_of(graph: ModelGraph, root: str, idxs):
    dg = graph.dependency
    module = graph.module(root)
    return dg.get_pruning_group(module, dg.get_pruner_of_module(module).prune_out_channels, idxs)


def select_channels(graph: ModelGraph, widths: list[int], criterion: str = "l1") -> list[list[int]]:
    """Indices of the channels each group keeps, in ascending order.

    Parameters
    ----------
    graph : ModelGraph
        Analysed unpruned model (its weights are read, not changed).
    widths : list of int
        Kept width per group.
    criterion : {"l1", "fpgm"}
        ``l1``: the largest mean L1 norm over the group's layers; ``fpgm``: the
        farthest from the geometric median of the group's filters.
    """
    scorer = _scorer(criterion)
    if len(widths) != len(graph.groups):
        raise ValueError(f"expected {len(graph.groups)} widths, got {len(widths)}")
    kept = []
    with torch.no_grad():
        for group, width in zip(graph.groups, widths):
            if not 0 < width <= group.width:
                raise ValueError(f"group '{group.root}': width {width} outside 1..{group.width}")
            scores = scorer(_group_of(graph, group.root, list(range(group.width))))
            if scores is None:  # no weights to judge by: keep the first channels
                kept.append(list(range(width)))
                continue
            order = torch.argsort(scores.float(), descending=True, stable=True)
            kept.append(sorted(int(i) for i in order[:width]))
    return kept


def pruned_copy(model: torch.nn.Module, input_shape, widths: list[int],
                criterion: str = "l1") -> torch.nn.Module:
    """A copy of ``model`` pruned to ``widths``, channels chosen by ``criterion``.

    ``model`` itself is left as it is.
    """
    import copy

    model = copy.deepcopy(model)
    graph = analyze(model, input_shape)
    return apply_pruning(graph, select_channels(graph, list(widths), criterion))


def apply_pruning(graph: ModelGraph, kept: list[list[int]]) -> torch.nn.Module:
    """Remove every channel not in ``kept`` from ``graph.model``, in place.

    Returns the (same) model; the graph's geometry describes the unpruned
    model afterwards and must not be reused.
    """
    if len(kept) != len(graph.groups):
        raise ValueError(f"expected kept channels for {len(graph.groups)} groups, got {len(kept)}")
    for group, channels in zip(graph.groups, kept):
        keep = set(channels)
        if not keep or min(keep) < 0 or max(keep) >= group.width or len(keep) != len(channels):
            raise ValueError(f"group '{group.root}': kept channels must be distinct indices "
                             f"in 0..{group.width - 1}, at least one")
        remove = [i for i in range(group.width) if i not in keep]
        if remove:
            _group_of(graph, group.root, remove).prune()
    return graph.model
