"""From per-clip probabilities to action segments people can read.

The recognizer scores each clip (16 frames, about half a second) on its own, which
gives a jittery ``(num_clips, num_classes)`` array. This module turns it into
segments such as "juggling soccer ball from 0:03.2 to 0:11.0".

There is one rule and one implementation of it, :class:`Segmenter`: it takes clips
one at a time, in time order, and says when a segment starts (``segment_start``) and
when it ends (``segment_end``). Live events (``har live``, ``har serve`` streams) and
every summary's segments (:class:`har.summary.Summary`: ``har predict``, snapshots,
``har eval``) come from it, so for the same clips and options the segments announced
live are exactly the final segments. :func:`segments` runs it over a whole array.

The rule, step by step (defaults in :class:`TimelineOptions`):

1. **Smoothing.** Each class's score is replaced by the median (or the mean) of the
   scores of the ``window`` clips centred on it: clip ``i`` becomes the median of
   clips ``i - (w-1)//2 .. i + w//2``. At the ends of the stream the window shrinks
   to the clips that exist, so the first and last clips are not pulled towards
   zero. ``window=1`` switches smoothing off. The default, a median over 3 clips,
   removes single-clip flickers entirely while a step from one action to another
   stays exactly where it was. The mean (moving average) blurs a step over the
   window: with a low threshold both actions then extend by up to ``window // 2``
   clips into each other. The window is centred, yet nothing looks ahead: the
   segmenter keeps the last clips that came and decides clip ``i`` once its window
   is complete, i.e. ``w//2`` clips later (:func:`smooth` is the same smoothing over
   a whole array).
2. **On.** A label is *on* at a clip when its smoothed score is at least
   ``threshold``.
3. **Segments.** A run of clips where a label is on opens a segment; labels are
   independent, so segments of different labels may overlap in time (someone can
   be "dancing" and "singing" at once); segments of one label never overlap. At
   most ``max_labels`` segments are open at once: a label that turns on while that
   many are open gets no segment until one has ended (labels turning on at the
   same clip: highest smoothed score first), so 400 classes never give 400 rows of
   noise.
4. **Bridging.** When its label goes off, a segment stays open: if the label is on
   again less than ``max_gap_s`` seconds (between the clips' cells) after its last
   "on" clip, the dip is part of the segment (e.g. the person turning away). It
   ends, at its last "on" clip, once it has been off for ``max_gap_s``.
5. **Minimum duration.** A segment is kept once it spans ``min_duration_s``
   seconds (bridged dips included); one that ends shorter is dropped, unless it
   covers the whole stream (a video shorter than the minimum still gets its
   action).
6. **Scores.** ``mean_score`` and ``peak_score`` are the mean and maximum of the
   clips' *raw* (unsmoothed) probabilities for the label over the segment's clips,
   bridged dips included, so they report what the model said, not the filter.

**Delay.** ``segment_start`` is written once a segment has lasted
``min_duration_s``, ``segment_end`` once it has been off for ``max_gap_s``; both
come ``max(window // 2, 1)`` clips after the clip they are about (the rest of its
smoothing window, and the next clip, where its cell ends), with the default
options one clip (about half a second) later.

**Clip times.** Clips can overlap (``--stride`` smaller than the clip length) or
leave gaps (``--sampler uniform``, skipped clips of a live stream), so each clip is
given a *cell*, a stretch of time it stands for, and a segment spans its clips'
cells. The boundary between clip ``i`` and clip ``i + 1`` is:

- for touching clips (the default sliding window, stride = clip length): the
  start of clip ``i + 1``, i.e. exactly the clip boundary;
- for overlapping clips: the midpoint between the two clips' centres;
- for clips with a gap between them: the middle of the gap.

The first cell starts where the first clip starts and the last cell ends where the
last clip ends. A change of action is thus located to within one clip (the model
only sees whole clips).

Subtitles: :func:`to_srt` and :func:`to_vtt` give one cue per segment.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .results import Segment

SMOOTHING = ("mean", "median")


@dataclass(frozen=True)
class TimelineOptions:
    """Settings for :class:`Segmenter`. See the module docstring for the rule.

    threshold: smoothed probability a clip needs for its label to be "on".
    window: clips in the centred smoothing window (odd numbers are centred exactly;
        an even window leans one clip to the future). 1 switches smoothing off.
    smoothing: ``median`` (moving median, the default) or ``mean`` (moving average).
    min_duration_s: shorter segments are dropped (unless they span the whole video).
    max_gap_s: same-label segments closer than this are merged.
    max_labels: at most this many segments are open at once.
    """

    threshold: float = 0.3
    window: int = 3
    smoothing: str = "median"
    min_duration_s: float = 1.0
    max_gap_s: float = 1.0
    max_labels: int = 5

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if self.window < 1:
            raise ValueError("window must be at least 1 clip")
        if self.smoothing not in SMOOTHING:
            raise ValueError(f"smoothing must be one of {', '.join(SMOOTHING)}")
        if self.min_duration_s < 0 or self.max_gap_s < 0:
            raise ValueError("min_duration_s and max_gap_s must not be negative")
        if self.max_labels < 1:
            raise ValueError("max_labels must be at least 1")


_SMOOTH_BLOCK = 128  # rows smoothed at once (bounds the temporary copies)


def smooth(probs: np.ndarray, window: int = 3, method: str = "mean") -> np.ndarray:
    """Centred moving mean/median over clips (axis 0) of ``(num_clips, num_classes)``.

    The window shrinks at the ends (only existing clips are averaged). Returns
    float64 of the same shape: the values :class:`Segmenter` compares with the
    threshold, computed over a whole array at once.

    >>> smooth(np.array([[0.], [0.], [3.], [0.]]), 3).ravel().tolist()
    [0.0, 1.0, 1.0, 1.5]
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        return smooth(p[:, None], window, method)[:, 0]
    if p.ndim != 2:
        raise ValueError("need (num_clips, num_classes) probabilities")
    if window < 1:
        raise ValueError("window must be at least 1")
    if method not in SMOOTHING:
        raise ValueError(f"method must be one of {', '.join(SMOOTHING)}")
    n = p.shape[0]
    if window == 1 or n <= 1:
        return p.copy()
    before = (window - 1) // 2
    padded = np.full((n + window - 1, p.shape[1]), np.nan)
    padded[before:before + n] = p
    # (n, num_classes, window) views of each clip's neighbourhood; NaN = no clip.
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    reduce = np.nanmean if method == "mean" else np.nanmedian
    # In blocks of rows: nanmedian copies its (rows, classes, window) input, which on
    # a whole 30-minute video was ~180 MB at the end of the run; rows are independent,
    # so the result is the same and the memory stays flat.
    out = np.empty(p.shape, dtype=np.float64)
    for i in range(0, n, _SMOOTH_BLOCK):
        out[i:i + _SMOOTH_BLOCK] = reduce(views[i:i + _SMOOTH_BLOCK], axis=-1)
    return out


def _boundary(cell_start: float, s0: float, e0: float, s1: float, e1: float) -> float:
    """Where the cell of a clip (``s0..e0``, its cell starting at ``cell_start``) ends
    and the next clip's (``s1..e1``) begins. See the module docstring for the rule."""
    if s1 <= e0:  # touching or overlapping
        mid = (s0 + e0 + s1 + e1) / 4.0
        b = min(max(mid, s1), e0)
    else:  # a gap between the clips
        b = (e0 + s1) / 2.0
    return max(b, cell_start)  # never run backwards (odd inputs)


def clip_cells(starts: Sequence[float], ends: Sequence[float]) -> np.ndarray:
    """``(num_clips, 2)`` start/end of the stretch of time each clip stands for.

    Clips must be in time order. See the module docstring for the rule.
    """
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    n = len(s)
    cells = np.empty((n, 2))
    if n == 0:
        return cells
    cells[0, 0] = s[0]
    for i in range(n - 1):
        cells[i, 1] = cells[i + 1, 0] = _boundary(float(cells[i, 0]), float(s[i]),
                                                  float(e[i]), float(s[i + 1]),
                                                  float(e[i + 1]))
    cells[-1, 1] = max(float(e[-1]), float(cells[-1, 0]))
    return cells


# -- the one segmenter -------------------------------------------------------------
SegmentEvent = tuple[str, dict]  # ("segment_start" | "segment_end", Segment.to_dict())


@dataclass
class _Clip:
    pos: int  # 0, 1, 2, ... in the order the clips came
    index: int  # the clip's own index (ClipResult.index)
    start_s: float
    end_s: float
    row: np.ndarray  # raw probabilities, float64
    cell_start: float
    cell_end: float | None = None  # known once the next clip (or the end) is known


@dataclass
class _Track:
    """One label's segment being followed: on, or off for less than ``max_gap_s``
    (a gap that may still be bridged)."""

    label: str
    first: int  # position of its first clip
    last: int  # position of its last "on" clip
    start_s: float
    end_s: float
    start_clip: int
    end_clip: int
    total: float  # raw probabilities over first..last (bridged gaps included)
    peak: float
    count: int
    gap_total: float = 0.0  # ... over the clips after ``last`` (counted if bridged)
    gap_peak: float = float("-inf")
    gap_count: int = 0
    announced: bool = False

    def segment(self) -> Segment:
        return Segment(label=self.label, start_s=self.start_s, end_s=self.end_s,
                       mean_score=self.total / self.count, peak_score=self.peak,
                       start_clip=self.start_clip, end_clip=self.end_clip)


class Segmenter:
    """Action segments from clips fed one at a time, in time order: the one rule.

    :meth:`add` (a :class:`~har.results.ClipResult`) or :meth:`push` (its numbers)
    takes one clip and returns the decisions it made possible, as
    ``("segment_start" | "segment_end", fields)`` pairs whose fields are
    :meth:`Segment.to_dict() <har.results.Segment.to_dict>` (``label, start_s, end_s,
    mean_score, peak_score, start_clip, end_clip``). ``segment_start`` comes once a
    segment is sure to be kept (it has lasted ``min_duration_s``), with its span so
    far; ``segment_end`` once it is sure to be over (off for ``max_gap_s``), with its
    final span and scores. :meth:`flush` ends the stream. :meth:`segments` is every
    segment ended so far plus what :meth:`flush` would give now; after :meth:`flush`
    it is exactly the segments of the ``segment_end`` events. The live events
    (``har live``, ``har serve`` streams) and every summary's segments
    (:class:`har.summary.Summary`, so ``har predict``) come from this class.

    Decisions lag the newest clip by ``max(window // 2, 1)`` clips: the centred
    window of a clip is complete once ``window // 2`` later clips have come, and a
    clip's cell ends where the next clip's begins. ``keep`` bounds how many ended
    segments :meth:`segments` remembers (the most recent; None: all, 0: none).
    """

    def __init__(self, labels: Sequence[str], options: TimelineOptions | None = None, *,
                 keep: int | None = None) -> None:
        self.labels = tuple(str(label) for label in labels)
        self.options = opt = options or TimelineOptions()
        self._before = (opt.window - 1) // 2
        self._after = opt.window // 2
        self._lag = max(self._after, 1)
        self._buf: deque[_Clip] = deque(maxlen=self._before + self._lag + 1)
        self._count = 0  # clips received
        self._decided = 0  # clips decided (positions 0 .. _decided - 1)
        self._tracks: dict[int, _Track] = {}  # class -> its open segment
        self._ended: deque[Segment] = deque(maxlen=keep)
        self.done = False  # flush() was called

    # -- input ---------------------------------------------------------------------
    def add(self, clip) -> list[SegmentEvent]:
        """Feed one clip (anything with ``probs``, ``start_s``, ``end_s``, ``index``)."""
        return self.push(clip.probs, clip.start_s, clip.end_s, clip.index)

    def push(self, probs, start_s: float, end_s: float,
             index: int | None = None) -> list[SegmentEvent]:
        """Feed one clip's ``(num_classes,)`` probabilities and times (seconds)."""
        if self.done:
            raise ValueError("this segmenter was flushed; start a new one")
        row = np.array(probs, dtype=np.float64).reshape(-1)
        if row.shape[0] != len(self.labels):
            raise ValueError(f"{row.shape[0]} classes but {len(self.labels)} labels")
        start_s, end_s = float(start_s), float(end_s)
        cell_start = start_s
        if self._buf:
            prev = self._buf[-1]
            prev.cell_end = cell_start = _boundary(prev.cell_start, prev.start_s,
                                                   prev.end_s, start_s, end_s)
        pos = self._count
        self._buf.append(_Clip(pos, pos if index is None else int(index), start_s, end_s,
                               row, cell_start))
        self._count += 1
        d = self._count - 1 - self._lag
        return _fields(self._decide(d)) if d >= self._decided else []

    def flush(self) -> list[SegmentEvent]:
        """End of the stream: decide the last clips and end every open segment."""
        return _fields(self._flush())

    def segments(self) -> list[Segment]:
        """The segments so far, as if the stream ended now (sorted by start time, then
        best mean score first); after :meth:`flush`, the final ones."""
        out = list(self._ended)
        if not self.done:
            out += [seg for kind, seg in self._fork()._flush() if kind == "segment_end"]
        out.sort(key=lambda s: (s.start_s, -s.mean_score, s.label))
        return out

    # -- the rule --------------------------------------------------------------------
    def _fork(self) -> "Segmenter":
        """A copy to flush without touching this one (for :meth:`segments`)."""
        other = Segmenter.__new__(Segmenter)
        other.__dict__.update(self.__dict__)
        other._buf = deque((replace(c) for c in self._buf), maxlen=self._buf.maxlen)
        other._tracks = {c: replace(t) for c, t in self._tracks.items()}
        other._ended = deque()
        return other

    def _end(self, t: _Track) -> Segment:
        seg = t.segment()
        self._ended.append(seg)
        return seg

    def _flush(self) -> list[tuple[str, Segment]]:
        if self.done:
            return []
        self.done = True
        events: list[tuple[str, Segment]] = []
        if not self._buf:
            return events
        last = self._buf[-1]
        last.cell_end = max(last.end_s, last.cell_start)
        for d in range(self._decided, self._count):
            events += self._decide(d)
        n = self._count
        for c in sorted(self._tracks):
            t = self._tracks.pop(c)
            if t.announced:
                events.append(("segment_end", self._end(t)))
            elif t.first == 0 and t.last == n - 1:
                # Shorter than min_duration_s, but the whole stream: kept.
                seg = self._end(t)
                events += [("segment_start", seg), ("segment_end", seg)]
        return events

    def _decide(self, d: int) -> list[tuple[str, Segment]]:
        """Decide clip ``d``: its centred window and its cell are known."""
        opt = self.options
        base = self._buf[0].pos
        clip = self._buf[d - base]
        lo, hi = max(0, d - self._before), min(self._count - 1, d + self._after)
        rows = np.stack([self._buf[p - base].row for p in range(lo, hi + 1)])
        # A moving mean or median never exceeds the largest value it sees: only the
        # classes that reach the threshold somewhere in the window are smoothed.
        cand = np.flatnonzero((rows >= opt.threshold).any(axis=0))
        on: dict[int, float] = {}
        if cand.size:
            sub = rows[:, cand]
            sm = np.median(sub, axis=0) if opt.smoothing == "median" else sub.mean(axis=0)
            on = {int(c): float(v) for c, v in zip(cand, sm) if v >= opt.threshold}
        self._decided = d + 1
        raw, cell_end = clip.row, clip.cell_end
        starts: list[_Track] = []
        ends: list[_Track] = []
        for c in sorted(self._tracks):
            t = self._tracks[c]
            p = float(raw[c])
            if c in on:  # on again: the gap (if any) is bridged
                t.total += t.gap_total + p
                t.peak = max(t.peak, t.gap_peak, p)
                t.count += t.gap_count + 1
                t.gap_total, t.gap_peak, t.gap_count = 0.0, float("-inf"), 0
                t.last, t.end_s, t.end_clip = d, cell_end, clip.index
                if not t.announced and self._long_enough(t):
                    t.announced = True
                    starts.append(t)
            else:
                t.gap_total += p
                t.gap_peak = max(t.gap_peak, p)
                t.gap_count += 1
                # The next run could start at the next clip's cell, cell_end or
                # later: once that is max_gap_s away, nothing can bridge to it.
                if cell_end - t.end_s >= opt.max_gap_s:
                    del self._tracks[c]
                    if t.announced:
                        ends.append(t)
        free = opt.max_labels - len(self._tracks)
        new = sorted((c for c in on if c not in self._tracks), key=lambda c: (-on[c], c))
        for c in new[:max(0, free)]:
            p = float(raw[c])
            t = self._tracks[c] = _Track(self.labels[c], d, d, clip.cell_start, cell_end,
                                         clip.index, clip.index, p, p, 1)
            if self._long_enough(t):
                t.announced = True
                starts.append(t)
        return ([("segment_end", self._end(t)) for t in ends] +
                [("segment_start", t.segment()) for t in starts])

    def _long_enough(self, t: _Track) -> bool:
        # A tiny tolerance: clip times are sums of float frame durations.
        return t.end_s - t.start_s >= self.options.min_duration_s - 1e-6


def _fields(events: list[tuple[str, Segment]]) -> list[SegmentEvent]:
    return [(kind, seg.to_dict()) for kind, seg in events]


def segments(probs: np.ndarray, labels: Sequence[str], starts: Sequence[float],
             ends: Sequence[float], options: TimelineOptions | None = None,
             clip_indices: Sequence[int] | None = None) -> list[Segment]:
    """Action segments of a whole ``(num_clips, num_classes)`` array of clip
    probabilities: the clips fed to a :class:`Segmenter` in order, then flushed.

    ``starts``/``ends`` are the clips' times in seconds (clips in time order);
    ``clip_indices`` their indices (default ``0..n-1``) for ``Segment.start_clip``
    and ``end_clip``. Sorted by start time, then by mean score (best first).
    """
    raw = np.asarray(probs)
    if raw.ndim != 2:
        raise ValueError("need (num_clips, num_classes) probabilities")
    n = raw.shape[0]
    if len(starts) != n or len(ends) != n:
        raise ValueError("need one start and one end time per clip")
    if raw.shape[1] != len(labels):
        raise ValueError(f"{raw.shape[1]} classes but {len(labels)} labels")
    if clip_indices is not None and len(clip_indices) != n:
        raise ValueError("need one clip index per clip")
    seg = Segmenter(labels, options)
    for i in range(n):
        seg.push(raw[i], starts[i], ends[i], i if clip_indices is None else clip_indices[i])
    seg.flush()
    return seg.segments()


# -- subtitles ----------------------------------------------------------------------
def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_text(seg: Segment) -> str:
    """The text shown for a segment: label and scores, one line."""
    return f"{seg.label} ({seg.mean_score:.0%}, peak {seg.peak_score:.0%})"


def _cues(segs: Sequence[Segment]) -> list[tuple[float, float, str]]:
    cues = []
    for seg in sorted(segs, key=lambda s: (s.start_s, s.end_s)):
        start, end = seg.start_s, seg.end_s
        if round(end * 1000) <= round(start * 1000):  # players drop empty cues
            end = start + 0.001
        cues.append((start, end, cue_text(seg)))
    return cues


def to_srt(segs: Sequence[Segment]) -> str:
    """SubRip text, one numbered cue per segment (overlapping cues are allowed)."""
    blocks = [f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n"
              for i, (a, b, text) in enumerate(_cues(segs), 1)]
    return "\n".join(blocks)


def to_vtt(segs: Sequence[Segment]) -> str:
    """WebVTT text, one cue per segment."""
    out = ["WEBVTT", ""]
    for i, (a, b, text) in enumerate(_cues(segs), 1):
        out += [f"{i}", f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}", text, ""]
    return "\n".join(out) + ("" if len(out) > 2 else "\n")
