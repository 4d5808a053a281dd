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


# The patterns of torchvision's CNN classifiers, at a size the test suite can afford.

class ReusedReluNet(nn.Module):
    """torchvision's ResNet BasicBlock: one parameter-free ``nn.ReLU`` module called
    after the first conv and again after the residual add."""

    input_shape = (3, 16, 16)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.ModuleList([_BasicBlock(16, 16), _BasicBlock(16, 32, stride=2)])
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for block in self.blocks:
            x = block(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)  # called twice per forward, as torchvision's
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _channel_shuffle(x, groups: int):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


class _ShuffleUnit(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual: chunk, branch, concat, shuffle."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        mid = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else mid, mid, 1, bias=False), nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
            nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _channel_shuffle(out, 2)


class ShuffleNet(nn.Module):
    """Channel shuffle through view/transpose, as torchvision's shufflenet_v2."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                   nn.ReLU(inplace=True))
        self.stage2 = nn.Sequential(_ShuffleUnit(16, 32, 2), _ShuffleUnit(32, 32, 1))
        self.stage3 = nn.Sequential(_ShuffleUnit(32, 64, 2), _ShuffleUnit(64, 64, 1))
        self.conv5 = nn.Sequential(nn.Conv2d(64, 128, 1, bias=False), nn.BatchNorm2d(128),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.conv5(self.stage3(self.stage2(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


class _Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class ConvClassifierNet(nn.Module):
    """torchvision's SqueezeNet: fire modules, then a 1x1-conv classifier with
    ``num_classes`` outputs followed by global pooling (no Linear layer)."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True), _Fire(32, 8, 32), _Fire(64, 16, 32))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(64, num_classes, 1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class DenseNet(nn.Module):
    """torchvision's DenseNet: each layer's output concatenated onto its input."""

    input_shape = (3, 16, 16)

    def __init__(self, num_classes: int = 10, growth: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.layers = nn.ModuleList()
        c = 16
        for _ in range(3):
            self.layers.append(nn.Sequential(
                nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, 2 * growth, 1, bias=False),
                nn.BatchNorm2d(2 * growth), nn.ReLU(inplace=True),
                nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)))
            c += growth
        self.norm = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        x = torch.relu(self.norm(torch.cat(features, 1)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class SqueezeExciteNet(nn.Module):
    """torchvision's MobileNetV3 block: expand, depthwise, squeeze-and-excite,
    project, with hardswish, and a Linear-Hardswish-Linear classifier."""

    input_shape = (3, 16, 16)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 48, 1, bias=False), nn.BatchNorm2d(48),
                                    nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(48, 48, 3, 1, 1, groups=48, bias=False),
                                nn.BatchNorm2d(48), nn.Hardswish())
        self.se = _SqueezeExcite(48, 16)
        self.project = nn.Sequential(nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.last = nn.Sequential(nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.Hardswish())
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.se(self.dw(self.expand(x))))
        x = nn.functional.adaptive_avg_pool2d(self.last(x), 1)
        return self.classifier(torch.flatten(x, 1))


class SharedConvNet(nn.Module):
    """One conv (with parameters) applied twice: both uses must keep one width."""

    input_shape = (3, 8, 8)

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv(torch.relu(self.conv(torch.relu(self.stem(x))))))
        return self.head(x.mean((2, 3)))


def reused_relu_net(num_classes: int = 10) -> nn.Module:
    return ReusedReluNet(num_classes)


def shuffle_net(num_classes: int = 10) -> nn.Module:
    return ShuffleNet(num_classes)


def conv_classifier_net(num_classes: int = 10) -> nn.Module:
    return ConvClassifierNet(num_classes)


def dense_net(num_classes: int = 10) -> nn.Module:
    return DenseNet(num_classes)


def squeeze_excite_net(num_classes: int = 10) -> nn.Module:
    return SqueezeExciteNet(num_classes)


def nan_net() -> nn.Module:
    """A model whose outputs are NaN (a NaN bias): refused with one line, never a plan."""
    model = no_shape_net()
    with torch.no_grad():
        model[2].bias.fill_(float("nan"))
    model.input_shape = (3, 12, 12)
    return model
