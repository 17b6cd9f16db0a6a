"""The other Kinetics-400 architectures of Hara et al. (CVPR 2018).

Wide ResNet-50 (k=2), ResNeXt-101 (cardinality 32) and pre-activation ResNet-200 are
written with the module names of the authors' 2017-2018 code, so their published
``wideresnet-50-kinetics.pth``, ``resnext-101-kinetics.pth`` and
``preresnet-200-kinetics.pth`` load strictly. All use the type-B (1x1x1 conv + BN)
shortcut. Input ``(N, 3, T, H, W)``; adaptive average pooling before ``fc``, which at
16x112x112 equals the original fixed pooling.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .pooled import PooledHead
from .resnet3d import Bottleneck, ResNet3D, conv1x1x1


class WideBottleneck(Bottleneck):
    """The ResNet bottleneck with an output of 2x (not 4x) its inner width; the width
    itself is doubled by the network (``widen_factor``)."""

    expansion = 2


class ResNeXtBottleneck(nn.Module):
    """1x1x1 -> grouped 3x3x3 (``cardinality`` groups) -> 1x1x1, output 2x ``planes``.

    The inner width is ``cardinality * (planes // 32)``: 128 for planes=128 at C=32.
    """

    expansion = 2
    cardinality = 32

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        width = self.cardinality * (planes // 32)
        self.conv1 = conv1x1x1(in_planes, width)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, kernel_size=3, stride=stride, padding=1,
                               groups=self.cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = conv1x1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


def wide_resnet50(num_classes: int = 400, k: int = 2) -> ResNet3D:
    """Wide ResNet-50: stage widths 64k..512k, bottleneck expansion 2 (fc sees 1024k)."""
    return ResNet3D(WideBottleneck, (3, 4, 6, 3), num_classes=num_classes,
                    shortcut_type="B", widen_factor=k)


def resnext101(num_classes: int = 400) -> ResNet3D:
    """ResNeXt-101, cardinality 32: stage planes 128..1024, expansion 2 (fc sees 2048)."""
    return ResNet3D(ResNeXtBottleneck, (3, 4, 23, 3), num_classes=num_classes,
                    shortcut_type="B", widen_factor=2)


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv three times (1x1x1, 3x3x3, 1x1x1 with 4x output), then + shortcut.

    No ReLU after the addition: the next block's ``bn1`` starts with it.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The original's shortcut takes the block input before any activation.
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.conv1(self.relu(self.bn1(x)))
        y = self.conv2(self.relu(self.bn2(y)))
        y = self.conv3(self.relu(self.bn3(y)))
        return y + shortcut


class PreActResNet3D(PooledHead, nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> pre-activation stages -> avgpool -> fc.

    As in the authors' code there is no final BN/ReLU after ``layer4``.
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 400) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0], 1)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512 * PreActBottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * PreActBottleneck.expansion
        downsample = None
        if stride != 1 or self.in_planes != out:
            downsample = nn.Sequential(conv1x1x1(self.in_planes, out, stride), nn.BatchNorm3d(out))
        layers = [PreActBottleneck(self.in_planes, planes, stride, downsample)]
        self.in_planes = out
        layers += [PreActBottleneck(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    # The same stem, stages and pooling as the 3D ResNet: ``(N, 2048)`` features.
    forward_features = ResNet3D.forward_features


PREACT_SPECS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


def preact_resnet(depth: int = 200, num_classes: int = 400) -> PreActResNet3D:
    if depth not in PREACT_SPECS:
        raise ValueError(f"pre-activation ResNet depth must be one of {sorted(PREACT_SPECS)}")
    return PreActResNet3D(PREACT_SPECS[depth], num_classes=num_classes)
