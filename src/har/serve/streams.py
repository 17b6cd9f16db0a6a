"""Live streams (cameras) in ``har serve``: several at once, one model.

:class:`StreamHub` owns the streams that clients add with ``POST /v1/streams``:

- every stream is a :class:`har.live.LiveSource` (reconnecting without end, opened
  in its own thread, so a camera that does not answer holds up nothing else);
- all of them feed one :class:`har.live.LiveMany`, whose single model loop takes
  clips round-robin across streams into mixed batches, keeping only each stream's
  newest clip (older ones are skipped and counted): each stream stays real time or
  skips, and none starves the others. The model is the recognizer that jobs use
  (its backend lock keeps the two apart);
- the streams are kept in the job database (table ``streams``) and opened again
  when the server starts;
- each stream's ``har.events/1`` events (``state``, ``gap``, ``clip``,
  ``segment_start``, ``segment_end``) go to a bounded in-memory ring for
  ``GET /v1/streams/{id}/events`` (ids ``<server start>-<n>``, so a client that
  resumes with ``Last-Event-ID`` after a restart of the server gets the new
  server's ring from its start), and ``state`` and ``segment_*`` events to the
  :class:`~har.serve.push.Pusher` (webhooks, MQTT);
- the newest full-size frame of each stream is kept (by reference) for
  ``GET /v1/streams/{id}/snapshot``, and a JPEG is made for every
  ``segment_start`` (the last ``SNAPSHOTS`` per stream are kept in memory).

Per-stream options: ``stride`` (frames between clip starts), ``topk``,
``threshold`` (segments), ``frame_stride`` (score every k-th frame) or ``fps``
(the frame stride that brings the camera's rate down to about this).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import re
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from ..errors import HarError
from ..fsutil import clean_text, remove_stale_temps
from ..writers import EventWriter

log = logging.getLogger("har.serve")

SNAPSHOTS = 16  # segment_start JPEGs kept per stream
MP4_KEPT = 32  # segment_start MP4s kept on disk per stream (the oldest are removed)
MP4_MAX_S = 10.0  # the longest MP4 a stream may ask for (option mp4_max_s)
MP4_DEFAULT_S = 4.0
MP4_SIDE = 640  # frames kept for MP4s are scaled down to at most this many pixels
MP4_MARGIN_S = 3.0  # frames kept beyond mp4_max_s: the model's lag behind the reader
_MP4_NAME = re.compile(r"^[0-9a-f]{16}\.mp4$")
PUSHED = ("state", "segment_start", "segment_end")


def redact_url(url: str) -> str:
    """The URL without a password (``rtsp://user:***@host/...``): camera URLs often
    carry credentials, and stream listings and events must not show them."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return clean_text(url)
    if parts.password is None and "@" not in parts.netloc:
        return clean_text(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{user}:***@{host}" if parts.password is not None else f"{user}@{host}"
    return clean_text(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))


def shown_options(options: dict[str, Any]) -> dict[str, Any]:
    """A stream's options as clients see them: the webhook's password and the
    webhook secret replaced by ``***``."""
    out = dict(options)
    if out.get("webhook"):
        out["webhook"] = redact_url(out["webhook"])
    if out.get("webhook_secret"):
        out["webhook_secret"] = "***"
    return out


class EventRing:
    """A stream's newest events (at most ``size``), numbered from 0: the sink of the
    stream's :class:`~har.writers.EventWriter`, which builds every event."""

    def __init__(self, epoch: str, size: int = 1000) -> None:
        self.epoch = epoch
        self._ring: deque[tuple[int, dict[str, Any]]] = deque(maxlen=size)
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        """Keep ``event``, numbered: its ``id`` is ``<epoch>-<n>``."""
        with self._lock:
            n = self._next
            self._next += 1
            event["id"] = f"{self.epoch}-{n}"
            self._ring.append((n, event))

    @property
    def last_id(self) -> str | None:
        with self._lock:
            return f"{self.epoch}-{self._next - 1}" if self._next else None

    def start_after(self, last_event_id: str | None) -> int:
        """The number of the first event to send to a client that saw
        ``last_event_id`` (0: everything the ring holds)."""
        if not last_event_id:
            return 0
        epoch, _, n = last_event_id.strip().rpartition("-")
        if epoch != self.epoch or not n.isdigit():
            return 0  # another server run (or not ours): the whole ring
        return int(n) + 1

    def read(self, start: int) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """Events numbered ``start`` on, and how many of those the ring no longer
        holds (the client was away too long)."""
        with self._lock:
            if not self._ring:
                return [], 0
            first = self._ring[0][0]
            missed = max(0, first - start)
            return [(n, ev) for n, ev in self._ring if n >= start], missed

    @property
    def next(self) -> int:
        with self._lock:
            return self._next


class BusyLock:
    """The recognizer's backend lock, timed: ``busy_s`` adds up how long it was
    held, i.e. how long the model ran, for jobs and streams together."""

    def __init__(self, lock) -> None:
        self._lock = lock
        self._since = 0.0
        self.busy_s = 0.0

    def acquire(self, *args, **kw) -> bool:
        got = self._lock.acquire(*args, **kw)
        if got:
            self._since = time.monotonic()
        return got

    def release(self) -> None:
        self.busy_s += time.monotonic() - self._since
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Stream:
    """One stream and what it has given so far."""

    def __init__(self, id: str, name: str, url: str, options: dict[str, Any],
                 created: float, epoch: str, ring: int) -> None:
        self.id, self.name, self.url, self.options, self.created = (id, name, url,
                                                                    options, created)
        self.shown_url = redact_url(url)
        self.state = "connecting"
        self.error: str | None = None
        self.live = None
        self.index: int | None = None
        self.stop = threading.Event()
        self.events = EventRing(epoch, ring)
        self.writer = EventWriter(sink=self.events)  # every event of the stream
        self.latencies: deque[float] = deque(maxlen=1000)
        # seconds from a clip's last frame's capture on the sender's clock to its
        # scores (streams with a sender clock only)
        self.sender_latencies: deque[float] = deque(maxlen=1000)
        # clip index -> (start wall time, end wall time, clock, start frame, end frame)
        # of recent clips, for the times of segment events
        self.clip_times: OrderedDict[int, tuple] = OrderedDict()
        # (label, start clip) of an announced segment -> its start_wall_time, clock
        self.seg_starts: dict[tuple[str, int], tuple[float | None, str]] = {}
        self.clips = 0
        self.segmenter = None
        self.frame = None  # the newest full-size RGB frame (a reference, not a copy)
        self.snapshots: OrderedDict[str, bytes] = OrderedDict()
        self.deleted = False
        self.lock = threading.Lock()  # the segmenter: the model loop and a DELETE
        # option mp4: the newest frames (index, stream time, RGB at most MP4_SIDE px)
        # for a short MP4 of each segment's opening clips; the MP4s on disk, oldest
        # first, and those still being written
        self.mp4 = bool(options.get("mp4"))
        self.mp4_max_s = float(options.get("mp4_max_s") or MP4_DEFAULT_S)
        self.recent: deque = deque(maxlen=int(30 * (self.mp4_max_s + MP4_MARGIN_S)))
        self.recent_lock = threading.Lock()
        self.mp4_files: deque[str] = deque()
        self.mp4_pending: set[str] = set()
        self.mp4_last: tuple | None = None  # ((first, end frame), URL, frames)

    def tap(self, frame) -> None:
        if self.options.get("snapshots", True):
            self.frame = frame.rgb
        if self.mp4:
            rgb = frame.rgb
            h, w = rgb.shape[:2]
            if max(h, w) > MP4_SIDE:
                import cv2

                k = MP4_SIDE / max(h, w)
                rgb = cv2.resize(rgb, (max(2, int(w * k)), max(2, int(h * k))),
                                 interpolation=cv2.INTER_AREA)
            with self.recent_lock:
                self.recent.append((frame.index, frame.time_s, rgb))


class StreamHub:
    """The server's live streams; see the module's docstring."""

    def __init__(self, rec, store, *, pusher=None, ring: int = 1000,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 allow_private: bool = False) -> None:
        from ..live import LiveMany

        self.rec, self.store, self.pusher = rec, store, pusher
        self.ring = ring
        self.allow_private = allow_private
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        # the server's defaults (jobs take their own options per call; the recognizer
        # is never changed)
        self.stride, self.k, self.timeline = rec.stride, rec.k, rec.timeline
        if not isinstance(rec._backend_lock, BusyLock):  # the model's time, all uses
            rec._backend_lock = BusyLock(rec._backend_lock)
        self.many = LiveMany(rec, [], keep_open=True)
        self.epoch = format(int(time.time() * 1000), "x")
        self.started = time.monotonic()
        self._streams: dict[str, Stream] = {}
        self._by_index: dict[int, Stream] = {}
        self._lock = threading.Lock()
        self._loop: threading.Thread | None = None
        # segment MP4s: written by one thread, under DATA/clips/<stream id>/
        self.clips_dir = Path(store.data) / "clips"
        self._mp4_jobs: queue.Queue = queue.Queue(maxsize=8)
        self._mp4_thread: threading.Thread | None = None
        self._mp4_stop = threading.Event()

    # -- life -------------------------------------------------------------------
    def start(self) -> None:
        """Open the kept streams and start the model loop."""
        from ..netsafe import UrlRefused, stream_refusal

        for row in self.store.streams():
            s = Stream(**row, epoch=self.epoch, ring=self.ring)
            # the policy of this run: a server restarted without --allow-private-urls
            # does not open the private cameras an earlier run was allowed to
            try:
                why = stream_refusal(s.url, self.allow_private, resolve=False)
            except UrlRefused as exc:
                why = str(exc)
            if why:
                s.state = "ended"
                s.error = (f"{s.shown_url}: not opened: it is {why}, and this server was "
                           "started without --allow-private-urls; restart it with the "
                           "option, or DELETE the stream")
                with self._lock:
                    self._streams[s.id] = s
                continue
            self._begin(s)
        self._loop = threading.Thread(target=self._run, name="har-serve-streams",
                                      daemon=True)
        self._loop.start()
        self._mp4_thread = threading.Thread(target=self._mp4_loop, name="har-serve-mp4",
                                            daemon=True)
        self._mp4_thread.start()

    def stop(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
        for s in streams:
            s.stop.set()
        self.many.stop()
        if self._loop is not None:
            self._loop.join(timeout=5.0)
        self.many.close()
        self._mp4_stop.set()
        if self._mp4_thread is not None:
            self._mp4_thread.join(timeout=10.0)

    def alive(self) -> bool:
        return self._loop is None or self._loop.is_alive()

    # -- streams ------------------------------------------------------------------
    def add(self, url: str, name: str, options: dict[str, Any]) -> Stream:
        stream_id = uuid.uuid4().hex
        created = self.store.add_stream(stream_id, name, url, options)
        s = Stream(stream_id, name, url, options, created, self.epoch, self.ring)
        self._begin(s)
        return s

    def get(self, stream_id: str) -> Stream | None:
        with self._lock:
            return self._streams.get(stream_id)

    def list(self) -> list[Stream]:
        with self._lock:
            return sorted(self._streams.values(), key=lambda s: s.created)

    def remove(self, stream_id: str) -> bool:
        with self._lock:
            s = self._streams.pop(stream_id, None)
        if s is None:
            return False
        with s.lock:  # open segments end with the stream (pushed like any other)
            for type_, seg in (s.segmenter.flush() if s.segmenter else []):
                self._emit(s, type_, **self._segment_times(s, seg, None, None), **seg)
            s.deleted = True
        s.stop.set()
        if s.index is not None:
            self.many.remove(s.index)
        self.store.delete_stream(stream_id)
        self._remove_mp4s(s)
        if self.pusher is not None:  # after the last segment_end above is sent
            self.pusher.remove_webhook(s.id)
        return True

    def _begin(self, s: Stream) -> None:
        from ..timeline import Segmenter

        threshold = s.options.get("threshold")
        timeline = self.timeline if threshold is None else \
            dataclasses.replace(self.timeline, threshold=float(threshold))
        s.segmenter = Segmenter(self.rec.labels, timeline, keep=0)
        if s.options.get("webhook") and self.pusher is not None:  # its own receiver
            self.pusher.add_webhook(s.id, s.options["webhook"],
                                    s.options.get("webhook_secret"))
        if s.mp4:  # MP4s an earlier run of the server wrote: kept under the bound
            folder = self.clips_dir / s.id
            remove_stale_temps(folder)  # what a killed server was writing
            try:
                names = [e for e in os.scandir(folder)
                         if _MP4_NAME.match(e.name) and e.is_file()]
            except OSError:
                names = []
            for e in sorted(names, key=lambda e: e.stat().st_mtime):
                s.mp4_files.append(e.name)
        with self._lock:
            self._streams[s.id] = s
        threading.Thread(target=self._open, args=(s,), name="har-serve-open",
                         daemon=True).start()

    def _open(self, s: Stream) -> None:
        from ..live import LiveSource
        from ..sources import parse_source

        def on_state(state: str, fields: dict) -> None:
            s.state = state
            fields = {k: (self._clean(s, v) if isinstance(v, str) else v)
                      for k, v in fields.items()}
            if state == "ended" and fields.get("reason"):
                s.error = fields["reason"]
            self._emit(s, "state", **{**fields, "state": state, "source": s.shown_url})

        def on_gap(fields: dict) -> None:
            self._emit(s, "gap", **{**fields, "source": s.shown_url})

        try:
            src = parse_source(s.url)
            live = LiveSource(src, open_timeout_s=self.open_timeout_s,
                              read_timeout_s=self.read_timeout_s,
                              max_reconnects=None if src.live else 0,
                              on_state=on_state, on_gap=on_gap, stop_event=s.stop,
                              tap=s.tap if s.options.get("snapshots", True) or s.mp4
                              else None,
                              frame_stride=int(s.options.get("frame_stride", 1)))
        except HarError as exc:
            s.error = self._clean(s, str(exc))
            s.state = "ended"
            return
        except Exception as exc:  # noqa: BLE001 - this stream's failure only
            s.error = f"{s.shown_url}: cannot be opened ({type(exc).__name__})"
            s.state = "ended"
            log.exception("stream %s", s.id)
            return
        fps = s.options.get("fps")
        if fps and live.info.fps:
            live.frame_stride = max(1, int(round(live.info.fps / float(fps))))
        if s.mp4:  # room for mp4_max_s of the frames scored, and the model's lag
            rate = (live.info.fps or 30.0) / live.frame_stride
            with s.recent_lock:
                s.recent = deque(s.recent, maxlen=max(
                    16, int(rate * (s.mp4_max_s + MP4_MARGIN_S)) + 1))
        with self._lock:
            if s.stop.is_set():
                live.close()
                return
            s.live = live
            s.index = self.many.add(live, stride=s.options.get("stride") or self.stride)
            self._by_index[s.index] = s

    def _clean(self, s: Stream, text: str) -> str:
        return clean_text(text.replace(s.url, s.shown_url))

    # -- the model loop -------------------------------------------------------------
    def _run(self) -> None:
        try:
            for j, clip in self.many:
                s = self._by_index.get(j)
                if s is not None and not s.deleted:
                    self._clip(s, clip)
        except Exception:  # noqa: BLE001 - logged; /healthz reports the loop dead
            log.exception("the streams' model loop failed")

    def _clip(self, s: Stream, clip) -> None:
        from ..aggregate import topk

        now, wall_now = time.monotonic(), time.time()
        live = s.live
        last, first = clip.end_frame - 1, clip.start_frame
        arrival = live.arrival(last) or clip.ready_at
        latency = now - arrival if arrival is not None else None
        if latency is not None:
            s.latencies.append(latency)
        s.clips += 1
        k = int(s.options.get("topk") or self.k)
        fields = clip.to_dict()
        fields["top"] = [p.to_dict() for p in topk(clip.probs, self.rec.labels, k)]
        arrived = None  # the wall-clock time the clip's last frame arrived
        if arrival is not None:
            arrived = fields["frame_wall_time"] = round(wall_now - (now - arrival), 6)
        # The clip's time: the sender's clock when the stream has one (RTSP with RTCP
        # sender reports) for both its first and last frame, else arrival here.
        sent_end, sent_start = live.sender_time(last), live.sender_time(first)
        if sent_end is not None and sent_start is not None:
            clock, t_start, t_end = "sender", sent_start, sent_end
            sender_latency = wall_now - sent_end
            s.sender_latencies.append(sender_latency)
            fields["sender_latency_s"] = round(sender_latency, 4)
        else:
            first_arrival = live.arrival(first)
            clock, t_end = "arrival", arrived
            t_start = None if first_arrival is None else wall_now - (now - first_arrival)
        t_start = None if t_start is None else round(t_start, 6)
        t_end = None if t_end is None else round(t_end, 6)
        s.clip_times[clip.index] = (t_start, t_end, clock, first, clip.end_frame)
        while len(s.clip_times) > 4096:
            s.clip_times.popitem(last=False)
        self._emit(s, "clip", **fields, clock=clock, start_wall_time=t_start,
                   wall_time=t_end,
                   latency_s=None if latency is None else round(latency, 4),
                   skipped=self.many.skipped[s.index])
        with s.lock:
            if s.deleted:
                return
            for type_, seg in s.segmenter.add(clip):
                self._emit(s, type_, **self._segment_times(s, seg, clock, t_end), **seg,
                           _snapshot=type_ == "segment_start")

    @staticmethod
    def _segment_times(s: Stream, seg: dict, clock: str | None,
                       wall: float | None) -> dict[str, Any]:
        """``wall_time`` (the clip that decided the event, on its ``clock``; None:
        now, on arrival), ``start_wall_time`` (the segment's first frame) and
        ``end_wall_time`` (its last clip's last frame) on the same clock, where the
        clips' times are still known."""
        key = (seg.get("label"), seg.get("start_clip"))
        end = s.clip_times.get(seg.get("end_clip"))
        if clock is None:  # a flush (DELETE): the segment's last clip is its time
            clock, wall = (end[2], end[1]) if end else ("arrival", None)
        start = s.seg_starts.get(key)
        if start is None:
            first = s.clip_times.get(seg.get("start_clip"))
            start = (first[0], first[2]) if first else (None, clock)
            s.seg_starts[key] = start
            while len(s.seg_starts) > 256:
                s.seg_starts.pop(next(iter(s.seg_starts)))
        return {"clock": clock, "wall_time": wall,
                "start_wall_time": start[0] if start[1] == clock else None,
                "end_wall_time": end[1] if end and end[2] == clock else None}

    def _emit(self, s: Stream, type_: str, _snapshot: bool = False, **fields) -> dict:
        if fields.get("wall_time") is None:  # now, on this machine's clock
            fields.pop("wall_time", None)
            fields["clock"] = "arrival"
        else:
            fields.setdefault("clock", "arrival")
        if type_ == "segment_end":
            s.seg_starts.pop((fields.get("label"), fields.get("start_clip")), None)
        if _snapshot:
            jpeg = self.jpeg(s)
            fields["snapshot"] = jpeg is not None
            if s.mp4:
                fields.update(self._queue_mp4(s, fields))
        event = s.writer.emit(type_, stream=s.id, name=s.name, **fields)
        if _snapshot and jpeg is not None:
            s.snapshots[event["id"]] = jpeg
            while len(s.snapshots) > SNAPSHOTS:
                s.snapshots.popitem(last=False)
        if self.pusher is not None and type_ in PUSHED and not s.deleted:
            self.pusher.publish("streams", s.id, event, topic=s.options.get("mqtt_topic"))
        return event

    # -- segment MP4s ------------------------------------------------------------------
    def _queue_mp4(self, s: Stream, seg: dict) -> dict[str, Any]:
        """Hand the frames of a segment's opening clips (from its first clip's first
        frame to the announcing clip's last, at most ``mp4_max_s`` seconds of them)
        to the MP4 writer; the event's fields: ``mp4`` (the URL path it is served at)
        and ``mp4_frames``, or ``mp4: null`` and ``mp4_error``."""
        first = s.clip_times.get(seg.get("start_clip"))
        last = s.clip_times.get(seg.get("end_clip"))
        if first is None or last is None:
            return {"mp4": None, "mp4_error": "the segment's clips are no longer known"}
        lo, hi = first[3], last[4]
        with s.recent_lock:
            frames = [(i, t, rgb) for i, t, rgb in s.recent if lo <= i < hi]
        if frames and frames[0][0] != lo:
            return {"mp4": None, "mp4_error": "the segment's first frames are no longer "
                    "kept (the model was too far behind the stream)"}
        if not frames:
            return {"mp4": None, "mp4_error": "no frame of the segment is kept"}
        t0 = frames[0][1]
        frames = [f for f in frames if f[1] - t0 < s.mp4_max_s - 1e-6]
        if s.mp4_last is not None and s.mp4_last[0] == (lo, hi):
            # several labels announced by one clip: one MP4 for all of them
            return {"mp4": s.mp4_last[1], "mp4_frames": s.mp4_last[2]}
        name = f"{uuid.uuid4().hex[:16]}.mp4"
        try:
            self._mp4_jobs.put_nowait((s, name, frames))
        except queue.Full:
            return {"mp4": None, "mp4_error": "the MP4 writer is behind; this one was "
                    "not written"}
        s.mp4_pending.add(name)
        url = f"/v1/streams/{s.id}/clips/{name}"
        s.mp4_last = ((lo, hi), url, len(frames))
        return {"mp4": url, "mp4_frames": len(frames)}

    def _mp4_loop(self) -> None:
        while not (self._mp4_stop.is_set() and self._mp4_jobs.empty()):
            try:
                s, name, frames = self._mp4_jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._write_mp4(s, name, frames)
            finally:
                s.mp4_pending.discard(name)

    def _write_mp4(self, s: Stream, name: str, frames: list) -> None:
        from ..live import _Recorder

        if s.deleted:
            return
        folder = self.clips_dir / s.id
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("stream %s: %s cannot be made (%s)", s.id, folder, exc)
            return
        rec = _Recorder(str(folder / name))  # a temporary file, renamed when done
        t0 = frames[0][1]
        try:
            for _, t, rgb in frames:
                rec.write(rgb, t - t0)
        except Exception as exc:  # noqa: BLE001 - this MP4 only
            rec.abort()
            log.warning("stream %s: MP4 %s not written (%s)", s.id, name, exc)
            return
        error = rec.close()
        if error:
            log.warning("stream %s: MP4 %s not written (%s)", s.id, name, error)
            return
        if s.deleted:  # deleted while it was written
            with contextlib.suppress(OSError):
                (folder / name).unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
            return
        s.mp4_files.append(name)
        while len(s.mp4_files) > MP4_KEPT:
            with contextlib.suppress(OSError):
                (folder / s.mp4_files.popleft()).unlink()

    def mp4_path(self, s: Stream, name: str) -> tuple[Path | None, bool]:
        """``(the file, whether it is still being written)`` of a segment MP4 named
        ``name`` (None: no such MP4)."""
        if not _MP4_NAME.match(name):
            return None, False
        if name in s.mp4_pending:
            return None, True
        path = self.clips_dir / s.id / name
        return (path if name in s.mp4_files and path.is_file() else None), False

    def _remove_mp4s(self, s: Stream) -> None:
        """The stream's MP4s (only the names this server writes), then its folder
        if that left it empty."""
        folder = self.clips_dir / s.id
        try:
            entries = [e for e in os.scandir(folder) if _MP4_NAME.match(e.name)]
        except OSError:
            return
        for e in entries:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty

    @staticmethod
    def jpeg(s: Stream, quality: int = 85) -> bytes | None:
        """The stream's newest frame as a JPEG (None before the first frame)."""
        import cv2

        rgb = s.frame
        if rgb is None:
            return None
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        return buf.tobytes() if ok else None

    # -- what clients see ---------------------------------------------------------------
    def stats(self, s: Stream) -> dict[str, Any]:
        from ..live import percentile

        live = s.live
        st = live.stats if live is not None else None
        lat = list(s.latencies)
        p50, p95 = percentile(lat, 50), percentile(lat, 95)
        sent = list(s.sender_latencies)
        s50, s95 = percentile(sent, 50), percentile(sent, 95)
        return {"id": s.id, "name": s.name, "url": s.shown_url,
                "options": shown_options(s.options),
                "created": s.created, "state": s.state, "error": s.error,
                "clips": s.clips,
                "skipped": self.many.skipped[s.index] if s.index is not None else 0,
                "reconnects": st.reconnects if st else 0,
                "stalls": st.stalls if st else 0, "gaps": st.gaps if st else 0,
                "frames": st.frames if st else 0,
                "frame_stride": live.frame_stride if live is not None else None,
                "fps": live.info.fps if live is not None else None,
                "queue_depth": self.many.waiting(s.index) if s.index is not None else 0,
                "latency_p50_s": None if p50 is None else round(p50, 4),
                "latency_p95_s": None if p95 is None else round(p95, 4),
                "sender_latency_p50_s": None if s50 is None else round(s50, 4),
                "sender_latency_p95_s": None if s95 is None else round(s95, 4),
                "last_event_id": s.events.last_id}

    def busy_all_s(self) -> float:
        """Seconds the model ran since the server started, for jobs and streams."""
        return self.rec._backend_lock.busy_s

    def busy_fraction(self) -> float:
        """The share of the time since the server started that the model ran for
        the streams."""
        return self.many.busy_s / max(1e-9, time.monotonic() - self.started)
