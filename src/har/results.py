"""Typed results and the versioned JSON schema ``har.predictions/1``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "har.predictions/1"


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(float(self.score), 6)}


@dataclass
class ClipResult:
    """One clip's scores. Frames 0-based, ``end_frame`` exclusive; times in seconds."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    top: list[Prediction]
    probs: np.ndarray | None = field(default=None, repr=False)  # (num_classes,) softmax
    # (D,) float32 pooled activations before the classifier, when the runtime gives them.
    features: np.ndarray | None = field(default=None, repr=False)
    # time.monotonic() when the clip's last frame had been read (live latency).
    ready_at: float | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start_frame": self.start_frame,
                "end_frame": self.end_frame, "start_s": _r(self.start_s),
                "end_s": _r(self.end_s), "top": [p.to_dict() for p in self.top]}


@dataclass(frozen=True)
class Segment:
    """One action over a stretch of time (see :mod:`har.timeline`).

    Times in seconds; ``start_clip``/``end_clip`` are the first and last clip index
    (inclusive). Scores are the clips' own probabilities for ``label`` over the span.
    """

    label: str
    start_s: float
    end_s: float
    mean_score: float
    peak_score: float
    start_clip: int
    end_clip: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start_s": _r(self.start_s), "end_s": _r(self.end_s),
                "mean_score": round(float(self.mean_score), 6),
                "peak_score": round(float(self.peak_score), 6),
                "start_clip": self.start_clip, "end_clip": self.end_clip}


@dataclass
class VideoResult:
    """Everything known about one input. ``error`` is set when it could not be processed;
    ``warnings`` when it was processed only in part (damaged or truncated)."""

    path: str
    fps: float | None = None
    frames: int = 0  # frames actually decoded
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    top: list[Prediction] = field(default_factory=list)
    clips: list[ClipResult] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    probs: np.ndarray | None = field(default=None, repr=False)  # video-level scores
    # Timeline (har.timeline): action segments, and the indices of the clips that
    # scored highest for the top label (the evidence behind the video's decision).
    segments: list[Segment] = field(default_factory=list)
    evidence: list[int] = field(default_factory=list)
    # Position among the inputs of a run (Recognizer.run_many); not part of the JSON.
    input_index: int | None = field(default=None, repr=False, compare=False)
    # Per-person results (har.persons.PersonResult) when people were tracked; the
    # JSON then has a "persons" list (docs/persons.md). None: not asked for.
    persons: list | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "fps": _r(self.fps), "frames": self.frames,
                "duration_s": _r(self.duration_s), "width": self.width,
                "height": self.height, "codec": self.codec,
                "top": [p.to_dict() for p in self.top],
                "clips": [c.to_dict() for c in self.clips],
                "evidence": list(self.evidence),
                "segments": [s.to_dict() for s in self.segments],
                "warnings": list(self.warnings), "error": self.error,
                **({} if self.persons is None
                   else {"persons": [p.to_dict() for p in self.persons]})}


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)
