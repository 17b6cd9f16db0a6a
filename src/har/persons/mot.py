"""Tracks in the MOTChallenge text format.

One line per person and frame: ``frame,id,left,top,width,height,conf,x,y,z`` with
frames counted from 1 and boxes in pixels of the full frame (the MOT16/17/20 results
layout; ``x,y,z`` are -1 in 2D). Ground-truth files put class and visibility in the last
columns; only the first 7 are read (``conf`` defaults to 1 when absent). har numbers
frames from 0 inside, so frame ``f`` in the file is frame ``f - 1`` of the video.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, TextIO

from ..errors import HarError
from ..fsutil import display_path
from .boxes import Box, TrackedBox

_LAYOUT = "frame,id,left,top,width,height[,conf,...] (MOTChallenge, frames from 1)"


def parse_mot(lines: Iterable[str], name: str = "tracks") -> list[TrackedBox]:
    out: list[TrackedBox] = []
    seen: set[tuple[int, int]] = set()
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.replace(";", ",").split(",")]
        if len(parts) == 1:
            parts = line.split()
        try:
            if len(parts) < 6:
                raise ValueError
            frame_f, id_f = float(parts[0]), float(parts[1])
            left, top, w, h = (float(p) for p in parts[2:6])
            conf = float(parts[6]) if len(parts) > 6 and parts[6] else 1.0
        except ValueError:
            raise HarError(f"{name} line {n}: expected {_LAYOUT}, got {line[:60]!r}; "
                           "fix the line or give another file") from None
        values = (frame_f, id_f, left, top, w, h, conf)
        if not all(math.isfinite(v) for v in values):
            raise HarError(f"{name} line {n}: a number is not finite ({line[:60]!r}); "
                           "fix the line")
        if frame_f != int(frame_f) or frame_f < 1 or id_f != int(id_f) or id_f < 0:
            raise HarError(f"{name} line {n}: frame must be a whole number from 1 and id "
                           f"a whole number from 0 ({line[:60]!r}); MOTChallenge counts "
                           "frames from 1")
        if w <= 0 or h <= 0:
            raise HarError(f"{name} line {n}: width and height must be positive "
                           f"({line[:60]!r}); the box is left,top,width,height in pixels")
        key = (int(frame_f), int(id_f))
        if key in seen:
            raise HarError(f"{name} line {n}: id {key[1]} appears twice in frame {key[0]}; "
                           "give each person one box per frame")
        seen.add(key)
        out.append(TrackedBox(int(frame_f) - 1, int(id_f),
                              Box(left, top, left + w, top + h, conf)))
    out.sort(key=lambda t: (t.frame, t.id))
    return out


def read_mot(path: str | os.PathLike) -> list[TrackedBox]:
    """Read a MOTChallenge tracks file; a bad file is a one-line :class:`HarError`."""
    name = display_path(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            rows = parse_mot(fh, name)
    except OSError as exc:
        raise HarError(f"{name}: cannot be read ({exc.strerror or exc}); give a "
                       f"tracks file in the layout {_LAYOUT}") from None
    if not rows:
        raise HarError(f"{name}: holds no tracks; give a file in the layout {_LAYOUT}")
    return rows


def write_mot(out: TextIO, rows: Iterable[TrackedBox]) -> None:
    """Write ``rows`` as MOTChallenge text (frames from 1, pixels, 2 decimals)."""
    for t in sorted(rows, key=lambda t: (t.frame, t.id)):
        b = t.box
        out.write(f"{t.frame + 1},{t.id},{b.x0:.2f},{b.y0:.2f},{b.width:.2f},"
                  f"{b.height:.2f},{b.score:.4f},-1,-1,-1\n")
