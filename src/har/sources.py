"""What the user typed -> the videos to read. The one place that decides what an input is.

An input is one of:

=========  ======================================================  =====  ===========
kind       examples                                                live   opened as
=========  ======================================================  =====  ===========
file       ``v.mp4``, ``file:c.mp4`` (a file of that name), ``d/``  no     the file
           (folders are searched recursively), ``'v/**/*.mp4'``
url        ``https://host/v.mp4``                                   no     streamed; fetched to
                                                                           a temporary file when
                                                                           the server cannot seek
stdin      ``-``                                                    no     spooled to a
                                                                           temporary file
device     ``0`` (camera index), ``/dev/video0``                    yes    V4L2
stream     ``rtsp://``, ``rtsps://``, ``rtmp://``, ``udp://``,      yes    FFmpeg's protocol
           ``srt://``, ``tcp://``, ``http(s)://...m3u8`` (HLS)
=========  ======================================================  =====  ===========

A local path is always opened as a file, never handed to FFmpeg as a protocol string, so
a file called ``file:c.mp4`` or ``pipe:0.mp4`` is that file. A name that exists as a file
wins over every other reading (a file called ``0`` is a file, not camera 0).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DecodeError
from .fsutil import TEMP_PREFIX, display_path
# What a URL is lives in har.urls (video.py needs it too, and must not import this
# module); the names stay importable from here.
from .urls import HTTP_SCHEMES, STREAM_SCHEMES, is_url, url_problem  # noqa: F401

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .gif .mxf"
    .split())
_GLOB_CHARS = re.compile(r"[*?[]")
# A URL that cannot be streamed, and standard input, are copied to a temporary file
# of at most this many bytes (HAR_MAX_FETCH_MB overrides).
DEFAULT_MAX_FETCH_MB = 4096


def max_fetch_bytes() -> int:
    try:
        return int(float(os.environ.get("HAR_MAX_FETCH_MB", DEFAULT_MAX_FETCH_MB)) * 1024 * 1024)
    except ValueError:
        return DEFAULT_MAX_FETCH_MB * 1024 * 1024


@dataclass(frozen=True)
class Source:
    """One input, decided once.

    ``text`` is what the user typed (how it is named in messages and outputs); ``url``
    is what is opened: a local path for files, the URL for URLs and streams, the device
    node for cameras. ``format``/``options`` are the demuxer and FFmpeg options it needs.
    """

    text: str
    kind: str  # "file" | "url" | "stdin" | "device" | "stream"
    live: bool = False
    url: str = ""
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def local(self) -> bool:
        return self.kind == "file"

    def __str__(self) -> str:
        return self.text


def parse_source(text: str, *, rtsp_transport: str = "tcp") -> Source:
    """Decide what one input is (no directory or glob expansion; see :func:`resolve_inputs`)."""
    text = os.fspath(text)
    if text == "-":
        return Source("-", "stdin", url="-")
    if _exists(text):
        if _is_char_device(text) and text.startswith("/dev/video"):
            return Source(text, "device", live=True, url=text, format="v4l2")
        return Source(text, "file", url=text)
    if re.fullmatch(r"\d{1,3}", text):
        return Source(text, "device", live=True, url=f"/dev/video{int(text)}", format="v4l2")
    if re.fullmatch(r"/dev/video\d+", text):
        return Source(text, "device", live=True, url=text, format="v4l2")
    if text.lower().startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        return Source(text, "file", url=path)
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in HTTP_SCHEMES:
        if urllib.parse.urlsplit(text).path.lower().endswith(".m3u8"):
            return Source(text, "stream", live=True, url=text, format="hls")
        return Source(text, "url", url=text)
    if scheme in STREAM_SCHEMES:
        options: dict[str, str] = {}
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = rtsp_transport
        fmt = "mpegts" if scheme in ("udp", "srt", "tcp") and _ts_hint(text) else None
        return Source(text, "stream", live=True, url=text, format=fmt, options=options)
    return Source(text, "file", url=text)  # a missing file is reported when opened


def _ts_hint(url: str) -> bool:
    """UDP/SRT/TCP streams carry MPEG-TS unless the URL says otherwise."""
    return not urllib.parse.urlsplit(url).path.lower().endswith((".sdp", ".flv"))


def _exists(path: str) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _is_char_device(path: str) -> bool:
    import stat

    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _video_files(folder: Path) -> list[str]:
    found = []
    for p in folder.rglob("*"):
        if p.name.startswith(TEMP_PREFIX) or p.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        with contextlib.suppress(OSError):
            if p.is_file():
                found.append(str(p))
    return sorted(found)


def resolve_inputs(inputs: list[str], *, rtsp_transport: str = "tcp"
                   ) -> tuple[list[Source], list[tuple[str, str]]]:
    """Expand folders (recursively, video extensions only) and globs into sources.

    Returns ``(sources, errors)``; each error is ``(input, one-line message)``. A file
    named twice (or found twice) is read once.
    """
    sources: list[Source] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(src: Source) -> None:
        key = os.path.realpath(src.url) if src.local else src.url
        if src.kind == "stdin" and "-" in seen:
            errors.append(("-", "-: standard input can be read only once; name it once"))
            return
        if key not in seen:
            seen.add(key)
            sources.append(src)

    for item in inputs:
        item = os.fspath(item)
        shown = display_path(item)
        try:
            is_dir = not is_url(item) and os.path.isdir(item)
        except (OSError, ValueError):
            is_dir = False
        if is_dir:
            try:
                found = _video_files(Path(item))
            except OSError as exc:
                errors.append((item, f"{shown}: cannot list the folder "
                               f"({exc.strerror or exc}); check its permissions"))
                continue
            if not found:
                errors.append((item, f"{shown}: directory has no video files "
                               f"(looked for {', '.join(sorted(VIDEO_EXTENSIONS))})"))
            for f in found:
                add(Source(f, "file", url=f))
            continue
        if _GLOB_CHARS.search(item) and not _exists(item) and not is_url(item):
            matches = sorted(m for m in glob.glob(item, recursive=True)
                             if os.path.isfile(m) and not Path(m).name.startswith(TEMP_PREFIX))
            if not matches:
                errors.append((item, f"{shown}: no files match this pattern; check it "
                               "(and quote it so the shell does not expand it)"))
            for m in matches:
                add(Source(m, "file", url=m))
            continue
        src = parse_source(item, rtsp_transport=rtsp_transport)
        problem = url_problem(item) if src.kind in ("url", "stream") else None
        if problem:
            errors.append((item, problem))
            continue
        add(src)
    return sources, errors


# -- opening ----------------------------------------------------------------------
class _TempVideo:
    """A temporary copy (standard input, or a URL the server cannot seek in), removed
    when the video is closed. It is har's own file, in the system's temporary folder."""

    def __init__(self, suffix: str) -> None:
        from .fsutil import temp_prefix

        fd, name = tempfile.mkstemp(prefix=temp_prefix("video"), suffix=suffix)
        os.close(fd)
        self.path = name

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _copy_capped(read, out, limit: int, what: str) -> int:
    total = 0
    while True:
        chunk = read(1 << 20)
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            raise DecodeError(f"{what}: larger than the {limit // (1024 * 1024)} MB that "
                              "is copied to a temporary file; set HAR_MAX_FETCH_MB to "
                              "allow more, or save it to a file first")
        out.write(chunk)


def spool_stdin(stream=None) -> _TempVideo:
    """Copy standard input to a temporary file (a pipe cannot be seeked in, and MP4
    needs that); DecodeError when it is empty or too large."""
    stream = stream or sys.stdin.buffer
    tmp = _TempVideo(".video")
    try:
        with open(tmp.path, "wb") as out:
            n = _copy_capped(stream.read, out, max_fetch_bytes(), "-")
        if n == 0:
            raise DecodeError("-: standard input is empty; pipe a video into har, "
                              "e.g. `cat v.mp4 | har predict -`")
    except BaseException:
        tmp.remove()
        raise
    return tmp


def accepts_ranges(url: str, timeout_s: float = 15.0) -> bool | None:
    """Whether an http(s) server answers byte-range requests (None: could not tell)."""
    req = urllib.request.Request(url, headers={"Range": "bytes=0-0",
                                               "User-Agent": "har-video"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status == 206
    except (urllib.error.URLError, OSError, ValueError):
        return None


def fetch_url(url: str, timeout_s: float = 15.0) -> _TempVideo:
    """Download ``url`` to a temporary file: at most ``HAR_MAX_FETCH_MB``, waiting at
    most ``timeout_s`` for the next bytes. Through :func:`har.netsafe.fetch`, the one
    downloader of a URL input (the service's too); the user's own machine may name
    hosts on its own network, so private addresses are allowed here."""
    import math

    from .errors import HarError
    from .netsafe import FetchLimits, fetch

    suffix = Path(urllib.parse.urlsplit(url).path).suffix or ".video"
    limit = max_fetch_bytes()
    limits = FetchLimits(max_bytes=limit, deadline_s=math.inf, idle_s=timeout_s,
                         limit_name="the size copied to a temporary file",
                         advice="; set HAR_MAX_FETCH_MB to allow more, or save it to a "
                                "file first")
    tmp = _TempVideo(suffix[:10])
    try:
        with open(tmp.path, "wb") as out:
            fetch(url, out, limits=limits, allow_private=True, user_agent="har-video")
    except HarError as exc:
        tmp.remove()
        raise DecodeError(str(exc)) from None
    except OSError as exc:  # the temporary copy cannot be written
        tmp.remove()
        raise DecodeError(f"{url}: cannot be copied to a temporary file "
                          f"({exc.strerror or exc}); free space there or save it to a "
                          "file first") from None
    except BaseException:
        tmp.remove()
        raise
    return tmp


def open_video(source: Source | str, *, timeout_s: float | tuple[float, float] = 15.0,
               live: bool | None = None, fetch: bool = True, options: dict | None = None):
    """Open a source for decoding: a :class:`har.video.VideoSource` whose ``close()``
    also removes any temporary copy made for it.

    ``live`` (default: the source's own) decodes without holding frames back;
    ``fetch=False`` never copies a URL to a temporary file (``har live`` streams every
    URL: an endless or trickling body must not fill the disk). ``options`` are added
    to the source's FFmpeg options."""
    from .video import VideoSource

    src = source if isinstance(source, Source) else parse_source(str(source))
    kwargs: dict = {"live": src.live if live is None else live}
    if src.format:
        kwargs["format"] = src.format
    if src.options or options:
        kwargs["options"] = {**src.options, **(options or {})}
    tmp: _TempVideo | None = None
    if src.kind == "stdin":
        tmp = spool_stdin()
        target = tmp.path
    else:
        target = src.url
    try:
        try:
            video = VideoSource(target, timeout_s=timeout_s, **kwargs)
        except DecodeError as exc:
            if src.kind == "stdin":  # name the input as the user did, not the copy
                raise DecodeError(str(exc).replace(target, "-")) from None
            # An MP4 whose index sits at its end cannot be read from a server that
            # answers no range requests: fetch it whole, then read the copy.
            if src.kind != "url" or not fetch:
                raise
            fetch_timeout = timeout_s[0] if isinstance(timeout_s, tuple) else timeout_s
            if accepts_ranges(src.url, fetch_timeout) is not False:
                raise
            tmp = fetch_url(src.url, fetch_timeout)
            video = VideoSource(tmp.path, timeout_s=timeout_s)
    except BaseException:
        if tmp is not None:
            tmp.remove()
        raise
    if tmp is not None:
        _remove_on_close(video, tmp)
    return video


def _remove_on_close(video, tmp: _TempVideo) -> None:
    close = video.close

    def close_and_remove() -> None:
        try:
            close()
        finally:
            tmp.remove()

    video.close = close_and_remove


# -- HLS playlists (har live) ----------------------------------------------------------
@dataclass(frozen=True)
class HlsPlaylist:
    """What an HLS media playlist says now: ``ended`` (``#EXT-X-ENDLIST``: a finished,
    VOD playlist), its target segment duration, and its newest segment (which changes
    while a live playlist is alive)."""

    ended: bool
    target_s: float | None
    last_segment: str | None


_MAX_PLAYLIST_BYTES = 1 << 20


def _get_text(url: str, timeout_s: float) -> str:
    req = urllib.request.Request(url, headers={"User-Agent": "har-video"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        data = resp.read(_MAX_PLAYLIST_BYTES + 1)
    if len(data) > _MAX_PLAYLIST_BYTES:
        raise ValueError("playlist larger than 1 MB")
    return data.decode("utf-8", errors="replace")


def hls_playlist(url: str, timeout_s: float = 5.0) -> HlsPlaylist | None:
    """Read an HLS playlist (a master playlist's first variant); None when it cannot
    be read or is not a playlist."""
    try:
        text = _get_text(url, timeout_s)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines or not lines[0].startswith("#EXTM3U"):
            return None
        if any(ln.startswith("#EXT-X-STREAM-INF") for ln in lines):
            variants = [ln for ln in lines if not ln.startswith("#")]
            if not variants:
                return None
            url = urllib.parse.urljoin(url, variants[0])
            text = _get_text(url, timeout_s)
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    except (urllib.error.URLError, OSError, ValueError):
        return None
    target = None
    for ln in lines:
        if ln.startswith("#EXT-X-TARGETDURATION:"):
            with contextlib.suppress(ValueError):
                target = float(ln.partition(":")[2])
    segments = [ln for ln in lines if not ln.startswith("#")]
    return HlsPlaylist(ended=any(ln.startswith("#EXT-X-ENDLIST") for ln in lines),
                       target_s=target, last_segment=segments[-1] if segments else None)
