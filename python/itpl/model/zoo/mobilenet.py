"""MobileNetV1 and MobileNetV2 for ImageNet (224 x 224, 1000 classes)."""

from __future__ import annotations

from torch import nn

from itpl.model.zoo.common import FeatureClassifier


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of `divisor`, never below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1,
            act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class MobileNetV1(FeatureClassifier):
    """MobileNetV1 (Howard et al., 2017): 569M multiply-accumulates at width 1."""

    # (output channels, stride) of the 13 depthwise-separable blocks
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        cin = _divisible(32 * width_mult)
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2)]
        for cout, stride in self.BLOCKS:
            cout = _divisible(cout * width_mult)
            layers.append(nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin),
                                        conv_bn(cin, cout, 1, 1)))
            cin = cout
        super().__init__(layers, cin, num_classes)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(FeatureClassifier):
    """MobileNetV2 (Sandler et al., 2018): 301M multiply-accumulates at width 1."""

    # (expansion, output channels, repeats, first stride)
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        cin = _divisible(32 * width_mult)
        last = _divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act=nn.ReLU6)]
        for expand, c, repeats, stride in self.SETTINGS:
            cout = _divisible(c * width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, last, 1, 1, act=nn.ReLU6))
        super().__init__(layers, last, num_classes)
