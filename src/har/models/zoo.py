"""The model zoo: one flat registry of typed entries, and ``load_model``.

Each entry says how to build the network, which labels and preprocessing go with
it, and where its published weights come from (URL, size, sha256).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Literal

from torch import nn

from ..errors import ModelNotFoundError
from ..labels import load_labels
from ..transforms import HARA_KINETICS, Preset
from .resnet3d import resnet3d

WeightsFormat = Literal["pth", "onnx", "torchvision"]


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file."""

    filename: str  # name in the cache directory
    format: WeightsFormat
    urls: tuple[str, ...] = ()  # the download and its mirrors, tried in turn
    sha256: str | None = None
    size: int | None = None  # bytes
    note: str = ""  # where else it can be had (e.g. the authors' Google Drive)


@dataclass(frozen=True)
class ModelEntry:
    name: str  # registry name, e.g. "r3d34-k400"
    builder: Callable[..., nn.Module] = field(repr=False)  # builder(num_classes=...) -> model
    arch: str  # the 'arch' string of the original checkpoints, e.g. "resnet-34"
    labels: str = "kinetics400"  # label set shipped in har/labels
    preset: Preset = HARA_KINETICS
    weights: tuple[WeightsFile, ...] = ()
    accuracy: str = ""  # reference accuracy, with its source
    description: str = ""
    license: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return load_labels(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_len(self) -> int:
        return self.preset.clip_len

    def build(self, num_classes: int | None = None) -> nn.Module:
        return self.builder(num_classes=num_classes or self.num_classes)


_HARA_DRIVE = ("the authors' Google Drive folder linked from the README of "
               "kenshohara/3D-ResNets-PyTorch (file resnet-{d}-kinetics.pth)")
_HARA_LICENSE = "MIT (code); weights trained on Kinetics-400 (YouTube videos, research use)"
# Video-level top-1 on the Kinetics-400 validation set, Hara et al., CVPR 2018, Table 3.
_HARA_TOP1 = {18: 54.2, 34: 60.1, 50: 61.3, 101: 62.8, 152: 63.0, 200: 63.1}

REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    REGISTRY[entry.name] = entry
    return entry


for _depth in (10, 18, 34, 50, 101, 152, 200):
    _files: tuple[WeightsFile, ...] = (
        WeightsFile(filename=f"resnet-{_depth}-kinetics.pth", format="pth",
                    note=_HARA_DRIVE.format(d=_depth)),
    )
    if _depth == 34:
        # OpenCV's action-recognition sample uses this ONNX export of resnet-34-kinetics.pth.
        _files = (WeightsFile(
            filename="resnet-34_kinetics.onnx", format="onnx",
            urls=("https://www.dropbox.com/s/065l4vr8bptzohb/resnet-34_kinetics.onnx?dl=1",),
            sha256="b3f49d3423267207050c9b6344baab19f68e716465041402643a4a75daaa69da",
            size=254_257_945,
            note="OpenCV's test-data list records sha1 88897629e4abb0fddef939f0c2d668a4edeb0788",
        ),) + _files
    _acc = _HARA_TOP1.get(_depth)
    register(ModelEntry(
        name=f"r3d{_depth}-k400",
        builder=partial(resnet3d, _depth),
        arch=f"resnet-{_depth}",
        weights=_files,
        accuracy=(f"{_acc}% top-1 video-level, Kinetics-400 val (Hara et al., CVPR 2018, Table 3)"
                  if _acc else "not reported in the paper"),
        description=f"3D ResNet-{_depth}, Hara et al., shortcut "
                    f"{'A' if _depth <= 34 else 'B'}, 16x112x112 clips",
        license=_HARA_LICENSE,
    ))

DEFAULT_MODEL = "r3d34-k400"


def list_models() -> list[str]:
    """Names of all registered models."""
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names get a did-you-mean hint."""
    try:
        return REGISTRY[name]
    except KeyError:
        # Compare without punctuation so "r3d-34" finds "r3d34-k400".
        squash = {re.sub(r"[^a-z0-9]", "", n.lower()): n for n in REGISTRY}
        query = re.sub(r"[^a-z0-9]", "", name.lower())
        close = [n for s, n in squash.items() if query and s.startswith(query)]
        close = close or [squash[s] for s in difflib.get_close_matches(query, squash, 1, 0.5)]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}{hint} (`har models` lists them)") from None


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               device: str = "cpu", *, sha256: str | None = None,
               download: bool = True) -> nn.Module:
    """Build ``name`` with its weights, in eval mode on ``device``.

    The module takes a ``(N, 3, T, H, W)`` float32 tensor preprocessed with the
    entry's preset and returns logits ``(N, num_classes)``. ``weights`` is a file
    (.pth, .onnx, torchvision state dict) or an http(s) URL; without it the cached
    download is used (and fetched first if ``download``).
    """
    from ..weights import resolve_weights
    from .checkpoints import load_weights_into

    entry = get_entry(name)
    model = entry.build()
    path = resolve_weights(entry, weights, sha256=sha256, download=download)
    load_weights_into(model, path, entry)
    return model.to(device).eval()
