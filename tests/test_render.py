"""The annotated video (issue 5): same frames, size, rate and audio as the input."""

from __future__ import annotations

import av
import numpy as np
import pytest

from har.render import annotate_video
from timeline_helpers import BLUE, GREEN, RED, SHARED, count_frames, recognizer, write_video


def frame_at(path, t):
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time is not None and f.time >= t:
                return f.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {t}s")


def test_annotated_video_keeps_frames_size_fps_and_audio(tmp_path):
    src = write_video(tmp_path / "in.mp4", [RED, BLUE], [60, 68], audio=True)
    result = recognizer().predict(str(src))
    out = tmp_path / "out.mp4"
    stats = annotate_video(result, out)
    assert stats.audio == "copied" and stats.frames == 128
    assert count_frames(out) == count_frames(src) == (128, 128, 96, 30.0, True)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        assert float(a.duration * a.time_base) == pytest.approx(128 / 30, abs=0.1)
    # Something was drawn: the label box darkens the top-left corner, the strip the
    # bottom; the middle of the frame is untouched (still red, then blue).
    early, late = frame_at(out, 0.5).astype(int), frame_at(out, 3.5).astype(int)
    assert early[48, 100, 0] > 180 and late[48, 100, 2] > 180
    assert early[3:10, 5:60].mean() < 120
    assert np.abs(late[-3, :] - frame_at(src, 3.5)[-3, :].astype(int)).mean() > 40


def test_timeline_strip_shows_segments_and_cursor(tmp_path):
    src = write_video(tmp_path / "in.mp4", [RED, GREEN], [64, 64], size=(320, 240))
    result = recognizer().predict(str(src))
    assert len(result.segments) == 2
    out = tmp_path / "out.mp4"
    annotate_video(result, out)
    img = frame_at(out, 1.0).astype(int)
    strip = img[-20:]
    # The first segment's bar (first colour of the palette, orange) on the left half
    # of the strip, the second's (sky blue) on the right half.
    orange = (np.abs(strip - [230, 159, 0]).sum(-1) < 60)
    blue = (np.abs(strip - [86, 180, 233]).sum(-1) < 60)
    assert orange[:, :150].sum() > 100 and orange[:, 170:].sum() < 10
    assert blue[:, 170:].sum() > 100 and blue[:, :150].sum() < 10
    # The cursor (white) near x = 1.0 / 4.27 * 320 = 75.
    white = (strip.min(-1) > 220).any(0)
    assert white[65:85].any() and not white[200:].any()


def test_odd_size_and_variable_frame_rate(tmp_path):
    src = write_video(tmp_path / "odd.mkv", [RED, BLUE], [30, 30], size=(99, 75), vfr=True)
    result = recognizer().predict(str(src))
    out = tmp_path / "odd_out.mp4"
    annotate_video(result, out)
    n, w, h, fps, _ = count_frames(out)
    assert (n, w, h) == (60, 99, 75)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        ta = [f.time for f in a.decode(video=0)]
        tb = [f.time for f in b.decode(video=0)]
    assert np.allclose(np.diff(ta), np.diff(tb), atol=1e-3)  # the VFR timing is kept


def test_refuses_to_overwrite_the_input_and_bad_paths(tmp_path):
    from har.errors import HarError

    src = write_video(tmp_path / "in.mp4", [RED], [20])
    result = recognizer().predict(str(src))
    with pytest.raises(HarError, match="input video itself"):
        annotate_video(result, src)
    with pytest.raises(HarError, match="does not exist"):
        annotate_video(result, tmp_path / "nope" / "x.mp4")
    assert src.stat().st_size > 0


@pytest.mark.parametrize("name", ["decord__video_90.mov", "mmaction2__rawvideo_part_0.mp4"])
def test_real_videos(tmp_path, name):
    src = SHARED / name
    if not src.exists():
        pytest.skip(f"{src} not present (../shared/videos is optional)")
    result = recognizer().predict(str(src))
    assert result.ok, result.error
    out = tmp_path / "out.mp4"
    annotate_video(result, out)
    got, want = count_frames(out), count_frames(src)
    assert got[:3] == want[:3]  # frames, and the upright display size
    assert got[3] == pytest.approx(want[3], rel=0.01)
    if name == "decord__video_90.mov":
        assert got[1:3] == (320, 568)


@pytest.mark.slow
def test_real_video_with_audio_and_two_video_streams(tmp_path):
    src = SHARED / "torchcodec__nasa_13013.mp4"
    if not src.exists():
        pytest.skip(f"{src} not present")
    result = recognizer().predict(str(src))
    out = tmp_path / "nasa.mp4"
    stats = annotate_video(result, out)
    assert stats.audio is not None
    got, want = count_frames(out), count_frames(src)
    assert got[:3] == want[:3] and got[4] is True
    assert got[3] == pytest.approx(want[3], rel=0.01)


def test_plot_overlapping_segments_have_lanes_and_legend(tmp_path):
    pytest.importorskip("matplotlib")
    from har.render import plot_timeline
    from har.results import ClipResult, Prediction, Segment, VideoResult

    labels = ["a long label for juggling balls", "dancing", "other"]
    clips = []
    for i in range(10):
        p = np.array([0.6, 0.3, 0.1] if i < 6 else [0.2, 0.7, 0.1], np.float32)
        clips.append(ClipResult(i, i * 16, i * 16 + 16, i * 0.64, i * 0.64 + 0.64,
                                [Prediction(labels[int(p.argmax())], float(p.max()))], probs=p))
    segs = [Segment(labels[0], 0.0, 4.0, 0.6, 0.6, 0, 5),
            Segment("dancing", 2.5, 6.4, 0.5, 0.7, 4, 9)]
    result = VideoResult("v.mp4", fps=25.0, frames=160, duration_s=6.4, clips=clips,
                         segments=segs, top=[Prediction(labels[0], 0.5)])
    png = tmp_path / "p.png"
    fig = plot_timeline(result, labels, png, model="r3d10-k400")
    assert png.stat().st_size > 1000
    ax, lanes = fig.axes[:2]
    assert "v.mp4" in ax.get_title() and "r3d10-k400" in ax.get_title()
    legend = [t.get_text() for t in lanes.get_legend().get_texts()]
    assert legend == [f"segment: {labels[0]}", "segment: dancing"]  # one entry per label
    assert len(lanes.collections) == 2  # separate lanes: overlaps stay apart
    assert ax.xaxis.get_major_formatter()(65.0, 0) == "1:05"
    ticks = [t.get_text() for t in lanes.get_yticklabels()]
    assert ticks[1] == "dancing" and ticks[0].endswith("\u2026")


def test_long_labels_are_cut_at_a_word_with_a_mark():
    from har.render import _fit, _layout

    lay = _layout(128, 128, 3, 1)
    import cv2

    def width(t):
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, lay.scale, lay.thickness)[0][0]

    text = _fit("gymnastics tumbling", width("gymnastics tumb.."), lay)
    assert text == "gymnastics.."
    assert _fit("juggling", 500, lay) == "juggling"
    short = _fit("abseiling", width("abse.."), lay)
    assert short.endswith("..") and "abseiling".startswith(short[:-2])


def test_small_frames_get_a_legend_for_the_timeline_rows():
    import numpy as np

    from har import render
    from har.results import ClipResult, Prediction, Segment, VideoResult

    top = [Prediction("gymnastics tumbling", 0.7), Prediction("juggling soccer ball", 0.2)]
    clips = [ClipResult(i, i * 16, i * 16 + 16, i * 0.53, i * 0.53 + 0.53, top) for i in range(10)]
    result = VideoResult(path="x", clips=clips, top=top, segments=[
        Segment("gymnastics tumbling", 0, 3, .7, .9, 0, 5),
        Segment("juggling soccer ball", 2, 5.3, .5, .6, 3, 9)])
    small = render._Painter(result, 340, 256, 3)
    assert small.legend_h > 0  # rows are too thin for names: a legend names them
    colour = small.colors["juggling soccer ball"]
    legend = small.strip[:small.legend_h, :, :3].reshape(-1, 3)
    assert (legend == colour).all(axis=1).any()  # its swatch is in the legend line
    assert render._Painter(result, 1920, 1080, 3).legend_h == 0  # names fit in the rows
    img = small.draw(np.full((256, 340, 3), 90, np.uint8), 2.5)
    assert img.shape == (256, 340, 3)


def _audio_samples(path) -> tuple[int, int]:
    """``(samples per channel decoded from the first audio stream, sample rate)``."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return sum(f.samples for f in c.decode(a)), a.codec_context.sample_rate


def _avi_with_audio(path, codec: str = "libmp3lame", sr: int = 44100, channels: int = 2,
                    seconds: float = 4.0):
    """An AVI (MPEG-4 video, as UCF101-era files) with a 440 Hz tone: MP3 (PyAV's
    libmp3lame, 1152-sample frames) or 16-bit PCM (1000-sample packets)."""
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec} encoder")
    fps = 25
    layout = "mono" if channels == 1 else "stereo"
    fmt, chunk = ("fltp", 1152) if codec == "libmp3lame" else ("s16", 1000)
    with av.open(str(path), "w", format="avi") as c:
        v = c.add_stream("mpeg4", rate=fps)
        v.width, v.height, v.pix_fmt = 128, 96, "yuv420p"
        a = c.add_stream(codec, rate=sr)
        a.layout = layout
        for i in range(int(seconds * fps)):
            img = np.full((96, 128, 3), (i * 5) % 256, np.uint8)
            c.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(v.encode(None))
        t0 = 0
        while t0 < seconds * sr:
            tone = 0.3 * np.sin(2 * np.pi * 440 * (np.arange(chunk) + t0) / sr)
            planes = np.stack([tone] * channels).astype(np.float32)
            if fmt == "s16":  # packed: one row of interleaved samples
                planes = (planes.T.reshape(1, -1) * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(planes, format=fmt, layout=layout)
            af.sample_rate, af.pts = sr, t0
            c.mux(a.encode(af))
            t0 += chunk
        c.mux(a.encode(None))
    return path


@pytest.mark.parametrize("source", ["mp3", "pcm-mono-22k", "mmaction2__tests_data_test.avi"])
def test_avi_audio_is_all_kept_in_mp4(tmp_path, source):
    """MP4 does not take the AVI's MP3 or PCM packets as they are: the audio is
    re-encoded to AAC, and every sample comes through (issue 26: 22% of an MP3 track
    was lost in 31 gaps)."""
    if source == "mp3":
        src = _avi_with_audio(tmp_path / "in.avi")
    elif source == "pcm-mono-22k":
        src = _avi_with_audio(tmp_path / "in.avi", "pcm_s16le", 22050, 1)
    else:
        src = SHARED / source
        if not src.exists():
            pytest.skip(f"{src} not present (../shared/videos is optional)")
    result = recognizer().predict(str(src))
    out = tmp_path / "out.mp4"
    stats = annotate_video(result, out)
    assert stats.audio == "aac" and not stats.notes
    n_in, rate_in = _audio_samples(src)
    n_out, rate_out = _audio_samples(out)
    assert rate_out == rate_in
    # AAC pads the last frame to 1024 samples: nothing lost, at most one frame added.
    assert n_in <= n_out <= n_in + 1024, (n_in, n_out)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert float(a.duration * a.time_base) == pytest.approx(n_in / rate_in, abs=0.05)
