"""Per-person recognition over the recognizer's pipeline.

:class:`PersonStream` is :class:`har.recognizer.ClipStream` for people: the same
decoder, the same batching thread and runtime (``Recognizer._batches``: finite sources
wait for the model, live sources skip the oldest waiting clips), and one
:class:`~har.summary.Summary` per person, so each person gets top labels, clips and
segments exactly as a whole video does. What differs is the clip assembler: the decode
thread finds people (given tracks, or a detector every ``detect_every`` frames and the
tracker), keeps a window of frames per person, and cuts each person's clip as a steady
square around them (:mod:`har.persons.tubes`). Clips of all people go through the one
batch queue, so a batch mixes people.

A person gets clips only over frames where their track exists. A gap in a track (a
lost track, or frames missing in a tracks file) ends the person's current window; the
frames before the gap make a loop-padded clip of their own if there are at least
``min_frames`` of them (``tail="pad"``), and a new window starts after the gap.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..aggregate import softmax, topk
from ..errors import HarError
from ..results import ClipResult, Prediction, Segment, VideoResult, _r
from ..sampling import ClipSpec, loop_pad
from ..sources import Source, open_video, parse_source
from ..summary import Summary
from .boxes import Box, TrackedBox
from .tubes import tube_clip


@dataclass
class PersonOptions:
    """How people are found and cut out.

    tracks: a MOTChallenge file (or rows) to use instead of detecting.
    detector: ``"hog"``, a path to a YOLOX or ultralytics ONNX file, or an object with
        ``detect(rgb) -> list[Box]`` (see :mod:`har.persons.detect`).
    detect_every: run the detector on every N-th frame; the tracker predicts between.
    margin: the square crop's side is the person's largest box side times 1 + margin.
    min_frames: a track needs this many frames in a row for a clip (default: half the
        clip length); shorter tracks get no clip.
    max_side: frames are decoded with their longer side at most this many pixels for
        detection and crops (boxes are still reported in the video's pixels).
    max_age: frames a lost track is kept, waiting for the person to reappear.
    """

    tracks: str | Path | Sequence[TrackedBox] | None = None
    detector: Any = "hog"
    detect_every: int = 1
    margin: float = 0.25
    min_frames: int | None = None
    max_side: int = 640
    max_age: int = 30
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        if self.margin < 0:
            raise ValueError("margin must be 0 or more")
        if self.max_side < 32:
            raise ValueError("max_side must be at least 32 pixels")


@dataclass
class PersonClip(ClipResult):
    """A clip of one person: ``person`` the track id, ``box`` the square it was cut
    from (pixels of the video, may reach outside the frame at the edges)."""

    person: int = 0
    box: Box | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["box"] = None if self.box is None else self.box.as_list()
        return d


@dataclass
class PersonResult:
    """One person over the video: frames 0-based and inclusive (``last_frame``)."""

    id: int
    first_frame: int
    last_frame: int
    frames: int = 0  # frames with a box
    top: list[Prediction] = field(default_factory=list)
    clips: list[PersonClip] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    probs: np.ndarray | None = field(default=None, repr=False)
    # The person's box in every frame of the track (for --mot and --ava; not in JSON).
    boxes: list[TrackedBox] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "frames": self.frames,
                "top": [p.to_dict() for p in self.top],
                "clips": [c.to_dict() for c in self.clips],
                "segments": [s.to_dict() for s in self.segments]}


@dataclass(frozen=True)
class PersonEvent:
    """``kind``: ``"start"`` (the person's first clip was scored), ``"clip"`` or
    ``"end"`` (the track ended and its last clip was scored; ``person`` then holds
    the person's result so far)."""

    kind: str
    id: int
    clip: PersonClip | None = None
    person: PersonResult | None = None


@dataclass(frozen=True)
class _PersonSpec(ClipSpec):
    person: int = 0
    square: Box | None = None
    seq: int = 0  # order in which the decode thread made the clip


class _Window:
    __slots__ = ("items", "last", "covered", "skip", "count")

    def __init__(self) -> None:
        self.items: list = []  # (Frame, Box)
        self.last = -2  # index of the last frame added
        self.covered = -1  # end frame (exclusive) of the last clip cut from this window
        self.skip = 0  # frames still to skip before the next window (stride > clip_len)
        self.count = 0  # clips of this person so far


def _load_tracks(tracks) -> list[TrackedBox]:
    if isinstance(tracks, (str, Path)):
        from .mot import read_mot

        return read_mot(tracks)
    return list(tracks)


class PersonStream:
    """Per-person clip results of one video, as :class:`PersonEvent` s.

    >>> ps = PersonStream(rec, "video.mp4", PersonOptions(detector="hog"))  # doctest: +SKIP
    >>> for ev in ps:                                                        # doctest: +SKIP
    ...     if ev.kind == "clip": print(ev.id, ev.clip.top[0].label)
    >>> ps.result().persons                                                  # doctest: +SKIP
    """

    def __init__(self, rec, source, options: PersonOptions | None = None, *,
                 live: bool | None = None, progress=None, keep_clips: bool = True,
                 run_options=None) -> None:
        # keep_clips=False (live streams that run for days): each person keeps its last
        # clips only (Summary's window) and no per-frame boxes, so memory stays flat.
        # run_options: the clip and timeline options (har.recognizer.RunOptions) of
        # this stream; default: the recognizer's.
        self._rec = rec
        self.run_options = rec.resolve(run_options)
        self.keep_clips = keep_clips
        self.options = options or PersonOptions()
        if isinstance(source, (str, Path)):
            source = parse_source(str(source))
        self.source: Source | None = source if isinstance(source, Source) else None
        self._frame_source = None if isinstance(source, Source) else source
        self.path = self.source.text if self.source else str(getattr(source, "source", source))
        self.live = bool(self.source.live if live is None and self.source else live)
        self._progress = progress
        self.info = None
        self.skipped = 0
        self.halted = False
        self.reader_alive = False
        self.error: str | None = None
        # Given tracks are read before any decoding: a bad file is one line, at once.
        self._given = (_load_tracks(self.options.tracks)
                       if self.options.tracks is not None else None)
        self._detector = None
        if self._given is None:
            from .detect import load_detector

            self._detector = load_detector(self.options.detector)
        self.rows: list[TrackedBox] = []  # every person box, in frame order (keep_clips)
        self._span: dict[int, list[int]] = {}  # person -> [first frame, last frame, frames]
        # Live: detections left out because the stream was ahead of the detector.
        self.detections_skipped = 0
        self._summaries: dict[int, Summary] = {}
        self._clips: dict[int, list[PersonClip]] = {}
        self._ended: dict[int, int] = {}  # person -> seq of its last clip (-1: none)
        self._ended_lock = threading.Lock()
        self._reported: set[int] = set()
        self._base = VideoResult(path=self.path)
        self._gen = None

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> "PersonStream":
        return self

    def __next__(self) -> PersonEvent:
        if self._gen is None:
            self._gen = self._run()
        try:
            return next(self._gen)
        except HarError as exc:
            self.error = str(exc)
            raise

    def stop(self) -> None:
        self.halted = True
        stopper = getattr(self._frame_source, "stop", None)
        if stopper is not None:
            stopper()

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()

    # -- results ------------------------------------------------------------------
    def person(self, pid: int) -> PersonResult:
        rows = [r for r in self.rows if r.id == pid] if self.keep_clips else []
        first, last, count = self._span.get(pid, (0, 0, 0))
        out = PersonResult(id=pid, first_frame=first, last_frame=last, frames=count,
                           boxes=rows)
        summ = self._summaries.get(pid)
        if summ is not None and summ.count:
            scores = summ.scores()
            out.probs = scores
            out.top = topk(scores, summ.labels, summ.k)
            out.clips = sorted(self._clips.get(pid, []) if self.keep_clips else summ.clips,
                               key=lambda c: c.index)
            out.segments = summ.segments()
        return out

    def persons(self) -> list[PersonResult]:
        """Every person seen (with or without clips), by id."""
        return [self.person(pid) for pid in sorted(self._span)]

    def result(self) -> VideoResult:
        """The video's metadata with ``persons`` (no whole-frame scores)."""
        from dataclasses import replace

        out = replace(self._base, error=self.error)
        out.persons = self.persons()
        return out

    # -- the pipeline ----------------------------------------------------------------
    def _run(self) -> Iterator[PersonEvent]:
        rec, ro = self._rec, self.run_options
        video = self._frame_source or open_video(self.source)
        batches = None
        try:
            info = self.info = video.info
            b = self._base
            b.fps, b.width, b.height, b.codec = info.fps, info.width, info.height, info.codec
            b.duration_s = info.duration_s
            if self._given is not None:
                outside = [t for t in self._given
                           if t.box.x0 >= info.width or t.box.y0 >= info.height
                           or t.box.x1 <= 0 or t.box.y1 <= 0]
                if outside:
                    t = outside[0]
                    raise HarError(
                        f"{self.path}: {len(outside)} tracked box(es) lie outside its "
                        f"{info.width}x{info.height} frame (first: frame {t.frame + 1}, id "
                        f"{t.id}); give tracks in this video's pixels")
            clips = self._assemble(video, info)
            batches = rec._batches(clips, live=self.live, progress=self._progress,
                                   info=info, counter=self, options=self.run_options)
            for items, logits, _feats in batches:
                probs = softmax(logits)
                top_seq = -1
                for item, row in zip(items, probs):
                    spec = item.spec
                    top_seq = max(top_seq, spec.seq)
                    clip = PersonClip(index=spec.index, start_frame=spec.start_frame,
                                      end_frame=spec.end_frame, start_s=spec.start_s,
                                      end_s=spec.end_s, top=topk(row, rec.labels, ro.topk),
                                      probs=np.array(row, np.float32),
                                      ready_at=item.ready_at, person=spec.person,
                                      box=spec.square)
                    summ = self._summaries.get(spec.person)
                    if summ is None:
                        summ = self._summaries[spec.person] = Summary(
                            rec.labels, k=ro.topk, aggregate=ro.aggregate,
                            aggregate_k=ro.aggregate_k, timeline=ro.timeline,
                            keep_clips=self.keep_clips, window=64)
                        yield PersonEvent("start", spec.person, clip)
                    summ.add(clip)
                    if self.keep_clips:
                        self._clips.setdefault(spec.person, []).append(clip)
                    yield PersonEvent("clip", spec.person, clip)
                yield from self._ends(top_seq)
            stats = video.stats
            b.frames = stats.frames
            b.warnings = list(stats.warnings)
            if b.duration_s is None or stats.stopped_early or b.warnings:
                b.duration_s = stats.end_s or b.duration_s
            if stats.frames == 0:
                raise HarError(f"{self.path}: no frame could be decoded")
            yield from self._ends(math.inf)
        finally:
            if batches is not None:
                batches.close()
            if self.reader_alive:
                stopper = getattr(video, "stop", None)
                if stopper is not None:
                    stopper()
            else:
                video.close()

    def _ends(self, seq: float) -> Iterator[PersonEvent]:
        with self._ended_lock:
            ended = [(p, s) for p, s in self._ended.items() if p not in self._reported]
        for pid, last_seq in sorted(ended):
            if last_seq <= seq:
                self._reported.add(pid)
                if pid in self._summaries:  # people without clips never started
                    yield PersonEvent("end", pid, person=self.person(pid))

    def _end(self, pid: int, seq: int) -> None:
        with self._ended_lock:
            self._ended[pid] = seq

    def _assemble(self, video, info) -> Iterator[tuple[_PersonSpec, np.ndarray]]:
        """Runs in the decode thread: frames -> people -> per-person clips."""
        rec, opt = self._rec, self.options
        L, S = rec.preset.clip_len, self.run_options.stride
        min_frames = opt.min_frames if opt.min_frames is not None else max(1, L // 2)
        pad = self.run_options.tail == "pad"
        W, H = info.width, info.height
        s = min(1.0, opt.max_side / max(W, H, 1))
        size = None if s >= 1.0 else (max(2, int(round(W * s))), max(2, int(round(H * s))))
        if size is not None:
            s = size[0] / W
        windows: dict[int, _Window] = {}
        last_seq = {}  # person -> seq of its last clip
        state = {"seq": 0}

        given = None
        given_last: dict[int, int] = {}
        if self._given is not None:
            given = {}
            for t in self._given:
                given.setdefault(t.frame, []).append((t.id, t.box))
                given_last[t.id] = max(given_last.get(t.id, -1), t.frame)
        tracker = None
        if given is None:
            from .track import Tracker

            rounds = max(1, int(math.ceil(opt.max_age / opt.detect_every)))
            tracker = Tracker(max_age=rounds)

        def cut(pid: int, win: _Window, items: list) -> tuple[_PersonSpec, np.ndarray]:
            frames = [f.rgb for f, _ in items]
            boxes = [bx for _, bx in items]
            arr, square = tube_clip(frames, boxes, rec.preset, opt.margin, s)
            if len(items) < L:
                arr = arr[list(loop_pad(range(len(items)), L))]
            first, last = items[0][0], items[-1][0]
            spec = _PersonSpec(index=win.count, start_frame=first.index,
                               end_frame=last.index + 1,
                               frame_indices=tuple(items[i][0].index
                                                   for i in loop_pad(range(len(items)), L)),
                               start_s=first.time_s, end_s=last.time_s + last.duration_s,
                               person=pid, square=square, seq=state["seq"])
            last_seq[pid] = state["seq"]
            state["seq"] += 1
            win.count += 1
            win.covered = last.index + 1
            return spec, arr

        def flush(pid: int, win: _Window):
            fresh = [it for it in win.items if it[0].index >= win.covered]
            if pad and fresh and len(win.items) >= min_frames:
                yield cut(pid, win, win.items)
            win.items = []
            win.skip = 0

        def finish(pid: int):
            win = windows.pop(pid, None)
            if win is not None:
                yield from flush(pid, win)
            self._end(pid, last_seq.get(pid, -1))

        clock = None  # (wall, media) time of the first frame: how far behind we are
        for frame in video.frames(size=size):
            behind = False
            if self.live:
                now = time.monotonic()
                if clock is None:
                    clock = (now, frame.time_s)
                # Live: a detection that would start more than one detection period
                # behind the stream is skipped (the tracker predicts instead), so the
                # reader never falls behind the camera: skip, not queue.
                lag = (now - clock[0]) - (frame.time_s - clock[1])
                behind = lag > opt.detect_every * frame.duration_s
            if given is not None:
                people = given.get(frame.index, [])
            elif frame.index % opt.detect_every == 0 and behind:
                self.detections_skipped += 1
                people = tracker.predict()
            elif frame.index % opt.detect_every == 0:
                dets = [d.scaled(1.0 / s) for d in self._detector.detect(frame.rgb)
                        if d.score >= opt.min_score]
                people = tracker.update(dets)
            else:
                people = tracker.predict()
            for pid, box in people:
                if self.keep_clips:
                    self.rows.append(TrackedBox(frame.index, pid, box))
                span = self._span.get(pid)
                if span is None:
                    self._span[pid] = [frame.index, frame.index, 1]
                else:
                    span[1], span[2] = frame.index, span[2] + 1
                win = windows.get(pid)
                if win is None:
                    win = windows[pid] = _Window()
                if win.last != frame.index - 1 and win.items:
                    yield from flush(pid, win)  # a gap: the window starts again
                win.last = frame.index
                if win.skip:
                    win.skip -= 1
                    continue
                win.items.append((frame, box))
                if len(win.items) == L:
                    yield cut(pid, win, win.items)
                    win.skip = max(0, S - L)
                    win.items = win.items[S:] if S < L else []
            # Tracks that have ended: their last partial window, then their end.
            if given is not None:
                done = [p for p in windows if given_last.get(p, -1) <= frame.index]
            else:
                alive = tracker.alive()
                done = [p for p in windows if p not in alive]
            for pid in done:
                yield from finish(pid)
        for pid in list(windows):
            yield from finish(pid)
