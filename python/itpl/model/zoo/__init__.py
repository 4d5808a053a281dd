"""Built-in model definitions (no torchvision) and their input conventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model: how to build it and what it expects as input."""

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]  # channels, height, width
    preset: str  # normalisation preset of its data: "imagenet" or "cifar"
    paper_mflops: float  # unpruned multiply-accumulates in the ITPruner paper, millions


def _specs() -> dict[str, ModelSpec]:
    from itpl.model.zoo.mobilenet import MobileNetV1, MobileNetV2
    from itpl.model.zoo.resnet import CifarResNet, ResNet50
    from itpl.model.zoo.vgg import CifarVGG

    specs = [
        ModelSpec("mobilenet_v1", MobileNetV1, (3, 224, 224), "imagenet", 569.0),
        ModelSpec("mobilenet_v2", MobileNetV2, (3, 224, 224), "imagenet", 301.0),
        ModelSpec("resnet50", ResNet50, (3, 224, 224), "imagenet", 4089.0),
        ModelSpec("resnet20", lambda **kw: CifarResNet(20, **kw), (3, 32, 32), "cifar", 40.6),
        ModelSpec("resnet56", lambda **kw: CifarResNet(56, **kw), (3, 32, 32), "cifar", 125.0),
        ModelSpec("vgg16", CifarVGG, (3, 32, 32), "cifar", 313.5),
    ]
    return {s.name: s for s in specs}


BUILTIN: dict[str, ModelSpec] = _specs()


def build(name: str, **kwargs) -> nn.Module:
    """Build a built-in model by name (weights freshly initialised).

    Parameters
    ----------
    name : str
        One of ``itpl.model.zoo.BUILTIN``.
    **kwargs
        Passed to the model's constructor (e.g. ``num_classes``, ``width_mult``).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    try:
        spec = BUILTIN[name]
    except KeyError:
        raise ValueError(
            f"unknown model '{name}'; built-in models are {', '.join(sorted(BUILTIN))}, "
            "or pass package.module:factory"
        ) from None
    try:
        return spec.factory(**kwargs)
    except (TypeError, ValueError) as exc:  # an unknown keyword or a value of the wrong type
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"model '{name}' does not accept {args}: {exc}") from None


__all__ = ["BUILTIN", "ModelSpec", "build"]
