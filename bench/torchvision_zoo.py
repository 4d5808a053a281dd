"""torchvision's CNN classifiers (random init), pruned to 50% FLOPs and exported.

Needs torchvision, which the project does not install (PyPI's build does not
import beside the pinned CPU torch): run it in a separate environment with
torch and torchvision installed and itpl importable, e.g.

    PYTHONPATH=python python bench/torchvision_zoo.py resnet18 shufflenet_v2_x1_0 ...

Per model: the budget error of an independent MAC count (forward hooks on the
arithmetic modules, not itpl's cost model), the output shape before and after,
and the export's max |tflite - torch| relative to the output's own scale.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import torch
from torch import nn

MODELS = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
          "mnasnet1_0", "regnet_y_400mf", "googlenet", "densenet121", "resnet18", "resnet50",
          "shufflenet_v2_x1_0", "squeezenet1_1"]
SHAPE = (3, 224, 224)


def macs(model: nn.Module, shape) -> int:
    total = 0

    def conv(m, i, o):
        nonlocal total
        total += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        nonlocal total
        total += o.numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total


def run(name: str, export: bool = True) -> str:
    from itpl.deploy.export import export_tflite
    from itpl.model.source import ModelSource
    import itpl

    torch.manual_seed(0)
    source = ModelSource(f"torchvision.models:{name}", {})
    start = time.time()
    unpruned = source.build().eval()
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        shape_before = tuple(unpruned(x).shape)
    full = macs(unpruned, SHAPE)
    result = itpl.prune(source.name, itpl.Flops(ratio=0.5), input_shape=SHAPE,
                        config=itpl.PruneConfig(samples=32))
    model = result.model.eval()
    with torch.no_grad():
        shape_after = tuple(model(x).shape)
    ratio = macs(model, SHAPE) / full
    line = (f"{name:20s} MACs {full / 1e6:8.1f}M -> {ratio:.4f} (budget error "
            f"{(ratio - 0.5) / 0.5:+.2%}), output {shape_before} -> {shape_after}")
    if export:
        with tempfile.TemporaryDirectory() as tmp:
            r = export_tflite(model, SHAPE, os.path.join(tmp, "m.tflite"))
        line += f", export max|diff| {r.max_abs_diff:.2e} = {r.relative_diff:.1e} of scale"
    return line + f" [{time.time() - start:.0f} s]"


if __name__ == "__main__":
    for name in sys.argv[1:] or MODELS:
        try:
            print(run(name), flush=True)
        except Exception as exc:  # report and go on to the next model
            print(f"{name:20s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                  flush=True)
