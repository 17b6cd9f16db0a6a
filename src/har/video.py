"""Video decoding over PyAV: metadata, streamed RGB frames with timestamps, rotation.

Frames are read strictly in decode order (no timestamp seeking, which is unreliable
on AVI files with B-frames), one at a time, so memory does not grow with the
video's length. Damaged packets are skipped and counted rather than ending the
decode, so a partly broken file still yields what can be recovered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DecodeError
from .sources import is_url

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


def _chain_one(first, rest):
    yield first
    yield from rest


# Frames leave the decoder in display order, but some containers (AVI with packed
# B-frames) stamp them with out-of-order times. Timestamps are re-sorted through a
# window this deep, which is a no-op for well-formed streams.
_REORDER_DEPTH = 8


def _reordered_times(frames, fps: float):
    """Yield ``(av_frame, seconds)`` with non-decreasing times starting at 0."""
    import heapq
    from collections import deque

    held: deque = deque()
    times: list[float] = []
    origin: float | None = None
    prev: float | None = None

    def release():
        nonlocal origin, prev
        vf = held.popleft()
        t = heapq.heappop(times) if times else None
        if t is not None and origin is None:
            origin = t
        if t is None or prev is not None and t <= prev:
            t = (prev + 1.0 / fps) if prev is not None else (origin or 0.0)
        prev = t
        return vf, t - (origin or 0.0)

    for vf in frames:
        if vf.time is not None:
            heapq.heappush(times, float(vf.time))
        held.append(vf)
        if len(held) > _REORDER_DEPTH:
            yield release()
    while held:
        yield release()


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

    def __init__(self, source: str | os.PathLike, *, timeout_s: float = 15.0,
                 threads: int = 0) -> None:
        import av  # heavy, and only needed once a video is opened

        self.source = str(source)
        self._threads = threads
        if not is_url(source):
            path = Path(source)
            if not path.exists():
                raise DecodeError(f"{self.source}: no such file; check the path")
            if path.is_dir():
                raise DecodeError(f"{self.source}: is a directory, not a video file")
            if path.stat().st_size == 0:
                raise DecodeError(f"{self.source}: file is empty (0 bytes); re-copy or re-download it")
        try:
            self._container = av.open(self.source, mode="r", timeout=(timeout_s, timeout_s),
                                      metadata_errors="ignore")
        except av.error.FileNotFoundError:
            raise DecodeError(f"{self.source}: no such file; check the path") from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            if is_url(source):
                raise DecodeError(f"{self.source}: could not open URL ({_reason(exc)}); "
                                  "check the address and that the server is reachable") from None
            raise DecodeError(f"{self.source}: cannot be read as a video ({_reason(exc)}); "
                              "the file may be truncated, corrupt or not a video") from None
        try:
            self._stream = self._container.streams.best("video")
        except Exception:  # noqa: BLE001 - PyAV raises different types across versions
            self._stream = None
        if self._stream is None:
            self.close()
            raise DecodeError(f"{self.source}: has no video stream (audio-only or data file?)")
        self.stats = DecodeStats()
        ctx = self._stream.codec_context
        ctx.thread_type = "AUTO"
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
            raise DecodeError(f"{self.source}: no frame could be decoded ({reason}); "
                              "the file is corrupt or its codec is unsupported")
        self._rotation = _display_rotation(getattr(self._first, "rotation", 0))
        self.info = self._read_info()

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
        """Yield av.VideoFrame in decode order, skipping damaged packets."""
        import av

        stats = self.stats
        consecutive = 0
        try:
            for packet in self._container.demux(self._stream):
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
                yield from decoded
        except av.error.FFmpegError as exc:  # the demuxer gave up (e.g. truncated container)
            stats.bad_packets += 1
            stats.last_error = _reason(exc)
            stats.stopped_early = True

    def frames(self, size: tuple[int, int] | None = None,
               interpolation: str = "BILINEAR") -> Iterator[Frame]:
        """Yield upright RGB frames, optionally resized to ``size=(width, height)``.

        ``size`` is in display orientation. Resizing happens in FFmpeg's scaler while
        converting to RGB, which is much cheaper than resizing full-size frames later.
        Call once: a VideoSource is a single pass over its file.
        """
        from av.video.reformatter import VideoReformatter

        stats = self.stats
        k = self._rotation // 90
        width, height = (None, None) if size is None else (size[1], size[0]) if k % 2 else size
        reformatter = VideoReformatter()
        fps = self.info.fps or 25.0
        first, self._first = self._first, None
        source = self._raw if first is None else _chain_one(first, self._raw)
        try:
            for index, (vf, t) in enumerate(_reordered_times(source, fps)):
                rgb = reformatter.reformat(vf, width=width, height=height, format="rgb24",
                                           interpolation=interpolation).to_ndarray()
                if k:
                    # k quarter turns counter-clockwise: what FFmpeg's autorotate shows
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
                dur = (float(vf.duration * vf.time_base) if vf.duration and vf.time_base
                       else 1.0 / fps)
                stats.frames, stats.end_s = index + 1, t + dur
                yield Frame(index=index, time_s=t, duration_s=dur, rgb=rgb)
        finally:
            self._finish_stats()

    def _finish_stats(self) -> None:
        s, info = self.stats, self.info
        s.warnings.clear()
        if s.bad_packets:
            s.warnings.append(f"{s.bad_packets} damaged packet(s) skipped ({s.last_error})")
        if s.stopped_early:
            s.warnings.append("decoding stopped early: the rest of the stream is unreadable")
        if info.frames and s.frames < info.frames * 0.95 - 1:
            s.warnings.append(f"decoded {s.frames} of the {info.frames} frames the header "
                              "announces; the file may be truncated")

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
