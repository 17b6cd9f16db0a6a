"""Generated scenes for the per-person tests: actors side by side, box sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from har.persons.boxes import Box, TrackedBox
from har.train.synthetic import motion_video, write_video

REGION = 112  # each actor acts in a REGION x REGION square
GAP = 16  # grey columns between the two actors


def two_actor_scene(path: Path, frames: int = 48, seed: int = 5) -> tuple[Path, list[TrackedBox]]:
    """A video of two actors doing different things: on the left a textured square
    slides left, on the right one slides right (the ``left``/``right`` classes of
    ``har.train.synthetic.make_motion_dataset``). Returns the video and its tracks:
    person 1 on the left, person 2 on the right, a box inside each actor's region."""
    rng = np.random.default_rng(seed)
    left = motion_video(-1, rng, size=REGION, frames=frames)
    right = motion_video(+1, rng, size=REGION, frames=frames)
    gap = np.full((frames, REGION, GAP, 3), 128, np.uint8)
    write_video(path, np.concatenate([left, gap, right], axis=2))
    tracks = []
    for f in range(frames):
        for pid, x in ((1, 0), (2, REGION + GAP)):
            tracks.append(TrackedBox(f, pid, Box(x + 12, 12, x + REGION - 12, REGION - 12)))
    return path, tracks


def walk(start: tuple[float, float], velocity: tuple[float, float], frames: range,
         size: tuple[float, float] = (40, 100)) -> dict[int, Box]:
    """A person of ``size`` (w, h) walking at constant ``velocity`` px/frame."""
    w, h = size
    out = {}
    for f in frames:
        cx = start[0] + velocity[0] * (f - frames.start)
        cy = start[1] + velocity[1] * (f - frames.start)
        out[f] = Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 0.9)
    return out
