"""Shared by test_timeline.py, test_render.py and test_outputs.py: generated videos
whose action changes at a known time, and a model whose output is known."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from har.labels import load_labels

LABELS = load_labels("kinetics400")
RED_LABEL = "juggling soccer ball"  # what the colour model says for red frames
BLUE_LABEL = "swimming backstroke"  # ... and for blue ones
GREEN_LABEL = "mowing lawn"
RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 200, 20)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "videos"


class ColourModel(nn.Module):
    """Logits from the clip's mean colour: red-ish -> RED_LABEL, blue-ish ->
    BLUE_LABEL, green-ish -> GREEN_LABEL, mixed -> shared. Input is the har preset's
    ``(N, 3, T, H, W)`` mean-subtracted RGB (values about -115..+155)."""

    def __init__(self, gain: float = 0.12) -> None:
        super().__init__()
        self.gain = gain
        self.idx = [LABELS.index(RED_LABEL), LABELS.index(GREEN_LABEL), LABELS.index(BLUE_LABEL)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3, 4))  # (N, 3)
        logits = torch.zeros(x.shape[0], len(LABELS), dtype=x.dtype)
        for c, i in enumerate(self.idx):
            others = [o for o in range(3) if o != c]
            logits[:, i] = self.gain * (m[:, c] - m[:, others].mean(dim=1))
        return logits


def recognizer(**kw):
    import har

    return har.Recognizer(module=ColourModel(), **kw)


def write_video(path: Path, colours, frames_each, *, size=(128, 96), fps=30,
                codec="libx264", audio=False, rotate=None, vfr=False,
                pattern=True) -> Path:
    """A video of solid-colour sections: ``frames_each[i]`` frames of ``colours[i]``.

    ``pattern`` adds a small moving square (so frames are not identical). ``vfr``
    makes every third frame last twice as long. ``audio`` adds an AAC sine track.
    """
    import av

    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuv444p" if (w % 2 or h % 2) else "yuv420p"
        tb = Fraction(1, fps * 2)
        s.codec_context.time_base = tb
        if codec == "libx264":
            s.options = {"qp": "0", "preset": "ultrafast"}
        if rotate is not None:
            s.metadata["rotate"] = str(rotate)
        a = None
        if audio:
            a = c.add_stream("aac", rate=44100)
            a.layout = "mono"
        pts = 0
        n = 0
        for colour, count in zip(colours, frames_each):
            for _ in range(count):
                img = np.empty((h, w, 3), np.uint8)
                img[:] = colour
                if pattern:
                    x = (n * 3) % max(1, w - 8)
                    img[2:8, x:x + 6] = 255 - np.asarray(colour, np.uint8)
                vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=s.pix_fmt)
                vf.pts, vf.time_base = pts, tb
                c.mux(s.encode(vf))
                pts += 4 if (vfr and n % 3 == 2) else 2
                n += 1
        c.mux(s.encode(None))
        if a is not None:
            total_s = pts * float(tb)
            sr, chunk = 44100, 1024
            t0 = 0
            while t0 < total_s * sr:
                t = (np.arange(chunk) + t0) / sr
                samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate, af.pts = sr, t0
                c.mux(a.encode(af))
                t0 += chunk
            c.mux(a.encode(None))
    return path


def count_frames(path) -> tuple[int, int, int, float | None, bool]:
    """``(frames, width, height, fps, has_audio)`` as har's decoder sees the file."""
    import av

    from har.video import VideoSource

    with VideoSource(path) as v:
        n = sum(1 for _ in v.frames(size=(32, 32)))
        info = v.info
    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
    return n, info.width, info.height, info.fps, has_audio
