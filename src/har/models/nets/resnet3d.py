"""The 3D ResNet family of Hara, Kataoka and Satoh (CVPR 2018).

Module names follow the authors' original code (kenshohara/3D-ResNets-PyTorch,
2017-2018), so their published state dicts load with strict key matching:
``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.bn1``, ..., ``fc``.

Layout: input ``(N, 3, T, H, W)`` float32, output logits ``(N, num_classes)``.
The published models take T=16, H=W=112; adaptive average pooling makes any
size work and equals the original fixed ``AvgPool3d((1, 4, 4))`` at 16x112x112.
"""

from __future__ import annotations

from typing import Literal, Sequence, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from .pooled import PooledHead

ShortcutType = Literal["A", "B"]


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by ``stride`` and zero-pad the channels.

    The original implements it as a plain function, so it adds no state-dict keys.
    """

    def __init__(self, out_planes: int, stride: int) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if s != 1:
            x = x[:, :, ::s, ::s, ::s]
        pad = self.out_planes - x.shape[1]
        if pad > 0:
            # F.pad pads from the last dim backwards: (W, W, H, H, T, T, C_before, C_after)
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, pad))
        return x


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


class ResNet3D(PooledHead, nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> layer1..4 -> avgpool -> fc.

    ``conv1`` is 7x7x7 with stride (1, 2, 2); the max pool strides by 2 in time too,
    and layers 2-4 halve T, H and W at their first block.
    """

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 400,
                 shortcut_type: ShortcutType = "B", widen_factor: float = 1.0) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', not {shortcut_type!r}")
        planes = [int(p * widen_factor) for p in (64, 128, 256, 512)]
        self.in_planes = 64
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0], shortcut_type)
        self.layer2 = self._make_layer(block, planes[1], layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], shortcut_type, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: Block, planes: int, blocks: int,
                    shortcut_type: ShortcutType, stride: int = 1) -> nn.Sequential:
        downsample: nn.Module | None = None
        out_planes = planes * block.expansion
        if stride != 1 or self.in_planes != out_planes:
            if shortcut_type == "A":
                downsample = ShortcutA(out_planes, stride)
            else:
                downsample = nn.Sequential(conv1x1x1(self.in_planes, out_planes, stride),
                                           nn.BatchNorm3d(out_planes))
        layers = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = out_planes
        layers += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` -> pooled features ``(N, 512 * expansion)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


# depth -> (block, layers); the published Kinetics checkpoints use shortcut A for
# ResNet-10/18/34 (BasicBlock) and B for the Bottleneck depths.
RESNET_SPECS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}


def resnet3d(depth: int, num_classes: int = 400, shortcut_type: ShortcutType | None = None,
             **kwargs) -> ResNet3D:
    """Build a 3D ResNet of the given depth; shortcut defaults to the published one."""
    if depth not in RESNET_SPECS:
        raise ValueError(f"3D ResNet depth must be one of {sorted(RESNET_SPECS)}, not {depth}")
    block, layers = RESNET_SPECS[depth]
    if shortcut_type is None:
        shortcut_type = "A" if block is BasicBlock else "B"
    return ResNet3D(block, layers, num_classes=num_classes, shortcut_type=shortcut_type, **kwargs)
