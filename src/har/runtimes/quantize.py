"""int8 for OpenVINO by NNCF post-training quantization.

Calibration clips: the caller's (``har export openvino --precision int8 --calibrate
DIR`` samples clips from the videos in DIR), else the documented default: 64 clips
from the synthetic moving-pattern videos of :func:`default_calibration` (a fixed seed,
so the same IR comes out every time). Real videos of the target domain calibrate
better; the default only fixes activation ranges to something plausible.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import HarError
from .base import need

DEFAULT_CALIBRATION_CLIPS = 64


def default_calibration_size(preset) -> int:
    """Default calibration clips for ``preset``: 64 for 16x112x112 clips, fewer for
    bigger ones so the clips (all held in memory by NNCF) stay near the same ~150 MB
    of float32, with a floor of 8: I3D's 64x224x224 clips (38.5 MB each) get 8, where
    64 took 2.5 GB and minutes of statistics on 2 cores (issue 23)."""
    per_clip = 3 * preset.clip_len * preset.crop * preset.crop * 4
    budget = DEFAULT_CALIBRATION_CLIPS * 3 * 16 * 112 * 112 * 4
    return max(8, min(DEFAULT_CALIBRATION_CLIPS, budget // per_clip))


def default_calibration(preset, n: int = DEFAULT_CALIBRATION_CLIPS,
                        seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` preprocessed clips of moving coloured shapes on noise (one per batch)."""
    rng = np.random.default_rng(seed)
    t, s = preset.clip_len, preset.crop
    yy, xx = np.mgrid[0:s, 0:s]
    for i in range(n):
        base = rng.integers(0, 256, size=3)
        frames = np.empty((t, s, s, 3), dtype=np.uint8)
        cx, cy = rng.uniform(10, s - 10, size=2)
        vx, vy = rng.uniform(-4, 4, size=2)
        colour = rng.integers(0, 256, size=3)
        for k in range(t):
            img = np.clip(base + rng.normal(0, 25, size=(s, s, 3)), 0, 255)
            mask = (xx - (cx + vx * k)) ** 2 + (yy - (cy + vy * k)) ** 2 < (s / 6) ** 2
            img[mask] = colour
            frames[k] = img.astype(np.uint8)
        yield np.asarray(preset(frames[None]), dtype=np.float32)


def video_calibration(folder: str | Path, preset, n: int = DEFAULT_CALIBRATION_CLIPS
                      ) -> Iterator[np.ndarray]:
    """Up to ``n`` clips spread over the videos in ``folder`` (one clip per batch), made
    as ``har predict`` makes them: the folder searched as ``har predict`` searches one
    (:func:`har.sources.resolve_inputs`, its video extensions), frames decoded at the
    preset's size (and rate), cut into back-to-back clips by
    :class:`~har.sampling.ClipAssembler` and preprocessed by the preset itself.

    A video that cannot be decoded is an error naming it, not skipped: an int8 model
    calibrated on fewer videos than the folder holds would differ from the one asked
    for without a word."""
    from ..fsutil import display_path

    sources = _calibration_sources(folder)
    per = max(1, n // len(sources))
    got = 0
    for src in sources:
        try:
            for clip in calibration_clips(src, preset, per):
                yield clip
                got += 1
                if got >= n:
                    return
        except (HarError, OSError) as exc:
            reason = str(exc) if isinstance(exc, HarError) else \
                f"{display_path(src.url)}: {exc.strerror or exc}"
            raise HarError(f"--calibrate {display_path(folder)}: {reason} (or move that "
                           "video out of the folder)") from None
    if got == 0:
        raise HarError(f"--calibrate {display_path(folder)}: no clip could be cut from its "
                       "videos; give a folder of videos of the target domain")


def _calibration_sources(folder) -> list:
    """The videos of ``folder`` as ``har predict`` finds them; one line when none."""
    from ..fsutil import display_path
    from ..sources import resolve_inputs

    sources, errors = resolve_inputs([str(folder)])
    if errors:
        raise HarError(f"--calibrate: {errors[0][1]}")
    if not sources:
        raise HarError(f"--calibrate {display_path(folder)}: no videos there")
    return sources


def calibration_clips(source, preset, limit: int) -> Iterator[np.ndarray]:
    """The first ``limit`` clips of ``source`` ((1, 3, T, S, S) float32 each), through
    the decoder, the preset's frame rate, the clip assembler and the preset, as the
    recognizer scores a video."""
    from ..sampling import ClipAssembler, resample
    from ..sources import open_video

    if limit < 1:
        return
    video = open_video(source)
    try:
        info = video.info
        frames = video.frames(preset.resized_size(info.height, info.width))
        if preset.fps:
            frames = resample(frames, preset.fps)
        clips = ClipAssembler(preset.clip_len, stride=preset.clip_len, gaps=not preset.fps)
        for k, (_, clip) in enumerate(clips(frames), 1):
            yield preset(clip[None])
            if k >= limit:
                break
    finally:
        video.close()


def quantize_openvino(ov_model, calibration: Iterable[np.ndarray] | None, input_shape):
    """NNCF post-training quantization (default preset: symmetric weights and
    activations, mixed preset off) of an OpenVINO model."""
    need("nncf", "int8")
    import nncf

    if calibration is None:
        from ..transforms import HARA_KINETICS

        calibration = default_calibration(HARA_KINETICS,
                                          default_calibration_size(HARA_KINETICS))
    data = list(calibration)
    ds = nncf.Dataset(data)
    with _stdout_to_stderr():
        return nncf.quantize(ov_model, ds, subset_size=len(data))


@contextlib.contextmanager
def _stdout_to_stderr():
    """NNCF draws its "Statistics collection" bars (rich) and logs on stdout; a
    ``--json -`` on stdout must get JSON only, so both go to stderr meanwhile."""
    moved = []
    for name in ("nncf", ""):
        for h in logging.getLogger(name).handlers:
            if isinstance(h, logging.StreamHandler) and \
                    getattr(h, "stream", None) in (sys.stdout, sys.__stdout__):
                moved.append((h, h.stream))
                h.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for h, stream in moved:
            h.setStream(stream)
