"""Pictures of a result: the annotated video and the probability plot.

:func:`annotate_video` decodes the input again, frame by frame (memory does not
grow with the video's length), draws on each frame with OpenCV and encodes with
PyAV:

- the current clip's top actions and their probabilities, in a semi-transparent
  box at the top left, with a colour swatch for labels that have segments;
- a timeline strip at the bottom: one coloured bar row per segment label, and a
  white cursor at the current time.

Text size follows the frame size (about 3% of the shorter side, never below a
legible minimum); on tiny frames fewer lines are shown and long labels are
shortened at a word boundary where possible, always marked with "..".

The output keeps the input's display size (rotated inputs come out upright, as
:class:`har.video.VideoSource` shows them), frame count and timestamps (so the
frame rate and variable frame rates are kept), and its audio: copied as is when
the output container takes the codec, else re-encoded to AAC with every sample kept
(e.g. the MP3 of an AVI into MP4), else dropped with a note. Video is H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 Part 2.
Frames with an odd width or height cannot use 4:2:0 chroma; libx264 then encodes
4:4:4 (exact size kept; some browsers do not play it), MPEG-4 pads the frame by
one pixel on the right/bottom.

:func:`plot_timeline` draws the clip probabilities of the top actions over time with
their segments shaded (matplotlib, the optional extra ``har-video[plot]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import HarError, InputError, OutputError
from .palette import NO_SEGMENT as _NO_SEGMENT
from .palette import PALETTE
from .results import VideoResult
from .timeline import clip_cells

# Containers that take these audio codecs as they are; others are re-encoded to AAC.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac", "mp2"}
_CONTAINER_BY_SUFFIX = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
                        ".avi": "avi"}


def segment_colors(segments) -> dict[str, tuple[int, int, int]]:
    """A stable RGB colour per segment label (in order of first appearance).

    ``segments``: :class:`har.results.Segment` objects or their ``to_dict()`` form
    (the ``har.predictions/1`` JSON), so the overlay, the plot and the HTML report
    (:mod:`har.report`) always give a label the same colour."""
    def key(s):
        return (s["start_s"], -s["mean_score"]) if isinstance(s, dict) \
            else (s.start_s, -s.mean_score)

    colors: dict[str, tuple[int, int, int]] = {}
    for seg in sorted(segments, key=key):
        label = seg["label"] if isinstance(seg, dict) else seg.label
        if label not in colors:
            colors[label] = PALETTE[len(colors) % len(PALETTE)]
    return colors


def label_colors(result: VideoResult) -> dict[str, tuple[int, int, int]]:
    """A stable RGB colour per segment label (in order of first appearance)."""
    return segment_colors(result.segments)


def _timed_clips(result: VideoResult):
    clips = sorted(result.clips, key=lambda c: (c.start_s, c.index))
    if not clips:
        return clips, np.zeros((0, 2))
    return clips, clip_cells([c.start_s for c in clips], [c.end_s for c in clips])


def _duration(result: VideoResult, cells: np.ndarray) -> float:
    ends = [result.duration_s or 0.0]
    if len(cells):
        ends.append(float(cells[-1, 1]))
    return max(max(ends), 1e-6)


# -- drawing ------------------------------------------------------------------------
@dataclass
class _Layout:
    width: int
    height: int
    scale: float
    thickness: int
    line_h: int
    pad: int
    lines: int
    row_h: int
    strip_h: int
    baseline: int = 0
    unit_h: float = 22.0  # text height at scale 1


def _layout(width: int, height: int, top_n: int, rows: int) -> _Layout:
    import cv2

    short = min(width, height)
    text_h = max(9.0, 0.03 * short)  # pixels, cap height of the text
    (_, h1), base1 = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    scale = text_h / h1
    thickness = max(1, int(round(scale * 1.6)))
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(2, int(round(th * 0.35)))
    line_h = th + base + pad
    # At most about 40% of the height for the label box.
    lines = max(1, min(top_n, int(0.4 * height // line_h)))
    # Timeline rows: tall enough that the label written in a row (0.6 of its height)
    # reads at video sizes: about 16 px of capital height at 720p.
    row_h = max(4, int(round(0.036 * short)))
    strip_h = max(1, rows) * row_h + 2 * max(1, row_h // 3)
    return _Layout(width, height, scale, thickness, line_h, pad, lines, row_h, strip_h, base,
                   float(h1))


def _blend_rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int,
                color=(0, 0, 0), alpha: float = 0.55) -> None:
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, img.shape[1]), min(y1, img.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1].astype(np.float32)
    roi *= 1.0 - alpha
    roi += np.asarray(color, np.float32) * alpha
    img[y0:y1, x0:x1] = roi.astype(np.uint8)


def _fit(text: str, max_w: int, lay: _Layout) -> str:
    import cv2

    def width(t: str) -> int:
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, lay.scale, lay.thickness)[0][0]

    if width(text) <= max_w:
        return text
    full = text
    while len(text) > 1 and width(text + "..") > max_w:
        text = text[:-1]
    # Cut at a word boundary when that keeps at least half of what fits, so a label
    # reads "gymnastics.." rather than "gymnastics tumbli.."; the ".." marks the cut.
    if len(text) < len(full) and full[len(text)] != " " and " " in text.strip():
        word_cut = text.rstrip()[: text.rstrip().rfind(" ")]
        if len(word_cut) >= len(text) // 2:
            text = word_cut
    return text.rstrip() + ".."


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode("ascii", "replace").decode("ascii")


class _Painter:
    """Draws one video's overlay; the static timeline strip is drawn once."""

    def __init__(self, result: VideoResult, width: int, height: int, top_n: int) -> None:
        self.clips, self.cells = _timed_clips(result)
        self.colors = label_colors(result)
        self.duration = _duration(result, self.cells)
        rows = list(self.colors)[:6]
        self.lay = _layout(width, height, top_n, len(rows))
        # Rows too thin to hold their names get a legend line above them instead.
        self.legend_h = self.lay.line_h if rows and self.lay.row_h < 14 else 0
        self.lay.strip_h += self.legend_h
        self.strip = self._draw_strip(result, rows)
        self._starts = self.cells[:, 0] if len(self.cells) else np.zeros(0)

    def _x(self, t: float) -> int:
        return int(round(min(max(t / self.duration, 0.0), 1.0) * (self.lay.width - 1)))

    def _draw_strip(self, result: VideoResult, rows: list[str]) -> np.ndarray:
        """RGBA strip: dark translucent background, a bar row per label."""
        import cv2

        lay = self.lay
        strip = np.zeros((lay.strip_h, lay.width, 4), np.uint8)
        strip[..., 3] = 140  # background alpha
        if self.legend_h:
            self._draw_legend(strip, rows)
        margin = max(1, lay.row_h // 3) + self.legend_h
        for r, label in enumerate(rows):
            y0 = margin + r * lay.row_h
            y1 = y0 + max(1, lay.row_h - max(1, lay.row_h // 5))
            color = self.colors[label]
            for seg in result.segments:
                if seg.label != label:
                    continue
                x0, x1 = self._x(seg.start_s), max(self._x(seg.end_s), self._x(seg.start_s) + 1)
                strip[y0:y1, x0:x1, :3] = color
                strip[y0:y1, x0:x1, 3] = 235
            if lay.row_h >= 14:  # room for the label's name inside the row
                s = 0.6 * lay.row_h / lay.unit_h
                first = min(s2.start_s for s2 in result.segments if s2.label == label)
                cap = int(round(s * lay.unit_h))
                org = (min(self._x(first) + 3, lay.width - 10), y0 + (y1 - y0 + cap) // 2)
                cv2.putText(strip, _ascii(label), org, cv2.FONT_HERSHEY_SIMPLEX, s,
                            (0, 0, 0, 255), 1 if lay.row_h < 24 else 2, cv2.LINE_AA)
        return strip

    def _draw_legend(self, strip: np.ndarray, rows: list[str]) -> None:
        """One line above the bars: a swatch and the name of each row's label, in
        row order; names that do not fit are abbreviated, and a "+N" says how many
        rows are left unnamed."""
        import cv2

        lay = self.lay
        sw = max(4, lay.line_h - 2 * lay.pad)
        x = lay.pad
        y_top = lay.pad // 2 + 1
        for i, label in enumerate(rows):
            rest = len(rows) - i
            more = f"+{rest}" if rest else ""
            room = lay.width - x - sw - 2 * lay.pad - (self._w(more) if rest > 1 else 0)
            name = _fit(_ascii(label), room, lay)
            if room < self._w("ab..") or not name:
                cv2.putText(strip, more, (x, y_top + sw), cv2.FONT_HERSHEY_SIMPLEX,
                            lay.scale, (255, 255, 255, 255), lay.thickness, cv2.LINE_AA)
                return
            cv2.rectangle(strip, (x, y_top), (x + sw - 1, y_top + sw - 1),
                          (*self.colors[label], 255), -1)
            x += sw + lay.pad
            cv2.putText(strip, name, (x, y_top + sw), cv2.FONT_HERSHEY_SIMPLEX, lay.scale,
                        (255, 255, 255, 255), lay.thickness, cv2.LINE_AA)
            x += self._w(name) + 2 * lay.pad

    def current_clip(self, t: float):
        if not self.clips:
            return None
        i = int(np.searchsorted(self._starts, t, side="right")) - 1
        return self.clips[min(max(i, 0), len(self.clips) - 1)]

    def draw(self, rgb: np.ndarray, t: float) -> np.ndarray:
        import cv2

        lay = self.lay
        img = rgb if rgb.flags.writeable else rgb.copy()
        # Timeline strip at the bottom, then the cursor.
        y0 = lay.height - lay.strip_h
        region = img[y0:].astype(np.float32)
        a = self.strip[..., 3:4].astype(np.float32) / 255.0
        region = region * (1 - a) + self.strip[..., :3].astype(np.float32) * a
        img[y0:] = region.astype(np.uint8)
        x = self._x(t)
        w = max(1, lay.row_h // 4)
        yc = y0 + self.legend_h  # the cursor crosses the bars, not the legend
        cv2.rectangle(img, (x - w, yc), (x + w, lay.height - 1), (0, 0, 0), -1)
        cv2.line(img, (x, yc), (x, lay.height - 1), (255, 255, 255), max(1, w), cv2.LINE_8)
        # The current clip's top actions.
        clip = self.current_clip(t)
        if clip is None:
            return img
        # The best label always; the next ones only when they are not ~0%.
        preds = clip.top[:1] + [p for p in clip.top[1:lay.lines] if p.score >= 0.005]
        sw = lay.line_h - lay.pad  # swatch side
        text_x = lay.pad * 2 + sw + lay.pad
        max_w = lay.width - text_x - 2 * lay.pad
        texts = []
        for p in preds:
            score = f" {p.score:.0%}"
            texts.append(_fit(_ascii(p.label), max_w - self._w(score), lay) + score)
        box_w = min(lay.width, text_x + max(self._w(s) for s in texts) + 2 * lay.pad)
        box_h = lay.pad + len(texts) * lay.line_h
        _blend_rect(img, 0, 0, box_w, box_h)
        for i, (p, text) in enumerate(zip(preds, texts)):
            top = lay.pad + i * lay.line_h
            color = self.colors.get(p.label, _NO_SEGMENT)
            cv2.rectangle(img, (lay.pad * 2, top), (lay.pad * 2 + sw - 1, top + sw - 1), color, -1)
            base_y = top + sw - 1
            cv2.putText(img, text, (text_x, base_y), cv2.FONT_HERSHEY_SIMPLEX, lay.scale,
                        (255, 255, 255), lay.thickness, cv2.LINE_AA)
        return img

    def _w(self, text: str) -> int:
        import cv2

        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, self.lay.scale,
                               self.lay.thickness)[0][0]


# -- the annotated video ----------------------------------------------------------
@dataclass
class RenderStats:
    path: str
    frames: int = 0
    width: int = 0
    height: int = 0
    codec: str = ""
    audio: str | None = None  # "copied", "aac" (re-encoded) or None
    notes: list[str] = field(default_factory=list)


def video_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _open_audio(source: str):
    """``(container, stream, video_start_s)`` of the input's audio, or Nones."""
    import av

    from .urls import is_url

    # A URL is opened with a timeout (a stalled server must not hang the render); a
    # local path is opened as a file, never read as an FFmpeg protocol string.
    target = source if is_url(source) else "file:" + os.path.abspath(source)
    try:
        c = av.open(target, metadata_errors="ignore", timeout=(15.0, 15.0))
    except (av.error.FFmpegError, OSError, ValueError):
        return None, None, 0.0
    audio = c.streams.audio[0] if c.streams.audio else None
    try:
        audio = c.streams.best("audio") or audio
    except Exception:  # noqa: BLE001 - PyAV raises different types across versions
        pass
    if audio is None:
        c.close()
        return None, None, 0.0
    start = 0.0
    try:
        v = c.streams.best("video")
        if v is not None and v.start_time is not None and v.time_base is not None:
            start = float(v.start_time * v.time_base)
    except Exception:  # noqa: BLE001
        pass
    return c, audio, start


class _AudioCopier:
    """Copies (or re-encodes) the input's audio into the output, interleaved with
    the video by time, reading packets only as far as the video has got."""

    def __init__(self, source: str, out, fmt: str, stats: RenderStats) -> None:
        self.inp, self.ist, self.offset = _open_audio(source)
        self.out, self.stats, self.ost = out, stats, None
        self.encoder = None
        self._packets = None
        self._pending = None
        if self.ist is None:
            return
        name = self.ist.codec_context.name
        try:
            if fmt == "matroska" or name in _MP4_AUDIO:
                self.ost = out.add_stream_from_template(self.ist)
                stats.audio = "copied"
            else:
                self._open_encoder(out)
                stats.audio = "aac"
        except Exception as exc:  # noqa: BLE001 - keep the video, lose the audio
            stats.notes.append(f"audio not kept ({type(exc).__name__}: {exc})")
            self.close()
            return
        self._packets = self.inp.demux(self.ist)

    def _open_encoder(self, out) -> None:
        """AAC for audio the container cannot hold (e.g. MP3 from an AVI into MP4).
        The decoded samples go through a resampler that cuts them into the encoder's
        frame size (1024 for AAC; MP3 frames hold 1152), and each frame is stamped
        from a running sample count, so every input sample is encoded: frames cut
        to another size, or input timestamps that jump, would otherwise be refused
        by the encoder and their audio lost."""
        import av

        ctx = self.ist.codec_context
        self.rate = int(ctx.sample_rate or 48000)
        self.ost = out.add_stream("aac", rate=self.rate)
        # Mono stays mono; anything else is stereo (more channels are mixed down). The
        # count, not the input's layout name: some containers give a count only.
        channels = getattr(ctx.layout, "nb_channels", 0) or getattr(ctx, "channels", 0)
        self.ost.codec_context.layout = "mono" if channels == 1 else "stereo"
        self.encoder = av.AudioResampler(format=self.ost.codec_context.format.name,
                                         layout=self.ost.codec_context.layout.name,
                                         rate=self.rate, frame_size=1024)
        self._next_pts: int | None = None

    def _encode(self, frame) -> None:
        """Encode one decoded frame (None: flush the resampler and the encoder)."""
        from fractions import Fraction

        if frame is not None and self._next_pts is None:
            start = 0.0
            if frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base) - self.offset
            self._next_pts = max(0, int(round(start * self.rate)))
        if frame is not None:
            frame.pts = None  # the running count below stamps the output
        for out_frame in self.encoder.resample(frame):
            out_frame.pts = self._next_pts or 0
            out_frame.time_base = Fraction(1, self.rate)
            self._next_pts = (self._next_pts or 0) + out_frame.samples
            self.out.mux(self.ost.encode(out_frame))

    def _next(self):
        if self._pending is not None:
            p, self._pending = self._pending, None
            return p
        import av

        while self._packets is not None:
            try:
                p = next(self._packets)
            except StopIteration:
                self._packets = None
                return None
            except av.error.FFmpegError:
                continue
            if p.size == 0 or p.pts is None and p.dts is None:
                continue
            return p
        return None

    def write_until(self, t: float | None) -> None:
        """Write the audio up to time ``t`` (seconds, output clock); None: all."""
        if self.ost is None:
            return
        while True:
            p = self._next()
            if p is None:
                break
            pt = p.pts if p.pts is not None else p.dts
            ts = float(pt * p.time_base) - self.offset
            if t is not None and ts > t:
                self._pending = p
                break
            self._write(p)
        if t is None:
            self._flush()

    def _write(self, packet) -> None:
        import av

        try:
            if self.encoder is None:
                shift = int(round(self.offset / packet.time_base)) if self.offset else 0
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = self.ost
                self.out.mux(packet)
            else:
                for frame in packet.decode():
                    self._encode(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            note = f"some audio packets were skipped ({exc})"
            if note not in self.stats.notes:
                self.stats.notes.append(note)

    def _flush(self) -> None:
        if self.encoder is not None and self.ost is not None:
            try:
                for frame in self.ist.codec_context.decode(None):  # the decoder's last
                    self._encode(frame)
            except Exception:  # noqa: BLE001
                pass
            try:
                self._encode(None)
                self.out.mux(self.ost.encode(None))
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        if self.inp is not None:
            self.inp.close()
            self.inp = None


def _output_format(path: Path) -> str:
    return _CONTAINER_BY_SUFFIX.get(path.suffix.lower(), "mp4")


def annotate_video(result: VideoResult, out_path: str | os.PathLike, *, top_n: int = 3,
                   codec: str | None = None, crf: int = 18) -> RenderStats:
    """Write ``result.path`` to ``out_path`` with the result drawn on every frame.

    ``out_path``'s suffix picks the container (.mp4, .m4v, .mov, .mkv; anything
    else is written as MP4). Raises :class:`HarError` with a one-line reason.
    """
    import av

    from .fsutil import atomic_path
    from .sources import open_video

    out = Path(out_path)
    src = result.path
    if not result.ok:
        raise InputError(f"{src}: has no results to draw ({result.error})")
    try:
        if Path(src).exists() and out.exists() and out.resolve() == Path(src).resolve():
            raise OutputError(f"{out}: is the input video itself; choose another output file")
    except OSError:
        pass
    if not out.parent.exists():
        raise OutputError(f"{out}: directory {out.parent} does not exist; create it first")
    codec = codec or video_codec()
    fmt = _output_format(out)
    stats = RenderStats(path=str(out), codec=codec)
    video = open_video(src)
    info = video.info
    width, height = info.width, info.height
    odd = width % 2 or height % 2
    pix_fmt = "yuv444p" if odd and codec == "libx264" else "yuv420p"
    enc_w, enc_h = width, height
    if odd and pix_fmt == "yuv420p":
        enc_w, enc_h = width + width % 2, height + height % 2
        stats.notes.append(f"odd frame size {width}x{height} padded to {enc_w}x{enc_h}")
    fps = Fraction(info.fps or 25.0).limit_denominator(1001)
    time_base = Fraction(1, 90000)
    container = None
    audio = None
    fh = None
    # Written to a temporary file beside the target and renamed over it only when
    # complete: a full disk, Ctrl-C or a crash leaves the user's file as it was, and
    # nothing har did not create is ever removed (a device such as /dev/full is
    # written as it is, and left alone when that fails).
    staging = atomic_path(out, suffix=out.suffix or ".mp4")
    tmp = staging.__enter__()
    try:
        try:
            # the file is opened here and always closed here: PyAV never closes a
            # file whose header could not be written (a full disk would keep it)
            fh = open(tmp, "wb")
            container = av.open(fh, mode="w", format=fmt)
            stream = container.add_stream(codec, rate=fps)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"{out}: cannot be written ({exc}); check the path and "
                           "that the directory is writable") from None
        stream.width, stream.height, stream.pix_fmt = enc_w, enc_h, pix_fmt
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            stream.bit_rate = max(1_000_000, int(enc_w * enc_h * float(fps) * 0.25))
        audio = _AudioCopier(src, container, fmt, stats)
        painter = _Painter(result, width, height, top_n)
        people = None
        if getattr(result, "persons", None):  # --persons: each person's box, id, label
            from .persons.draw import PersonPainter

            people = PersonPainter(result.persons)
        last_pts = -1
        for frame in video.frames(size=None):
            rgb = frame.rgb if people is None else people.draw(frame.rgb, frame.index,
                                                               frame.time_s)
            rgb = painter.draw(rgb, frame.time_s)
            if (enc_w, enc_h) != (width, height):
                rgb = np.pad(rgb, ((0, enc_h - height), (0, enc_w - width), (0, 0)),
                             mode="edge")
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            pts = max(int(round(frame.time_s / time_base)), last_pts + 1)
            vf.pts, vf.time_base, last_pts = pts, time_base, pts
            audio.write_until(frame.time_s + 0.25)
            container.mux(stream.encode(vf))
            stats.frames += 1
        container.mux(stream.encode(None))
        audio.write_until(None)
        stats.width, stats.height = enc_w, enc_h
        for w in video.stats.warnings:
            stats.notes.append(f"input: {w}")
        if stats.frames == 0:
            raise InputError(f"{src}: no frame could be decoded for the annotated video")
        container.close()
        container = None
        fh.close()
    except BaseException as exc:
        _close_quietly(video, audio, container, fh)
        staging.__exit__(type(exc), exc, exc.__traceback__)
        if isinstance(exc, av.error.FFmpegError):
            raise OutputError(f"{out}: encoding failed ({exc}); try an .mkv output") from None
        if isinstance(exc, OSError):
            raise OutputError(f"{out}: cannot be written ({exc.strerror or exc}); check the "
                           "path and the free space") from None
        raise
    _close_quietly(video, audio, None)
    staging.__exit__(None, None, None)  # renames the finished file into place
    return stats


def _close_quietly(*things) -> None:
    for thing in things:
        if thing is None:
            continue
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - closing after a failure
            pass


# -- time axes (the plot and the HTML report) ---------------------------------------
_TICK_STEPS = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
               3600, 7200)


def tick_step(duration: float, max_ticks: int = 8) -> float:
    """Seconds between time-axis ticks: the smallest round step that gives at most
    ``max_ticks`` intervals over ``duration`` (sub-second steps for short videos, so
    a 1 s video is not labelled 0:00 0:00 0:00 ...)."""
    duration = max(float(duration), 1e-6)
    return next((st for st in _TICK_STEPS if duration / st <= max_ticks), _TICK_STEPS[-1])


def fmt_tick(t: float, step: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour), with tenths or hundredths of a second
    when ``step`` is under a second (``0:00.25``); every tick then reads differently."""
    if t < 0:
        return ""
    decimals = 0 if step >= 1 else (1 if round(step * 10, 6) == int(round(step * 10, 6))
                                    else 2)
    t = round(t, decimals)
    whole = int(t)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    frac = f"{t - whole:.{decimals}f}"[1:] if decimals else ""
    if h:
        return f"{h}:{m:02d}:{sec:02d}{frac}"
    return f"{m}:{sec:02d}{frac}"


# -- the plot ----------------------------------------------------------------------
def _short_label(text: str, n: int = 22) -> str:
    """``text`` cut at a word boundary to ``n`` characters, with a mark when cut."""
    if len(text) <= n:
        return text
    cut = text[: n - 1]
    if " " in cut and cut.rfind(" ") >= n // 2:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "\u2026"


def plot_timeline(result: VideoResult, labels: Sequence[str], out_path=None, *,
                  max_lines: int = 5, threshold: float | None = None, dpi: int = 100,
                  model: str | None = None):
    """Clip probabilities of the top actions over time, segments shaded, and below
    them one lane per segment label (so overlapping segments stay apart), each bar
    in its label's colour (the same as the overlay and the report); mm:ss axis; the
    title names the video and, when given, the model.

    Plots the segment labels first, then the video's top labels, ``max_lines`` in
    all. Returns the matplotlib ``Figure`` (written to ``out_path`` when given).
    Needs matplotlib (``pip install -e '.[plot]'`` in the repository).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        from .defaults import pip_hint

        raise HarError("--plot needs matplotlib, which is not installed; "
                       f"install it with: {pip_hint('plot')}") from None
    clips, cells = _timed_clips(result)
    clips = [c for c in clips if c.probs is not None]
    if not clips:
        raise InputError(f"{result.path}: no clip scores to plot")
    probs = np.stack([c.probs for c in clips])
    index = {name: i for i, name in enumerate(labels)}
    names: list[str] = []
    seg_names = list(label_colors(result))
    for name in seg_names + [p.label for p in result.top]:
        if name not in names and name in index and len(names) < max_lines:
            # Labels without segments only when some clip gives them 1% or more.
            if name in seg_names or probs[:, index[name]].max() >= 0.01:
                names.append(name)
    seg_colors = label_colors(result)
    lanes = list(seg_colors)
    fig = Figure(figsize=(10, 4 + 0.3 * len(lanes)), dpi=dpi)
    FigureCanvasAgg(fig)
    if lanes:
        ax, lane_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={
            "height_ratios": [4, max(1.0, 0.45 * len(lanes))]})
    else:
        ax, lane_ax = fig.add_subplot(1, 1, 1), None
    t = np.array([(c.start_s + c.end_s) / 2 for c in clips])
    extra = iter(PALETTE[len(seg_colors):] + PALETTE)
    for name in names:
        rgb = seg_colors.get(name) or next(extra)
        color = tuple(v / 255 for v in rgb)
        ax.plot(t, probs[:, index[name]], marker="o", markersize=3, linewidth=1.8,
                color=color, label=name)
        for seg in result.segments:
            if seg.label == name:
                ax.axvspan(seg.start_s, seg.end_s, color=color, alpha=0.12, linewidth=0)
    if lane_ax is not None:
        for row, name in enumerate(lanes):
            color = tuple(v / 255 for v in seg_colors[name])
            spans = [(seg.start_s, seg.end_s - seg.start_s) for seg in result.segments
                     if seg.label == name]
            lane_ax.broken_barh(spans, (row + 0.15, 0.7), facecolors=color,
                                label=f"segment: {name}")
        lane_ax.set_ylim(len(lanes), 0)
        lane_ax.set_yticks([r + 0.5 for r in range(len(lanes))])
        lane_ax.set_yticklabels([_short_label(n) for n in lanes], fontsize=8)
        lane_ax.grid(axis="x", alpha=0.3)
        lane_ax.set_xlabel("time (m:ss)")
        lane_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                       frameon=False)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle=":", linewidth=1,
                   label=f"segment threshold {threshold:g}")
    x0, x1 = float(cells[0, 0]), _duration(result, cells)
    ax.set_xlim(x0, x1)
    ax.set_ylim(0, 1.02)
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = tick_step(x1 - x0)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_tick(x, step)))
    if lane_ax is None:
        ax.set_xlabel("time (m:ss)")
    ax.set_ylabel("clip probability")
    title = Path(result.path).name + (f" - model {model}" if model else "")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    if out_path is not None:
        from .fsutil import atomic_open

        fmt = Path(out_path).suffix.lower().lstrip(".") or "png"
        fmt = {"jpeg": "jpg"}.get(fmt, fmt)
        # The title goes into the file's metadata too (PNG/SVG/PDF), so the model a
        # plot was made with can be read back without looking at the picture.
        meta = {"Title": title} if fmt in ("png", "svg", "pdf") else None
        try:
            with atomic_open(out_path, "wb") as fh:
                fig.savefig(fh, format=fmt, metadata=meta)
        except OSError as exc:
            raise OutputError(f"{out_path}: cannot be written ({exc.strerror or exc}); "
                           "check the path") from None
    return fig
