"""Preprocessing presets. A preset travels with a model's weights, not with the CLI.

The resize step runs inside the decoder (FFmpeg's bilinear scaler, while converting
to RGB) via :meth:`Preset.resized_size`; :meth:`Preset.__call__` does the rest:
centre crop, scaling, normalisation and the ``(N, 3, T, H, W)`` layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preset:
    """How frames must look to a model.

    resize: an int resizes the shorter side to it, keeping the aspect ratio (the
        original tool's ``Scale``); a ``(height, width)`` pair resizes to that size.
    crop: side of the centre square crop.
    scale: pixel values (0-255) are multiplied by this before normalising.
    mean/std: per RGB channel, on the scaled values.
    fps: frames a second the model was trained on; None takes the video's own
        frames. With a rate, frames are picked by their timestamps at that rate
        (:func:`har.sampling.resample`) before clips are cut, as DeepMind's I3D
        recipe samples every video at 25 fps.
    """

    name: str
    clip_len: int = 16
    resize: int | tuple[int, int] = 112
    crop: int = 112
    scale: float = 1.0
    mean: tuple[float, float, float] = (114.7748, 107.7354, 99.4750)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fps: float | None = None

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """``(width, height)`` a ``height x width`` frame is resized to.

        >>> HARA_KINETICS.resized_size(256, 340)
        (148, 112)
        """
        if isinstance(self.resize, tuple):
            return self.resize[1], self.resize[0]
        size = self.resize
        if width < height:
            return size, int(size * height / width)
        return int(size * width / height), size

    def crop_box(self, height: int, width: int) -> tuple[int, int]:
        """Top-left corner ``(y, x)`` of the centre crop, rounded as the original tool."""
        return int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))

    def __call__(self, clips) -> np.ndarray:
        """``(N, T, H, W, 3) uint8`` resized frames -> ``(N, 3, T, crop, crop) float32``.

        The one test-time recipe: inference, evaluation (``har train``'s validation and
        the temporal head's embeddings) and int8 calibration all call it. NumPy only,
        so scoring with OpenVINO or ONNX Runtime never imports PyTorch; a torch tensor
        is accepted as input, and the runtimes take the array as it is."""
        x = np.asarray(clips)
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"expected (N, T, H, W, 3) frames, got shape {tuple(x.shape)}")
        h, w = x.shape[2], x.shape[3]
        if h < self.crop or w < self.crop:
            raise ValueError(f"frames of {h}x{w} are smaller than the {self.crop} crop")
        y0, x0 = self.crop_box(h, w)
        x = x[:, :, y0:y0 + self.crop, x0:x0 + self.crop, :]
        out = np.empty((x.shape[0], 3, x.shape[1], self.crop, self.crop), np.float32)
        for c in range(3):
            out[:, c] = x[..., c]
        return self.normalize(out)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Scale and normalise, in place, ``(..., 3, T, H, W)`` float32 pixels on the
        0-255 scale: the step shared by the test-time recipe (:meth:`__call__`) and
        training clips (:func:`har.train.augment.train_clip`, which crops and flips
        first). Returns ``x``."""
        if x.dtype != np.float32 or x.ndim < 4 or x.shape[-4] != 3:
            raise ValueError(f"expected (..., 3, T, H, W) float32, got {x.dtype} "
                             f"{tuple(x.shape)}")
        for c in range(3):
            ch = x[..., c, :, :, :]
            if self.scale != 1.0:
                ch *= np.float32(self.scale)
            ch -= np.float32(self.mean[c])
            if any(s != 1.0 for s in self.std):
                ch /= np.float32(self.std[c])
        return x


# Hara et al.: RGB on the 0-255 scale minus the ActivityNet mean, no std division.
HARA_KINETICS = Preset(name="hara-kinetics")

# DeepMind's I3D test recipe (deepmind/kinetics-i3d README, "Sample code" and the
# preprocessing it describes): 25 fps, shorter side resized to 256 (bilinear), centre
# crop 224x224, RGB scaled to [-1, 1] (x * 2/255 - 1). The clip length for streaming
# is har's choice (docs/i3d.md measures it against whole-video inference).
DEEPMIND_I3D = Preset(name="deepmind-i3d", clip_len=64, resize=256, crop=224,
                      scale=2 / 255, mean=(1.0, 1.0, 1.0), std=(1.0, 1.0, 1.0), fps=25.0)
