"""The `har` command, run in-process as a user would."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SHARED_VIDEOS, shared_video
from har.cli import ExitCode, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_predict_table_and_json_on_a_generated_video(capsys, video_factory, r10_weights, tmp_path):
    video = video_factory(45, size=(96, 64), fps=15)
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "predict", str(video), "--model", "r3d10-k400", "--weights",
                         r10_weights, "--json", str(out_json), "--topk", "3")
    assert code == ExitCode.OK, err
    assert video.name in out and "clip" in out
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "har.predictions/1" and doc["model"] == "r3d10-k400"
    assert doc["settings"]["stride"] == 16 and doc["settings"]["backend"] in (
        "torch", "openvino") and doc["settings"]["precision"] in ("fp32", "bf16")
    v = doc["videos"][0]
    assert v["frames"] == 45 and v["fps"] == 15 and v["error"] is None
    assert v["duration_s"] == pytest.approx(3.0)
    assert len(v["top"]) == 3 and sum(p["score"] for p in v["top"]) <= 1.0001
    assert [(c["start_frame"], c["end_frame"]) for c in v["clips"]] == [(0, 16), (16, 32), (32, 45)]
    assert v["clips"][1]["start_s"] == pytest.approx(16 / 15, abs=1e-3)
    assert v["clips"][2]["end_s"] == pytest.approx(3.0, abs=1e-3)
    # The video score is the mean of the clip probabilities (checked via the API).


def test_json_to_stdout_is_pure_json(capsys, video_factory, r10_weights):
    video = video_factory(20, size=(64, 64))
    code, out, err = run(capsys, "predict", str(video), "--model", "r3d10-k400", "--weights",
                         r10_weights, "--json", "-")
    assert code == 0
    assert json.loads(out)["videos"][0]["frames"] == 20


def test_video_score_is_mean_of_clip_probabilities(video_factory, r10_weights):
    import numpy as np

    import har

    rec = har.Recognizer("r3d10-k400", weights=r10_weights, stride=8)
    res = rec.predict(video_factory(40, size=(64, 48)))
    assert res.ok and len(res.clips) == 4
    mean = np.mean([c.probs for c in res.clips], axis=0)
    assert np.allclose(res.probs, mean)
    assert res.top[0].label == rec.labels[int(mean.argmax())]


def test_bad_inputs_do_not_lose_good_results(capsys, tmp_path, video_factory, r10_weights):
    good = video_factory(20, size=(64, 48))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\x00\x01" * 4000)
    nodir = tmp_path / "novideos"
    nodir.mkdir()
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "predict", str(empty), str(good), str(garbage),
                         str(tmp_path / "missing.mp4"), str(nodir), "--model", "r3d10-k400",
                         "--weights", r10_weights, "--json", str(out_json))
    assert code == ExitCode.INPUT_FAILED
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    for name in ("empty.mp4", "garbage.avi", "missing.mp4", "novideos"):
        assert sum(name in line for line in errors) == 1
    videos = {v["path"]: v for v in json.loads(out_json.read_text())["videos"]}
    assert videos[str(good)]["error"] is None and videos[str(good)]["clips"]
    assert videos[str(empty)]["error"] and videos[str(garbage)]["error"]
    assert good.name in out  # the table still shows the good one


def test_missing_weights_says_where_to_get_them(capsys, video_factory):
    code, out, err = run(capsys, "predict", str(video_factory(5)))
    assert code == ExitCode.MODEL
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "resnet-34_kinetics.onnx" in lines[0] and "--weights" in lines[0]


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "x.mp4", "--stride", "0"])
    assert e.value.code == ExitCode.USAGE
    capsys.readouterr()
    code, out, err = run(capsys, "predict", "x.mp4", "--device", "cuda:0", "--weights", "w")
    if torch.cuda.is_available():  # the device is fine: the missing input is the error
        assert code == ExitCode.INPUT_FAILED and "CUDA" not in err
        assert err.splitlines()[0] == "error: x.mp4: no such file; check the path"
    else:
        assert code == ExitCode.USAGE and "CUDA is not available" in err
        assert len(err.strip().splitlines()) == 1  # before the input is even looked at


def test_models_lists_registry(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and "r3d34-k400" in out and "60.1%" in out
    code, out, err = run(capsys, "models", "--json")
    assert any(m["name"] == "r3d34-k400" for m in json.loads(out))


@pytest.mark.slow
def test_all_shared_videos_and_broken_files_in_one_call(capsys, tmp_path, r10_weights):
    if not SHARED_VIDEOS.exists():
        pytest.skip("../shared/videos not present")
    shared_video("mmaction2__demo.mp4")
    out_json = tmp_path / "all.json"
    code, out, err = run(capsys, "predict", str(SHARED_VIDEOS), "--model", "r3d10-k400",
                         "--weights", r10_weights, "--json", str(out_json), "--batch-size", "4")
    assert code == ExitCode.INPUT_FAILED  # the broken files
    videos = {v["path"].split("/videos/")[-1]: v for v in json.loads(out_json.read_text())["videos"]}
    failed = {k for k, v in videos.items() if v["error"]}
    assert failed == {"broken/empty.mp4", "broken/garbage_random_bytes.mp4",
                      "broken/truncated_half__mmaction2_demo.mp4"}
    for line in err.splitlines():
        assert line.startswith(("error:", "warning:", "har:", "note:", "speed:")), line
    partial = {k for k, v in videos.items() if v["warnings"]}
    assert partial == {"decord__corrupted.mp4", "broken/bitflip__mmaction2_demo.mp4",
                       "broken/truncated_half__decord_pancake.mkv"}
    for name, v in videos.items():
        if v["error"]:
            continue
        clips = v["clips"]
        assert clips[0]["start_frame"] == 0 and clips[-1]["end_frame"] == v["frames"], name
        for a, b in zip(clips, clips[1:]):
            assert b["start_frame"] == a["end_frame"], name  # stride 16 tiles the video
            assert b["start_s"] == pytest.approx(a["end_s"], abs=0.02), name
            assert a["end_frame"] - a["start_frame"] == 16
        assert clips[-1]["end_s"] == pytest.approx(v["duration_s"], abs=0.05), name
    assert videos["torchcodec__nasa_13013.mp4"]["frames"] == 390
    assert (videos["decord__video_90.mov"]["width"], videos["decord__video_90.mov"]["height"]) == (320, 568)
    assert videos["torchcodec__av1_video.mkv"]["frames"] == 125


def test_workers_give_the_same_results_in_input_order(capsys, tmp_path, video_factory,
                                                      r10_weights):
    videos = [video_factory(n, size=(64, 48)) for n in (20, 40, 5)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 100)
    docs = []
    for workers in ("1", "3"):
        code, out, err = run(capsys, "predict", str(videos[0]), str(bad), *map(str, videos[1:]),
                             "--model", "r3d10-k400", "--weights", r10_weights,
                             "--workers", workers, "--json", "-")
        assert code == ExitCode.INPUT_FAILED
        docs.append(json.loads(out)["videos"])
    one, three = docs
    assert [v["path"] for v in one] == [v["path"] for v in three]
    assert [v["path"] for v in one] == [str(videos[0]), str(bad), str(videos[1]), str(videos[2])]
    for a, b in zip(one, three):
        assert a["error"] == b["error"] and a["top"] == b["top"] and a["clips"] == b["clips"]


def test_clips_csv_has_a_row_per_clip_and_rank_and_one_per_failure(capsys, tmp_path,
                                                                    video_factory, r10_weights):
    import csv
    import io

    good = video_factory(20, size=(64, 48))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    code, out, err = run(capsys, "predict", str(good), str(bad), "--model", "r3d10-k400",
                         "--weights", r10_weights, "--topk", "2", "--csv", "-")
    assert code == ExitCode.INPUT_FAILED
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [r for r in rows if r["path"] == str(good)]
    assert [(r["clip"], r["rank"]) for r in ok] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert ok[2]["start_frame"] == "16" and ok[2]["end_frame"] == "20" and ok[0]["error"] == ""
    assert float(ok[0]["score"]) >= float(ok[1]["score"])
    failed = [r for r in rows if r["path"] == str(bad)]
    assert len(failed) == 1 and "empty" in failed[0]["error"] and failed[0]["label"] == ""


def test_unwritable_output_paths_fail_before_the_work(capsys, video_factory, r10_weights,
                                                      tmp_path):
    video = video_factory(5)
    for opt in ("--json", "--csv", "--segments-csv"):
        code, out, err = run(capsys, "predict", str(video), "--model", "r3d10-k400",
                             "--weights", r10_weights, opt, str(tmp_path / "no" / "x.out"))
        assert code != 0 and "does not exist" in err and len(err.strip().splitlines()) == 1
        assert video.name not in out  # refused before any video was processed
