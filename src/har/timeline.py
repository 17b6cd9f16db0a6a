"""From per-clip probabilities to action segments people can read.

The recognizer scores each clip (16 frames, about half a second) on its own, which
gives a jittery ``(num_clips, num_classes)`` array. This module turns it into
segments such as "juggling soccer ball from 0:03.2 to 0:11.0". All functions are
pure (arrays in, arrays or dataclasses out).

The method, step by step (defaults in :class:`TimelineOptions`):

1. **Smoothing** (:func:`smooth`). Each class's score is replaced by the mean (or
   the median) of the scores of the ``window`` clips centred on it: clip ``i``
   becomes the average of clips ``i - w//2 .. i + w//2``. At the ends of the video
   the window shrinks to the clips that exist, so the first and last clips are not
   pulled towards zero. ``window=1`` switches smoothing off. The default, a
   median over 3 clips, removes single-clip flickers entirely while a step from
   one action to another stays exactly where it was. The mean (moving average)
   blurs a step over the window: with a low threshold both actions then extend
   by up to ``window // 2`` clips into each other.
2. **Candidate labels.** Only classes whose smoothed score reaches ``threshold``
   somewhere are considered, at most ``max_labels`` of them (those with the highest
   smoothed peak), so 400 classes do not give 400 rows of noise.
3. **Runs.** For each candidate class, the clips whose smoothed score is at least
   ``threshold`` form runs of consecutive clips. Different classes are independent,
   so segments of different labels may overlap in time (someone can be "dancing"
   and "singing" at once); segments of one label never overlap.
4. **Bridging.** Two runs of the same label separated by less than ``max_gap_s``
   seconds are merged into one (a short dip, e.g. the person turning away, does
   not split the action).
5. **Minimum duration.** Runs shorter than ``min_duration_s`` seconds are dropped,
   unless the run covers the whole video (a video shorter than the minimum still
   gets its action).
6. **Scores.** ``mean_score`` and ``peak_score`` are the mean and maximum of the
   clips' *raw* (unsmoothed) probabilities for the label over the segment's clips,
   bridged gaps included, so they report what the model said, not the filter.

**Clip times.** Clips can overlap (``--stride`` smaller than the clip length) or
leave gaps (``--sampler uniform``), so each clip is given a *cell*, a stretch of
time it stands for, and a segment spans its clips' cells. The boundary between
clip ``i`` and clip ``i + 1`` is:

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

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .results import Segment

SMOOTHING = ("mean", "median")


@dataclass(frozen=True)
class TimelineOptions:
    """Settings for :func:`segments`. See the module docstring for the method.

    threshold: smoothed probability a clip needs for its label to be "on".
    window: clips in the centred smoothing window (odd numbers are centred exactly;
        an even window leans one clip to the future). 1 switches smoothing off.
    smoothing: ``median`` (moving median, the default) or ``mean`` (moving average).
    min_duration_s: shorter segments are dropped (unless they span the whole video).
    max_gap_s: same-label segments closer than this are merged.
    max_labels: at most this many different labels get segments (highest peaks).
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
    float64 of the same shape.

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
    cells[-1, 1] = e[-1]
    for i in range(n - 1):
        if s[i + 1] <= e[i]:  # touching or overlapping
            mid = (s[i] + e[i] + s[i + 1] + e[i + 1]) / 4.0
            b = min(max(mid, s[i + 1]), e[i])
        else:  # a gap between the clips
            b = (e[i] + s[i + 1]) / 2.0
        b = max(b, cells[i, 0])  # never run backwards (odd inputs)
        cells[i, 1] = cells[i + 1, 0] = b
    cells[-1, 1] = max(cells[-1, 1], cells[-1, 0])
    return cells


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` (inclusive) of each run of True values.

    >>> runs(np.array([0, 1, 1, 0, 1], bool))
    [(1, 2), (4, 4)]
    """
    a = np.asarray(active, dtype=bool)
    if a.size == 0:
        return []
    edges = np.diff(np.concatenate(([0], a.astype(np.int8), [0])))
    firsts = np.flatnonzero(edges == 1)
    lasts = np.flatnonzero(edges == -1) - 1
    return list(zip(firsts.tolist(), lasts.tolist()))


def merge_runs(spans: Iterable[tuple[int, int]], cells: np.ndarray, max_gap_s: float
               ) -> list[tuple[int, int]]:
    """Merge clip runs whose time gap (between their cells) is below ``max_gap_s``."""
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and cells[first, 0] - cells[merged[-1][1], 1] < max_gap_s:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def segments(probs: np.ndarray, labels: Sequence[str], starts: Sequence[float],
             ends: Sequence[float], options: TimelineOptions | None = None,
             clip_indices: Sequence[int] | None = None) -> list[Segment]:
    """Action segments from ``(num_clips, num_classes)`` clip probabilities.

    ``starts``/``ends`` are the clips' times in seconds (clips in time order);
    ``clip_indices`` their indices (default ``0..n-1``) for ``Segment.start_clip``
    and ``end_clip``. Sorted by start time, then by mean score (best first).
    """
    opt = options or TimelineOptions()
    raw = np.asarray(probs)
    if raw.ndim != 2:
        raise ValueError("need (num_clips, num_classes) probabilities")
    n = raw.shape[0]
    if n == 0:
        return []
    if len(starts) != n or len(ends) != n:
        raise ValueError("need one start and one end time per clip")
    if raw.shape[1] != len(labels):
        raise ValueError(f"{raw.shape[1]} classes but {len(labels)} labels")
    idx = list(range(n)) if clip_indices is None else [int(i) for i in clip_indices]
    cells = clip_cells(starts, ends)
    # A moving mean or median never exceeds the largest value it sees, so a class whose
    # raw probabilities all stay below the threshold can have no segment: smooth only
    # the others (a handful of the 400, which keeps a long video's summary small).
    # Their order is kept, so ties between classes break as before.
    keep = np.nonzero(raw.max(axis=0).astype(np.float64) >= opt.threshold)[0]
    if keep.size == 0:
        return []
    p = raw[:, keep].astype(np.float64)
    sm = smooth(p, opt.window, opt.smoothing)
    peaks = sm.max(axis=0)
    candidates = [int(j) for j in np.argsort(-peaks, kind="stable")[:opt.max_labels]
                  if peaks[j] >= opt.threshold]
    out: list[Segment] = []
    for j in candidates:
        c = int(keep[j])
        spans = merge_runs(runs(sm[:, j] >= opt.threshold), cells, opt.max_gap_s)
        for first, last in spans:
            start_s, end_s = float(cells[first, 0]), float(cells[last, 1])
            covers_all = first == 0 and last == n - 1
            # A tiny tolerance: clip times are sums of float frame durations.
            if end_s - start_s < opt.min_duration_s - 1e-6 and not covers_all:
                continue
            vals = p[first:last + 1, j]
            out.append(Segment(label=str(labels[c]), start_s=start_s, end_s=end_s,
                               mean_score=float(vals.mean()), peak_score=float(vals.max()),
                               start_clip=idx[first], end_clip=idx[last]))
    out.sort(key=lambda s: (s.start_s, -s.mean_score, s.label))
    return out


def video_segments(result, labels: Sequence[str] | None = None,
                   options: TimelineOptions | None = None) -> list[Segment]:
    """:func:`segments` of a :class:`~har.results.VideoResult` (clips need ``probs``)."""
    clips = sorted((c for c in result.clips if c.probs is not None),
                   key=lambda c: (c.start_s, c.index))
    if not clips:
        return []
    if labels is None:
        raise ValueError("labels are needed to name the segments")
    probs = np.stack([c.probs for c in clips])
    return segments(probs, labels, [c.start_s for c in clips], [c.end_s for c in clips],
                    options, clip_indices=[c.index for c in clips])


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
