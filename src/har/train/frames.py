"""Decode each training video once and keep its frames for every epoch.

Training draws a new random clip from every video each epoch; decoding the video
again each time would cost more than the network on a CPU. :class:`FrameStore`
decodes every sample once, at the size the model's preset resizes to (so a clip is
cut from exactly the pixels the test-time pipeline sees), and keeps the frames as
``uint8`` arrays in a temporary folder, read back memory-mapped: the operating
system's page cache, not the Python heap, holds a large dataset.

A video that cannot be decoded is reported and left out; it never stops the others.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import HarError
from ..fsutil import display_path
from ..transforms import Preset
from .data import Sample


# The hidden folder a FrameStore keeps its arrays in (inside the run folder).
FRAMES_PREFIX = ".har-frames-"


@dataclass(frozen=True)
class Decoded:
    """Where one sample's frames are: ``(T, H, W, 3) uint8`` in ``path``."""

    path: str
    frames: int
    fps: float
    start_s: float  # time of the first kept frame in the source video


class SegmentSource:
    """The frames of ``[start_s, end_s)`` of an open video, numbered from 0 (times stay
    the source's), as a frame source :meth:`Recognizer.stream` accepts."""

    def __init__(self, video, start_s: float | None, end_s: float | None, name: str) -> None:
        self._video = video
        self.start_s, self.end_s = start_s, end_s
        self.source = name
        self.info = video.info

    @property
    def stats(self):
        return self._video.stats

    def frames(self, size=None) -> Iterator:
        from dataclasses import replace

        n = 0
        for frame in self._video.frames(size=size):
            if self.start_s is not None and frame.time_s + 1e-6 < self.start_s:
                continue
            if self.end_s is not None and frame.time_s >= self.end_s:
                break
            yield replace(frame, index=n)
            n += 1

    def close(self) -> None:
        self._video.close()


def decode_sample(sample: Sample, preset: Preset) -> tuple[np.ndarray, float, float]:
    """``(frames (T, H, W, 3) uint8, fps, first frame's time)`` of one sample, resized as
    ``preset`` does at test time; a segment keeps the frames whose time is in
    ``[start_s, end_s)``."""
    from ..sources import open_video

    source = SegmentSource(open_video(sample.path), sample.start_s, sample.end_s, sample.name)
    try:
        info = source.info
        kept: list[np.ndarray] = []
        first_t = None
        for frame in source.frames(size=preset.resized_size(info.height, info.width)):
            if first_t is None:
                first_t = frame.time_s
            kept.append(frame.rgb)
        fps = info.fps or 25.0
    finally:
        source.close()
    if not kept:
        span = f" between {sample.start_s or 0:g} s and {sample.end_s:g} s" \
            if sample.end_s is not None else ""
        raise HarError(f"{display_path(sample.path)}: no frames{span}; check the video "
                       "(and the segment times)")
    return np.stack(kept), fps, float(first_t or 0.0)


class FrameStore:
    """Every sample's frames, decoded once (see the module docstring).

    >>> store = FrameStore(dataset.samples, preset)     # doctest: +SKIP
    >>> store.frames(0).shape                           # doctest: +SKIP
    (75, 112, 149, 3)

    ``failed`` lists ``(sample index, one-line message)`` for videos that did not
    decode; ``ok`` the indices that did. ``close()`` removes the temporary folder.
    """

    def __init__(self, samples: Sequence[Sample], preset: Preset, *,
                 workers: int = 2, progress: Callable[[int], None] | None = None,
                 workdir: str | None = None) -> None:
        self.samples = list(samples)
        self.preset = preset
        self._dir = tempfile.mkdtemp(prefix=FRAMES_PREFIX, dir=workdir)
        self._decoded: dict[int, Decoded] = {}
        self._cache: dict[int, np.ndarray] = {}
        self.failed: list[tuple[int, str]] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            try:
                frames, fps, t0 = decode_sample(self.samples[i], preset)
                target = os.path.join(self._dir, f"{i}.npy")
                np.save(target, frames)
                with lock:
                    self._decoded[i] = Decoded(target, len(frames), fps, t0)
            except HarError as exc:
                with lock:
                    self.failed.append((i, str(exc)))
            except OSError as exc:  # the temporary folder filled up, most likely
                raise HarError(f"cannot keep decoded frames in {self._dir} "
                               f"({exc.strerror or exc}); free space there, or give an --out on a "
                               "larger disk") from None
            finally:
                if progress is not None:
                    progress(1)

        try:
            with ThreadPoolExecutor(max(1, workers)) as pool:
                for fut in [pool.submit(work, i) for i in range(len(self.samples))]:
                    fut.result()
        except BaseException:
            self.close()
            raise
        self.failed.sort()
        self.ok = sorted(self._decoded)

    def frames(self, i: int) -> np.ndarray:
        arr = self._cache.get(i)
        if arr is None:
            arr = self._cache[i] = np.load(self._decoded[i].path, mmap_mode="r")
        return arr

    def info(self, i: int) -> Decoded:
        return self._decoded[i]

    def close(self) -> None:
        self._cache.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
