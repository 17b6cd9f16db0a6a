"""Boxes: the typed record every part of :mod:`har.persons` passes around."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Box:
    """A person box in pixels of the full frame: ``x0, y0`` top-left, ``x1, y1``
    bottom-right (exclusive), ``score`` the detector's confidence (1.0 when given)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    def scaled(self, s: float) -> "Box":
        return Box(self.x0 * s, self.y0 * s, self.x1 * s, self.y1 * s, self.score)

    def as_list(self, nd: int = 1) -> list[float]:
        return [round(float(v), nd) for v in (self.x0, self.y0, self.x1, self.y1)]


@dataclass(frozen=True)
class TrackedBox:
    """One person in one frame: ``frame`` 0-based, ``id`` the track's number (from 1)."""

    frame: int
    id: int
    box: Box


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``, ``(A, B)``."""
    if not a or not b:
        return np.zeros((len(a), len(b)), np.float64)
    A = np.array([[x.x0, x.y0, x.x1, x.y1] for x in a], np.float64)
    B = np.array([[x.x0, x.y0, x.x1, x.y1] for x in b], np.float64)
    ix = np.minimum(A[:, None, 2], B[None, :, 2]) - np.maximum(A[:, None, 0], B[None, :, 0])
    iy = np.minimum(A[:, None, 3], B[None, :, 3]) - np.maximum(A[:, None, 1], B[None, :, 1])
    ix, iy = np.clip(ix, 0, None), np.clip(iy, 0, None)
    inter = ix * iy
    area_a = (A[:, 2] - A[:, 0]) * (A[:, 3] - A[:, 1])
    area_b = (B[:, 2] - B[:, 0]) * (B[:, 3] - B[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: Sequence[Box], iou: float = 0.45) -> list[Box]:
    """Greedy non-maximum suppression: the best-scoring box of each overlapping group."""
    order = sorted(boxes, key=lambda b: -b.score)
    kept: list[Box] = []
    for b in order:
        if not kept or iou_matrix([b], kept).max() < iou:
            kept.append(b)
    return kept
