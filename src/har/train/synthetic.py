"""Generated datasets that prove what each part of the model can and cannot see.

Two kinds, written as real H.264 videos in the folder layout ``har train`` reads
(``ROOT/<class>/<n>.mp4``):

- :func:`make_motion_dataset` (classes ``left`` and ``right``): the same randomly
  textured square slides left or right over a textured background. Any single frame
  of one class is distributed exactly like a frame of the other (random position,
  random texture): only motion tells them apart. A 3D CNN learns it; the same network
  shown one frame repeated 16 times cannot do better than chance.
- :func:`make_order_dataset` (classes ``a-then-b`` and ``b-then-a``): a video is
  segment A followed by segment B, or B then A, built from the same kinds of clips
  (A: a textured pattern drifting down; B: a pattern drifting right), with the change
  on a clip boundary so that no 16-frame clip sees both. Every clip is A or B in the
  same proportions in both classes, so the mean of clip scores cannot tell the classes
  apart; a head that looks at the sequence of clips can.

``python -m har.train.synthetic motion DIR`` writes a dataset from the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25) -> None:
    """``(T, H, W, 3) uint8`` RGB frames -> an H.264 MP4 (near-lossless)."""
    import av

    t, h, w, _ = frames.shape
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _texture(rng: np.random.Generator, h: int, w: int, cell: int = 4) -> np.ndarray:
    """Blocky random colour texture ``(h, w, 3) uint8``."""
    small = rng.integers(0, 256, size=(h // cell + 1, w // cell + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, cell, axis=0), cell, axis=1)[:h, :w]


def motion_video(direction: int, rng: np.random.Generator, *, size: int = 112,
                 frames: int = 48, square: int | None = None) -> np.ndarray:
    """A textured square moving ``direction`` (+1 right, -1 left) across a textured
    background, wrapping around at the edges. ``(frames, size, size, 3) uint8``."""
    square = square or size // 3
    background = _texture(rng, size, size, cell=8) // 2 + 64
    patch = _texture(rng, square, square, cell=4)
    speed = int(rng.integers(2, 5)) * direction  # pixels per frame
    x0 = int(rng.integers(0, size))
    y = int(rng.integers(0, size - square))
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        img = background.copy()
        cols = (x0 + speed * t + np.arange(square)) % size
        img[y:y + square, cols] = patch
        out[t] = img
    return out


def _drift(pattern: np.ndarray, t: int, axis: int) -> np.ndarray:
    return np.roll(pattern, 2 * t, axis=axis)


def order_video(a_first: bool, rng: np.random.Generator, *, size: int = 112,
                clip_len: int = 16, clips: int = 4) -> np.ndarray:
    """``clips`` clips: the first ``k`` of one kind, the rest of the other (``k`` random,
    1 <= k < clips), A first when ``a_first``. ``(clips * clip_len, size, size, 3)``."""
    k = int(rng.integers(1, clips))
    kinds = ["a"] * k + ["b"] * (clips - k) if a_first else ["b"] * k + ["a"] * (clips - k)
    pat_a = _texture(rng, size, size, cell=8)
    pat_a[..., 0] = np.maximum(pat_a[..., 0], 160)  # A: reddish, drifting down
    pat_b = _texture(rng, size, size, cell=8)
    pat_b[..., 2] = np.maximum(pat_b[..., 2], 160)  # B: bluish, drifting right
    out = []
    t = 0
    for kind in kinds:
        for _ in range(clip_len):
            out.append(_drift(pat_a, t, 0) if kind == "a" else _drift(pat_b, t, 1))
            t += 1
    return np.stack(out)


def make_motion_dataset(root: str | os.PathLike, per_class: int = 20, *, seed: int = 0,
                        size: int = 112, frames: int = 48, fps: int = 25) -> Path:
    """``root/left/*.mp4`` and ``root/right/*.mp4`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, direction in (("left", -1), ("right", 1)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_video(root / name / f"{i:03d}.mp4",
                        motion_video(direction, rng, size=size, frames=frames), fps)
    return root


def make_order_dataset(root: str | os.PathLike, per_class: int = 20, *, seed: int = 0,
                       size: int = 112, clips: int = 4, fps: int = 25) -> Path:
    """``root/a-then-b/*.mp4`` and ``root/b-then-a/*.mp4`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, a_first in (("a-then-b", True), ("b-then-a", False)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_video(root / name / f"{i:03d}.mp4",
                        order_video(a_first, rng, size=size, clips=clips), fps)
    return root


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m har.train.synthetic",
                                description="Write a generated dataset (see the docstring).")
    p.add_argument("kind", choices=("motion", "order"))
    p.add_argument("root")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args(argv)
    make = make_motion_dataset if args.kind == "motion" else make_order_dataset
    print(make(args.root, args.per_class, seed=args.seed, size=args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
