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
from pathlib import Path
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
                 realtime: bool = False, on_state: StateFn | None = None,
                 tap: Callable[[Frame], None] | None = None) -> None:
        self.src = source if isinstance(source, Source) else parse_source(str(source))
        self.source = self.src.text
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.realtime = realtime
        # tap(frame) sees every frame at full size (for --record/--preview/--show);
        # the model then gets it resized by OpenCV instead of FFmpeg's scaler.
        self.tap = tap
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
                for f in video.frames(size=None if self.tap else size):
                    if self._stop.is_set():
                        break
                    t = offset + f.time_s
                    rgb = f.rgb
                    if self.tap is not None:
                        self.tap(Frame(index=index, time_s=t, duration_s=f.duration_s,
                                       rgb=rgb))
                        if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
                            import cv2

                            rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_LINEAR)
                    if self.realtime:  # play at the file's own rate
                        wait = (t - offset) - (time.monotonic() - t0)
                        if wait > 0 and self._stop.wait(wait):
                            break
                    yield Frame(index=index, time_s=t, duration_s=f.duration_s, rgb=rgb)
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


# -- what people watch: the annotated frames -------------------------------------------
_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
            (213, 94, 0), (204, 121, 167))  # Okabe-Ito: safe for colour-blind viewers


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
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop the stream
                self.errors.append(f"--record {self._writer.path}: {exc}")
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

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._preview is not None:
            self._preview.close()


class _Recorder:
    """An MP4 (or .mkv/.mov) written to a temporary file and renamed when closed."""

    def __init__(self, path: str) -> None:
        from .fsutil import atomic_path

        self.path = path
        self._staging = atomic_path(path)
        self._tmp = self._staging.__enter__()
        self._container = None
        self._stream = None
        self._last = -1

    def write(self, rgb: np.ndarray, t: float) -> None:
        import av
        from fractions import Fraction

        if self._container is None:
            fmt = {".mkv": "matroska", ".mov": "mov"}.get(Path(self.path).suffix.lower(), "mp4")
            self._container = av.open(str(self._tmp), "w", format=fmt)
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

    def close(self) -> None:
        try:
            if self._container is not None:
                self._container.mux(self._stream.encode(None))
                self._container.close()
            else:
                raise RuntimeError("no frame was recorded")
        except BaseException as exc:
            self._staging.__exit__(type(exc), exc, exc.__traceback__)
            return
        self._staging.__exit__(None, None, None)

    def abort(self) -> None:
        try:
            if self._container is not None:
                self._container.close()
        except Exception:  # noqa: BLE001
            pass
        err = RuntimeError("aborted")
        self._staging.__exit__(RuntimeError, err, None)


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


__all__ = ["LiveSource", "LiveSegmenter", "LiveStats", "Overlay", "HarError", "percentile"]
