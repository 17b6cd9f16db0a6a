"""A multi-person tracker in the ByteTrack style (Zhang et al., ECCV 2022).

Per frame with detections (:meth:`Tracker.update`):

1. every track's box is predicted by a constant-velocity Kalman filter over
   ``(cx, cy, w, h)`` (the noise model of ByteTrack/BoT-SORT: proportional to the box
   size);
2. high-score detections (``score >= high``) are matched to all tracks, the ones in
   view and the ones lost in the last ``max_age`` frames, by Hungarian assignment
   (``scipy.optimize.linear_sum_assignment``) on ``1 - IoU``, pairs under ``match_iou``
   refused;
3. low-score detections (``low <= score < high``, often a partly hidden person) are
   matched to the tracks in view that are still unmatched (IoU at least ``low_iou``);
4. unmatched high detections start tentative tracks, which get an id once matched
   ``min_hits`` times in a row (a single false detection never gets one); unmatched
   tracks are lost and kept ``max_age`` frames, so a person hidden for a moment keeps
   their id when seen again.

On frames without detections (``--detect-every N``) :meth:`Tracker.predict` moves the
tracks in view along their predicted path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .boxes import Box, iou_matrix

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


@dataclass
class _Track:
    mean: np.ndarray
    cov: np.ndarray
    score: float
    id: int = 0  # 0 while tentative
    hits: int = 1
    missed: int = 0  # frames since the last match
    history: list = field(default_factory=list)

    @property
    def box(self) -> Box:
        cx, cy, w, h = self.mean[:4]
        w, h = max(float(w), 1.0), max(float(h), 1.0)
        return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, self.score)


def _noise(w: float, h: float, pos: float, vel: float) -> tuple[np.ndarray, np.ndarray]:
    s = np.array([w, h, w, h], np.float64)
    return (pos * s) ** 2, (vel * s) ** 2


class Tracker:
    """ByteTrack-style tracking; see the module docstring for the parameters."""

    def __init__(self, *, high: float = 0.5, low: float = 0.1, new: float = 0.6,
                 match_iou: float = 0.2, low_iou: float = 0.5, max_age: int = 30,
                 min_hits: int = 2) -> None:
        if not 0 <= low <= high <= 1:
            raise ValueError("need 0 <= low <= high <= 1")
        if max_age < 0 or min_hits < 1:
            raise ValueError("max_age must be >= 0 and min_hits >= 1")
        self.high, self.low, self.new = high, low, new
        self.match_iou, self.low_iou = match_iou, low_iou
        self.max_age, self.min_hits = max_age, min_hits
        self.tracks: list[_Track] = []
        self._next_id = 1
        self._pos, self._vel = 1.0 / 20, 1.0 / 160

    # -- Kalman filter --------------------------------------------------------------
    def _start(self, det: Box) -> _Track:
        cx, cy = det.center
        mean = np.array([cx, cy, det.width, det.height, 0, 0, 0, 0], np.float64)
        p, v = _noise(det.width, det.height, 2 * self._pos, 10 * self._vel)
        return _Track(mean, np.diag(np.concatenate([p, v])), det.score)

    def _predict(self, t: _Track) -> None:
        w, h = t.mean[2], t.mean[3]
        p, v = _noise(w, h, self._pos, self._vel)
        t.mean = _F @ t.mean
        t.cov = _F @ t.cov @ _F.T + np.diag(np.concatenate([p, v]))

    def _correct(self, t: _Track, det: Box) -> None:
        cx, cy = det.center
        z = np.array([cx, cy, det.width, det.height])
        R = np.diag(_noise(t.mean[2], t.mean[3], self._pos, self._vel)[0])
        S = _H @ t.cov @ _H.T + R
        K = t.cov @ _H.T @ np.linalg.inv(S)
        t.mean = t.mean + K @ (z - _H @ t.mean)
        t.cov = (np.eye(8) - K @ _H) @ t.cov
        t.score = det.score
        t.missed = 0
        t.hits += 1

    # -- association ------------------------------------------------------------------
    @staticmethod
    def _match(tracks: Sequence[_Track], dets: Sequence[Box], min_iou: float
               ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        if not tracks or not dets:
            return [], list(range(len(tracks))), list(range(len(dets)))
        try:
            from scipy.optimize import linear_sum_assignment
        except ImportError:
            from ..defaults import pip_hint
            from ..errors import HarError

            raise HarError("tracking people needs scipy, which is not installed; install "
                           f"it with: {pip_hint('persons')}") from None

        iou = iou_matrix([t.box for t in tracks], dets)
        rows, cols = linear_sum_assignment(1.0 - iou)
        pairs = [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
        mt, md = {r for r, _ in pairs}, {c for _, c in pairs}
        return (pairs, [i for i in range(len(tracks)) if i not in mt],
                [j for j in range(len(dets)) if j not in md])

    def predict(self) -> list[tuple[int, Box]]:
        """Advance one frame without detections: the tracks in view, moved."""
        for t in self.tracks:
            self._predict(t)
        return [(t.id, t.box) for t in self.tracks if t.id and t.missed == 0]

    def update(self, dets: Sequence[Box]) -> list[tuple[int, Box]]:
        """Advance one frame with this frame's detections; returns ``(id, box)`` of each
        confirmed person matched in this frame (lost tracks are not returned)."""
        for t in self.tracks:
            self._predict(t)
        high = [d for d in dets if d.score >= self.high]
        low = [d for d in dets if self.low <= d.score < self.high]
        # Stage 1: high detections against every track (in view or lost).
        pairs, un_t, un_d = self._match(self.tracks, high, self.match_iou)
        matched: set[int] = set()
        for ti, di in pairs:
            self._correct(self.tracks[ti], high[di])
            matched.add(ti)
        # Stage 2: low detections against the unmatched tracks that were in view.
        in_view = [ti for ti in un_t if self.tracks[ti].missed == 0]
        pairs2, _, _ = self._match([self.tracks[i] for i in in_view], low, self.low_iou)
        for a, di in pairs2:
            self._correct(self.tracks[in_view[a]], low[di])
            matched.add(in_view[a])
        kept: list[_Track] = []
        for i, t in enumerate(self.tracks):
            if i not in matched:
                t.missed += 1
                if t.id == 0 or t.missed > self.max_age:
                    continue  # a tentative track that missed, or lost for too long
            elif t.id == 0 and t.hits >= self.min_hits:
                t.id = self._next_id
                self._next_id += 1
            kept.append(t)
        for di in un_d:
            if high[di].score >= self.new:
                t = self._start(high[di])
                if self.min_hits <= 1:
                    t.id = self._next_id
                    self._next_id += 1
                kept.append(t)
        self.tracks = kept
        return [(t.id, t.box) for t in self.tracks if t.id and t.missed == 0]

    def alive(self) -> set[int]:
        """Ids of the confirmed tracks still kept (in view or lost but not yet dropped)."""
        return {t.id for t in self.tracks if t.id}
