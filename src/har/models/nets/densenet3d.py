"""3D DenseNet-BC (121/169/201/264) as in Hara et al.'s code, Kinetics-400.

The authors' module names contain dots (``features.denseblock1.denselayer1.norm.1``),
which current PyTorch refuses as module names. The layers here are called ``norm1``,
``conv1``, ... and :meth:`DenseNet3D.adapt_state_dict` renames the published keys
(``norm.1`` -> ``norm1``); state dicts saved from this class load unchanged.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .pooled import PooledHead


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1x1 conv (to bn_size*growth) -> BN-ReLU-3x3x3 conv (to growth), then
    concatenated to its input."""

    def __init__(self, in_features: int, growth: int, bn_size: int) -> None:
        super().__init__()
        inner = bn_size * growth
        self.norm1 = nn.BatchNorm3d(in_features)
        self.conv1 = nn.Conv3d(in_features, inner, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm3d(inner)
        self.conv2 = nn.Conv3d(inner, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat([x, y], 1)


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm3d(in_features)),
            ("relu", nn.ReLU()),
            ("conv", nn.Conv3d(in_features, out_features, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool3d(kernel_size=2, stride=2)),
        ]))


class DenseNet3D(PooledHead, nn.Module):
    classifier_attr = "classifier"  # the published name

    def __init__(self, block_config: Sequence[int], num_classes: int = 400,
                 growth_rate: int = 32, num_init_features: int = 64, bn_size: int = 4) -> None:
        super().__init__()
        feats: "OrderedDict[str, nn.Module]" = OrderedDict([
            ("conv0", nn.Conv3d(3, num_init_features, kernel_size=7, stride=(1, 2, 2),
                                padding=3, bias=False)),
            ("norm0", nn.BatchNorm3d(num_init_features)),
            ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)),
        ])
        n = num_init_features
        for i, layers in enumerate(block_config, 1):
            block = nn.Sequential(OrderedDict(
                (f"denselayer{j + 1}", _DenseLayer(n + j * growth_rate, growth_rate, bn_size))
                for j in range(layers)))
            feats[f"denseblock{i}"] = block
            n += layers * growth_rate
            if i != len(block_config):
                feats[f"transition{i}"] = _Transition(n, n // 2)
                n //= 2
        # The original declares norm5 as BatchNorm2d (PyTorch 0.3 applied it to 5-D
        # input per channel); the parameters are the same as a BatchNorm3d's.
        feats["norm5"] = nn.BatchNorm3d(n)
        self.features = nn.Sequential(feats)
        self.classifier = nn.Linear(n, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` -> pooled features ``(N, D)`` (1024 for DenseNet-121)."""
        x = F.relu(self.features(x))
        return torch.flatten(F.adaptive_avg_pool3d(x, 1), 1)

    @staticmethod
    def adapt_state_dict(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        """Published key names (``...denselayer1.norm.1.weight``) -> this module's."""
        pat = re.compile(r"(denselayer\d+)\.(norm|relu|conv)\.(\d)\.")
        return OrderedDict((pat.sub(r"\1.\2\3.", k), v) for k, v in state.items())


DENSENET_SPECS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32),
                  264: (6, 12, 64, 48)}


def densenet3d(depth: int = 121, num_classes: int = 400) -> DenseNet3D:
    if depth not in DENSENET_SPECS:
        raise ValueError(f"DenseNet depth must be one of {sorted(DENSENET_SPECS)}")
    return DenseNet3D(DENSENET_SPECS[depth], num_classes=num_classes)
