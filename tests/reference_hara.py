"""Test oracle: the 3D ResNet as the authors' 2017-2018 code builds it.

This is an independent re-statement of the original structure (kenshohara/
3D-ResNets-PyTorch, the version that produced resnet-34-kinetics.pth), kept
deliberately close to it: the type-A shortcut is a plain function (no module, no
state-dict keys) that zero-pads with ``torch.cat``; the final pooling is a fixed
``AvgPool3d`` sized from ``sample_duration``/``sample_size``; ``fc`` sees a
``view``-flattened tensor. Checkpoints saved from it have the published format.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv3x3x3(in_planes, out_planes, stride=1):
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def downsample_basic_block(x, planes, stride):
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    zero_pads = torch.zeros(out.size(0), planes - out.size(1), out.size(2), out.size(3),
                            out.size(4), dtype=out.dtype, device=out.device)
    return torch.cat([out, zero_pads], dim=1)


class OrigBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class OrigBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class OrigResNet(nn.Module):
    def __init__(self, block, layers, sample_size, sample_duration, shortcut_type="B",
                 num_classes=400):
        self.inplanes = 64
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], shortcut_type)
        self.layer2 = self._make_layer(block, 128, layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], shortcut_type, stride=2)
        last_duration = int(math.ceil(sample_duration / 16))
        last_size = int(math.ceil(sample_size / 32))
        self.avgpool = nn.AvgPool3d((last_duration, last_size, last_size), stride=1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, shortcut_type, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            if shortcut_type == "A":
                downsample = partial(downsample_basic_block, planes=planes * block.expansion,
                                     stride=stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1,
                              stride=stride, bias=False),
                    nn.BatchNorm3d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


_SPECS = {10: (OrigBasicBlock, [1, 1, 1, 1]), 18: (OrigBasicBlock, [2, 2, 2, 2]),
          34: (OrigBasicBlock, [3, 4, 6, 3]), 50: (OrigBottleneck, [3, 4, 6, 3]),
          101: (OrigBottleneck, [3, 4, 23, 3]), 152: (OrigBottleneck, [3, 8, 36, 3]),
          200: (OrigBottleneck, [3, 24, 36, 3])}


def hara_resnet(depth, shortcut_type="A", sample_size=112, sample_duration=16, num_classes=400):
    block, layers = _SPECS[depth]
    return OrigResNet(block, layers, sample_size, sample_duration, shortcut_type, num_classes)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights AND non-trivial BN statistics, so BN handling is really tested.

    The conv weights are scaled so activations stay in a sane range through 30+ layers.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv3d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(0.01 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def published_checkpoint(model: nn.Module, arch: str, prefix: str = "module.") -> dict:
    """The published .pth layout: {'arch', 'epoch', 'state_dict' (prefixed keys,
    no num_batches_tracked), 'optimizer'}."""
    sd = {prefix + k: v.clone() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    return {"arch": arch, "epoch": 200, "state_dict": sd,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9}]}}
