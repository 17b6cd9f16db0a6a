"""Options per call (issue 22 item 2): a typed, frozen RunOptions that one Recognizer's
calls take each for themselves, so runs with different options share one loaded model
and never see each other's; one settings block for every output."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from har.recognizer import Recognizer, RunOptions
from har.timeline import TimelineOptions


@pytest.fixture(scope="module")
def rec(r10_weights):
    return Recognizer("r3d10-k400", weights=r10_weights, backend="torch", batch_size=2)


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    from conftest import make_video

    return make_video(tmp_path_factory.mktemp("v") / "moving.mp4", 72, size=(80, 64), fps=24)


def _clips(result):
    return [(c.index, c.start_frame, c.end_frame, [(p.label, p.score) for p in c.top])
            for c in result.clips]


def _video(result):
    return ([(p.label, p.score) for p in result.top], list(result.evidence),
            [s.to_dict() for s in result.segments], _clips(result))


@pytest.mark.parametrize("bad, message", [
    (dict(stride=0), "stride must be a positive number of frames"),
    (dict(stride=2.5), "stride must be a positive number of frames"),
    (dict(topk=0), "topk must be at least 1"),
    (dict(aggregate="median"), "aggregate must be one of mean, max, topk-mean"),
    (dict(aggregate_k=0), "aggregate_k must be at least 1"),
    (dict(tail="loop"), "tail must be 'pad' or 'drop'"),
    (dict(sampler="random"), "sampler must be 'sliding' or 'uniform'"),
    (dict(num_clips=True), "num_clips must be at least 1"),
    (dict(max_latency_s=-1.0), "max_latency_s must be 0 or more"),
    (dict(max_latency_s=float("nan")), "max_latency_s must be 0 or more"),
    (dict(timeline={"threshold": 0.5}), "timeline must be a har.timeline.TimelineOptions"),
])
def test_bad_options_are_refused_in_one_place(bad, message):
    with pytest.raises(ValueError) as exc:
        RunOptions(**bad)
    assert str(exc.value) == message
    with pytest.raises(ValueError) as exc:  # .replace() checks the same way
        RunOptions().replace(**bad)
    assert str(exc.value) == message


def test_options_are_frozen_and_the_recognizer_defaults_read_only(rec):
    opts = RunOptions(stride=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.stride = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        rec.stride = 4
    # the keyword arguments build the defaults; stride None is the model's clip length
    assert rec.options.stride == rec.preset.clip_len == rec.stride == 16
    assert rec.options.timeline == TimelineOptions() and rec.k == rec.options.topk == 5
    assert rec.resolve(RunOptions(topk=2)).stride == 16
    with pytest.raises(TypeError):
        rec.resolve({"stride": 8})


def test_interleaved_streams_with_different_options_match_each_alone(rec, clip_video):
    """Two streams on one Recognizer, stepped in turn, give what each gives alone."""
    a = RunOptions(stride=8, topk=2, aggregate="max",
                   timeline=TimelineOptions(threshold=0.0, min_duration_s=0.0))
    b = RunOptions(stride=None, topk=4, tail="drop", aggregate="topk-mean", aggregate_k=2)
    alone_a = rec.predict(clip_video, options=a)
    alone_b = rec.predict(clip_video, options=b)
    alone_default = rec.predict(clip_video)
    assert len(alone_a.clips) > len(alone_b.clips) >= 1  # the options made a difference
    assert all(len(c.top) == 2 for c in alone_a.clips)
    assert all(len(c.top) == 4 for c in alone_b.clips) and len(alone_b.top) == 4
    assert alone_b.clips[-1].end_frame <= 72 and alone_b.clips[1].start_frame == 16

    sa = rec.stream(clip_video, keep_clips=True, live=False, options=a)
    sb = rec.stream(clip_video, keep_clips=True, live=False, options=b)
    ia, ib = iter(sa), iter(sb)
    done_a = done_b = False
    while not (done_a and done_b):
        if not done_a:
            done_a = next(ia, None) is None
        if not done_b:
            done_b = next(ib, None) is None
    assert _video(sa.result()) == _video(alone_a)
    assert _video(sb.result()) == _video(alone_b)
    # neither stream changed the recognizer's defaults
    assert _video(rec.predict(clip_video)) == _video(alone_default)
    assert rec.options == RunOptions(stride=16)


def test_run_many_and_predict_many_take_the_call_options(rec, clip_video):
    opts = RunOptions(stride=8, topk=1)
    got = list(rec.predict_many([clip_video, clip_video], workers=2, options=opts))
    alone = rec.predict(clip_video, options=opts)
    assert [_video(r) for r in got] == [_video(alone)] * 2
    clips = [ev for ev in rec.run_many([clip_video], options=opts)
             if not hasattr(ev, "input_index")]
    assert [c.clip.start_frame for c in clips] == [c.start_frame for c in alone.clips]
    with pytest.raises(ValueError):  # checked when the run starts, before any video
        next(iter(rec.run_many([clip_video], options=RunOptions(stride=8).replace(topk=0))))


def test_uniform_sampler_per_call(rec, clip_video):
    got = rec.predict(clip_video, options=RunOptions(sampler="uniform", num_clips=3))
    assert len(got.clips) == 3
    assert len(rec.predict(clip_video).clips) == 5  # the defaults: 72 frames, stride 16, pad


def test_settings_block_is_the_same_for_predict_and_serve(rec):
    """predict's settings (from its command line) and a service job's (from its form
    fields) agree key for key when the options are the same."""
    from har.cli import build_parser
    from har.cli.common import run_options
    from har.cli.predict import _settings
    from har.serve.worker import job_settings
    from har.writers import run_settings

    args = build_parser().parse_args(
        ["predict", "x.mp4", "--stride", "8", "--topk", "2", "--aggregate", "max",
         "--threshold", "0.5", "--model", "r3d10-k400", "--backend", "torch"])
    assert run_options(args) == RunOptions(stride=8, topk=2, aggregate="max",
                                           timeline=TimelineOptions(threshold=0.5))
    predict = _settings(args, _ResolvedAs(rec, run_options(args)))
    serve = job_settings(rec, {"stride": 8, "topk": 2, "aggregate": "max",
                               "threshold": 0.5, "annotate": True})
    assert predict == serve
    assert serve["stride"] == 8 and serve["topk"] == 2 and serve["aggregate"] == "max"
    assert serve["segments"]["threshold"] == 0.5 and serve["clip_len"] == 16
    assert serve["backend"] == "torch" and serve["device"] == "cpu"
    # a job without options gets the server's defaults, and says so
    assert job_settings(rec, {}) == run_settings(rec.options, rec)
    assert job_settings(rec, {})["stride"] == 16
    assert job_settings(rec, {"stride": 0}) is None  # no job can run with that


class _ResolvedAs:
    """The recognizer as har predict would have made it from ``options``."""

    def __init__(self, rec, options):
        self._rec, self.options = rec, rec.resolve(options)

    def __getattr__(self, name):
        return getattr(self._rec, name)


def test_service_job_options_do_not_leak_into_the_next_job(rec, clip_video, tmp_path):
    """The worker runs a job with stride 8 / topk 2 / threshold 0, then one with no
    options: the second gets the defaults, and the shared recognizer never changed."""
    from har.serve.store import JobStore
    from har.serve.worker import JobEvents, Worker

    store = JobStore(tmp_path / "data")
    events = JobEvents()
    worker = Worker(store, rec, events)
    before = rec.options
    seen_options = []
    real_stream = rec.stream

    def spy(*a, **kw):
        seen_options.append(kw.get("options"))
        assert rec.options == before  # never changed while a job runs
        return real_stream(*a, **kw)

    ids = []
    for n, opts in enumerate(({"stride": 8, "topk": 2, "threshold": 0.0}, {})):
        job_id = f"{n:032x}"
        store.upload_path(job_id).parent.mkdir(parents=True, exist_ok=True)
        store.upload_path(job_id).write_bytes(clip_video.read_bytes())
        store.add(job_id, "file", f"v{n}.mp4", opts)
        ids.append(job_id)
    object.__setattr__(rec, "stream", spy)
    try:
        for _ in ids:
            job = store.claim()
            worker._run_job(job)
            events.end(job.id)
    finally:
        del rec.stream
        store.close()
    assert rec.options == before
    assert [o.stride for o in seen_options] == [8, 16]
    assert [o.topk for o in seen_options] == [2, 5]
    assert [o.timeline.threshold for o in seen_options] == [0.0, 0.3]
    first, _ = events.read(ids[0], 0)
    second, _ = events.read(ids[1], 0)
    assert first[0]["type"] == "start" and first[0]["settings"]["stride"] == 8
    assert second[0]["settings"]["stride"] == 16 and second[0]["settings"]["topk"] == 5
    assert all(len(e["top"]) == 2 for e in first if e["type"] == "clip")
    assert all(len(e["top"]) == 5 for e in second if e["type"] == "clip")
    assert second[-1]["type"] == "video" and second[-1]["status"] == "done"
    alone = rec.predict(clip_video)
    assert [e["top"][0]["score"] for e in second if e["type"] == "clip"] == \
        [round(float(c.top[0].score), 6) for c in alone.clips]
    assert np.isclose(second[-1]["top"][0]["score"], alone.top[0].score, atol=1e-6)
