"""The prunable structure of a model: channel groups and per-layer geometry.

A model is described once, here. torch-pruning's ``DependencyGraph`` finds which
output channels are coupled (residual adds, depthwise convs, concatenation,
flatten); one traced forward pass at batch 1 records every layer's shapes. Cost,
importance and pruning all read the resulting :class:`ModelGraph`, so there are
no per-architecture formulas anywhere.

Every channel dimension is an :class:`Affine` expression of the group width
ratios ``alpha`` (a layer fed by a concatenation of two groups has
``in = n_a alpha_a + n_b alpha_b``), which is what makes the resource model an
exact quadratic form at every integer width configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from itpl.model import coupling

# Modules that map a tensor to one of the same channel layout, channel by
# channel: a layer's representation is taken after them (conv -> BN -> ReLU).
_CHANNELWISE = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU,
    nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Identity, nn.Dropout,
)
_CONV = (nn.Conv1d, nn.Conv2d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


@dataclass
class Affine:
    """``const + sum_g coefs[g] * alpha_g``: a channel count as a function of widths."""

    const: float = 0.0
    coefs: dict[int, float] = field(default_factory=dict)

    def at(self, alpha) -> float:
        return self.const + sum(c * float(alpha[g]) for g, c in self.coefs.items())


@dataclass
class Layer:
    """One module with parameters or arithmetic, and the shapes that flowed through it."""

    name: str
    kind: str  # "conv", "depthwise", "linear", "norm" or "other"
    in_dim: Affine
    out_dim: Affine
    positions: int  # output positions per sample: H*W for conv2d, 1 for a vector linear
    kernel: int  # kernel elements (kh*kw), 1 for linear
    groups: int  # conv groups (1 for dense, == channels for depthwise)
    bias: bool
    per_channel: int  # norm/other layers: 1-D parameters with one entry per channel
    fixed_params: int  # norm/other layers: parameters no width scales
    in_shape: tuple[int, ...] = ()  # one sample's input and output shapes, unpruned
    out_shape: tuple[int, ...] = ()
    activation: str = "none"  # "relu"/"relu6" when one directly follows (the runtime fuses it)


@dataclass
class Group:
    """Output channels that must keep one width: pruned together, one alpha."""

    index: int
    root: str  # first layer (execution order) whose output channels are the group
    width: int  # unpruned channel count
    members: list[str]  # conv/linear layers whose outputs are these channels
    capture: list[str]  # per member: the module after which its activation is read


@dataclass
class ModelGraph:
    """Groups, layers and the dependency graph of one model instance."""

    model: nn.Module
    input_shape: tuple[int, ...]
    groups: list[Group]
    layers: list[Layer]  # execution order
    dependency: object  # torch_pruning.DependencyGraph bound to ``model``

    @property
    def widths(self) -> list[int]:
        return [g.width for g in self.groups]

    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)


def _trace_shapes(model: nn.Module, input_shape):
    """One eval forward at batch 1: per leaf module its input and output shapes,
    per conv/linear the module after which its activation is read and the
    activation function in that chain, and how often each module was called."""
    events = []  # (name, module, input tensor, output tensor)
    calls: dict[str, int] = {}
    positions: dict[str, int] = {}  # output positions summed over a module's calls
    handles = []

    def hook(name):
        def fn(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if isinstance(output, torch.Tensor):
                events.append((name, module, first, output))
                spatial = output.shape[2:] if isinstance(module, _CONV) else output.shape[1:-1]
                positions[name] = positions.get(name, 0) + math.prod(spatial)

        return fn

    for name, m in model.named_modules():
        if name and not list(m.children()):
            handles.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except Exception as exc:  # the user's model: any failure is an input error
        raise ValueError(
            f"the model does not run on input shape {tuple(input_shape)}: "
            f"{type(exc).__name__}: {exc}; pass `input_shape` C,H,W"
        ) from None
    finally:
        for h in handles:
            h.remove()
    shapes = {name: tuple(out.shape) for name, _, _, out in events}
    in_shapes = {name: tuple(inp.shape) for name, _, inp, _ in events if inp is not None}
    # Follow conv -> BN -> activation by tensor identity: each channel-wise module
    # whose input is exactly the previous tensor extends the chain. A module
    # called more than once (torchvision's ResNets reuse one nn.ReLU per block)
    # cannot be the capture point: its hook would also see its other calls.
    capture, activation = {}, {}
    for i, (name, module, _, out) in enumerate(events):
        if not isinstance(module, _CONV + (nn.Linear,)) or name in capture:
            continue
        end, current, act = name, out, "none"
        for nxt, nmod, ninp, nout in events[i + 1 :]:
            if ninp is current and isinstance(nmod, _CHANNELWISE):
                current = nout
                if calls[nxt] == 1 and calls[end] == 1:
                    end = nxt
                if act == "none" and isinstance(nmod, (nn.ReLU, nn.ReLU6)):
                    act = "relu6" if isinstance(nmod, nn.ReLU6) else "relu"
        capture[name], activation[name] = end, act
    return shapes, in_shapes, capture, activation, positions


def _kind(module: nn.Module) -> str:
    if isinstance(module, _CONV):
        if module.groups == 1:
            return "conv"
        if module.groups == module.in_channels == module.out_channels:
            return "depthwise"
        return "grouped"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _NORM):
        return "norm"
    return "other"


def analyze(model: nn.Module, input_shape) -> ModelGraph:
    """Find the channel groups and layer geometry of ``model``.

    Parameters
    ----------
    model : nn.Module
        The network; it is put in eval mode and traced once at batch 1.
    input_shape : tuple of int
        One sample's shape, e.g. ``(3, 224, 224)``.

    Returns
    -------
    ModelGraph
        Prunable groups (the network output is fixed; the input is never a
        group) and every parametric layer with its channel expressions.

    Raises
    ------
    ValueError
        When the model cannot be run or traced at ``input_shape``, naming
        the layer and what the user can do.

    A parameter-free module called several times (one ``nn.ReLU`` per ResNet
    block) is fine; a module with parameters used in several places keeps
    one width for all of them (torch-pruning couples its uses) and its
    FLOPs count every call.
    """
    import torch_pruning as tp

    model.eval()
    input_shape = tuple(int(s) for s in input_shape)
    shapes, in_shapes, capture, activation, call_positions = _trace_shapes(model, input_shape)
    try:
        coupling.tolerate_unmapped_reshapes()
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(
                model, torch.zeros(1, *input_shape), verbose=False
            )
    except Exception as exc:
        raise ValueError(
            f"cannot trace the model's channel dependencies: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}; itpl needs a forward pass that torch-pruning "
            "can trace from one tensor input (no data-dependent branching on values)"
        ) from None
    unmapped = getattr(dg, "itpl_unmapped", set())
    names = {m: n for n, m in model.named_modules()}
    sinks = coupling.output_layers(dg, names)  # the network's output width is never pruned

    order = {n: i for i, n in enumerate(shapes)}  # execution order of the trace

    def first_use(grp):
        return min(order.get(names.get(it.dep.target.module), len(order)) for it in grp.items)

    tp_groups = sorted(coupling.all_groups(dg, sinks), key=first_use)
    groups: list[Group] = []
    # per (module name, "in"/"out"): {group index: channels of that dim in the group}
    terms: dict[tuple[str, str], dict[int, int]] = {}
    for tp_group in tp_groups:
        items = []
        for item in tp_group.items:
            module = item.dep.target.module
            if module not in names:  # torch-pruning's own ops (add, concat, reshape)
                continue
            side = "out" if dg.is_out_channel_pruning_fn(item.dep.handler) else "in"
            items.append((names[module], module, side, len(item.idxs)))
        if any(_kind(m) == "grouped" for _, m, _, _ in items):
            continue  # grouped convs change channels per group: left unpruned
        if any(coupling.permutes(item.dep.target.module) or item.dep.target.module in unmapped
               for item in tp_group.items):
            continue  # channels reordered (ShuffleNet's shuffle): torch-pruning cannot follow
        index = len(groups)
        members = sorted((n for n, m, side, _ in items
                          if side == "out" and isinstance(m, _CONV + (nn.Linear,))),
                         key=lambda n: order.get(n, 0))
        for n, m, side, count in items:
            terms.setdefault((n, side), {})
            terms[(n, side)][index] = terms[(n, side)].get(index, 0) + count
        groups.append(Group(
            index=index, root=members[0], width=len(tp_group.items[0].idxs),
            members=members, capture=[capture.get(n, n) for n in members],
        ))

    layers = []
    for name in shapes:  # execution order, as a converter lays the ops out
        module = model.get_submodule(name)
        kind = _kind(module)
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if kind == "other" and params == 0:
            continue

        def dim(side, full):
            coefs = {g: float(c) for g, c in terms.get((name, side), {}).items()}
            return Affine(float(full) - sum(coefs.values()), coefs)

        out_shape = shapes[name]
        if kind in ("conv", "depthwise", "grouped"):
            in_full, out_full = module.in_channels, module.out_channels
            positions = call_positions[name]  # every call of a shared conv costs
            kernel = math.prod(module.kernel_size)
        elif kind == "linear":
            in_full, out_full = module.in_features, module.out_features
            positions = call_positions[name]  # tokens of a (n, ..., features) input, all calls
            kernel = 1
        else:
            in_full = out_full = out_shape[1] if len(out_shape) > 1 else 1
            positions, kernel = 1, 1
        out_dim = dim("out", out_full)
        in_dim = out_dim if kind in ("depthwise", "norm", "other") else dim("in", in_full)
        per_channel = fixed = 0
        if kind in ("norm", "other"):
            per_channel = sum(1 for p in module.parameters(recurse=False)
                              if p.dim() == 1 and p.numel() == out_full)
            fixed = params - per_channel * out_full
            if kind == "other" and out_dim.coefs and fixed:
                raise ValueError(
                    f"layer '{name}' ({type(module).__name__}) has parameters in a prunable "
                    "channel group that itpl does not know how to count; replace it with a "
                    "standard layer (conv, linear, norm, activation) to prune this model"
                )
        layers.append(Layer(
            name=name, kind=kind, in_dim=in_dim, out_dim=out_dim, positions=positions,
            kernel=kernel, groups=getattr(module, "groups", 1),
            bias=getattr(module, "bias", None) is not None, per_channel=per_channel,
            fixed_params=fixed, in_shape=in_shapes.get(name, ())[1:], out_shape=out_shape[1:],
            activation=activation.get(name, "none"),
        ))
    if not groups:
        raise ValueError("the model has no prunable channel groups (no conv or linear "
                         "layer whose outputs feed another layer)")
    return ModelGraph(model=model, input_shape=input_shape, groups=groups,
                      layers=layers, dependency=dg)
