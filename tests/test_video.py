"""Decoding: codecs, rotation, stream choice, timestamps, and broken input."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_video, shared_video
from har.errors import DecodeError
from har.video import VideoSource

# file -> (display width, height, frames that decode)
REAL = {
    "mmaction2__demo.mp4": (340, 256, 280),
    "mmaction2__tests_data_test.avi": (320, 240, 164),  # MPEG-4 Part 2, packed B-frames
    "decord__flipping_a_pancake.mkv": (426, 240, 310),
    "torchcodec__h265_video.mp4": (128, 128, 10),
    "torchcodec__av1_video.mkv": (640, 360, 125),
    "torchcodec__testsrc2_vp9.webm": (1280, 720, 30),
    "torchcodec__testsrc2_mpeg4.avi": (1280, 720, 30),
    "decord__unordered.mov": (50, 50, 4),
    "decord__video_90.mov": (320, 568, 3),  # rotated by its display matrix
    "torchcodec__nasa_13013.mp4": (480, 270, 390),  # the better of two video streams
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_videos_decode_completely_and_upright(name):
    w, h, n = REAL[name]
    with VideoSource(shared_video(name)) as video:
        assert (video.info.width, video.info.height) == (w, h)
        frames = list(video.frames())
    assert len(frames) == n == video.stats.frames
    assert frames[0].rgb.shape == (h, w, 3) and frames[0].rgb.dtype == np.uint8
    times = [f.time_s for f in frames]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:]))
    assert [f.index for f in frames] == list(range(n))
    assert video.stats.warnings == []


def test_rotation_matches_ffmpeg_autorotate():
    """The upright frame must equal what FFmpeg's own autorotate shows: the display
    matrix of this file (-90) means a clockwise turn (ffmpeg's transpose=clock)."""
    import av

    path = shared_video("decord__video_90.mov")
    with VideoSource(path) as video:
        ours = next(iter(video.frames())).rgb
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == -90
        graph = av.filter.Graph()
        src = graph.add_buffer(template=c.streams.video[0])
        turn = graph.add("transpose", "clock")
        sink = graph.add("buffersink")
        src.link_to(turn)
        turn.link_to(sink)
        graph.configure()
        graph.push(frame)
        want = graph.pull().to_ndarray(format="rgb24")
    assert ours.shape == want.shape == (568, 320, 3)
    assert np.array_equal(ours, want)


def test_resize_in_decoder_keeps_display_orientation():
    with VideoSource(shared_video("decord__video_90.mov")) as v:
        f = next(iter(v.frames(size=(112, 199))))
    assert f.rgb.shape == (199, 112, 3)


def test_avi_with_b_frames_has_monotonic_times_from_zero():
    with VideoSource(shared_video("mmaction2__tests_data_test.avi")) as v:
        times = [f.time_s for f in v.frames(size=(32, 24))]
    assert times[:4] == pytest.approx([0.0, 0.04, 0.08, 0.12])
    assert times[-1] == pytest.approx(163 / 25)


def test_generated_video_round_trip(video_factory):
    path = video_factory(37, size=(64, 48), fps=25)
    with VideoSource(path) as v:
        assert v.info.fps == 25 and v.info.frames == 37
        frames = list(v.frames())
    assert len(frames) == 37
    assert frames[-1].time_s == pytest.approx(36 / 25)
    assert v.stats.end_s == pytest.approx(37 / 25)


@pytest.mark.parametrize("name,decoded", [("decord__corrupted.mp4", 49),
                                          ("broken/bitflip__mmaction2_demo.mp4", 277),
                                          ("broken/truncated_half__decord_pancake.mkv", 150)])
def test_partly_broken_files_give_what_decodes_and_say_so(name, decoded):
    with VideoSource(shared_video(name)) as v:
        n = sum(1 for _ in v.frames(size=(32, 32)))
    assert n == decoded
    assert v.stats.warnings, "a partial decode must be reported"


@pytest.mark.parametrize("name,reason", [("broken/empty.mp4", "empty"),
                                         ("broken/garbage_random_bytes.mp4", "cannot be read"),
                                         ("broken/truncated_half__mmaction2_demo.mp4",
                                          "cannot be read")])
def test_unreadable_files_raise_one_line_errors(name, reason):
    path = shared_video(name)
    with pytest.raises(DecodeError) as err:
        VideoSource(path)
    msg = str(err.value)
    assert str(path) in msg and reason in msg and "\n" not in msg


def test_fresh_broken_files(tmp_path, video_factory):
    good = video_factory(40, size=(64, 48))
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 3])  # moov at the end: unreadable
    (tmp_path / "rand.mkv").write_bytes(np.random.default_rng(0).bytes(5000))
    for name in ("trunc.mp4", "rand.mkv"):
        with pytest.raises(DecodeError, match=name):
            VideoSource(tmp_path / name)
    with pytest.raises(DecodeError, match="no such file"):
        VideoSource(tmp_path / "missing.mp4")
    with pytest.raises(DecodeError, match="is a directory"):
        VideoSource(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=8000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 8000
            frame.pts = i * 1024
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    with pytest.raises(DecodeError, match="no video stream"):
        VideoSource(path)


def test_unreachable_url_is_a_one_line_error():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v.mp4"
    with pytest.raises(DecodeError, match="could not open URL") as err:
        VideoSource(url, timeout_s=3)
    assert url in str(err.value)


def test_http_url_decodes(tmp_path, video_factory):
    import functools
    import http.server
    import threading

    path = video_factory(20, size=(32, 32))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with VideoSource(f"http://127.0.0.1:{server.server_port}/{path.name}") as v:
            assert sum(1 for _ in v.frames()) == 20
    finally:
        server.shutdown()
