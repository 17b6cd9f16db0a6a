"""The streaming core: Recognizer.stream, latency-bounded batches, live skipping, run_many,
and `har predict` outputs that are incremental and survive an interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import har_main
from har.cli import ExitCode, main
from har.recognizer import ClipEvent, Recognizer
from har.video import VideoSource


@pytest.fixture(scope="module")
def rec_factory(r10_weights):
    def make(**kw) -> Recognizer:
        kw.setdefault("backend", "torch")
        return Recognizer("r3d10-k400", weights=r10_weights, **kw)
    return make


class SlowSource:
    """A real decoder whose frames arrive at a fixed rate, like a camera."""

    def __init__(self, path, fps: float) -> None:
        self._video = VideoSource(path)
        self.info, self.stats, self.source = self._video.info, self._video.stats, str(path)
        self._dt = 1.0 / fps

    def frames(self, size=None):
        for f in self._video.frames(size=size):
            time.sleep(self._dt)
            yield f

    def close(self) -> None:
        self._video.close()


def test_stream_and_predict_agree_exactly(video_factory, rec_factory):
    video = video_factory(70, size=(96, 64))
    rec = rec_factory(stride=8, batch_size=3)
    stream = rec.stream(str(video), keep_clips=True)
    clips = list(stream)
    streamed = stream.result()
    predicted = rec.predict(str(video))
    assert [c.index for c in clips] == list(range(len(predicted.clips)))
    for a, b in zip(clips, predicted.clips):
        assert (a.start_frame, a.end_frame, a.start_s, a.end_s) == \
            (b.start_frame, b.end_frame, b.start_s, b.end_s)
        np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(streamed.probs, predicted.probs)
    assert streamed.to_dict() == predicted.to_dict()
    # The video score is the mean of the clip probabilities.
    np.testing.assert_allclose(predicted.probs, np.mean([c.probs for c in clips], axis=0),
                               rtol=1e-6)


def test_snapshots_grow_and_end_at_the_result(video_factory, rec_factory):
    video = video_factory(64, size=(64, 64))
    rec = rec_factory(batch_size=1, aggregate="topk-mean", aggregate_k=2)
    light = rec.stream(str(video), keep_clips=False)  # running sums, constant memory
    full = rec.stream(str(video), keep_clips=True)
    seen = []
    for clip in light:
        seen.append(light.snapshot().top[0].label)
    for _ in full:
        pass
    assert len(seen) == 4
    np.testing.assert_allclose(light.result().probs, full.result().probs, rtol=1e-5,
                               atol=1e-7)
    assert light.result().evidence == full.result().evidence
    assert light.result().clips == [] and len(full.result().clips) == 4


def test_first_result_comes_within_max_latency_whatever_the_batch(video_factory, rec_factory):
    video = video_factory(96, size=(64, 64))
    rec = rec_factory(batch_size=64, max_latency_s=0.3)
    stream = rec.stream(SlowSource(video, fps=40))  # 96 frames: 2.4 s of "camera"
    t0 = time.monotonic()
    first = next(stream)
    waited = time.monotonic() - first.ready_at
    assert first.index == 0 and time.monotonic() - t0 < 2.0
    assert waited < 0.3 + 1.0  # the latency bound plus one model call, on a busy machine
    rest = list(stream)
    assert len(rest) == 5


def test_live_skips_clips_instead_of_queueing(video_factory, rec_factory):
    video = video_factory(160, size=(64, 64))
    rec = rec_factory(batch_size=1, stride=4)
    slow_backend = rec.backend

    class Slow:
        name, device, precision, batch_size = "slow", "cpu", "fp32", 1

        def __call__(self, batch):
            time.sleep(0.4)
            return slow_backend(batch)

    rec.backend = Slow()
    stream = rec.stream(SlowSource(video, fps=100), live=True)  # a clip every 40 ms
    clips = list(stream)
    assert stream.skipped > 0
    assert len(clips) + stream.skipped == 37  # every clip was either scored or skipped
    lat = [c for c in clips]
    assert [c.index for c in lat] == sorted(c.index for c in lat)


def test_run_many_with_workers_gives_the_same_results(video_factory, rec_factory, tmp_path):
    videos = [str(video_factory(n, size=(64, 48))) for n in (20, 40, 33)]
    missing = str(tmp_path / "missing.mp4")
    rec = rec_factory()
    one = list(rec.predict_many(videos + [missing], workers=1))
    two = list(rec.predict_many(videos + [missing], workers=2))
    assert [r.path for r in one] == [r.path for r in two] == videos + [missing]
    for a, b in zip(one, two):
        assert a.to_dict() == b.to_dict()
    assert one[-1].error and "no such file" in one[-1].error
    events = list(rec.run_many(videos, workers=2))
    clips = [e for e in events if isinstance(e, ClipEvent)]
    assert len(clips) == sum(len(r.clips) for r in one[:3])


def test_tail_drop_scores_full_clips_only(video_factory, rec_factory):
    video = video_factory(40, size=(64, 48))
    assert [(c.start_frame, c.end_frame) for c in rec_factory().predict(str(video)).clips] == \
        [(0, 16), (16, 32), (32, 40)]
    assert [(c.start_frame, c.end_frame)
            for c in rec_factory(tail="drop").predict(str(video)).clips] == [(0, 16), (16, 32)]


# -- the command line ----------------------------------------------------------------
def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_jsonl_events_and_summary_csv(capsys, video_factory, r10_weights, tmp_path):
    a, b = video_factory(40, size=(64, 48)), video_factory(20, size=(64, 48))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    code, out, err = run(capsys, "predict", str(a), str(b), str(bad), "--model", "r3d10-k400",
                         "--weights", r10_weights, "--backend", "torch", "--jsonl", "-",
                         "--summary-csv", str(tmp_path / "s.csv"))
    assert code == ExitCode.INPUT_FAILED
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "start" and events[0]["schema"] == "har.events/1"
    types = [e["type"] for e in events]
    assert types.count("clip") == 3 + 2 and types.count("video") == 3 and types[-1] == "summary"
    assert all("wall_time" in e for e in events)
    first_clip = next(e for e in events if e["type"] == "clip")
    assert first_clip["path"] == str(a) and first_clip["top"] and "start_s" in first_clip
    video_events = [e for e in events if e["type"] == "video"]
    assert [e["status"] for e in video_events] == ["done", "done", "failed"]
    assert "clips" in video_events[0] and video_events[0]["clips"] == 3
    assert events[-1]["done"] == 2 and events[-1]["failed"] == 1
    import csv

    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[0]["top1_label"] and rows[2]["error"].startswith(str(bad))


def test_features_npz_matches_the_clips(capsys, video_factory, r10_weights, tmp_path):
    video = video_factory(40, size=(64, 48))
    code, _, err = run(capsys, "predict", str(video), "--model", "r3d10-k400", "--weights",
                       r10_weights, "--backend", "torch", "--features",
                       str(tmp_path / "f.npz"), "--json", str(tmp_path / "r.json"))
    assert code == ExitCode.OK, err
    data = np.load(tmp_path / "f.npz")
    doc = json.loads((tmp_path / "r.json").read_text())
    clips = doc["videos"][0]["clips"]
    assert data["features"].shape == (len(clips), 512) and data["features"].dtype == np.float32
    assert list(data["start_s"]) == pytest.approx([c["start_s"] for c in clips], abs=1e-4)
    assert list(data["end_frame"]) == [c["end_frame"] for c in clips]


def test_interrupt_keeps_every_finished_video(video_factory, r10_weights, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(8):
        os.replace(video_factory(64, size=(96, 64)), folder / f"v{i}.mp4")
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.json").write_text('{"old": true}')  # an existing file is replaced whole
    for sig in (signal.SIGINT, signal.SIGTERM):
        jsonl = out / f"e{int(sig)}.jsonl"
        if sig == signal.SIGTERM:
            jsonl.write_text("an older file, replaced only once the new one is whole\n")
        cmd = [sys.executable, "-m", "har", "predict", str(folder), "--model", "r3d10-k400",
               "--weights", r10_weights, "--backend", "torch", "--batch-size", "1",
               "--json", str(out / "r.json"), "--jsonl", str(jsonl),
               "--csv", str(out / "c.csv"), "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            live = [p for p in out.iterdir() if p.name.startswith(".har-tmp-" + jsonl.name)]
            jl = live[0] if live else jsonl
            try:
                text = jl.read_text()
            except OSError:
                text = ""
            done = text.count('"type": "video"')
            if done >= 2:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.INTERRUPTED, err
        assert "Traceback" not in err and "interrupted" in err
        doc = json.loads((out / "r.json").read_text())
        assert doc["interrupted"] is True
        names = [Path(v["path"]).name for v in doc["videos"]]
        assert 2 <= len(names) < 8 and all(v["error"] is None for v in doc["videos"])
        lines = jsonl.read_text().splitlines()
        events = [json.loads(line) for line in lines]  # every line parses
        assert [Path(e["path"]).name for e in events if e["type"] == "video"] == names
        assert events[-1]["type"] == "summary" and events[-1]["interrupted"] is True
        csv_names = {Path(r.split(",")[0]).name
                     for r in (out / "c.csv").read_text().splitlines()[1:]}
        assert csv_names == set(names)
        assert not [p for p in out.iterdir() if p.name.startswith(".har-tmp")]


def test_first_jsonl_line_comes_long_before_the_end(video_factory, r10_weights, tmp_path):
    video = video_factory(400, size=(64, 48))
    cmd = [sys.executable, "-m", "har", "predict", str(video), "--model", "r3d10-k400",
           "--weights", r10_weights, "--backend", "torch", "--batch-size", "1",
           "--jsonl", "-", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    lines = []
    for line in proc.stdout:
        lines.append((time.monotonic() - t0, json.loads(line)))
    proc.wait(timeout=60)
    total = time.monotonic() - t0
    first_clip = next(t for t, e in lines if e["type"] == "clip")
    assert sum(e["type"] == "clip" for _, e in lines) == 25
    assert first_clip < total * 0.6


def test_outputs_never_overwrite_an_input(capsys, video_factory, r10_weights, tmp_path):
    video = video_factory(20, size=(64, 48))
    before = video.read_bytes()
    link = tmp_path / "hardlink.mp4"
    os.link(video, link)
    common = ["--model", "r3d10-k400", "--weights", r10_weights, "--backend", "torch"]
    for opt in ("--json", "--csv", "--segments-csv", "--srt", "--vtt", "--jsonl",
                "--summary-csv", "--annotate"):
        for target in (video, link):
            code, _, err = run(capsys, "predict", str(video), opt, str(target), *common)
            assert code == ExitCode.USAGE, (opt, err)
            assert "one of the inputs" in err and len(err.strip().splitlines()) == 1
    assert video.read_bytes() == before


def test_directory_outputs_never_clobber(capsys, video_factory, r10_weights, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    os.replace(video_factory(20, size=(64, 48)), d / "a.mp4")
    (d / "a.srt").write_text("the user's own subtitles\n")
    code, _, err = run(capsys, "predict", str(d), "--srt", str(d), "--vtt", str(d) + "/",
                       "--model", "r3d10-k400", "--weights", r10_weights, "--backend", "torch")
    assert code == ExitCode.OK, err
    assert (d / "a.srt").read_text() == "the user's own subtitles\n"
    assert (d / "a-2.srt").exists() and (d / "a.vtt").exists() and "a-2.srt" in err


def test_command_line_hygiene(capsys, video_factory, r10_weights, tmp_path):
    video = str(video_factory(20, size=(64, 48)))
    w = ["--model", "r3d10-k400", "--weights", r10_weights]
    cases = [
        (["--json", "-", "--csv", "-"], "all want stdout"),
        (["--jsonl", "-", "--summary-csv", "-"], "all want stdout"),
        (["--backend", "onnxruntime", "--precision", "bf16"], "runs fp32"),
        (["--backend", "torch", "--precision", "fp16"], "runs fp32, bf16"),
        (["--plot", str(tmp_path / "out.mp4")], ".png"),
        (["--annotate", str(tmp_path / "out.txt")], ".mp4"),
        (["--features", str(tmp_path / "f.txt")], ".npz"),
        (["--jsonl-features"], "--jsonl FILE"),
    ]
    # An output that cannot be written is the output class (exit 1), still before any work.
    unwritable = [
        (["--json", str(tmp_path / "nodir" / "r.json")], "does not exist"),
        (["--json", str(tmp_path / ("x" * 300 + ".json"))], "longer than"),
    ]
    for extra, words in cases + unwritable:
        code, _, err = run(capsys, "predict", video, *w, *extra)
        want = ExitCode.OUTPUT if (extra, words) in unwritable else ExitCode.USAGE
        assert code == want, (extra, err)
        assert words in err and len(err.strip().splitlines()) == 1, (extra, err)
    code, _, err = run(capsys, "predict", video, video + "x", *w,
                       "--annotate", str(tmp_path / "out.mp4"))
    assert code == ExitCode.USAGE and "must be a directory" in err
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(SystemExit) as e:
        main(["predict", video, "--strid", "8"])
    assert e.value.code == ExitCode.USAGE
    assert "har predict" in capsys.readouterr().err  # the subcommand's own usage
    for argv in (["--help"], ["predict", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "examples:" in text and "exit codes:" in text


def test_help_is_fast():
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "har", "--help"], capture_output=True, timeout=30,
                   check=True)
    code = ("import sys, har.cli; har.cli.build_parser();"
            "heavy = [m for m in ('torch', 'av', 'cv2', 'numpy') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "[]", out.stdout  # nothing heavy is imported for --help
    assert time.monotonic() - t0 < 20


def test_stdout_on_a_full_disk_and_a_closed_pipe(video_factory, r10_weights, tmp_path):
    video = str(video_factory(40, size=(64, 48)))
    base = [sys.executable, "-m", "har", "predict", video, "--model", "r3d10-k400",
            "--weights", r10_weights, "--backend", "torch", "--no-progress"]
    with open("/dev/full", "w") as full:
        p = subprocess.run(base + ["--json", str(tmp_path / "r.json")], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert "Traceback" not in p.stderr and "stdout: cannot be written" in p.stderr
    assert p.returncode == ExitCode.OUTPUT
    assert json.loads((tmp_path / "r.json").read_text())["videos"][0]["error"] is None
    for opt in ("--csv", "--json", "--jsonl"):
        p = subprocess.run(" ".join(base + [opt, "-"]) + " | head -c 10 >/dev/null; "
                           "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash",
                           stderr=subprocess.PIPE, text=True, timeout=120)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (opt, p.stderr)


def test_did_you_mean_prefers_the_same_depth():
    from har.models.zoo import suggest_model

    assert suggest_model("resnet34") == "r3d34-k400"
    assert suggest_model("resnet-50") == "r3d50-k400"
    assert suggest_model("r3d-34") == "r3d34-k400"
    assert suggest_model("resnext") == "resnext101-k400"
    assert suggest_model("zzzz") is None


def test_a_file_name_that_is_not_utf8_keeps_every_output(video_factory, r10_weights, tmp_path):
    good = video_factory(20, size=(64, 48))
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.mp4")
    os.replace(video_factory(20, size=(64, 48)), odd)
    code, _, err = har_main("predict", good, odd, tmp_path / "missing\udcff.mp4",
                            "--model", "r3d10-k400", "--weights", r10_weights, "--backend",
                            "torch", "--json", tmp_path / "r.json", "--csv",
                            tmp_path / "c.csv", "--jsonl", tmp_path / "e.jsonl",
                            "--summary-csv", tmp_path / "s.csv", "--no-progress")
    assert code == ExitCode.INPUT_FAILED and "Traceback" not in err
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    paths = [v["path"] for v in doc["videos"]]
    assert paths[1].endswith("caf\\xe9.mp4") and doc["videos"][1]["error"] is None
    assert doc["videos"][2]["error"] and "no such file" in doc["videos"][2]["error"]
    assert "caf\\xe9.mp4" in (tmp_path / "c.csv").read_text(encoding="utf-8")
    for line in (tmp_path / "e.jsonl").read_text(encoding="utf-8").splitlines():
        json.loads(line)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped elsewhere), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_keeps_the_previous_file(capsys, video_factory, r10_weights, tmp_path,
                                             small_disk):
    video = video_factory(120, size=(64, 48))
    old = '{"schema": "har.predictions/1", "videos": []}\n'
    (small_disk / "r.json").write_text(old)
    (small_disk / "c.csv").write_text("path\n")
    with open(small_disk / "filler", "wb") as fh:  # leave about 4 KiB free
        try:
            fh.write(b"\0" * (256 * 1024))
        except OSError:
            pass
    os.truncate(small_disk / "filler", os.path.getsize(small_disk / "filler") - 8192)
    code, out, err = run(capsys, "predict", str(video), "--model", "r3d10-k400", "--weights",
                         r10_weights, "--backend", "torch", "--stride", "2", "--topk", "20",
                         "--json", str(small_disk / "r.json"),
                         "--csv", str(small_disk / "c.csv"),
                         "--summary-csv", str(tmp_path / "s.csv"))
    assert code == ExitCode.OUTPUT
    assert "No space left" in err and "--json" in err
    assert (small_disk / "r.json").read_text() == old  # whole, as before
    assert (small_disk / "c.csv").read_text() == "path\n"
    assert "done" in (tmp_path / "s.csv").read_text()  # the other outputs were written
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".har-tmp")]


def _result_for(video, rec_factory):
    return rec_factory().predict(str(video))


def test_annotate_never_destroys_what_was_there(video_factory, rec_factory, tmp_path,
                                                monkeypatch):
    import stat

    from har import render
    from har.errors import HarError

    video = video_factory(48, size=(64, 48))
    result = _result_for(video, rec_factory)
    if os.path.exists("/dev/full"):
        with pytest.raises(HarError):
            render.annotate_video(result, "/dev/full")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # the device is still there
    target = tmp_path / "mine.mp4"
    target.write_bytes(b"the user's own file")
    calls = {"n": 0}
    real_draw = render._Painter.draw

    def interrupted(self, rgb, t):  # Ctrl-C in the middle of the encode
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real_draw(self, rgb, t)

    monkeypatch.setattr(render._Painter, "draw", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render.annotate_video(result, target)
    assert target.read_bytes() == b"the user's own file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".har-tmp")]
    monkeypatch.setattr(render._Painter, "draw", real_draw)
    stats = render.annotate_video(result, target)  # and when it finishes, it replaces it
    assert stats.frames == 48 and target.read_bytes()[4:8] == b"ftyp"
    avi = render.annotate_video(result, tmp_path / "out.avi")
    assert avi.frames == 48 and (tmp_path / "out.avi").read_bytes()[:4] == b"RIFF"


def test_annotate_onto_a_full_disk_leaves_no_file_open(video_factory, rec_factory,
                                                        small_disk):
    """A full disk while the MP4's header is written: one HarError, no temporary file
    left, and none held open (deleted but still taking space) by this process."""
    from har import render
    from har.errors import HarError

    result = _result_for(video_factory(48, size=(64, 48)), rec_factory)
    with open(small_disk / "filler", "wb") as fh:  # fill the file system
        try:
            fh.write(b"\0" * (256 * 1024))
        except OSError:
            pass
    with pytest.raises(HarError, match="out.mp4"):
        render.annotate_video(result, small_disk / "out.mp4")
    assert [p.name for p in small_disk.iterdir()] == ["filler"]
    fds = Path("/proc/self/fd")
    held = []
    for fd in fds.iterdir():
        try:
            held.append(os.readlink(fd))
        except OSError:
            pass
    assert not [h for h in held if h.startswith(str(small_disk))], held


@pytest.mark.slow
def test_peak_memory_end_to_end_is_flat(tmp_path, r10_weights):
    """har predict on 60 s and on 8 min of video: peak memory does not grow with length.

    Before har.memory pinned malloc's thresholds RSS grew ~4x over 30 minutes; with the
    thresholds alone, +13% (the clips' small score arrays pinned the heap between the
    batches' tensors). With the clips' arrays in RowSlabs: 485 MB for 60 s, 488 MB for
    8 min, 500 MB for 30 min (ResNet-10, PyTorch, AMD EPYC)."""
    from conftest import make_video

    def flat(i):
        return np.full((64, 64, 3), (i * 3) % 256, np.uint8)

    peaks = {}
    for name, n in (("short", 1500), ("long", 12000)):
        video = make_video(tmp_path / f"{name}.mp4", n, size=(64, 64), fps=25, frame_fn=flat)
        code = ("import resource, sys; from har.cli import main; main(sys.argv[1:]); "
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", code, "predict", str(video), "--model",
                              "r3d10-k400", "--weights", r10_weights, "--backend", "torch",
                              "--json", str(tmp_path / f"{name}.json"), "--no-progress",
                              "--clips", "0"], capture_output=True, text=True, timeout=900)
        peaks[name] = int(out.stdout.split("PEAK")[-1])
    assert peaks["long"] <= peaks["short"] * 1.05, peaks
