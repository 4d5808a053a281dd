"""An independent multiply-accumulate and parameter counter: forward hooks on
the modules that do the arithmetic, reading the shapes that actually flow."""

import torch
from torch import nn


def count(model: nn.Module, input_shape) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of one forward pass at batch 1."""
    macs = 0

    def conv_hook(module, inputs, output):
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module, inputs, output):
        nonlocal macs
        macs += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs, sum(p.numel() for p in model.parameters())
