"""LiveMany with sources that come and go (har serve's streams), per-source strides,
and LiveSource's frame stride: real files through a real (random-weight) model."""

from __future__ import annotations

import threading
import time

import pytest


@pytest.fixture(scope="module")
def video30(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "v30.mp4", 60, size=(64, 48), fps=30)


def test_frame_stride_keeps_every_kth_frame_numbered_without_holes(video30):
    from har.live import LiveSource

    live = LiveSource(str(video30), max_reconnects=0, frame_stride=3)
    frames = list(live.frames(size=(64, 48)))
    live.close()
    assert len(frames) == 20  # 60 frames at 30 fps, every third
    assert [f.index for f in frames] == list(range(20))  # no hole: not a gap
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(0.1, abs=1e-3)
    assert live.stats.gaps == 0


def test_sources_added_and_removed_while_the_loop_runs(r10_weights, video30):
    from har import Recognizer
    from har.live import LiveMany, LiveSource

    rec = Recognizer("r3d10-k400", weights=r10_weights, backend="torch")
    many = LiveMany(rec, [], keep_open=True)
    got: dict[int, list] = {}

    def loop():
        for j, clip in many:
            got.setdefault(j, []).append(clip)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        time.sleep(0.3)  # no source yet: the loop waits instead of ending
        assert t.is_alive()
        a = many.add(LiveSource(str(video30), max_reconnects=0, realtime=True), stride=8)
        b = many.add(LiveSource(str(video30), max_reconnects=0, realtime=True), stride=16)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(got.get(a, [])) + many.skipped[a] < 6
                                               or len(got.get(b, [])) + many.skipped[b] < 3):
            time.sleep(0.1)
        # 60 frames: stride 8 gives clips at 0, 8, ..., stride 16 at 0, 16, 32, (48)
        starts_a = [c.start_frame for c in got.get(a, [])]
        starts_b = [c.start_frame for c in got.get(b, [])]
        assert starts_a and all(s % 8 == 0 for s in starts_a)
        assert starts_b and all(s % 16 == 0 for s in starts_b)
        assert len(got[a]) + many.skipped[a] >= 6 and len(got[b]) + many.skipped[b] >= 3
        many.remove(a)
        assert many.waiting(a) == 0
        assert t.is_alive() and many.busy_s > 0
    finally:
        many.stop()
        t.join(timeout=10)
    assert not t.is_alive()
