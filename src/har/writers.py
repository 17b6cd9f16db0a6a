"""Output writers shared by every front end (the CLI, the service, the indexer).

Each writer takes results and an open text stream; where the stream goes (a file
written atomically, stdout, an HTTP response) is the caller's business. Schemas:

* ``har.predictions/1``: one JSON document for a run (:func:`predictions_doc`).
* ``har.events/1``: one event per result as it happens (:class:`EventWriter`), as JSON
  Lines (a file: :class:`JsonlFile`, or stdout) or to any sink (the service's jobs).
* The ``settings`` block of both, the same for every front end (:func:`run_settings`).
* CSV: one row per clip (:func:`write_clips_csv`), per segment
  (:func:`write_segments_csv`) or per input (:func:`write_summary_csv`).
* The table people read on a terminal (:func:`write_table`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from .fsutil import clean, clean_text, display_path, is_special, temp_prefix
from .results import SCHEMA, VideoResult
from .text import fmt_time, printable  # noqa: F401 (fmt_time: used and re-exported)

EVENTS_SCHEMA = "har.events/1"


# -- JSON ------------------------------------------------------------------------
def predictions_doc(model: str, videos: Iterable[VideoResult], **extra: Any) -> dict[str, Any]:
    """The ``har.predictions/1`` document: ``extra`` (settings, interrupted) goes
    before the list of videos."""
    doc: dict[str, Any] = {"schema": SCHEMA, "model": model}
    doc.update(extra)
    doc["videos"] = [v.to_dict() for v in videos]
    return doc


def dumps(doc: Any) -> str:
    """JSON text that always encodes as UTF-8 (odd file names are escaped as ``\\xNN``)."""
    return json.dumps(clean(doc), indent=2, ensure_ascii=False) + "\n"


def dump(doc: Any, out: TextIO) -> None:
    """:func:`dumps` written in pieces, without the whole text in memory at once."""
    json.dump(clean(doc), out, indent=2, ensure_ascii=False)
    out.write("\n")


# -- table -------------------------------------------------------------------------
def write_table(result: VideoResult, out: TextIO, max_clips: int = 30) -> None:
    """A readable summary of one video. File names and labels (from a checkpoint or an
    exported file's metadata: outside text) are shown with control characters escaped."""
    fps = f"{result.fps:.2f} fps" if result.fps else "? fps"
    out.write(f"\n{printable(display_path(result.path))}\n  {result.width}x{result.height}, "
              f"{fps}, {result.frames} frames, {fmt_time(result.duration_s)}, "
              f"{printable(result.codec)}, {len(result.clips)} clips\n")
    if result.top:
        width = max(len(printable(p.label)) for p in result.top)
        for rank, p in enumerate(result.top, 1):
            bar = "#" * int(round(p.score * 20))
            out.write(f"  {rank}. {printable(p.label):<{width}}  {p.score:6.1%}  {bar}\n")
    if max_clips > 0 and result.clips:
        out.write("  clip  frames          time                top-1\n")
        shown = result.clips if len(result.clips) <= max_clips else result.clips[:max_clips]
        for c in shown:
            t = c.top[0]
            out.write(f"  {c.index:>4}  {c.start_frame:>6}-{c.end_frame:<7} "
                      f"{fmt_time(c.start_s):>8}-{fmt_time(c.end_s):<9}  "
                      f"{printable(t.label)} ({t.score:.1%})\n")
        if len(result.clips) > len(shown):
            out.write(f"  ... {len(result.clips) - len(shown)} more clips (--clips N, or --json)\n")
    write_segment_table(result, out)


def write_segment_table(result: VideoResult, out: TextIO) -> None:
    """The evidence behind the video's top label, and the action segments."""
    if result.evidence and result.top:
        out.write(f"  evidence for {printable(result.top[0].label)}: clip(s) "
                  f"{', '.join(str(i) for i in result.evidence)}\n")
    if not result.segments:
        out.write("  segments: none above the threshold (try --threshold)\n")
        return
    width = max(len(printable(s.label)) for s in result.segments)
    out.write(f"  {'segment':<{width}}  {'time':^19}  {'length':>7}  {'mean':>6}  "
              f"{'peak':>6}  clips\n")
    for s in result.segments:
        out.write(f"  {printable(s.label):<{width}}  {fmt_time(s.start_s):>8}-"
                  f"{fmt_time(s.end_s):<10} "
                  f"{s.duration_s:6.1f}s  {s.mean_score:6.1%}  {s.peak_score:6.1%}  "
                  f"{s.start_clip}-{s.end_clip}\n")


# -- CSV ---------------------------------------------------------------------------
CLIP_COLUMNS = ["clip", "start_frame", "end_frame", "start_s", "end_s", "rank", "label",
                "score"]
SEGMENT_COLUMNS = ["label", "start_s", "end_s", "duration_s", "mean_score", "peak_score",
                   "start_clip", "end_clip"]
SUMMARY_COLUMNS = ["path", "status", "duration_s", "frames", "clips", "top1_label",
                   "top1_score", "top5", "warnings", "error"]


class RowWriter:
    """CSV rows ``path, <columns>, error`` written one video at a time (so a run
    that is interrupted still has every finished video)."""

    def __init__(self, out: TextIO, columns: list[str], rows) -> None:
        self._w = csv.writer(out)
        self._columns, self._rows, self._out = columns, rows, out
        self._w.writerow(["path", *columns, "error"])

    def add(self, r: VideoResult) -> None:
        path = display_path(r.path)
        if not r.ok:
            self._w.writerow([path, *[""] * len(self._columns), clean_text(r.error or "")])
        else:
            for row in self._rows(r):
                self._w.writerow([path, *row, ""])


def clip_rows(r: VideoResult):
    return ([c.index, c.start_frame, c.end_frame, f"{c.start_s:.4f}", f"{c.end_s:.4f}",
             rank, p.label, f"{p.score:.6f}"]
            for c in r.clips for rank, p in enumerate(c.top, 1))


def segment_rows(r: VideoResult):
    return ([s.label, f"{s.start_s:.4f}", f"{s.end_s:.4f}", f"{s.duration_s:.4f}",
             f"{s.mean_score:.6f}", f"{s.peak_score:.6f}", s.start_clip, s.end_clip]
            for s in r.segments)


def clips_csv(out: TextIO) -> RowWriter:
    return RowWriter(out, CLIP_COLUMNS, clip_rows)


def segments_csv(out: TextIO) -> RowWriter:
    return RowWriter(out, SEGMENT_COLUMNS, segment_rows)


def write_clips_csv(out: TextIO, results: Iterable[VideoResult]) -> None:
    w = clips_csv(out)
    for r in results:
        w.add(r)


def write_segments_csv(out: TextIO, results: Iterable[VideoResult]) -> None:
    w = segments_csv(out)
    for r in results:
        w.add(r)


def video_status(r: VideoResult) -> str:
    """``done``, ``partial`` (damaged or truncated: results cover what decoded) or ``failed``."""
    if not r.ok:
        return "failed"
    return "partial" if r.warnings else "done"


def summary_row(r: VideoResult) -> list[Any]:
    top1 = r.top[0] if r.top else None
    return [display_path(r.path), video_status(r),
            "" if r.duration_s is None else f"{r.duration_s:.3f}", r.frames, len(r.clips),
            top1.label if top1 else "", f"{top1.score:.6f}" if top1 else "",
            "; ".join(f"{p.label} ({p.score:.4f})" for p in r.top[:5]),
            clean_text("; ".join(r.warnings)), clean_text(r.error or "")]


def activitynet_doc(results: Iterable[VideoResult],
                    external_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Predicted segments as an ActivityNet v1.3 detection submission: ``results`` maps
    each video id (the file name without extension and without a leading ``v_``) to
    ``{"label", "score" (the segment's mean clip probability), "segment": [start, end]}``.
    Failed videos are left out; ``external_data`` as :func:`har.metrics.activitynet_document`."""
    from .metrics import activitynet_detection, activitynet_document, video_id_for

    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.error:
            continue
        out[video_id_for(r.path)] = [
            activitynet_detection(s.label, s.mean_score, s.start_s, s.end_s)
            for s in r.segments]
    return clean(activitynet_document(out, external_data))


def write_summary_csv(out: TextIO, results: Iterable[VideoResult]) -> None:
    """One row per input: path, status, duration, top-1, top-5, warnings, error."""
    w = csv.writer(out)
    w.writerow(SUMMARY_COLUMNS)
    for r in results:
        w.writerow(summary_row(r))


# -- the settings block ------------------------------------------------------------
def clip_settings(options) -> dict[str, Any]:
    """The clip and timeline part of ``settings`` from a :class:`har.recognizer.RunOptions`
    (what an archive records with each video, too)."""
    t = options.timeline
    return {"stride": options.stride, "tail": options.tail, "sampler": options.sampler,
            "num_clips": options.num_clips, "topk": options.topk,
            "aggregate": options.aggregate, "aggregate_k": options.aggregate_k,
            "segments": {"threshold": t.threshold, "smooth": t.window,
                         "smooth_method": t.smoothing, "min_duration_s": t.min_duration_s,
                         "merge_gap_s": t.max_gap_s, "max_labels": t.max_labels}}


def run_settings(options, recognizer=None, *, backend: str | None = None,
                 precision: str | None = None, device: str | None = None) -> dict[str, Any]:
    """The ``settings`` block of ``har.predictions/1`` and of the ``start`` event of
    ``har.events/1``, the same for every front end (predict, live, the service): the
    run's options (``options``, a :class:`har.recognizer.RunOptions`) and what ran them
    (``recognizer``: its clip length, runtime, precision, device, the weights' sha256),
    and the har version, so a result can be traced to its model. Without a recognizer
    (nothing was loaded) ``backend``/``precision``/``device`` say what was asked, and
    what only a loaded model knows is null."""
    from . import __version__

    clip = clip_settings(options)
    runtime = getattr(recognizer, "backend", None)
    preset = getattr(recognizer, "preset", None)
    if clip["stride"] is None and preset is not None:  # the model's clip length
        clip["stride"] = preset.clip_len
    settings: dict[str, Any] = {k: clip[k] for k in ("stride", "tail", "sampler", "num_clips")}
    settings["clip_len"] = None if preset is None else preset.clip_len
    settings["topk"] = clip["topk"]
    if recognizer is not None:
        backend = getattr(runtime, "name", None)
        precision = getattr(runtime, "precision", None)
        device = getattr(recognizer, "device", None)
    settings.update(backend=backend, precision=precision, device=device,
                    aggregate=clip["aggregate"], aggregate_k=clip["aggregate_k"],
                    segments=clip["segments"],
                    weights_sha256=getattr(runtime, "weights_sha256", None),
                    har_version=__version__)
    return settings


# -- JSON Lines files ----------------------------------------------------------------
class JsonlFile:
    """A JSON Lines output (``--jsonl FILE``) whose lines appear as they are written.

    A new file is written in place (``tail -f`` follows it). An existing file is kept
    until :meth:`close` with ``keep=True`` (the run ended: finished, interrupted and
    summed up), the new lines going to a temporary file beside it that then replaces
    it; so the user's old file is never half-overwritten, and a run that fails
    (``keep=False``) leaves it as it was. Special files (``/dev/stdout``, a FIFO) are
    written as they are. ``fh`` is the open text stream.
    """

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = os.fspath(target)
        self.tmp: str | None = None
        if is_special(self.target):
            self.fh = open(self.target, "w", encoding="utf-8")
        elif os.path.lexists(self.target):
            fd, self.tmp = tempfile.mkstemp(prefix=temp_prefix(Path(self.target).name),
                                            suffix=".jsonl",
                                            dir=str(Path(self.target).parent) or ".")
            self.fh = os.fdopen(fd, "w", encoding="utf-8")
        else:
            self.fh = open(self.target, "x", encoding="utf-8")

    def close(self, keep: bool = True) -> None:
        """Close; with ``keep``, a temporary file replaces the existing one. When the
        last flush fails (a full disk) the temporary file is removed, the existing file
        stays as it was, and the OSError is raised."""
        try:
            self.fh.close()
        except OSError:
            self._drop_tmp()
            raise
        if self.tmp is not None:
            if keep:
                try:
                    os.replace(self.tmp, self.target)
                except OSError:
                    self._drop_tmp()
                    raise
                self.tmp = None
            else:
                self._drop_tmp()

    def _drop_tmp(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


# -- events (har.events/1) -----------------------------------------------------------
def line_sink(out: TextIO) -> Callable[[dict[str, Any]], None]:
    """Writes each event to ``out`` as one JSON line, flushed (a file, stdout)."""
    def write(event: dict[str, Any]) -> None:
        out.write(json.dumps(clean(event), ensure_ascii=False, allow_nan=False) + "\n")
        out.flush()
    return write


def fields_status(fields: dict[str, Any]) -> str:
    """:func:`video_status` of a video as its JSON fields."""
    if fields.get("error") is not None:
        return "failed"
    return "partial" if fields.get("warnings") else "done"


class EventWriter:
    """``har.events/1``: every event of every front end is built here and handed to a
    sink: one JSON line per event on a text stream (``out``: a file, stdout), the
    service's job events (``sink=``, any callable taking the event dict), or a list
    (the service's replay of an ended job).

    Types: ``start`` (schema, model, settings), ``clip`` (path + the clip's fields),
    ``video`` (the video's fields without the clip list), ``summary`` (at the end),
    and, from live sources, ``state``, ``gap`` and ``segment_start``/``segment_end``.
    Every event has ``type`` and ``wall_time`` (Unix seconds when it happened: when it
    was written, unless the caller says when).

    ``hold``: events written before ``start`` wait, with their times, and follow it
    (a live source opens while the model loads). Safe to use from several threads.
    """

    def __init__(self, out: TextIO | None = None, *, features: bool = False,
                 sink: Callable[[dict[str, Any]], None] | None = None,
                 hold: bool = False) -> None:
        if (out is None) == (sink is None):
            raise ValueError("give an output stream or a sink")
        self.out = out
        self.sink = sink if sink is not None else line_sink(out)
        self.features = features
        self._held: list[dict[str, Any]] | None = [] if hold else None
        self._lock = threading.RLock()

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The event as a dict, without writing it. ``wall_time``: now, or when the
        event happened if the caller says so (None: not known, written as null)."""
        if "wall_time" in fields:
            wall = fields.pop("wall_time")
            wall = None if wall is None else round(wall, 6)
        else:
            wall = round(time.time(), 6)
        return {"type": type_, **fields, "wall_time": wall}

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = self.event(type_, **fields)
        with self._lock:
            if self._held is not None and type_ != "start":
                self._held.append(event)
                return event
            self.sink(event)
            if self._held is not None:  # the start: what waited for it follows
                held, self._held = self._held, None
                for ev in held:
                    self.sink(ev)
        return event

    def start(self, model: str, settings: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return self.emit("start", schema=EVENTS_SCHEMA, model=model, settings=settings,
                         **fields)

    def clip(self, path: str, clip, *, person: int | None = None,
             **extra: Any) -> dict[str, Any]:
        fields = clip.to_dict()
        if self.features and getattr(clip, "features", None) is not None:
            fields["features"] = [round(float(v), 6) for v in clip.features]
        return self.clip_fields(path, fields, person=person, **extra)

    def clip_fields(self, path: str, fields: dict[str, Any], *, person: int | None = None,
                    **extra: Any) -> dict[str, Any]:
        """A clip event from the clip's JSON fields; with ``person``, a ``person_clip``
        event (one tracked person's clip)."""
        who = {} if person is None else {"person": person}
        return self.emit("clip" if person is None else "person_clip",
                         path=display_path(path), **who, **fields, **extra)

    def video(self, result: VideoResult, *, status: str | None = None,
              **extra: Any) -> dict[str, Any]:
        """The video's event; ``status`` overrides :func:`video_status` (the service's
        ``cancelled``)."""
        return self.video_fields(result.to_dict(), status=status or video_status(result),
                                 **extra)

    def video_fields(self, fields: dict[str, Any], *, status: str | None = None,
                     **extra: Any) -> dict[str, Any]:
        """A video event from the video's JSON fields (``har.predictions/1``'s)."""
        fields = dict(fields)
        clips = fields.pop("clips", None)
        fields["path"] = display_path(fields.get("path") or "")
        fields["status"] = status or fields_status(fields)
        fields["clips"] = len(clips or ())
        return self.emit("video", **fields, **extra)

    def summary(self, results: list[VideoResult], **extra: Any) -> dict[str, Any]:
        counts = {"done": 0, "partial": 0, "failed": 0}
        for r in results:
            counts[video_status(r)] += 1
        return self.emit("summary", videos=len(results), **counts, **extra)
