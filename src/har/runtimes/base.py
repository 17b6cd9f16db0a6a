"""What every runtime is: a preprocessed batch in, logits and pooled features out."""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from ..defaults import pip_hint
from ..errors import HarError


class Runtime(Protocol):
    """``infer(batch) -> (logits (N, C) float32, features (N, D) float32)``;
    ``__call__(batch) -> logits``. ``batch``: ``(N, 3, T, H, W)`` float32.

    Provenance (set by :func:`har.runtimes.load_runtime`): ``labels``, ``preset``,
    ``model_name``, ``weights_sha256``.
    """

    name: str
    device: str
    batch_size: int
    precision: str

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray]: ...

    def __call__(self, batch) -> np.ndarray: ...


class RuntimeBase:
    """Shared plumbing: provenance attributes and ``__call__`` over ``infer``."""

    name = "?"
    labels: tuple[str, ...] = ()
    preset = None
    model_name: str = ""
    weights_sha256: str | None = None
    # A learned video-level head (har.models.temporal.TemporalHead) that scores a video
    # from its clips' features in order, in place of the mean of clip scores.
    video_head = None
    # Scores per clip as the loaded graph says (None where the runtime cannot tell):
    # labels from metadata must match it, else they would name the wrong classes.
    classes: int | None = None

    def set_info(self, info) -> None:
        """Take provenance from a :class:`har.models.info.ModelInfo` (WeightsError when
        its labels do not fit the loaded graph's outputs)."""
        if info is None:
            return
        if self.classes and len(info.labels) != self.classes:
            from ..errors import WeightsError
            from ..text import printable

            where = printable(info.weights_path or info.model or "the model")
            raise WeightsError(f"{where}: its metadata lists {len(info.labels)} labels but "
                               f"the model scores {self.classes} classes; the metadata was "
                               "changed or damaged: export the model again from its .pth")
        self.info = info
        self.labels, self.preset = info.labels, info.preset
        self.video_head = info.temporal_head()
        self.model_name, self.weights_sha256 = info.model, info.weights_sha256

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, batch) -> np.ndarray:
        return self.infer(batch)[0]


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def need(module: str, extra: str) -> None:
    if not installed(module):
        raise HarError(f"backend needs the '{module}' package: {pip_hint(extra)} "
                       f"(or pip install {module})")


def as_batch(batch) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
