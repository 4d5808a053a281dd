"""ResNet-50 for ImageNet; ResNet-20 and ResNet-56 for CIFAR (He et al., 2016)."""

from __future__ import annotations

from torch import nn

from itpl.model.zoo.common import FeatureClassifier


def _conv_bn(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(cout, cout, 3, 1))
        # A projection shortcut where the shape changes (option B); it is
        # counted in the FLOPs like every other conv.
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride))
                         if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(*_conv_bn(cin, width, 1, 1), nn.ReLU(inplace=True),
                                  *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(width, cout, 1, 1))
        self.shortcut = (nn.Sequential(*_conv_bn(cin, cout, 1, stride))
                         if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class CifarResNet(FeatureClassifier):
    """ResNet-(6n+2) for 32 x 32 inputs: three stages of 16, 32, 64 channels."""

    def __init__(self, depth: int, num_classes: int = 10):
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        blocks = (depth - 2) // 6
        layers: list[nn.Module] = [*_conv_bn(3, 16, 3, 1), nn.ReLU(inplace=True)]
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        super().__init__(layers, cin, num_classes)


class ResNet50(FeatureClassifier):
    """ResNet-50 for 224 x 224 inputs: 4.09G multiply-accumulates."""

    def __init__(self, num_classes: int = 1000):
        layers: list[nn.Module] = [*_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True),
                                   nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, (width, repeats) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            for i in range(repeats):
                layers.append(Bottleneck(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width * 4
        super().__init__(layers, cin, num_classes)
