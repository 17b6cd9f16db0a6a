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
  stays a gap), so clips never go backwards. At a gap (an outage, or timestamps that
  jump) the frame number skips one, which ends the clip run: no clip spans a gap.
* Live decoding holds no frame back, and each frame carries its arrival time (when
  its packet was read): latency is measured from there. Streams with a sender clock
  (RTSP with RTCP sender reports) also give each frame's capture time on that clock
  (:meth:`LiveSource.sender_time`).
* ``realtime=True`` plays a file at its own frame rate: a rehearsal of a camera with a
  known answer (``har live FILE --realtime`` gives the same clip scores as
  ``har predict FILE`` when no clip is skipped).

:class:`har.timeline.Segmenter` opens and closes action segments as clips arrive
(the same rule as every summary's segments).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import DecodeError, HarError
from .palette import OKABE_ITO as _COLOURS  # the one palette: har.palette
from .sources import Source, hls_playlist, open_video, parse_source
from .video import DecodeStats, Frame, VideoInfo

StateFn = Callable[[str, dict], None]


@dataclass
class LiveStats(DecodeStats):
    reconnects: int = 0  # successful reconnections after the stream dropped
    stalls: int = 0  # times the stream stopped sending (or timed out at the first open)
    attempts: int = 0  # failed attempts to open or reopen it
    gaps: int = 0  # clip runs ended by an outage or a jump in the stream's timestamps


def _timed_out(reason: str) -> bool:
    return "timed out" in reason or "timeout" in reason.lower()


class LiveSource:
    """A reconnecting reader of one live source (or a file played in real time).

    ``on_state(state, fields)`` is called with ``connecting``, ``live``, ``stalled``,
    ``reconnecting`` and ``ended``, in the order they happen: ``connecting -> live``,
    and after a drop ``stalled -> reconnecting (-> reconnecting ...) -> live``.
    ``max_reconnects``: how many times in all a dropped stream (or one that could not
    be opened) is tried again; None means without end. ``on_gap(fields)`` is called
    when the stream resumes after an outage, or its timestamps jump by more than
    ``gap_s``: the frame number then skips one, so a clip never spans the gap.
    ``stop_event`` (set from any thread, e.g. a ``--duration`` timer) also ends an
    open that is still retrying. ``frame_stride`` k keeps every k-th decoded frame
    (numbered without holes, so clips run on; an outage still ends the clip run).
    """

    def __init__(self, source: Source | str, *, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, max_reconnects: int | None = None,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 realtime: bool = False, on_state: StateFn | None = None,
                 tap: Callable[[Frame], None] | None = None,
                 on_gap: Callable[[dict], None] | None = None, gap_s: float = 1.0,
                 stop_event: threading.Event | None = None, frame_stride: int = 1) -> None:
        self.src = source if isinstance(source, Source) else parse_source(str(source))
        self.source = self.src.text
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.realtime = realtime
        self.gap_s = gap_s
        # frame_stride k: only every k-th decoded frame goes on (a 30 fps camera at
        # k=3 is scored as 10 fps: a third of the work; set before frames() runs)
        self.frame_stride = max(1, int(frame_stride))
        # tap(frame) sees every frame at full size (for --record/--preview/--show);
        # the model then gets it resized by OpenCV instead of FFmpeg's scaler.
        self.tap = tap
        self._on_state = on_state or (lambda state, fields: None)
        self._on_gap = on_gap or (lambda fields: None)
        self._stop = stop_event if stop_event is not None else threading.Event()
        self.stats = LiveStats()
        self.state = "connecting"
        self._video = None
        self._reading = False
        self._tries = 0  # tries to reopen so far (max_reconnects bounds them)
        self._arrivals: OrderedDict[int, float] = OrderedDict()
        self._senders: OrderedDict[int, float] = OrderedDict()  # sender-clock times
        self._arrivals_lock = threading.Lock()
        # HLS: a finished (VOD) playlist is played once at its own rate; a live one
        # is reopened only once it has a segment newer than when it stopped.
        self._hls = self.src.format == "hls"
        self._vod = False
        self._hls_last: str | None = None
        if self._hls:
            playlist = hls_playlist(self.src.url, min(open_timeout_s, 10.0))
            if playlist is not None:
                self._vod = playlist.ended
                if self._vod:
                    self.realtime = True
                if playlist.target_s:  # a healthy reader waits up to a segment
                    self.read_timeout_s = max(read_timeout_s, 2.0 * playlist.target_s)
        self._connect(first=True)
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

    @property
    def finite(self) -> bool:
        """A file, a plain URL or a finished HLS playlist: its end is the end."""
        return not self.src.live or self._vod

    def arrival(self, index: int) -> float | None:
        """time.monotonic() when frame ``index`` arrived (recent frames only)."""
        with self._arrivals_lock:
            return self._arrivals.get(index)

    def sender_time(self, index: int) -> float | None:
        """Unix seconds on the sender's clock when frame ``index`` was captured
        (recent frames of streams that carry a sender clock: RTSP with RTCP sender
        reports); None otherwise."""
        with self._arrivals_lock:
            return self._senders.get(index)

    def _note_arrival(self, index: int, arrival: float,
                      sender: float | None = None) -> None:
        with self._arrivals_lock:
            self._arrivals[index] = arrival
            while len(self._arrivals) > 4096:
                self._arrivals.popitem(last=False)
            if sender is not None:
                self._senders[index] = sender
                while len(self._senders) > 4096:
                    self._senders.popitem(last=False)

    def _open_once(self, reopen: bool):
        options = None
        if self._hls and reopen:
            playlist = hls_playlist(self.src.url, min(self.open_timeout_s, 10.0))
            if playlist is None:
                raise DecodeError(f"{self.source}: the playlist cannot be read")
            if playlist.last_segment == self._hls_last:
                raise DecodeError(f"{self.source}: the playlist has no new segment since "
                                  "the stream stopped")
            options = {"live_start_index": "-1"}  # the newest segment, not old ones again
        # Live sources are streamed, never fetched to a temporary file: an endless or
        # trickling body must not fill the disk, and --duration must apply.
        return open_video(self.src, timeout_s=(self.open_timeout_s, self.read_timeout_s),
                          live=self.src.kind != "file", fetch=False, options=options)

    def _may_retry(self) -> bool:
        return self.max_reconnects is None or self._tries < self.max_reconnects

    def _connect(self, first: bool):
        """Open (``first``) or reopen after a drop, with capped exponential backoff;
        DecodeError once ``max_reconnects`` tries to reopen (over the whole run) are
        used up, or the reader is stopped."""
        attempt = 0
        if first:
            self._set("connecting", attempt=0)
        else:
            if not self._may_retry():
                self._set("ended", reason=f"the stream dropped, and the {self._tries} "
                          "reconnect(s) allowed are used up")
                raise DecodeError(f"{self.source}: the stream dropped")
            self._tries += 1
            attempt = 1
            self._set("reconnecting", attempt=attempt)
        delay = self.backoff_s
        while not self._stop.is_set():
            try:
                self._video = self._open_once(reopen=not first)
            except DecodeError as exc:
                self.stats.attempts += 1
                reason = str(exc)
                if first and attempt == 0 and _timed_out(reason):
                    self.stats.stalls += 1
                    self._set("stalled", reason=reason)
                if not self._may_retry():
                    self._set("ended", reason=reason)
                    raise
                self._tries += 1
                attempt += 1
                self._set("reconnecting", attempt=attempt, delay_s=round(delay, 3),
                          reason=reason)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.max_backoff_s)
                continue
            if not first:
                self.stats.reconnects += 1
            self._set("live", attempt=attempt)
            return self._video
        raise DecodeError(f"{self.source}: stopped before the stream could be opened")

    # -- frames ---------------------------------------------------------------
    def _gap(self, index: int, after_s: float, resume_s: float, reason: str) -> None:
        self.stats.gaps += 1
        self._on_gap({"source": self.source, "after_s": round(after_s, 4),
                      "resume_s": round(resume_s, 4),
                      "seconds": round(max(0.0, resume_s - after_s), 4),
                      "frame": index, "reason": reason})

    def frames(self, size: tuple[int, int] | None = None) -> Iterator[Frame]:
        index = 0
        decoded = 0
        offset = 0.0  # stream time added to each connection's own times
        video = self._video
        stats = self.stats
        last_end: float | None = None  # stream time where the last frame ends
        resumed = False  # the first frame after a reconnect starts a new clip run
        seen = 0  # decoded frames, for frame_stride
        self._reading = True
        try:
            while video is not None and not self._stop.is_set():
                t0 = time.monotonic()
                got = 0
                for f in video.frames(size=None if self.tap else size):
                    if self._stop.is_set():
                        break
                    t = offset + f.time_s
                    if resumed or last_end is not None and t - last_end > self.gap_s:
                        index += 1  # a frame number left out: the clip run ends here
                        self._gap(index, last_end or 0.0, t,
                                  "reconnected" if resumed else "timestamp jump")
                        resumed = False
                    seen += 1
                    if self.frame_stride > 1 and (seen - 1) % self.frame_stride:
                        last_end = t + f.duration_s
                        continue  # left out to save work (not a gap)
                    rgb = f.rgb
                    if self.tap is not None:
                        self.tap(Frame(index=index, time_s=t, duration_s=f.duration_s,
                                       rgb=rgb, arrival=f.arrival,
                                       sender_time=f.sender_time))
                        if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
                            import cv2

                            rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_LINEAR)
                    arrival = f.arrival
                    if self.realtime:  # play at the file's own rate
                        wait = (t - offset) - (time.monotonic() - t0)
                        if wait > 0 and self._stop.wait(wait):
                            break
                        arrival = time.monotonic()  # when a camera would have sent it
                    sender = None if self.realtime else f.sender_time
                    if arrival is not None:
                        self._note_arrival(index, arrival, sender)
                    yield Frame(index=index, time_s=t, duration_s=f.duration_s, rgb=rgb,
                                arrival=arrival, sender_time=sender)
                    index += 1
                    decoded += 1
                    got += 1
                    last_end = t + f.duration_s
                    stats.frames, stats.end_s = decoded, last_end
                vstats = video.stats
                stats.bad_packets += vstats.bad_packets
                video.close()
                self._video = video = None
                if self._stop.is_set():
                    break
                if self._hls and not self._vod:
                    playlist = hls_playlist(self.src.url, min(self.open_timeout_s, 10.0))
                    if playlist is not None and playlist.ended:
                        self._vod = True  # the live playlist was finished: the end
                    self._hls_last = playlist.last_segment if playlist else self._hls_last
                if self.finite and not self.max_reconnects:
                    stats.warnings.extend(vstats.warnings)  # played to its end
                    break
                # It dropped or stalled. Stream time goes on from the wall-clock time
                # that passed, so clips keep their order; a gap stays a gap.
                self.stats.stalls += 1
                reason = vstats.last_error or "the stream ended"
                if "exit requested" in reason.lower():  # FFmpeg's words for its timeout
                    reason = f"no data for {self.read_timeout_s:g} s"
                self._set("stalled", reason=reason, frames=got)
                gap_start = time.monotonic()
                try:
                    video = self._connect(first=False)
                except DecodeError:
                    break
                offset = (last_end or 0.0) + (time.monotonic() - gap_start)
                resumed = last_end is not None
        finally:
            self._reading = False
            if self._video is not None:
                self._video.close()
                self._video = None
            if self.state != "ended":
                self._set("ended", frames=decoded)

    def close(self) -> None:
        """Stop; the container is closed by the reader when its current read returns
        (never under it), or here when no read is under way."""
        self._stop.set()
        if not self._reading and self._video is not None:
            self._video.close()
            self._video = None


# -- several sources, one model ----------------------------------------------------------
class LiveMany:
    """Several live sources scored by one recognizer (one model in memory).

    Each source has its own reader thread (decoding, clip assembly, preprocessing);
    one loop in the caller's thread runs the model on batches that mix sources. Each
    source keeps only its newest clip waiting (an older one is skipped, counted in
    ``skipped[i]``), and a batch takes waiting clips round-robin, one per source per
    round, starting after the source served first last time: a busy camera cannot
    starve another. Iterating yields ``(source index, ClipResult)``; a source that
    fails leaves its message in ``errors[i]`` and the others go on.

    Sources can come and go while it runs (``har serve``'s streams): :meth:`add`
    returns the new source's index, :meth:`remove` stops one. With ``keep_open`` the
    loop waits for sources instead of ending when none is left. ``strides[i]`` (or
    ``add(..., stride=)``): that source's clip stride instead of the recognizer's.
    ``busy_s`` adds up the seconds the model ran for this loop.
    """

    def __init__(self, recognizer, sources: Sequence[LiveSource], *,
                 keep_open: bool = False, strides: Sequence[int | None] | None = None
                 ) -> None:
        self.rec = recognizer
        self.sources = list(sources)
        n = len(self.sources)
        self.skipped = [0] * n
        self.errors: list[str | None] = [None] * n
        self.strides: list[int | None] = list(strides) if strides else [None] * n
        self.keep_open = keep_open
        self.busy_s = 0.0
        self._waiting: list[deque] = [deque() for _ in range(n)]
        self._cv = threading.Condition()
        self._alive = 0
        self._iterating = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, live: LiveSource, stride: int | None = None) -> int:
        """A new source (its reader starts at once when the loop runs); its index."""
        with self._cv:
            i = len(self.sources)
            self.sources.append(live)
            self.skipped.append(0)
            self.errors.append(None)
            self.strides.append(stride)
            self._waiting.append(deque())
            start = self._iterating
            if start:
                self._alive += 1
        if start:
            self._start_reader(i)
        return i

    def remove(self, i: int) -> None:
        """Stop source ``i`` (its reader ends within a read timeout); its waiting
        clip is dropped."""
        self.sources[i].stop()
        with self._cv:
            self._waiting[i].clear()
            self._cv.notify_all()

    def waiting(self, i: int) -> int:
        """Clips of source ``i`` waiting for the model (0 or 1)."""
        with self._cv:
            return len(self._waiting[i])

    def _start_reader(self, i: int) -> None:
        t = threading.Thread(target=self._read, args=(i,), name=f"har-live-{i}",
                             daemon=True)
        self._threads.append(t)
        t.start()

    def stop(self) -> None:
        """End soon (from any thread): the model loop within half a second."""
        self._stop.set()
        for live in self.sources:
            live.stop()
        with self._cv:
            self._cv.notify_all()

    def close(self) -> None:
        """Stop and wait briefly for the readers (one still inside a read closes its
        own container when the read returns)."""
        self.stop()
        for t in self._threads:
            t.join(timeout=0.5)

    def _read(self, i: int) -> None:
        rec, live = self.rec, self.sources[i]
        try:
            info = live.info
            size = rec.preset.resized_size(info.height, info.width)
            plan = rec._plan(info, live.source)
            if self.strides[i]:
                plan.stride = int(self.strides[i])
            for spec, clip in plan(live.frames(size=size)):
                if self._stop.is_set():
                    break
                item = (spec, rec.preset(clip[None]), time.monotonic())
                if live.stopped:
                    break
                with self._cv:
                    waiting = self._waiting[i]
                    if waiting:
                        waiting.popleft()
                        self.skipped[i] += 1
                    waiting.append(item)
                    self._cv.notify_all()
        except HarError as exc:
            self.errors[i] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one source's failure is its own
            self.errors[i] = f"{live.source}: {exc}"
        finally:
            with self._cv:
                self._alive -= 1
                self._cv.notify_all()

    def _take(self, first: int, size: int) -> list[tuple[int, tuple]]:
        items: list[tuple[int, tuple]] = []
        n = len(self.sources)
        while len(items) < size and any(self._waiting):
            for k in range(n):
                j = (first + k) % n
                if self._waiting[j] and len(items) < size:
                    items.append((j, self._waiting[j].popleft()))
        return items

    def __iter__(self) -> Iterator[tuple[int, object]]:
        from .aggregate import softmax, topk
        from .recognizer import _infer
        from .results import ClipResult

        rec = self.rec
        with self._cv:
            self._iterating = True
            n0 = self._alive = len(self.sources)
        for i in range(n0):
            self._start_reader(i)
        first = 0
        try:
            while not self._stop.is_set():
                with self._cv:
                    while not any(self._waiting) and (self._alive > 0 or self.keep_open) \
                            and not self._stop.is_set():
                        self._cv.wait(0.5)
                    if self._stop.is_set() or not any(self._waiting):
                        break  # stopped, or every reader has ended
                    items = self._take(first, max(1, rec.backend.batch_size))
                first = (first + 1) % len(self.sources)
                batch = np.concatenate([item[1] for _, item in items])
                with rec._backend_lock:
                    t0 = time.monotonic()
                    logits, feats = _infer(rec.backend, batch)
                    self.busy_s += time.monotonic() - t0
                probs = softmax(logits)
                for k, ((j, (spec, _, ready)), row) in enumerate(zip(items, probs)):
                    yield j, ClipResult(
                        index=spec.index, start_frame=spec.start_frame,
                        end_frame=spec.end_frame, start_s=spec.start_s, end_s=spec.end_s,
                        top=topk(row, rec.labels, rec.k), probs=row,
                        features=None if feats is None or not rec.keep_features
                        else feats[k], ready_at=ready)
        finally:
            self.stop()
            for t in self._threads:
                t.join(timeout=0.5)


# -- what people watch: the annotated frames -------------------------------------------


class Overlay:
    """The latest clip's top labels drawn on live frames, and where the frames go:
    an MP4 (``record``), an MJPEG stream on 127.0.0.1 (``preview_port``), a window
    (``show``). Frames arrive in the reader thread; results in the caller's."""

    def __init__(self, *, record: str | None = None, preview_port: int | None = None,
                 show: bool = False, top_n: int = 3) -> None:
        self.top_n = top_n
        self._latest = None
        self._lock = threading.Lock()
        self._writer = _Recorder(record) if record else None
        self._preview = _Preview(preview_port) if preview_port is not None else None
        self._show = show
        self.errors: list[str] = []

    @property
    def preview_url(self) -> str | None:
        return self._preview.url if self._preview else None

    def update(self, clip) -> None:
        with self._lock:
            self._latest = clip

    def draw(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        img = rgb.copy()
        with self._lock:
            clip = self._latest
        if clip is None:
            return img
        h, w = img.shape[:2]
        scale = max(0.35, min(w, h) / 600)
        thick = max(1, int(round(scale * 1.6)))
        (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        line = th + base + 6
        preds = clip.top[:self.top_n]
        box_h = 6 + line * len(preds)
        box_w = min(w, max(cv2.getTextSize(f"{p.label} {p.score:.0%}",
                                           cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]
                           for p in preds) + th + 20)
        img[:box_h, :box_w] = (img[:box_h, :box_w].astype(np.float32) * 0.45).astype(np.uint8)
        for i, p in enumerate(preds):
            y = 4 + i * line
            colour = _COLOURS[sum(p.label.encode()) % len(_COLOURS)]
            cv2.rectangle(img, (6, y), (6 + th, y + th), colour, -1)
            cv2.putText(img, f"{p.label} {p.score:.0%}", (12 + th, y + th),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        return img

    def __call__(self, frame: Frame) -> None:
        img = self.draw(frame.rgb)
        if self._writer is not None:
            try:
                self._writer.write(img, frame.time_s)
            except Exception as exc:  # noqa: BLE001 - reported; the caller ends the run
                self.errors.append(f"--record {_shown(self._writer.path)}: cannot be "
                                   f"written ({_why(exc)})")
                self._writer.abort()
                self._writer = None
        if self._preview is not None:
            self._preview.publish(img)
        if self._show:
            import cv2

            try:
                cv2.imshow("har live", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
                cv2.waitKey(1)
            except cv2.error:
                self.errors.append("--show: this OpenCV has no window support (the "
                                   "headless build); use --preview PORT and a browser")
                self._show = False

    def take_errors(self) -> list[str]:
        """The output errors so far (each returned once), e.g. a full disk under
        ``--record``: the caller ends the run with exit 1."""
        errors, self.errors = self.errors, []
        return errors

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            error = writer.close()
            if error:
                self.errors.append(f"--record {_shown(writer.path)}: cannot be written "
                                   f"({error})")
        if self._preview is not None:
            self._preview.close()
            self._preview = None


def _shown(path: str) -> str:
    from .fsutil import display_path
    from .text import printable

    return printable(display_path(path))


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).rstrip(".")


class _Recorder:
    """An MP4 (or .mkv/.mov) written to a temporary file and renamed when closed."""

    def __init__(self, path: str) -> None:
        from .fsutil import atomic_path

        self.path = path
        self._staging = atomic_path(path)
        self._tmp = self._staging.__enter__()
        self._container = None
        self._file = None
        self._stream = None
        self._last = -1

    def write(self, rgb: np.ndarray, t: float) -> None:
        import av
        from fractions import Fraction

        if self._container is None:
            fmt = {".mkv": "matroska", ".mov": "mov"}.get(Path(self.path).suffix.lower(), "mp4")
            # The file is opened here, not by FFmpeg, so that it is closed whatever
            # happens: PyAV 18 never closes a file whose header could not be written
            # (a full disk), and a long-running process would keep it (and its space).
            self._file = open(self._tmp, "wb", buffering=0)
            self._container = av.open(self._file, "w", format=fmt)
            self._stream = self._container.add_stream("libx264", rate=30)
            h, w = rgb.shape[:2]
            self._stream.width, self._stream.height = w - w % 2, h - h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "23"}
            self._stream.codec_context.time_base = Fraction(1, 1000)
        w, h = self._stream.width, self._stream.height
        if rgb.shape[:2] != (h, w):
            import cv2

            rgb = cv2.resize(rgb, (w, h)) if abs(rgb.shape[0] - h) > 1 else rgb[:h, :w]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        pts = max(int(round(t * 1000)), self._last + 1)
        frame.pts, self._last = pts, pts
        frame.time_base = Fraction(1, 1000)
        self._container.mux(self._stream.encode(frame))

    def close(self) -> str | None:
        """Finish the file and rename it into place; the reason when it could not be
        written (nothing is left behind then)."""
        try:
            if self._container is not None:
                self._container.mux(self._stream.encode(None))
                self._container.close()
                self._file.close()
            else:
                raise RuntimeError("no frame was recorded")
            self._staging.__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self._close_file()
            with contextlib.suppress(BaseException):
                self._staging.__exit__(type(exc), exc, exc.__traceback__)
            return _why(exc)
        return None

    def abort(self) -> None:
        try:
            if self._container is not None:
                self._container.close()
        except Exception:  # noqa: BLE001
            pass
        self._close_file()
        err = RuntimeError("aborted")
        self._staging.__exit__(RuntimeError, err, None)

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()


class _Preview:
    """The newest annotated frame as an MJPEG stream on http://127.0.0.1:PORT/."""

    def __init__(self, port: int) -> None:
        import http.server

        self._jpeg: bytes | None = None
        self._cv = threading.Condition()
        self._closed = False
        preview = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                last = None
                while not preview._closed:
                    with preview._cv:
                        preview._cv.wait_for(lambda: preview._closed or
                                             preview._jpeg is not last, timeout=1.0)
                        data = preview._jpeg
                    if data is None or data is last:
                        continue
                    last = data
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: " + str(len(data)).encode() +
                                         b"\r\n\r\n" + data + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *a):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def publish(self, rgb: np.ndarray) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            with self._cv:
                self._jpeg = buf.tobytes()
                self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._server.shutdown()
        self._server.server_close()


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


__all__ = ["LiveMany", "LiveSource", "LiveStats", "Overlay", "HarError", "percentile"]
