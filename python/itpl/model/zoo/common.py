"""The shape every built-in model shares: features, global average pool, linear."""

from __future__ import annotations

from torch import nn


class FeatureClassifier(nn.Module):
    """``classifier(pool(features(x)))``, the layout graph analysis expects."""

    def __init__(self, features: list[nn.Module], width: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
