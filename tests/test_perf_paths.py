"""Issue 23's code paths: asynchronous scoring (double buffering) gives the same clips in
the same order as synchronous scoring, a failing request propagates, a stream never
deadlocks at its end, and the profile's arithmetic. Correctness only: speed is
measured in bench/run.py --profile."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from har.recognizer import Recognizer
from har.runtimes.base import Pending, Profile, RuntimeBase

ROOT = Path(__file__).resolve().parent.parent


class Fake(RuntimeBase):
    """logits: one row per clip from the clip's pixels (so order is checkable)."""

    name, device, precision = "fake", "cpu", "fp32"

    def __init__(self, batch_size: int = 3, fail_at: int | None = None) -> None:
        self.batch_size = batch_size
        self.calls = 0
        self.fail_at = fail_at
        self.rng = random.Random(0)

    def infer(self, batch):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("request failed")
        x = np.asarray(batch, dtype=np.float32)
        m = x.reshape(len(x), -1)
        logits = np.zeros((len(x), 400), np.float32)
        logits[:, 0] = m.mean(1)
        logits[:, 1] = m.std(1)
        return logits, m[:, :8].copy()


class AsyncFake(Fake):
    """Answers from threads after random delays: later batches often finish first."""

    def submit(self, batch):
        job = Pending()
        job.submitted_at = time.monotonic()

        def run() -> None:
            time.sleep(self.rng.uniform(0.0, 0.05))
            try:
                job.set(self.infer(batch))
            except Exception as exc:  # noqa: BLE001
                job.fail(exc)

        threading.Thread(target=run, daemon=True).start()
        return job


@pytest.fixture(scope="module")
def rec_factory(r10_weights):
    def make(backend, **kw) -> Recognizer:
        rec = Recognizer("r3d10-k400", weights=r10_weights, backend="torch", **kw)
        rec.backend = backend
        return rec
    return make


def _clips(rec, video):
    return [(c.index, c.start_frame, c.top[0].label, c.probs.tolist(),
             None if c.features is None else c.features.tolist())
            for c in rec.stream(video)]


@pytest.mark.parametrize("n_frames", [16 * 7, 16 * 6 + 5, 10])  # partial last batch, 1 clip
def test_async_gives_the_same_clips_in_the_same_order(video_factory, rec_factory, n_frames):
    video = video_factory(n_frames, size=(64, 48))
    sync = rec_factory(Fake())
    sync.infer_depth = 1
    want = _clips(sync, video)
    for depth in (2, 3):
        rec = rec_factory(AsyncFake())
        rec.infer_depth = depth
        assert _clips(rec, video) == want
    threaded = Fake()
    threaded.overlap = True  # RuntimeBase.submit through its worker thread
    rec = rec_factory(threaded)
    assert _clips(rec, video) == want
    assert [c[0] for c in want] == list(range(len(want)))


@pytest.mark.parametrize("backend", [Fake(fail_at=2), AsyncFake(fail_at=2)])
def test_a_failing_request_propagates_and_the_decoder_ends(video_factory, rec_factory,
                                                           backend):
    video = video_factory(16 * 12, size=(64, 48))
    rec = rec_factory(backend)
    stream = rec.stream(video)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="request failed"):
        list(stream)
    assert time.monotonic() - t0 < 20
    assert not stream.reader_alive


def test_threaded_overlap_failure_propagates():
    be = Fake(fail_at=1)
    be.overlap = True
    job = be.submit(np.zeros((1, 3, 2, 2, 2), np.float32))
    with pytest.raises(RuntimeError):
        job.result(timeout=10)


def test_stream_end_with_batches_in_flight_does_not_deadlock(video_factory, rec_factory):
    video = video_factory(16 * 5 + 3, size=(64, 48))
    rec = rec_factory(AsyncFake(batch_size=2))
    rec.infer_depth = 4  # more batches in flight than the video has
    done = []
    t = threading.Thread(target=lambda: done.append(rec.predict(video)), daemon=True)
    t.start()
    t.join(30)
    assert done and done[0].ok and len(done[0].clips) == 6


def test_plain_callable_backend_still_works(video_factory, rec_factory):
    """A backend that is only a callable (no infer, no submit) is scored at once."""
    video = video_factory(16 * 3, size=(64, 48))
    inner = Fake()

    class Plain:
        name, device, precision, batch_size = "plain", "cpu", "fp32", 2

        def __call__(self, batch):
            return inner.infer(batch)[0]

    rec = rec_factory(Plain())
    assert len(rec.predict(video).clips) == 3


def test_profile_busy_is_the_union_of_intervals():
    p = Profile()
    for s, e in [(0.0, 1.0), (0.5, 2.0), (3.0, 4.0), (3.5, 3.6)]:
        p.busy(s, e)
    assert p.busy_seconds() == pytest.approx(3.0)
    p.add("decode", 0.25)
    p.add("decode", 0.25)
    p.mark("stream", 10.0)
    p.mark("stream", 12.0)
    r = p.report()
    assert r["sums_s"]["decode"] == pytest.approx(0.5) and r["counts"]["decode"] == 2
    assert r["marks_s"]["stream"][1] - r["marks_s"]["stream"][0] == pytest.approx(2.0)
    assert r["process_age_s"] >= 0


def test_har_predict_writes_a_profile_that_adds_up(video_factory, r10_weights, tmp_path):
    video = video_factory(16 * 4, size=(64, 48))
    prof = tmp_path / "profile.json"
    env = {**os.environ, "HAR_PROFILE": str(prof), "PYTHONPATH": str(ROOT / "src")}
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "har", "predict", str(video), "--model",
                    "r3d10-k400", "--weights", r10_weights, "--backend", "torch",
                    "--json", str(tmp_path / "o.json"), "--no-progress"],
                   check=True, env=env, capture_output=True)
    wall = time.monotonic() - t0
    r = json.loads(prof.read_text())
    init = r["marks_s"]["init"][0]
    s0, s1 = r["marks_s"]["stream"]
    assert 0 < init < s0 <= s1 <= r["process_age_s"] <= wall + 0.05
    assert r["sums_s"]["load"] <= s0 - init + 1e-6
    assert r["batches"] == 1 and r["runtime_busy_s"] <= s1 - s0
    assert r["peak_rss_mb"] > 0


openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                              reason="openvino not installed")


@pytest.fixture(scope="module")
def ov_onnx(tmp_path_factory):
    import torch

    from har.models.resnet3d import resnet3d
    from har.runtimes.export import export_onnx
    from reference_hara import randomize_

    path = tmp_path_factory.mktemp("ov") / "r10.onnx"
    export_onnx(randomize_(resnet3d(10), seed=3), path, (8, 32, 32))
    return path


@openvino
@pytest.mark.parametrize("split,shared", [(None, True), (False, True), (True, True),
                                          (False, False)])
def test_openvino_submit_matches_infer_in_order(ov_onnx, split, shared):
    from har.runtimes.openvino_runtime import OpenVINOBackend

    be = OpenVINOBackend(ov_onnx, batch_size=3, precision="fp32")
    be.split, be.shared = split, shared
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((k, 3, 8, 32, 32)).astype(np.float32) * 50
               for k in (3, 3, 1, 2, 3)]
    want = [be.infer(b) for b in batches]
    jobs = [be.submit(b) for b in batches]  # all in flight at once
    for (wl, wf), job in zip(want, jobs):
        gl, gf = job.result(timeout=60)
        np.testing.assert_allclose(gl, wl, rtol=1e-5, atol=1e-4)
        if wf is not None:
            np.testing.assert_allclose(gf, wf, rtol=1e-5, atol=1e-4)


@openvino
def test_openvino_static_batch_pads_and_trims(ov_onnx):
    from har.runtimes.openvino_runtime import OpenVINOBackend

    dyn = OpenVINOBackend(ov_onnx, batch_size=2, precision="fp32")
    st = OpenVINOBackend(ov_onnx, batch_size=2, precision="fp32", static_batch=True)
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 32, 32)).astype(np.float32) * 50
    want = dyn.infer(x)[0]
    np.testing.assert_allclose(st.infer(x)[0], want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(st.submit(x[:1]).result(60)[0], want[:1], rtol=1e-5, atol=1e-4)


@openvino
def test_openvino_failing_request_propagates(ov_onnx):
    from har.runtimes.openvino_runtime import OpenVINOBackend

    be = OpenVINOBackend(ov_onnx, batch_size=2, precision="fp32")
    job = be.submit(np.zeros((1, 3, 5, 32, 32), np.float32))  # wrong clip length
    with pytest.raises(Exception):
        job.result(timeout=60)
    ok = be.submit(np.zeros((1, 3, 8, 32, 32), np.float32)).result(timeout=60)  # still works
    assert ok[0].shape == (1, 400)
    assert be._in_flight == 0  # every batch counted out, the failed one too
