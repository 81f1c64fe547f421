"""Models written the way the PyTorch tutorials and torchvision write them, for the tests.

``seeded(factory, seed)`` builds one without touching the global RNG: meta init, then
weights from an explicit generator (PyTorch's default scale, U(+-1/sqrt(fan_in))), and for
BatchNorm random running statistics and affine parameters (so that folding has something
to fold).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def seeded(factory, seed: int = 0) -> nn.Module:
    with torch.device("meta"):
        model = factory()
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                bound = 1 / math.sqrt(p[0].numel())
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
            elif name.endswith("weight"):  # norm scales: around 1
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_((torch.rand(m.num_features, generator=g) * 2 - 1) * 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.num_batches_tracked.zero_()
    return model


def uniform(*shape, seed: int = 1, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(shape, generator=g)


class Net(nn.Module):
    """The CIFAR-10 tutorial network ("Training a classifier", pytorch.org tutorials)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1,
                     bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, as torchvision writes it."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class SmallResNet(nn.Module):
    """Stem conv-BN-ReLU, a BasicBlock, a strided BasicBlock with a 1x1+BN downsample."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(
            width, width, stride=2,
            downsample=nn.Sequential(conv1x1(width, width, 2), nn.BatchNorm2d(width)),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


class SequenceClassifier(nn.Module):
    """A linear embedding, an nn.TransformerEncoder, mean over tokens, a linear head."""

    def __init__(self, d_in=4, d_model=16, nhead=2, layers=2, classes=3, norm_first=False):
        super().__init__()
        self.embed = nn.Linear(d_in, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=32, dropout=0.1,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class NormMLP(nn.Module):
    """An MLP with Dropout, LayerNorm and GELU, and a softmax output."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.norm = nn.LayerNorm(12)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(12, 8)
        self.fc3 = nn.Linear(8, 4)

    def forward(self, x):
        x = self.drop(self.act(self.norm(self.fc1(x))))
        x = F.silu(self.fc2(x))
        return torch.softmax(self.fc3(x), dim=-1)
