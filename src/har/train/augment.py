"""Clips for training and validation, cut from decoded frames.

Training follows the authors' recipe (kenshohara/3D-ResNets-PyTorch, ``main.py`` with
``--train_crop corner``):

- **temporal random crop**: ``clip_len`` consecutive frames from a random start,
  loop-padded when the video is shorter;
- **multi-scale corner crop**: a square whose side is the shorter side times one of
  ``1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2``, at the centre or one of the four corners, the same
  for every frame of the clip, resized to the model's input size (bilinear);
- **horizontal flip** with probability 1/2 (when enabled: see ``har train --flip``);
- the preset's scaling and mean/std normalisation (:meth:`Preset.normalize`).

Validation uses the test-time recipe: non-overlapping ``clip_len`` windows over the
whole video (the last one loop-padded), centre crop, the video's score being the
mean of its clips' probabilities: exactly what ``har predict`` computes, through
:class:`~har.transforms.Preset` (the one test-time recipe).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..sampling import loop_pad, sliding_window
from ..transforms import Preset

SCALES = tuple(2.0 ** (-i / 4) for i in range(5))  # 1 ... 0.5, the authors' 5 scales
CORNERS = ("c", "tl", "tr", "bl", "br")


def random_window(n_frames: int, clip_len: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Frame indices of a random ``clip_len`` window (loop-padded if the video is short)."""
    start = int(rng.integers(0, max(1, n_frames - clip_len + 1)))
    return loop_pad(range(start, min(start + clip_len, n_frames)), clip_len)


def corner_box(h: int, w: int, scale: float, corner: str) -> tuple[int, int, int]:
    """``(y, x, side)`` of a square crop of ``scale`` times the shorter side."""
    side = max(1, int(min(h, w) * scale))
    if corner == "c":
        return (h - side) // 2, (w - side) // 2, side
    y = 0 if corner[0] == "t" else h - side
    x = 0 if corner[1] == "l" else w - side
    return y, x, side


def train_clip(frames: np.ndarray, preset: Preset, rng: np.random.Generator, *,
               flip: bool = True, single_frame: bool = False) -> torch.Tensor:
    """One augmented training clip ``(3, T, crop, crop)`` float32 from ``(N, H, W, 3)``.

    ``single_frame``: one random frame repeated ``clip_len`` times (the no-motion
    baseline: the network sees appearance only).
    """
    L = preset.clip_len
    if single_frame:
        idx = (int(rng.integers(0, len(frames))),) * L
    else:
        idx = random_window(len(frames), L, rng)
    h, w = frames.shape[1], frames.shape[2]
    y, x, side = corner_box(h, w, SCALES[int(rng.integers(len(SCALES)))],
                            CORNERS[int(rng.integers(len(CORNERS)))])
    clip = np.asarray(frames[list(idx), y:y + side, x:x + side])  # (T, s, s, 3)
    t = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()  # T,3,s,s
    if side != preset.crop:
        t = F.interpolate(t, size=(preset.crop, preset.crop), mode="bilinear",
                          align_corners=False)
    if flip and rng.random() < 0.5:
        t = t.flip(-1)
    x = np.ascontiguousarray(t.permute(1, 0, 2, 3).numpy(), dtype=np.float32)
    return torch.from_numpy(preset.normalize(x))


def eval_clips(frames: np.ndarray, preset: Preset, *, stride: int | None = None,
               single_frame: bool = False) -> torch.Tensor:
    """The test-time clips of a video ``(n, 3, T, crop, crop)``: sliding windows of
    ``clip_len`` every ``stride`` frames (default: non-overlapping, the last one
    loop-padded), each through the preset (centre crop, scaling, normalisation), as
    ``har predict`` scores them. ``single_frame``: each clip is its middle frame
    repeated."""
    L = preset.clip_len
    specs = sliding_window(len(frames), L, stride or L)
    clips = []
    for spec in specs:
        idx = list(spec.frame_indices)
        if single_frame:
            idx = [idx[len(idx) // 2]] * L
        clips.append(preset(np.asarray(frames[idx])[None]))  # one clip's frames at a time
    return torch.from_numpy(np.concatenate(clips))
