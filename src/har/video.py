"""Video decoding over PyAV: metadata, streamed RGB frames with timestamps, rotation.

Frames are read strictly in decode order (no timestamp seeking, which is unreliable
on AVI files with B-frames), one at a time, so memory does not grow with the
video's length. Damaged packets are skipped and counted rather than ending the
decode, so a partly broken file still yields what can be recovered.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import DecodeError
from .fsutil import display_path
from .urls import is_url

# Elementary streams without a container index: durations are guesses.
_RAW_FORMATS = {"h264", "hevc", "h263", "m4v", "mpegvideo", "mjpeg", "rawvideo", "ivf",
                "avs2", "vvc", "cavsvideo", "image2", "image2pipe", "yuv4mpegpipe"}

# Live formats whose frames carry no timestamps of their own (FFmpeg invents them from
# a guessed rate): a live reader times their frames by arrival instead.
_NO_TIMESTAMPS = _RAW_FORMATS | {"mpjpeg"}

# Give up on a stream after this many damaged packets in a row: the rest is noise.
_MAX_CONSECUTIVE_ERRORS = 50


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the chosen video stream (before decoding).

    ``width``/``height`` are the display size, i.e. after rotation. ``frames`` and
    ``duration_s`` come from the header and may be missing or wrong (truncated files).
    """

    source: str
    stream_index: int
    codec: str
    width: int
    height: int
    fps: float | None
    frames: int | None
    duration_s: float | None
    rotation: int  # degrees counter-clockwise that the display matrix asks for


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``rgb`` is ``(H, W, 3) uint8``, upright."""

    index: int  # 0-based, in decode (presentation) order
    time_s: float  # presentation time in seconds
    duration_s: float  # how long it is shown
    rgb: np.ndarray
    # time.monotonic() when the packet that completed this frame was read (live
    # latency is measured from here); None when not recorded
    arrival: float | None = None
    # Unix seconds on the sender's clock when this frame was captured, for live
    # streams that carry one (RTSP with RTCP sender reports: FFmpeg's
    # start_time_realtime + the frame's pts); None when the stream has no such clock
    # (or before the first sender report)
    sender_time: float | None = None


@dataclass
class DecodeStats:
    """Filled in while frames are read; final once the iterator is exhausted."""

    frames: int = 0
    bad_packets: int = 0
    stopped_early: bool = False
    last_error: str | None = None
    end_s: float = 0.0  # end time of the last decoded frame
    warnings: list[str] = field(default_factory=list)


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for an error, without the errno noise."""
    msg = getattr(exc, "strerror", None) or str(exc)
    return msg.rstrip(".")


def _is_source_like(obj) -> bool:
    """A ``har.sources.Source`` or anything shaped like one (``.url``, ``.format``...)."""
    return not isinstance(obj, (str, bytes, os.PathLike)) and hasattr(obj, "url")


def _target(source, format, options) -> tuple[str, dict]:
    """``(what to open, FFmpeg options)`` for a path, URL or Source-like object."""
    if _is_source_like(source):
        opts = dict(getattr(source, "options", None) or {})
        opts.update(options or {})
        return str(source.url), opts
    url = os.fsdecode(source) if isinstance(source, bytes) else os.fspath(source)
    return url, dict(options or {})


_OPEN_ERRORS = {
    errno.ELOOP: "too many levels of symbolic links (a symlink loop); fix the link",
    errno.ENAMETOOLONG: "file name too long for the file system; rename or move it",
    errno.EACCES: "permission denied; check the file's permissions",
    errno.EPERM: "permission denied; check the file's permissions",
    errno.ENOTDIR: "no such file (a part of the path is not a folder); check the path",
    errno.ENOENT: "no such file; check the path",
}


def _local_error(name: str, exc: OSError, path: str) -> DecodeError:
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return DecodeError(f"{name}: broken symbolic link (its target does not exist)")
    why = _OPEN_ERRORS.get(exc.errno) or f"cannot be opened ({exc.strerror or exc})"
    return DecodeError(f"{name}: {why}")


def _url_reason(exc: BaseException, timeout_s: float) -> str:
    """FFmpeg's reason for a failed URL, in words that say what happened."""
    reason = _reason(exc)
    code = getattr(exc, "errno", None)
    if "Immediate exit" in reason or code in (errno.ETIMEDOUT, errno.EAGAIN) \
            or "timed out" in reason.lower():
        return f"timed out: no answer within {timeout_s:g} s"
    return reason


def _http_diagnosis(url: str, timeout_s: float) -> str | None:
    """A clearer reason than FFmpeg's "Input/output error" for an http(s) URL."""
    import urllib.error
    import urllib.request

    if not url.lower().startswith(("http://", "https://")):
        return None
    req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "har-video"})
    try:
        with urllib.request.urlopen(req, timeout=min(timeout_s, 10.0)):
            return None
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            return "too many redirects (a redirect loop)"
        return f"HTTP {exc.code} {exc.reason}"
    except Exception:  # noqa: BLE001 - diagnosis only; the original reason stands
        return None


def _chain_one(first, rest):
    yield first
    yield from rest


# Frames leave the decoder in display order, but some containers (AVI with packed
# B-frames) stamp them with out-of-order times. For files, timestamps are re-sorted
# through a window this deep, which is a no-op for well-formed streams. Live sources
# get no window (depth 0): FFmpeg's decoder already returns frames in display order
# after the delay the codec needs (its has_b_frames), and a window would hold every
# live frame back by this many frames, and the last ones before a drop until the
# read timeout.
_REORDER_DEPTH = 8


def _reordered_times(frames, fps: float, depth: int = _REORDER_DEPTH):
    """Yield ``(av_frame, seconds, arrival)`` with non-decreasing times starting at 0,
    from ``(av_frame, arrival)`` pairs."""
    import heapq
    from collections import deque

    held: deque = deque()
    times: list[float] = []
    origin: float | None = None
    prev: float | None = None

    def release():
        nonlocal origin, prev
        vf, arrival = held.popleft()
        t = heapq.heappop(times) if times else None
        if t is not None and origin is None:
            origin = t
        if t is None or prev is not None and t <= prev:
            t = (prev + 1.0 / fps) if prev is not None else (origin or 0.0)
        prev = t
        return vf, t - (origin or 0.0), arrival

    for vf, arrival in frames:
        if vf.time is not None:
            heapq.heappush(times, float(vf.time))
        held.append((vf, arrival))
        if len(held) > depth:
            yield release()
    while held:
        yield release()


def _arrival_times(frames):
    """Live streams without timestamps (MJPEG over HTTP): a frame's time is when it
    arrived, from the first frame's arrival, so the stream is paced by the clock and
    not by a guessed frame rate. Streams with timestamps keep them."""
    origin: float | None = None
    prev: float | None = None
    for vf, arrival in frames:
        if origin is None:
            origin = arrival
        t = arrival - origin
        if prev is not None and t <= prev:
            t = prev + 1e-3  # frames read in one burst: keep times increasing
        prev = t
        yield vf, t, arrival


def _display_rotation(rotation: float | int | None) -> int:
    """Snap a display-matrix angle to a multiple of 90 degrees (counter-clockwise)."""
    if not rotation:
        return 0
    return int(round(float(rotation) / 90.0)) * 90 % 360


class VideoSource:
    """An opened video: a file path or a URL that FFmpeg can read.

    >>> with VideoSource("clip.mp4") as video:          # doctest: +SKIP
    ...     for frame in video.frames(size=(149, 112)):
    ...         ...
    """

    def __init__(self, source, *, timeout_s: float | tuple[float, float] = 15.0,
                 threads: int = 0, format: str | None = None,
                 options: dict | None = None, live: bool = False) -> None:
        import av  # heavy, and only needed once a video is opened

        # timeout_s: seconds for opening and for each read, or (open, read).
        # live: a camera or stream: frames are never held back (see _REORDER_DEPTH),
        # and a stream without timestamps is timed by when its frames arrive.
        self.live = live
        open_s, read_s = timeout_s if isinstance(timeout_s, tuple) else (timeout_s, timeout_s)
        timeout_s = open_s

        self._file = None
        self._container = None
        url, opts = _target(source, format, options)
        if format is None:
            format = getattr(source, "format", None) if _is_source_like(source) else None
        self.source = str(getattr(source, "text", None) or url) if _is_source_like(source) \
            else os.fspath(source) if not isinstance(source, bytes) else os.fsdecode(source)
        name = display_path(self.source)
        self._threads = threads
        target: object = url
        if format is None and not is_url(url):
            target = self._open_local(url, name)
        open_opts = {str(k): str(v) for k, v in opts.items()}
        try:
            self._container = av.open(target, mode="r", format=format,
                                      options=open_opts or None,
                                      timeout=(open_s, read_s),
                                      metadata_errors="ignore")
        except av.error.FileNotFoundError:
            self.close()
            raise DecodeError(f"{name}: no such file; check the path") from None
        except (av.error.FFmpegError, OSError, UnicodeError, ValueError) as exc:
            self.close()
            if is_url(url):
                reason = _url_reason(exc, timeout_s)
                if reason.startswith(("Input/output error", "Too many redirects")):
                    reason = _http_diagnosis(url, timeout_s) or reason
                raise DecodeError(f"{name}: could not open URL ({reason}); "
                                  "check the address and that the server is reachable") from None
            if format is not None:
                raise DecodeError(f"{name}: could not open as {format} ({_reason(exc)}); "
                                  "check the device or stream") from None
            raise DecodeError(f"{name}: cannot be read as a video ({_reason(exc)}); "
                              "the file may be truncated, corrupt or not a video") from None
        try:
            self._stream = self._container.streams.best("video")
        except Exception:  # noqa: BLE001 - PyAV raises different types across versions
            self._stream = None
        if self._stream is None or self._stream.codec_context is None:
            self.close()
            raise DecodeError(f"{name}: has no video stream (audio-only or data file, or "
                              "its codec cannot be identified: the file may be corrupt)")
        self.stats = DecodeStats()
        ctx = self._stream.codec_context
        # Slice threading only: frame threading conceals damaged packets differently
        # from run to run, so the same file would not give the same pixels twice.
        ctx.thread_type = "SLICE"
        ctx.thread_count = threads
        self._raw = self._iter_decoded()
        # Decode the first frame now: rotation lives in per-frame side data (FFmpeg
        # copies the container's display matrix onto every frame), and a file that
        # cannot produce a single frame should fail here, at open. The frame is kept
        # and replayed by frames(), so nothing is decoded twice.
        self._first = next(self._raw, None)
        if self._first is None:
            reason = self.stats.last_error or "the stream holds no frames"
            self.close()
            raise DecodeError(f"{name}: no frame could be decoded ({reason}); "
                              "the file is corrupt or its codec is unsupported")
        self._rotation = _display_rotation(getattr(self._first[0], "rotation", 0))
        self.info = self._read_info()

    def _open_local(self, path: str, name: str):
        """What FFmpeg should open for a local path: ``file:`` + the absolute path
        (so ``a:b.mp4`` or ``pipe:0.mp4`` is that file, never a protocol), or a
        Python file object for pipes and names that are not valid UTF-8."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _local_error(name, exc, path) from None
        if stat.S_ISDIR(st.st_mode):
            raise DecodeError(f"{name}: is a directory, not a video file")
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raise DecodeError(f"{name}: file is empty (0 bytes); re-copy or re-download it")
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open for FFmpeg or closed below
        except OSError as exc:
            raise _local_error(name, exc, path) from None
        absolute = os.path.abspath(path)
        try:
            absolute.encode("utf-8")
            utf8 = True
        except UnicodeEncodeError:
            utf8 = False
        if stat.S_ISREG(st.st_mode) and utf8:
            handle.close()
            return "file:" + absolute
        self._file = handle  # a pipe, or a name FFmpeg cannot be given as text
        return handle

    # -- metadata ---------------------------------------------------------
    def _read_info(self) -> VideoInfo:
        s = self._stream
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else None
        frames = int(s.frames) if s.frames else None
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        # What the container states (for the truncation check); raw elementary
        # streams have no index, so FFmpeg guesses their duration from the bitrate.
        raw = self._container.format.name in _RAW_FORMATS
        self._stated_frames = None if raw else frames
        self._stated_s = None if raw else duration
        if frames is None and duration and fps:
            frames = int(round(duration * fps))
        width, height = s.codec_context.width, s.codec_context.height
        if self._rotation in (90, 270):
            width, height = height, width
        return VideoInfo(source=self.source, stream_index=s.index, codec=s.codec_context.name,
                         width=width, height=height, fps=fps, frames=frames,
                         duration_s=duration, rotation=self._rotation)

    # -- decoding ---------------------------------------------------------
    def _iter_decoded(self):
        """Yield ``(av.VideoFrame, arrival)`` in decode order, skipping damaged packets;
        ``arrival`` is time.monotonic() when the packet that completed the frame was read."""
        import time

        import av

        stats = self.stats
        consecutive = 0
        try:
            for packet in self._container.demux(self._stream):
                arrival = time.monotonic()
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    stats.bad_packets += 1
                    stats.last_error = _reason(exc)
                    consecutive += 1
                    if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                        stats.stopped_early = True
                        return
                    continue
                consecutive = 0
                for vf in decoded:
                    yield vf, arrival
        except av.error.FFmpegError as exc:  # the demuxer gave up (e.g. truncated container)
            stats.bad_packets += 1
            stats.last_error = _reason(exc)
            stats.stopped_early = True

    def frames(self, size: tuple[int, int] | None = None,
               interpolation: str = "BILINEAR") -> Iterator[Frame]:
        """Yield upright RGB frames, optionally resized to ``size=(width, height)``.

        ``size`` is in display orientation. Resizing happens in FFmpeg's scaler while
        converting to RGB, which is much cheaper than resizing full-size frames later.
        When resizing, the scaler writes planar RGB (``gbrp``): its packed-RGB fast
        path darkens flat areas at some output sizes (luma 235 gave 253 instead of
        255, luma 60 gave 49 instead of 51), while planar output stays within 1 level
        of converting at full size and then resizing, and is faster (bench/decode.py).
        Call once: a VideoSource is a single pass over its file.
        """
        from av.video.reformatter import Interpolation, VideoReformatter

        stats = self.stats
        k = self._rotation // 90
        width, height = (None, None) if size is None else (size[1], size[0]) if k % 2 else size
        flags = (Interpolation[interpolation.upper()] if isinstance(interpolation, str)
                 else Interpolation(interpolation))
        # At full size FFmpeg's default packed conversion is the reference.
        pix = "rgb24" if size is None else "gbrp"
        reformatter = VideoReformatter()
        fps = self.info.fps or 25.0
        first, self._first = self._first, None
        source = self._raw if first is None else _chain_one(first, self._raw)
        if not self.live:
            timed = _reordered_times(source, fps)
        elif self._invented_times():
            timed = _arrival_times(source)
        else:
            timed = _reordered_times(source, fps, depth=0)
        try:
            for index, (vf, t, arrival) in enumerate(timed):
                rgb = reformatter.reformat(vf, width=width, height=height, format=pix,
                                           interpolation=flags).to_ndarray()
                if k:
                    # k quarter turns counter-clockwise: what FFmpeg's autorotate shows
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
                dur = (float(vf.duration * vf.time_base) if vf.duration and vf.time_base
                       else 1.0 / fps)
                stats.frames, stats.end_s = index + 1, t + dur
                yield Frame(index=index, time_s=t, duration_s=dur, rgb=rgb, arrival=arrival,
                            sender_time=self._sender_time(vf) if self.live else None)
        finally:
            self._finish_stats()

    def _sender_time(self, vf) -> float | None:
        """The frame's capture time on the sender's clock (Unix seconds), when the
        stream carries one: FFmpeg's RTSP demuxer sets ``start_time_realtime`` (Unix
        microseconds of pts 0, from the first RTCP sender report's NTP time) and from
        then on stamps the frames' pts against the sender reports, so
        ``start_time_realtime + pts`` is the sender's wall-clock time of the frame.
        None for streams without sender reports (UDP MPEG-TS, files, HTTP) and for
        an RTSP stream's frames before its first sender report (a few seconds)."""
        container = self._container
        base = getattr(container, "start_time_realtime", None) if container else None
        if not base or base <= 0 or vf.pts is None or vf.time_base is None:
            return None
        return base / 1_000_000 + float(vf.pts * vf.time_base)

    def _invented_times(self) -> bool:
        """Whether the demuxer makes timestamps up (MJPEG over HTTP, raw elementary
        streams: FFmpeg numbers their frames at a guessed 25 fps)."""
        names = set((self._container.format.name or "").split(","))
        return bool(names & _NO_TIMESTAMPS)

    def _finish_stats(self) -> None:
        s = self.stats
        s.warnings.clear()
        if s.bad_packets:
            s.warnings.append(f"{s.bad_packets} damaged packet(s) skipped ({s.last_error})")
        if s.stopped_early:
            s.warnings.append("decoding stopped early: the rest of the stream is unreadable")
        short = self._truncation()
        if short:
            s.warnings.append(short)

    def _truncation(self) -> str | None:
        """A warning when fewer frames were decoded than the container *states* it
        holds: its stored frame count, else its stated duration against the last
        decoded timestamp. Estimates (duration x fps) are never used: a variable
        frame-rate file or one whose timestamps jump would be called truncated."""
        s = self.stats
        stated_frames, stated_s = self._stated_frames, self._stated_s
        if stated_frames:
            if s.frames < stated_frames - max(2, 0.002 * stated_frames):
                return (f"decoded {s.frames} of the {stated_frames} frames the container "
                        f"lists ({s.end_s:.1f} s); the file may be truncated")
            return None
        if stated_s and s.frames:
            fps = self.info.fps or 25.0
            if s.end_s < stated_s - max(1.0, 3.0 / fps, 0.01 * stated_s):
                return (f"decoded {s.end_s:.1f} s of the {stated_s:.1f} s the container "
                        "states; the file may be truncated")
        return None

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            container.close()
        handle = getattr(self, "_file", None)
        if handle is not None:
            self._file = None
            handle.close()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
