"""VGG-16 for CIFAR (32 x 32, 10 classes), with batch norm, as in pruning papers."""

from __future__ import annotations

from torch import nn

from itpl.model.zoo.common import FeatureClassifier

CONFIG_16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512]


class CifarVGG(FeatureClassifier):
    """VGG-16 on 32 x 32 inputs: 13 convs, 313M multiply-accumulates."""

    def __init__(self, num_classes: int = 10, config=CONFIG_16):
        layers: list[nn.Module] = []
        cin = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, item, 3, 1, 1, bias=False), nn.BatchNorm2d(item),
                           nn.ReLU(inplace=True)]
                cin = item
        super().__init__(layers, cin, num_classes)
