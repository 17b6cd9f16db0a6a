"""A person's tube: the square crop that follows one track over one clip.

The crop rule (docs/persons.md):

* **Square**, so the person is never stretched: its side is the largest side of the
  person's boxes over the clip's frames, times ``1 + margin`` (default 0.25), so the
  whole person stays inside in every frame even when the box grows or shrinks.
* **Steady** over the clip: the centre is the median of the boxes' centres over the
  clip's frames, so detector jitter does not shake the crop (a 3D network reads
  motion, and a moving crop adds motion that is not the person's).
* **The frame edge**: a square that fits in the frame but sticks out is moved back
  inside (real pixels rather than padding, the person off-centre); a square larger
  than the frame is centred on the person and the missing part is filled with the
  model's mean colour, which the normalisation turns into zeros.
* Resized to the model's input through its :class:`~har.transforms.Preset`
  (``resized_size``), whose centre crop then takes the whole square.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..transforms import Preset
from .boxes import Box


def clip_square(boxes: Sequence[Box], width: int, height: int, margin: float = 0.25
                ) -> tuple[int, int, int]:
    """``(x0, y0, side)`` of the steady square crop for one clip, in frame pixels."""
    if not boxes:
        raise ValueError("a clip needs at least one box")
    side = max(max(b.width, b.height) for b in boxes) * (1.0 + margin)
    side = int(round(max(side, 2.0)))
    cx = float(np.median([b.center[0] for b in boxes]))
    cy = float(np.median([b.center[1] for b in boxes]))
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def fill_colour(preset: Preset) -> np.ndarray:
    """The pixel value (0-255) that the preset normalises to zero."""
    scale = preset.scale or 1.0
    return np.clip(np.round(np.array(preset.mean, np.float64) / scale), 0, 255).astype(np.uint8)


def crop(frame: np.ndarray, x0: int, y0: int, side: int, fill: np.ndarray) -> np.ndarray:
    """``frame[y0:y0+side, x0:x0+side]``, filled with ``fill`` where it leaves the frame."""
    h, w = frame.shape[:2]
    if x0 >= 0 and y0 >= 0 and x0 + side <= w and y0 + side <= h:
        return frame[y0:y0 + side, x0:x0 + side]
    out = np.empty((side, side, 3), np.uint8)
    out[...] = fill
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return out


def tube_clip(frames: Sequence[np.ndarray], boxes: Sequence[Box], preset: Preset,
              margin: float = 0.25, scale: float = 1.0) -> tuple[np.ndarray, Box]:
    """One clip of one person: ``(T, H, W, 3) uint8`` ready for ``preset`` and the
    square it was cut from (in the boxes' pixels).

    ``frames`` are the decoded frames (possibly smaller than the boxes' frame by
    ``scale``); ``boxes`` the person's box in each, in full-frame pixels."""
    import cv2

    fh, fw = frames[0].shape[:2]
    x0, y0, side = clip_square([b.scaled(scale) for b in boxes], fw, fh, margin)
    ow, oh = preset.resized_size(side, side)
    fill = fill_colour(preset)
    interp = cv2.INTER_AREA if side > max(ow, oh) else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(np.ascontiguousarray(crop(f, x0, y0, side, fill)), (ow, oh),
                               interpolation=interp) for f in frames])
    return out, Box(x0 / scale, y0 / scale, (x0 + side) / scale, (y0 + side) / scale)
