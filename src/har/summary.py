"""The incremental summary of one video: clip results in, video result out at any time.

:class:`Summary` is fed every scored clip (:meth:`Summary.add`) and can say at any
moment what the video looks like so far (:meth:`Summary.snapshot`): its scores (the
``aggregate`` of the clip probabilities), top labels, the evidence clips behind the top
label and the action segments. The scores are the pure functions of
:mod:`har.aggregate`; the segments come from a :class:`har.timeline.Segmenter` fed
each clip as it is added, the same rule that writes live ``segment_start`` and
``segment_end`` events, so a stream's final segments are exactly the ones announced
live. A snapshot before the end shows the segments as if the stream ended there.

Memory: with ``keep_clips`` (the default for files) every clip is kept, since the
outputs list them all. Without it (live streams that run for days) the video's scores
come from running sums (mean), maxima (max) and per-class top-k lists (topk-mean),
which take constant memory, and the segmenter remembers the last ``window`` ended
segments (it holds a few clips and the open segments, never the whole stream).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Sequence

import numpy as np

from .aggregate import aggregate_scores, evidence_clips, topk
from .results import ClipResult, VideoResult
from .timeline import Segmenter, SegmentEvent, TimelineOptions


class Summary:
    def __init__(self, labels: Sequence[str], *, k: int = 5, aggregate: str = "mean",
                 aggregate_k: int = 3, timeline: TimelineOptions | None = None,
                 keep_clips: bool = True, window: int = 512, video_head=None) -> None:
        # video_head: a learned head over the clips' features in time order
        # (har.models.temporal.TemporalHead); it then gives the video's scores, over
        # every clip (keep_clips) or the last ``window`` of them.
        self.video_head = video_head
        self.labels = tuple(labels)
        self.k, self.aggregate, self.aggregate_k = k, aggregate, aggregate_k
        self.timeline = timeline or TimelineOptions()
        self.keep_clips = keep_clips
        self.count = 0
        # Every clip (keep_clips) or the most recent ``window`` of them.
        self.clips: deque[ClipResult] = deque(maxlen=None if keep_clips else window)
        c = len(self.labels)
        self._sum = np.zeros(c, dtype=np.float64)
        self._max = np.zeros(c, dtype=np.float32)
        # Per class, the aggregate_k best probabilities seen and the clips that gave them.
        self._best = np.full((aggregate_k, c), -1.0, dtype=np.float32)
        self._best_idx = np.full((aggregate_k, c), -1, dtype=np.int64)
        self._segmenter = Segmenter(self.labels, self.timeline,
                                    keep=None if keep_clips else window)

    def add(self, clip: ClipResult) -> list[SegmentEvent]:
        """Add one clip (clips in time order); returns the ``segment_start`` /
        ``segment_end`` decisions it made possible (:class:`har.timeline.Segmenter`)."""
        self.count += 1
        self.clips.append(clip)
        if clip.probs is None:
            return []
        events = self._segmenter.add(clip)
        if self.keep_clips:
            return events
        p = clip.probs.astype(np.float32, copy=False)
        self._sum += p
        np.maximum(self._max, p, out=self._max)
        # Insert into each class's sorted top-k column where p beats the worst kept.
        worst = self._best[-1]
        better = p > worst
        if better.any():
            cols = np.nonzero(better)[0]
            self._best[-1, cols] = p[cols]
            self._best_idx[-1, cols] = clip.index
            order = np.argsort(-self._best[:, cols], axis=0, kind="stable")
            self._best[:, cols] = np.take_along_axis(self._best[:, cols], order, axis=0)
            self._best_idx[:, cols] = np.take_along_axis(self._best_idx[:, cols], order, axis=0)
        return events

    def finish(self) -> list[SegmentEvent]:
        """The stream ended: the last segment decisions (each call after the first
        returns none). :meth:`segments` is final from here on."""
        return self._segmenter.flush()

    # -- video-level views ---------------------------------------------------------
    def scores(self) -> np.ndarray | None:
        """The video's scores so far, ``(C,)``; None before the first clip."""
        if self.count == 0:
            return None
        if self.video_head is not None:
            clips = sorted(self.clips, key=lambda c: c.index)
            feats = [c.features for c in clips if c.features is not None]
            if len(feats) == len(clips):
                return self.video_head.video_probs(np.stack(feats))
        if self.keep_clips:
            probs = self._stack()
            if probs is None:
                return None
            return aggregate_scores(probs, self.aggregate, self.aggregate_k)
        if self.aggregate == "max":
            return self._max.copy()
        if self.aggregate == "topk-mean":
            kept = np.clip(self._best, 0.0, None)
            n = min(self.aggregate_k, self.count)
            return (kept[:n].sum(axis=0) / n).astype(np.float32)
        return (self._sum / self.count).astype(np.float32)

    def _stack(self) -> np.ndarray | None:
        probs = [c.probs for c in self.clips if c.probs is not None]
        return np.stack(probs) if probs else None

    def evidence(self, scores: np.ndarray) -> list[int]:
        best = int(np.argmax(scores))
        if self.keep_clips:
            clips = [c for c in self.clips if c.probs is not None]
            probs = np.stack([c.probs for c in clips])
            return [clips[i].index for i in evidence_clips(probs, best, self.aggregate_k)]
        return [int(i) for i in self._best_idx[:, best] if i >= 0]

    def segments(self):
        """The action segments so far (as if the stream ended now), then the final ones."""
        return self._segmenter.segments()

    def snapshot(self, base: VideoResult) -> VideoResult:
        """``base`` (path and metadata) completed with what is known so far."""
        out = replace(base, clips=list(self.clips) if self.keep_clips else [],
                      warnings=list(base.warnings))
        scores = self.scores()
        if scores is None:
            return out
        out.probs = scores
        out.top = topk(scores, self.labels, self.k)
        out.evidence = self.evidence(scores)
        out.segments = self.segments()
        return out
