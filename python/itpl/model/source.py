"""Where a model comes from: a built-in name or a user's ``package.module:factory``,
plus its weights. Every failure is a one-line ValueError naming the cause."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from itpl.model.zoo import BUILTIN, build


@dataclass
class ModelSource:
    """How to rebuild a model without pickled classes.

    Attributes
    ----------
    name : str
        Built-in name (``mobilenet_v1``) or ``package.module:factory``.
    kwargs : dict
        Keyword arguments of the constructor or factory (JSON values).
    """

    name: str
    kwargs: dict = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return ":" not in self.name

    def build(self) -> nn.Module:
        """A fresh instance (random weights)."""
        if self.builtin:
            return build(self.name, **self.kwargs)
        return _build_factory(self.name, self.kwargs)

    def input_shape(self, model: nn.Module | None = None) -> tuple[int, ...] | None:
        """The built-in's input shape, or the model's ``input_shape`` attribute."""
        if self.builtin:
            return BUILTIN[self.name].input_shape
        shape = getattr(model, "input_shape", None)
        return tuple(int(s) for s in shape) if shape is not None else None

    @property
    def preset(self) -> str | None:
        """Normalisation preset of a built-in model's data (``imagenet``/``cifar``)."""
        return BUILTIN[self.name].preset if self.builtin else None


def _build_factory(spec: str, kwargs: dict) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model '{spec}' must be a built-in name or package.module:factory")
    if os.getcwd() not in sys.path:  # as `python -m` does: the user's project imports
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import '{module_name}' for model {spec}: "
                         f"{type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"'{module_name}' has no callable '{attr}' (from model {spec})")
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise ValueError(f"model {spec}: the factory failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {spec}: the factory returned {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model


def load_weights(model: nn.Module, path: str) -> nn.Module:
    """Load a state_dict file into ``model`` (strict), with one-line errors.

    Accepts a bare state_dict or a checkpoint dict holding one under
    ``state_dict`` or ``model``; a ``module.`` prefix (DataParallel) is removed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read weights '{path}' as a PyTorch state_dict: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights '{path}' do not hold a state_dict (name -> tensor)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("shape mismatch", shapes)):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise ValueError(f"weights '{path}' do not fit the model ({'; '.join(parts)})")
    model.load_state_dict(state)
    return model
