"""Clip sampling: which frames make up each 16-frame clip.

Pure functions describe the clips of a video with a known frame count; the
streaming :class:`ClipAssembler` produces the same clips from frames as they are
decoded, without knowing the length in advance (headers lie on truncated files).

Example (``sliding_window(40, clip_len=16, stride=16)``): clips start at frames
0, 16 and 32. The last one holds the real frames 32..39 and is filled up to 16 by
looping over those frames (the original tool's LoopPadding):
``32..39, 32..39`` -> ``end_frame = 40``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from .video import Frame


@dataclass(frozen=True)
class ClipSpec:
    """One clip. Frame numbers are 0-based; ``end_frame`` is exclusive.

    ``frame_indices`` has exactly ``clip_len`` entries, padded by looping when the
    clip has fewer real frames. Times are seconds from the video's start.
    """

    index: int
    start_frame: int
    end_frame: int
    frame_indices: tuple[int, ...]
    start_s: float = float("nan")
    end_s: float = float("nan")


def loop_pad(indices: Sequence[int], size: int) -> tuple[int, ...]:
    """Repeat ``indices`` cyclically until there are ``size`` of them.

    >>> loop_pad([7, 8, 9], 5)
    (7, 8, 9, 7, 8)
    """
    if not indices:
        raise ValueError("cannot pad an empty clip")
    out = list(indices)
    i = 0
    while len(out) < size:
        out.append(indices[i % len(indices)])
        i += 1
    return tuple(out[:size]) if len(out) > size else tuple(out)


def _clip(index: int, start: int, end: int, clip_len: int) -> ClipSpec:
    return ClipSpec(index=index, start_frame=start, end_frame=end,
                    frame_indices=loop_pad(range(start, end), clip_len))


def sliding_window_starts(n_frames: int, clip_len: int = 16, stride: int = 16) -> list[int]:
    """First frames of the sliding-window clips; stops once a clip reaches the end."""
    if clip_len < 1 or stride < 1:
        raise ValueError("clip_len and stride must be positive")
    starts: list[int] = []
    start = 0
    while start < n_frames:
        starts.append(start)
        if start + clip_len >= n_frames:
            break
        start += stride
    return starts


def sliding_window(n_frames: int, clip_len: int = 16, stride: int = 16) -> list[ClipSpec]:
    """Clips every ``stride`` frames; the last partial clip is loop-padded.

    With the default stride of 16 these are the non-overlapping clips of the
    original tool. A video shorter than ``clip_len`` gives one padded clip.
    """
    return [_clip(i, s, min(s + clip_len, n_frames), clip_len)
            for i, s in enumerate(sliding_window_starts(n_frames, clip_len, stride))]


def uniform(n_frames: int, num_clips: int, clip_len: int = 16) -> list[ClipSpec]:
    """``num_clips`` clips spread evenly from the first frame to the last (fewer when
    the video has fewer distinct clip starts).

    >>> [c.start_frame for c in uniform(100, 3)]
    [0, 42, 84]
    """
    if num_clips < 1:
        raise ValueError("num_clips must be positive")
    if n_frames <= 0:
        return []
    last_start = max(n_frames - clip_len, 0)
    if num_clips == 1:
        starts = [last_start // 2]
    else:
        starts = [int(round(i * last_start / (num_clips - 1))) for i in range(num_clips)]
    # More clips than distinct starts (a short video) would repeat clips and weight
    # them twice in the video's mean: keep each start once.
    starts = sorted(set(starts))
    return [_clip(i, s, min(s + clip_len, n_frames), clip_len) for i, s in enumerate(starts)]


class ClipAssembler:
    """Turn a stream of :class:`Frame` into ``(ClipSpec, clip)`` pairs.

    ``clip`` is ``(clip_len, H, W, 3) uint8``. Either slide a window with ``stride``
    (no length needed), or follow an explicit ``plan`` of clips (e.g. from
    :func:`uniform`). Only the frames that a pending clip still needs are kept, so
    memory is bounded by the clip length, not the video length.
    """

    def __init__(self, clip_len: int = 16, stride: int = 16,
                 plan: Sequence[ClipSpec] | None = None, tail: str = "pad",
                 gaps: bool = True) -> None:
        if clip_len < 1 or stride < 1:
            raise ValueError("clip_len and stride must be positive")
        # tail="drop": no loop-padded last clip (full clips only, as the authors' video
        # tool and OpenCV's sample); "pad" covers every frame (their evaluation code).
        self.tail = tail
        # gaps: a skipped frame number ends the clip run (live outages). Off after
        # :func:`resample`, whose frames skip or repeat numbers by design.
        self.gaps = gaps
        self.clip_len = clip_len
        self.stride = stride
        self.plan = list(plan) if plan is not None else None

    def __call__(self, frames: Iterable[Frame]) -> Iterator[tuple[ClipSpec, np.ndarray]]:
        if self.plan is not None:
            yield from self._follow_plan(frames)
        else:
            yield from self._slide(frames)

    def _make(self, index: int, real: list[Frame]) -> tuple[ClipSpec, np.ndarray]:
        order = loop_pad(range(len(real)), self.clip_len)
        spec = ClipSpec(index=index, start_frame=real[0].index, end_frame=real[-1].index + 1,
                        frame_indices=tuple(real[i].index for i in order),
                        start_s=real[0].time_s, end_s=real[-1].time_s + real[-1].duration_s)
        return spec, np.stack([real[i].rgb for i in order])

    def _slide(self, frames: Iterable[Frame]) -> Iterator[tuple[ClipSpec, np.ndarray]]:
        # Positions count the frames as they arrive: the same as their indices for a
        # video read frame by frame, and still right after :func:`resample`, where a
        # frame may be skipped or repeated (its index is the video's own frame).
        L, S = self.clip_len, self.stride
        buf: deque[tuple[int, Frame]] = deque(maxlen=L)
        count = 0
        next_start = 0  # position of the first frame of the next clip to emit
        n = 0
        for pos, frame in enumerate(frames):
            if self.gaps and buf and frame.index != buf[-1][1].index + 1:
                # A frame number left out: a live source's gap (an outage or a jump in
                # its timestamps). No clip spans it: a new clip run starts here, and
                # the unfinished clip before it is dropped.
                buf.clear()
                next_start = pos
            n = pos + 1
            buf.append((pos, frame))
            if pos == next_start + L - 1:
                yield self._make(count, [f for _, f in buf])
                count += 1
                next_start += S
        # The tail: frames after the last full clip, loop-padded (if any exist).
        if self.tail == "drop":
            return
        if next_start < n and (count == 0 or next_start - S + L < n):
            tail = [f for p, f in buf if p >= next_start]
            if tail:
                yield self._make(count, tail)

    def _follow_plan(self, frames: Iterable[Frame]) -> Iterator[tuple[ClipSpec, np.ndarray]]:
        pending = sorted(self.plan, key=lambda c: (c.end_frame, c.index))
        kept: dict[int, Frame] = {}  # by position (see _slide)
        for pos, frame in enumerate(frames):
            if any(c.start_frame <= pos < c.end_frame for c in pending):
                kept[pos] = frame
            while pending and pending[0].end_frame - 1 <= pos:
                c = pending.pop(0)
                real = [kept[i] for i in range(c.start_frame, c.end_frame) if i in kept]
                if real:
                    yield self._make(c.index, real)
            low = min((c.start_frame for c in pending), default=pos + 1)
            for i in [i for i in kept if i < low]:
                del kept[i]
        # A truncated video: clips past the end use what decoded (or are dropped).
        for c in pending:
            real = [kept[i] for i in range(c.start_frame, c.end_frame) if i in kept]
            if real:
                yield self._make(c.index, real)


def resample(frames: Iterable[Frame], fps: float) -> Iterator[Frame]:
    """The frames shown at ``fps`` frames a second: at each tick ``k / fps`` seconds
    after the first frame, the frame on screen then (the latest that started at or
    before the tick), as FFmpeg's ``fps`` filter picks them. Faster videos lose
    frames, slower ones repeat them; each keeps its own index and time, so clips
    still name the video's frames.

    Example: a 30 fps video at ``fps=25`` keeps frames 0, 1, 2, 3, 4, 6, 7, ...
    (every sixth frame is dropped).
    """
    if not fps > 0:
        raise ValueError("fps must be positive")
    step = 1.0 / fps
    tick = None  # time of the next output tick
    prev: Frame | None = None
    k = 0
    eps = 1e-6  # timestamps are rounded to the stream's time base
    for frame in frames:
        if tick is None:
            origin = frame.time_s
            tick = origin
        # Every tick before this frame starts shows the previous frame.
        while prev is not None and tick < frame.time_s - eps:
            yield prev
            k += 1
            tick = origin + k * step
        prev = frame
    # The last frame stays on screen for its duration.
    if prev is not None and tick is not None:
        end = prev.time_s + max(prev.duration_s, 0.0)
        while tick < end - eps or k == 0:
            yield prev
            k += 1
            tick = origin + k * step
