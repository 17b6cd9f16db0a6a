"""Live video: cameras and network streams with bounded latency and reconnects.

:class:`LiveSource` is a frame source (``info``, ``stats``, ``frames(size)``,
``close()``) that :meth:`har.Recognizer.stream` reads with ``live=True``:

* It reads continuously in the recognizer's decode thread; the recognizer never lets
  that thread wait for the model (clips the model has no time for are skipped and
  counted), so latency cannot grow however long the stream runs.
* Opening and reading have timeouts that fire (FFmpeg's own I/O timeout), so a camera
  that accepts the connection and then sends nothing is reported ``stalled`` instead of
  hanging. A dropped stream is reopened with capped exponential backoff.
* Frame numbers and stream times keep increasing across reconnects (a gap in time
  stays a gap), so clips never go backwards.
* ``realtime=True`` plays a file at its own frame rate: a rehearsal of a camera with a
  known answer (``har live FILE --realtime`` gives the same clip scores as
  ``har predict FILE`` when no clip is skipped).

:class:`LiveSegmenter` opens and closes action segments as clips arrive.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import DecodeError, HarError
from .sources import Source, open_video, parse_source
from .video import DecodeStats, Frame, VideoInfo

StateFn = Callable[[str, dict], None]


@dataclass
class LiveStats(DecodeStats):
    reconnects: int = 0
    stalls: int = 0


class LiveSource:
    """A reconnecting reader of one live source (or a file played in real time).

    ``on_state(state, fields)`` is called with ``connecting``, ``live``, ``stalled``,
    ``reconnecting`` and ``ended``. ``max_reconnects`` None means unlimited.
    """

    def __init__(self, source: Source | str, *, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, max_reconnects: int | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 realtime: bool = False, on_state: StateFn | None = None) -> None:
        self.src = source if isinstance(source, Source) else parse_source(str(source))
        self.source = self.src.text
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.realtime = realtime
        self._on_state = on_state or (lambda state, fields: None)
        self._stop = threading.Event()
        self.stats = LiveStats()
        self.state = "connecting"
        self._video = None
        self._reading = False
        self._connect()
        self.info: VideoInfo = replace(self._video.info, frames=None, duration_s=None)

    # -- states -------------------------------------------------------------
    def _set(self, state: str, **fields) -> None:
        self.state = state
        self._on_state(state, {"source": self.source, **fields})

    def stop(self) -> None:
        """Ask the reader to end (from any thread); it ends within one read timeout."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _open_once(self):
        return open_video(self.src, timeout_s=(self.open_timeout_s, self.read_timeout_s))

    def _connect(self):
        """Open (again), with backoff; DecodeError once reconnects are used up."""
        delay = self.backoff_s
        attempt = 0
        while not self._stop.is_set():
            self._set("connecting", attempt=attempt)
            try:
                self._video = self._open_once()
                self._set("live", attempt=attempt)
                return self._video
            except DecodeError as exc:
                reason = str(exc)
                if "timed out" in reason or "timeout" in reason.lower():
                    self.stats.stalls += 1
                    self._set("stalled", reason=reason)
                if self.max_reconnects is not None and \
                        self.stats.reconnects >= self.max_reconnects:
                    self._set("ended", reason=reason)
                    raise
                self.stats.reconnects += 1
                attempt += 1
                self._set("reconnecting", attempt=attempt, delay_s=round(delay, 3),
                          reason=reason)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff_s)
        raise DecodeError(f"{self.source}: stopped before the stream could be opened")

    # -- frames ---------------------------------------------------------------
    def frames(self, size: tuple[int, int] | None = None) -> Iterator[Frame]:
        index = 0
        offset = 0.0  # stream time added to each connection's own times
        video = self._video
        stats = self.stats
        self._reading = True
        try:
            while video is not None and not self._stop.is_set():
                t0 = time.monotonic()
                last_end = offset
                got = 0
                for f in video.frames(size=size):
                    if self._stop.is_set():
                        break
                    t = offset + f.time_s
                    if self.realtime:  # play at the file's own rate
                        wait = (t - offset) - (time.monotonic() - t0)
                        if wait > 0 and self._stop.wait(wait):
                            break
                    yield Frame(index=index, time_s=t, duration_s=f.duration_s, rgb=f.rgb)
                    index += 1
                    got += 1
                    last_end = t + f.duration_s
                    stats.frames, stats.end_s = index, last_end
                vstats = video.stats
                stats.bad_packets += vstats.bad_packets
                video.close()
                self._video = video = None
                if self._stop.is_set():
                    break
                if not self.src.live:  # a file played to its end
                    stats.warnings.extend(vstats.warnings)
                    break
                # A live stream ended: it dropped or stalled. Stream time goes on from
                # the wall-clock time that passed, so clips keep their order.
                self.stats.stalls += 1
                reason = vstats.last_error or "the stream ended"
                if "exit requested" in reason.lower():  # FFmpeg's words for its timeout
                    reason = f"no data for {self.read_timeout_s:g} s"
                self._set("stalled", reason=reason, frames=got)
                gap_start = time.monotonic()
                try:
                    video = self._connect()
                except DecodeError:
                    break
                offset = last_end + (time.monotonic() - gap_start)
        finally:
            self._reading = False
            if self._video is not None:
                self._video.close()
                self._video = None
            if self.state != "ended":
                self._set("ended", frames=index)

    def close(self) -> None:
        """Stop; the container is closed by the reader when its current read returns
        (never under it), or here when no read is under way."""
        self._stop.set()
        if not self._reading and self._video is not None:
            self._video.close()
            self._video = None


# -- segments as they happen ----------------------------------------------------------
@dataclass
class _Open:
    label: str
    start_s: float
    end_s: float
    start_clip: int
    end_clip: int
    scores: list[float] = field(default_factory=list)
    announced: bool = False
    off_since: float | None = None


class LiveSegmenter:
    """Segments from clip probabilities as they arrive, with har predict's options.

    A label is *on* when the median of its probability over the last ``window`` clips
    reaches ``threshold``. A segment is announced (``segment_start``) once it has been
    on for ``min_duration_s`` and closed (``segment_end``) once it has been off for
    ``max_gap_s``: the decision delay is about half the smoothing window plus
    ``min_duration_s`` to open, and ``max_gap_s`` to close.
    """

    def __init__(self, labels: Sequence[str], options) -> None:
        self.labels = list(labels)
        self.opt = options
        self._hist: deque[np.ndarray] = deque(maxlen=max(1, options.window))
        self._open: dict[int, _Open] = {}

    def add(self, clip) -> list[tuple[str, dict]]:
        """Feed one clip; returns ``[(event type, fields), ...]``."""
        self._hist.append(np.asarray(clip.probs, dtype=np.float32))
        h = np.stack(self._hist)
        smooth = np.median(h, axis=0) if self.opt.smoothing == "median" else h.mean(axis=0)
        events: list[tuple[str, dict]] = []
        on = set(int(i) for i in np.nonzero(smooth >= self.opt.threshold)[0])
        for c in sorted(on):
            seg = self._open.get(c)
            if seg is None:
                if len(self._open) >= self.opt.max_labels:
                    continue
                seg = self._open[c] = _Open(self.labels[c], clip.start_s, clip.end_s,
                                            clip.index, clip.index)
            seg.end_s, seg.end_clip, seg.off_since = clip.end_s, clip.index, None
            seg.scores.append(float(clip.probs[c]))
            if not seg.announced and seg.end_s - seg.start_s >= self.opt.min_duration_s - 1e-6:
                seg.announced = True
                events.append(("segment_start", self._fields(seg)))
        for c in [c for c in self._open if c not in on]:
            seg = self._open[c]
            if seg.off_since is None:
                seg.off_since = clip.start_s
            if clip.end_s - seg.end_s >= self.opt.max_gap_s:
                events += self._close(c)
        return events

    def flush(self) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        for c in list(self._open):
            events += self._close(c)
        return events

    def _close(self, c: int) -> list[tuple[str, dict]]:
        seg = self._open.pop(c)
        if not seg.announced:
            return []
        return [("segment_end", self._fields(seg))]

    @staticmethod
    def _fields(seg: _Open) -> dict:
        return {"label": seg.label, "start_s": round(seg.start_s, 4),
                "end_s": round(seg.end_s, 4), "start_clip": seg.start_clip,
                "end_clip": seg.end_clip,
                "mean_score": round(float(np.mean(seg.scores)), 6),
                "peak_score": round(float(np.max(seg.scores)), 6)}


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


__all__ = ["LiveSource", "LiveSegmenter", "LiveStats", "HarError", "percentile"]
