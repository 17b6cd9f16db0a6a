"""torchvision's video ResNets (r3d_18, mc3_18, r2plus1d_18) in plain PyTorch.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition"
(CVPR 2018). Module names reproduce torchvision's state-dict keys (``stem.0``,
``layer1.0.conv1.0.weight``, ``layer2.0.downsample.0.weight``, ``fc.weight``, and for
R(2+1)D ``layer1.0.conv1.0.0.weight`` ...), so its published ``.pth`` files load
strictly without torchvision installed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .pooled import PooledHead

ConvKind = Literal["3d", "2d", "2plus1d"]


def _spatiotemporal_conv(kind: ConvKind, cin: int, cout: int, stride: int,
                         mid: int = 0) -> nn.Module:
    """The 3x3x3-ish convolution of a block, in one of three factorisations."""
    if kind == "3d":  # full 3x3x3
        return nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
    if kind == "2d":  # spatial only: 1x3x3, never strides in time
        return nn.Conv3d(cin, cout, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                         padding=(0, 1, 1), bias=False)
    # (2+1)D: 1x3x3 into ``mid`` channels, BN, ReLU, then 3x1x1.
    return nn.Sequential(
        nn.Conv3d(cin, mid, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                  padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                  padding=(1, 0, 0), bias=False),
    )


class VideoBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, kind: ConvKind, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        # (2+1)D width: about the parameter count of the block's first 3x3x3 conv.
        # torchvision computes it once per block and uses it for both convs.
        mid = (cin * planes * 27) // (cin * 9 + 3 * planes)
        self.conv1 = nn.Sequential(_spatiotemporal_conv(kind, cin, planes, stride, mid),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_spatiotemporal_conv(kind, planes, planes, 1, mid),
                                   nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class VideoResNet18(PooledHead, nn.Module):
    """stem -> 4 stages of 2 basic blocks (64, 128, 256, 512) -> avgpool -> fc."""

    def __init__(self, kinds: tuple[ConvKind, ConvKind, ConvKind, ConvKind],
                 factorised_stem: bool = False, num_classes: int = 400) -> None:
        super().__init__()
        if factorised_stem:  # R(2+1)D: 1x7x7 to 45 channels, then 3x1x1
            self.stem = nn.Sequential(
                nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3),
                          bias=False),
                nn.BatchNorm3d(45), nn.ReLU(inplace=True),
                nn.Conv3d(45, 64, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False),
                nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                          bias=False),
                nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        cin = 64
        for i, (planes, kind) in enumerate(zip((64, 128, 256, 512), kinds), 1):
            stride = 1 if i == 1 else 2
            downsample = None
            if stride != 1 or cin != planes:
                ds_stride = (1, stride, stride) if kind == "2d" else stride
                downsample = nn.Sequential(
                    nn.Conv3d(cin, planes, kernel_size=1, stride=ds_stride, bias=False),
                    nn.BatchNorm3d(planes))
            setattr(self, f"layer{i}", nn.Sequential(
                VideoBasicBlock(kind, cin, planes, stride, downsample),
                VideoBasicBlock(kind, planes, planes)))
            cin = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` -> pooled features ``(N, 512)``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def r3d_18(num_classes: int = 400) -> VideoResNet18:
    return VideoResNet18(("3d",) * 4, num_classes=num_classes)


def mc3_18(num_classes: int = 400) -> VideoResNet18:
    """Mixed convolutions: 3D in the first stage, spatial-only (1x3x3) after."""
    return VideoResNet18(("3d", "2d", "2d", "2d"), num_classes=num_classes)


def r2plus1d_18(num_classes: int = 400) -> VideoResNet18:
    return VideoResNet18(("2plus1d",) * 4, factorised_stem=True, num_classes=num_classes)
