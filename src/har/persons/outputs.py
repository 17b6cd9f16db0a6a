"""Per-person outputs: the AVA CSV, MOTChallenge tracks, the table lines.

AVA layout (one row per person, scored second and label; no header), as the AVA
v2.x files and their evaluation code read it::

    video_id, timestamp, x1, y1, x2, y2, action_id, person_id, score

``timestamp`` a whole second of the video; ``x1..y2`` the person's box in the frame
nearest that second, divided by the frame's width and height (0..1); ``action_id``
the label's position in the model's label list, from 1 (for Kinetics models, the
Kinetics-400 class order, not AVA's 80 actions); ``score`` the probability of that
label in the person's clip whose middle is nearest the second. Each second gets the
clip's top ``--topk`` labels.
"""

from __future__ import annotations

import bisect
import csv
import math
from typing import Iterable, Sequence, TextIO

from ..results import VideoResult
from .mot import write_mot


def ava_rows(result: VideoResult, labels: Sequence[str]) -> Iterable[list]:
    from ..metrics import video_id_for

    if not result.ok or not result.persons or not result.width or not result.height:
        return
    vid = video_id_for(result.path)
    index = {label: i + 1 for i, label in enumerate(labels)}
    W, H = float(result.width), float(result.height)
    fps = result.fps or 25.0
    for person in result.persons:
        if not person.clips or not person.boxes:
            continue
        frames = [b.frame for b in person.boxes]
        first = math.ceil(min(c.start_s for c in person.clips))
        last = max(c.end_s for c in person.clips)
        t = first
        while t < last:
            covering = [c for c in person.clips if c.start_s <= t < c.end_s]
            if covering:
                clip = min(covering, key=lambda c: abs((c.start_s + c.end_s) / 2 - t))
                target = int(round(t * fps))
                i = bisect.bisect_left(frames, target)
                near = min((j for j in (i - 1, i) if 0 <= j < len(frames)),
                           key=lambda j: abs(frames[j] - target))
                b = person.boxes[near].box
                box = [min(max(v, 0.0), 1.0) for v in (b.x0 / W, b.y0 / H, b.x1 / W, b.y1 / H)]
                for p in clip.top:
                    yield [vid, t, *(f"{v:.4f}" for v in box), index.get(p.label, 0),
                           person.id, f"{p.score:.6f}"]
            t += 1


def write_ava(out: TextIO, results: Iterable[VideoResult], labels: Sequence[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    for r in results:
        for row in ava_rows(r, labels):
            w.writerow(row)


def write_tracks(out: TextIO, result: VideoResult) -> None:
    """The video's person boxes as MOTChallenge text."""
    write_mot(out, [b for p in (result.persons or []) for b in p.boxes])


def write_person_table(result: VideoResult, out: TextIO) -> None:
    """Lines for the terminal table: each person's frames and top label."""
    from ..writers import fmt_time

    if result.persons is None:
        return
    if not result.persons:
        out.write("  persons: none found\n")
        return
    out.write(f"  persons: {len(result.persons)}\n")
    for p in result.persons:
        span = f"frames {p.first_frame}-{p.last_frame}"
        if p.top:
            t = p.top[0]
            seg = ", ".join(f"{s.label} {fmt_time(s.start_s)}-{fmt_time(s.end_s)}"
                            for s in p.segments[:3])
            out.write(f"  person {p.id:<3} {span:<18} {len(p.clips):>3} clips  "
                      f"{t.label} ({t.score:.1%}){'  ' + seg if seg else ''}\n")
        else:
            out.write(f"  person {p.id:<3} {span:<18}   0 clips  (too short for a clip)\n")
