"""Adapters around torch-pruning's dependency graph for the models people bring.

torch-pruning finds which channels are coupled; these helpers keep its
answers safe where it cannot follow a model (channel shuffles, reshapes it
cannot map) by leaving those channels whole, and find the layers that make
the network's output, whose width is never pruned.
"""

from __future__ import annotations

from torch import nn

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


def output_layers(dg, names) -> list[nn.Module]:
    """The conv/linear layers whose output channels are the network's output.

    Walks back from every node without consumers through parameter-free steps
    (activations, pooling, flatten, dropout, batch norm, concatenation), so a
    1x1-conv classifier followed by global pooling (SqueezeNet) is found as
    well as a final Linear.
    """
    found, seen = [], set()
    stack = [node for node in dg.module2node.values() if not node.outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        module = node.module
        if isinstance(module, _LAYERS) and module in names:
            found.append(module)
            continue
        stack.extend(node.inputs)
    return found


# Autograd steps that move channels to other positions. torch-pruning takes
# them for element-wise ops, so a channel shuffle (view, transpose, view) would
# couple the wrong channels: every group whose channels pass one stays whole.
_PERMUTING = ("transpose", "permute", "pixelshuffle", "pixelunshuffle", "channelshuffle",
              "roll", "flip")


def permutes(module) -> bool:
    name = str(getattr(module, "_grad_fn", "") or "").lower()
    return type(module).__name__ == "_ElementWiseOp" and any(p in name for p in _PERMUTING)


def tolerate_unmapped_reshapes() -> None:
    """Make torch-pruning record, instead of failing on, a reshape whose channel
    mapping it cannot work out (it divides by zero on ShuffleNetV2's 5-D view
    back to 4-D). It redoes the mappings at every group query, so the wrapper
    stays installed; each graph's such reshapes collect in ``graph.itpl_unmapped``
    and the groups through them stay whole."""
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_reshape_index_mapping
    if getattr(original, "itpl_wrapped", False):
        return

    def update(graph, node):
        if not hasattr(graph, "itpl_unmapped"):
            graph.itpl_unmapped = set()
        if node.module in graph.itpl_unmapped:
            return
        if _near_permute(node):  # a shuffle's view: mapped as a flatten, it multiplies
            graph.itpl_unmapped.add(node.module)  # every index list by H*W (minutes per query)
            return
        try:
            original(graph, node)
        except ArithmeticError:
            graph.itpl_unmapped.add(node.module)

    update.itpl_wrapped = True
    index_mapping.update_reshape_index_mapping = update


def _near_permute(node, hops: int = 3) -> bool:
    """Whether a channel-permuting op is within ``hops`` torch-pruning op nodes."""
    frontier, seen = [node], {id(node)}
    for _ in range(hops):
        step = []
        for current in frontier:
            for other in list(current.inputs) + list(current.outputs):
                if id(other) in seen:
                    continue
                seen.add(id(other))
                if permutes(other.module):
                    return True
                if type(other.module).__module__.startswith("torch_pruning"):
                    step.append(other)
        frontier = step
    return False


def all_groups(dg, ignored) -> list:
    """torch-pruning's ``get_all_groups``, except that a layer whose group
    torch-pruning cannot follow (its index mappings fail on ShuffleNetV2's
    chunk-concat-shuffle) is left unpruned instead of failing the model."""
    visited, groups = set(), []
    for module in list(dg.module2node):
        if module in ignored or module in visited or not isinstance(module, _LAYERS):
            continue
        pruner = dg.get_pruner_of_module(module)
        if pruner is None or pruner.get_out_channels(module) is None:
            continue
        try:
            group = dg.get_pruning_group(module, pruner.prune_out_channels,
                                         list(range(pruner.get_out_channels(module))))
        except (ArithmeticError, IndexError, KeyError):
            visited.add(module)
            continue
        prunable = True
        for dep, _ in group:
            if dg.is_out_channel_pruning_fn(dep.handler):
                visited.add(dep.target.module)
                prunable = prunable and dep.target.module not in ignored
        if prunable:
            groups.append(group)
    return groups
