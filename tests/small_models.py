"""Small networks that exercise every coupling the graph analysis must handle,
importable by the CLI as ``tests.small_models:<factory>``."""

import torch
from torch import nn


class ConcatNet(nn.Module):
    """Two branches (one with a depthwise conv, one with a 5x5 kernel) concatenated
    into one batch norm, then a flatten of a 4x4 map into a linear layer."""

    input_shape = (3, 16, 16)

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                               nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False))
        self.b = nn.Sequential(nn.Conv2d(3, 24, 5, padding=2, bias=False))
        self.bn = nn.BatchNorm2d(40)
        self.act = nn.ReLU()
        self.pw = nn.Conv2d(40, 32, 1, stride=4, bias=True)
        self.pw_act = nn.ReLU6()
        self.fc1 = nn.Linear(32 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, num_classes)

    def forward(self, x):
        y = self.act(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        y = self.pw_act(self.pw(y))
        return self.fc2(torch.relu(self.fc1(y.flatten(1))))


class ResidualNet(nn.Module):
    """A residual stream written by a stem and two blocks (one identity, one
    projection), so several layers share the stream's width."""

    input_shape = (3, 16, 16)

    def __init__(self, num_classes: int = 4):
        super().__init__()

        def cbr(cin, cout, stride=1):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stem = cbr(3, 16)
        self.b1 = nn.Sequential(cbr(16, 24), nn.Conv2d(24, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.b2 = nn.Sequential(cbr(16, 32, 2), nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32))
        self.proj = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.b1(x))
        x = torch.relu(self.proj(x) + self.b2(x))
        return self.head(x.mean((2, 3)))


def concat_net(num_classes: int = 5) -> nn.Module:
    return ConcatNet(num_classes)


def residual_net(num_classes: int = 4) -> nn.Module:
    return ResidualNet(num_classes)


def no_shape_net() -> nn.Module:
    """A model that does not say its input shape."""
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def not_a_module():
    return 42
