"""Output writers shared by every front end (the CLI, the service, the indexer).

Each writer takes results and an open text stream; where the stream goes (a file
written atomically, stdout, an HTTP response) is the caller's business. Schemas:

* ``har.predictions/1``: one JSON document for a run (:func:`predictions_doc`).
* ``har.events/1``: JSON Lines, one event per line as results happen (:class:`EventWriter`).
* CSV: one row per clip (:func:`write_clips_csv`), per segment
  (:func:`write_segments_csv`) or per input (:func:`write_summary_csv`).
* The table people read on a terminal (:func:`write_table`).
"""

from __future__ import annotations

import csv
import json
import time
from typing import Any, Iterable, TextIO

from .fsutil import clean, clean_text, display_path
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


# -- JSON Lines events (har.events/1) ------------------------------------------------
class EventWriter:
    """``har.events/1``: one JSON object per line, flushed as each is written.

    Types: ``clip`` (path + the clip's fields), ``video`` (the video's fields without
    the clip list), ``summary`` (at the end), and, from live sources, ``state`` and
    ``segment_start``/``segment_end``. Every event has ``type`` and ``wall_time``
    (Unix seconds when it was written).
    """

    def __init__(self, out: TextIO, *, features: bool = False) -> None:
        self.out = out
        self.features = features

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        # wall_time: now, or when the event happened if the caller says so (an event
        # held back to keep `start` first)
        wall = fields.pop("wall_time", None)
        event = {"type": type_, **fields,
                 "wall_time": round(time.time() if wall is None else wall, 6)}
        self.out.write(json.dumps(clean(event), ensure_ascii=False, allow_nan=False) + "\n")
        self.out.flush()
        return event

    def start(self, **fields: Any) -> None:
        self.emit("start", schema=EVENTS_SCHEMA, **fields)

    def clip(self, path: str, clip, **extra: Any) -> None:
        fields = clip.to_dict()
        if self.features and getattr(clip, "features", None) is not None:
            fields["features"] = [round(float(v), 6) for v in clip.features]
        self.emit("clip", path=display_path(path), **fields, **extra)

    def video(self, result: VideoResult) -> None:
        fields = result.to_dict()
        fields.pop("clips", None)
        fields["path"] = display_path(result.path)
        fields["status"] = video_status(result)
        fields["clips"] = len(result.clips)
        self.emit("video", **fields)

    def summary(self, results: list[VideoResult], **extra: Any) -> None:
        counts = {"done": 0, "partial": 0, "failed": 0}
        for r in results:
            counts[video_status(r)] += 1
        self.emit("summary", videos=len(results), **counts, **extra)
