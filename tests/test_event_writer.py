"""One event writer (issue 22 item 3): every har.events/1 event is built by
writers.EventWriter and handed to a sink (a JSON Lines file or stdout, a service job,
the replay of an ended job); --jsonl files are har.writers.JsonlFile for predict and
live alike, whole after Ctrl-C or SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from har.results import ClipResult, Prediction, VideoResult
from har.writers import EventWriter, JsonlFile


def _clip(i: int) -> ClipResult:
    return ClipResult(index=i, start_frame=16 * i, end_frame=16 * i + 16, start_s=i * 0.5,
                      end_s=i * 0.5 + 0.5, top=[Prediction("abseiling", 0.75)])


def test_line_sink_writes_one_flushed_json_line_per_event():
    out = io.StringIO()
    w = EventWriter(out)
    t0 = time.time()
    w.start("r3d10-k400", {"stride": 16}, inputs=1)
    w.clip("a.mp4", _clip(0), latency_s=0.1)
    w.video(VideoResult(path="a.mp4", clips=[_clip(0)], top=[Prediction("abseiling", 0.75)]))
    w.summary([VideoResult(path="a.mp4"), VideoResult(path="b.mp4", error="b.mp4: broken")])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in lines] == ["start", "clip", "video", "summary"]
    assert lines[0]["schema"] == "har.events/1" and lines[0]["settings"] == {"stride": 16}
    assert lines[1]["path"] == "a.mp4" and lines[1]["latency_s"] == 0.1
    assert lines[2]["status"] == "done" and lines[2]["clips"] == 1
    assert lines[3]["done"] == 1 and lines[3]["failed"] == 1
    assert all(t0 <= e["wall_time"] <= time.time() for e in lines)


def test_events_before_start_are_held_with_their_times():
    events: list[dict] = []
    w = EventWriter(sink=events.append, hold=True)
    w.emit("state", state="opening")
    w.emit("gap", seconds=1.0, wall_time=123.0)
    assert events == []  # nothing before the start
    w.start("m", {"stride": 16})
    w.emit("state", state="streaming")
    assert [e["type"] for e in events] == ["start", "state", "gap", "state"]
    assert events[2]["wall_time"] == 123.0
    assert events[1]["wall_time"] <= events[0]["wall_time"]  # when it happened


def test_failed_and_cancelled_videos_and_explicit_unknown_time():
    events: list[dict] = []
    w = EventWriter(sink=events.append)
    w.video(VideoResult(path="x.mp4", error="x.mp4: the job was cancelled"), status="cancelled")
    w.video(VideoResult(path="y.mp4", error="y.mp4: broken"))
    w.clip_fields("z.mp4", _clip(1).to_dict(), wall_time=None)
    assert events[0]["status"] == "cancelled" and events[1]["status"] == "failed"
    assert events[1]["clips"] == 0 and events[1]["top"] == []
    assert events[2]["wall_time"] is None and events[2]["index"] == 1


def test_jsonl_file_new_existing_and_failed(tmp_path):
    new = tmp_path / "new.jsonl"
    f = JsonlFile(new)
    f.fh.write("a\n")
    f.fh.flush()
    assert new.read_text() == "a\n"  # a new file is written in place, as it goes
    f.close()

    old = tmp_path / "old.jsonl"
    old.write_text("the user's\n")
    f = JsonlFile(old)
    f.fh.write("b\n")
    f.fh.flush()
    assert old.read_text() == "the user's\n"  # kept until the run ends
    f.close(keep=True)
    assert old.read_text() == "b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jsonl", "old.jsonl"]

    f = JsonlFile(old)
    f.fh.write("c\n")
    f.close(keep=False)  # a failed run: the file stays as it was
    assert old.read_text() == "b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jsonl", "old.jsonl"]

    f = JsonlFile(old)
    real_close = f.fh.close

    def full_disk():
        real_close()
        raise OSError(28, "No space left on device")

    f.fh.close = full_disk
    with pytest.raises(OSError):
        f.close(keep=True)
    assert old.read_text() == "b\n"  # the last flush failed: nothing replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jsonl", "old.jsonl"]


def test_cli_live_no_longer_imports_the_predict_command():
    import har.cli.live as live

    src = open(live.__file__, encoding="utf-8").read()
    assert "from .predict" not in src and "_JsonlFile" not in src
    assert "signal.signal(" not in src  # its SIGTERM handling is the shared one


@pytest.fixture(scope="module")
def rec(r10_weights):
    from har.recognizer import Recognizer

    return Recognizer("r3d10-k400", weights=r10_weights, backend="torch", batch_size=2)


def _without_times(events):
    return [{k: v for k, v in e.items() if k != "wall_time"} for e in events]


def test_service_replay_matches_what_was_sent_live(rec, tmp_path):
    """The events of an ended job, replayed from its result, are the ones its stream
    sent while it ran (all but their times): one writer made both."""
    from conftest import make_video
    from har.serve.app import _replay
    from har.serve.store import JobStore
    from har.serve.worker import JobEvents, Worker

    store = JobStore(tmp_path / "data")
    events = JobEvents()
    worker = Worker(store, rec, events)
    good = make_video(tmp_path / "good.mp4", 40, size=(80, 64), fps=20)
    jobs = {"a" * 32: (good.read_bytes(), {"stride": 8, "topk": 2}),
            "b" * 32: (b"not a video at all" * 10, {})}
    try:
        for job_id, (data, opts) in jobs.items():
            store.upload_path(job_id).write_bytes(data)
            store.add(job_id, "file", f"{job_id[0]}.mp4", opts)
        for _ in jobs:
            job = store.claim()
            worker._run_job(job)
            events.end(job.id)
        for job_id in jobs:
            live, ended = events.read(job_id, 0)
            replay = _replay(store, store.get(job_id), rec)
            assert ended and _without_times(replay) == _without_times(live)
            assert replay[0]["wall_time"] is not None and replay[-1]["wall_time"] is not None
        done = events.read("a" * 32, 0)[0]
        assert [e["type"] for e in done][0] == "start" and done[-1]["status"] == "done"
        # 40 frames, stride 8: clips start at 0, 8, 16, 24 (the last reaches the end)
        assert sum(e["type"] == "clip" for e in done) == 4
        failed = events.read("b" * 32, 0)[0]
        assert failed[-1]["status"] == "failed" and failed[-1]["error"]
    finally:
        store.close()


def test_live_jsonl_over_an_existing_file_is_whole_after_sigterm(r10_weights, rec, tmp_path):
    """`har live --jsonl FILE` where FILE exists: the new events go to a temporary file
    beside it; SIGTERM ends the run (exit 130) and the file is replaced by a complete
    stream (start ... summary with interrupted: true); its settings are the block
    `har predict` writes for the same options."""
    from conftest import make_video
    from har.cli import build_parser
    from har.cli.predict import _settings

    video = make_video(tmp_path / "long.mp4", 400, size=(80, 64), fps=20)
    out = tmp_path / "events.jsonl"
    out.write_text("the user's old events\n")
    cmd = [sys.executable, "-m", "har", "live", str(video), "--realtime", "--jsonl",
           str(out), "--model", "r3d10-k400", "--weights", r10_weights, "--backend",
           "torch", "--stride", "8", "--topk", "3", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".har-tmp")]
            if temps and '"type": "clip"' in temps[0].read_text(errors="replace"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        assert out.read_text() == "the user's old events\n"  # not replaced mid-run
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events[0]["type"] == "start" and events[-1]["type"] == "summary"
    assert events[-1]["interrupted"] is True and events[-1]["clips"] >= 1
    clips = [e for e in events if e["type"] == "clip"]
    assert clips and all(len(c["top"]) == 3 for c in clips)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".har-tmp")]
    args = build_parser().parse_args(["predict", str(video), "--stride", "8", "--topk", "3",
                                      "--model", "r3d10-k400", "--backend", "torch"])
    from har.cli.common import run_options

    class AsPredict:  # the recognizer har predict would make from these options
        options = rec.resolve(run_options(args))

        def __getattr__(self, name):
            return getattr(rec, name)

    assert events[0]["settings"] == _settings(args, AsPredict())
    assert os.path.getsize(out) > 0
