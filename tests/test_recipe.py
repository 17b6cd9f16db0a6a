"""One test-time recipe: ``transforms.Preset`` turns decoded frames into model input for
inference, training's evaluation (``augment.eval_clips``: validation and the temporal
head's embeddings) and int8 calibration (``quantize.video_calibration``). These tests
hold that the other two give exactly the arrays the Preset gives for the same frames."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_video
from har.errors import HarError
from har.models.zoo import TORCHVISION_KINETICS
from har.sampling import ClipAssembler
from har.transforms import DEEPMIND_I3D, HARA_KINETICS, Preset
from har.video import Frame, VideoSource

SMALL_I3D = Preset(name="i3d-small", clip_len=8, resize=64, crop=56, scale=2 / 255,
                   mean=(1.0, 1.0, 1.0))


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _recognizer_clips(frames: np.ndarray, preset: Preset, stride: int) -> np.ndarray:
    """What ``har predict`` feeds the model for these decoded frames: the recognizer's
    clip assembler, then the preset, one clip at a time."""
    stream = (Frame(index=i, time_s=i / 25, duration_s=1 / 25, rgb=f)
              for i, f in enumerate(frames))
    clips = ClipAssembler(preset.clip_len, stride=stride)(stream)
    return np.concatenate([preset(clip[None]) for _, clip in clips])


@pytest.mark.parametrize("preset", [HARA_KINETICS, TORCHVISION_KINETICS, SMALL_I3D])
@pytest.mark.parametrize("n,stride", [(40, None), (16, None), (5, None), (37, 8)])
def test_eval_clips_are_the_recognizers_clips(preset, n, stride):
    from har.train.augment import eval_clips

    h, w = (preset.resize if isinstance(preset.resize, tuple) else
            (preset.resize, preset.resize * 4 // 3))
    frames = _frames(n, h, w)
    got = eval_clips(frames, preset, stride=stride).numpy()
    want = _recognizer_clips(frames, preset, stride or preset.clip_len)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want)  # bit for bit, loop-padded tail included


def test_training_clips_are_normalised_by_the_preset():
    """A training clip that happens to take the whole frame (scale 1, no flip) is the
    test-time clip: the two share the preset's normalisation."""
    from har.train.augment import train_clip

    class Fixed:  # scale 1 at the centre, window start 0, no flip
        def integers(self, *a, **k):
            return 0

        def random(self):
            return 0.9

    for preset in (HARA_KINETICS, TORCHVISION_KINETICS):
        frames = _frames(20, preset.crop, preset.crop, seed=3)
        got = train_clip(frames, preset, Fixed(), flip=True).numpy()
        want = preset(frames[:preset.clip_len][None])[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_preset_normalize_refuses_a_wrong_layout():
    with pytest.raises(ValueError, match="3, T, H, W"):
        HARA_KINETICS.normalize(np.zeros((16, 112, 112, 3), np.float32))


def test_calibration_clips_are_the_presets_clips(tmp_path):
    from har.runtimes.quantize import video_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    make_video(folder / "a.mp4", 40, size=(160, 120))
    make_video(folder / "b.mkv", 20, size=(120, 160))
    (folder / "notes.txt").write_text("not a video")  # not a video extension: not read
    got = list(video_calibration(folder, HARA_KINETICS, n=4))
    want = []
    for name in ("a.mp4", "b.mkv"):  # sorted, two clips each, back to back
        with VideoSource(str(folder / name)) as v:
            size = HARA_KINETICS.resized_size(v.info.height, v.info.width)
            frames = np.stack([f.rgb for f in v.frames(size)])
        L = HARA_KINETICS.clip_len
        # b.mkv has 20 frames: its second clip is frames 16..19 loop-padded, as predict does
        clips = [frames[0:L], frames[L:2 * L] if len(frames) >= 2 * L else
                 frames[[L + i % (len(frames) - L) for i in range(L)]]]
        want += [HARA_KINETICS(c[None]) for c in clips]
    assert len(got) == 4
    for g, w in zip(got, want):
        assert g.dtype == np.float32 and g.shape == (1, 3, 16, 112, 112)
        assert np.array_equal(g, w)


def test_calibration_follows_the_presets_frame_rate(tmp_path):
    """A preset with a frame rate (I3D's 25 fps) calibrates on frames at that rate, as
    inference scores them: a 50 fps video gives every other frame."""
    from har.runtimes.quantize import video_calibration

    preset = Preset(name="rate", clip_len=4, resize=112, crop=112, fps=25.0)
    folder = tmp_path / "calib"
    folder.mkdir()
    make_video(folder / "fast.mp4", 16, size=(112, 112), fps=50)
    got = list(video_calibration(folder, preset, n=1))
    with VideoSource(str(folder / "fast.mp4")) as v:
        frames = np.stack([f.rgb for f in v.frames((112, 112))])
    assert np.array_equal(got[0], preset(frames[0:8:2][None]))
    assert DEEPMIND_I3D.fps == 25.0  # the preset this is for


def test_calibration_names_a_broken_video_instead_of_skipping_it(tmp_path):
    from har.runtimes.quantize import video_calibration

    folder = tmp_path / "calib"
    folder.mkdir()
    make_video(folder / "a.mp4", 20, size=(160, 120))
    (folder / "b.mp4").write_bytes(b"\x00not a video at all" * 50)
    with pytest.raises(HarError) as err:
        list(video_calibration(folder, HARA_KINETICS, n=4))
    text = str(err.value)
    assert "\n" not in text and "--calibrate" in text and "b.mp4" in text
    assert "move that video out of the folder" in text


def test_calibration_of_a_folder_without_videos_is_one_line(tmp_path):
    from har.runtimes.quantize import video_calibration

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HarError) as err:
        list(video_calibration(tmp_path, HARA_KINETICS))
    text = str(err.value)
    assert "\n" not in text and "--calibrate" in text and "no video files" in text
