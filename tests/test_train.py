"""har train / har eval on generated datasets: what the 3D model learns, what one frame
and mean pooling cannot, resuming, fine-tuning from published-format weights, and the
run folder's files. Models are small (ResNet-10/18) and epochs short so each test takes
seconds to a minute on 2 CPU cores."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from har.cli import main
from har.train.data import DatasetError, load_dataset
from har.train.synthetic import make_motion_dataset, make_order_dataset, write_video

FAST = ["--model", "r3d10-k400", "--scratch", "--no-progress"]


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    return (make_motion_dataset(root / "train", 16, seed=1, frames=32),
            make_motion_dataset(root / "val", 10, seed=2, frames=32))


@pytest.fixture(scope="module")
def motion_run(motion, tmp_path_factory):
    """A ResNet-10 trained from scratch on the motion data (shared by several tests)."""
    train, val = motion
    out = tmp_path_factory.mktemp("runs") / "motion"
    assert main(["train", str(train), "--val", str(val), "--out", str(out),
                 "--epochs", "4", *FAST]) == 0
    return out


# -- datasets ----------------------------------------------------------------------------
def _touch_video(path: Path, frames: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.full((frames, 32, 32, 3), 128, np.uint8))
    return path


def test_folder_layout_sorts_classes_and_finds_nested_videos(tmp_path):
    _touch_video(tmp_path / "walk" / "a.mp4")
    _touch_video(tmp_path / "run" / "sub" / "b.mkv")
    _touch_video(tmp_path / "run" / "c.mp4")
    (tmp_path / "run" / "notes.txt").write_text("not a video")
    (tmp_path / "empty").mkdir()
    ds = load_dataset(tmp_path)
    assert ds.labels == ("run", "walk") and ds.layout == "folder"
    assert sorted((Path(s.path).name, ds.labels[s.label]) for s in ds.samples) == \
        [("a.mp4", "walk"), ("b.mkv", "run"), ("c.mp4", "run")]
    assert any("empty" in n for n in ds.notes)


def test_csv_layout_with_header_segments_and_relative_paths(tmp_path):
    _touch_video(tmp_path / "v" / "x.mp4")
    _touch_video(tmp_path / "v" / "y.mp4")
    (tmp_path / "d.csv").write_text("path,label,start_s,end_s\nv/x.mp4,10,0.5,2\n"
                                    "v/y.mp4,2,,\n")
    ds = load_dataset(tmp_path / "d.csv")
    assert ds.labels == ("2", "10")  # numeric names sort by value
    x = next(s for s in ds.samples if s.path.endswith("x.mp4"))
    assert (x.start_s, x.end_s, ds.labels[x.label]) == (0.5, 2.0, "10")
    (tmp_path / "bad.csv").write_text("v/x.mp4,a\nv/missing.mp4,b\n")
    with pytest.raises(DatasetError, match="1 listed video.*missing.mp4.*relative to the CSV"):
        load_dataset(tmp_path / "bad.csv")
    (tmp_path / "times.csv").write_text("v/x.mp4,a,3,1\n")
    with pytest.raises(DatasetError, match="row 1: end_s 1 is not after start_s 3"):
        load_dataset(tmp_path / "times.csv")


def test_ucf101_and_hmdb51_official_splits(tmp_path):
    ucf = tmp_path / "UCF-101"
    for cls in ("ApplyEyeMakeup", "Archery"):
        for g in (1, 8):
            _touch_video(ucf / cls / f"v_{cls}_g{g:02d}_c01.avi")
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n")
    train = load_dataset(ucf, layout="ucf101", split=1)
    test = load_dataset(ucf, layout="ucf101", split=1, subset="test")
    assert train.labels == ("ApplyEyeMakeup", "Archery")
    assert all("_g08_" in s.path for s in train.samples)
    assert [test.labels[s.label] for s in test.samples] == ["ApplyEyeMakeup", "Archery"]
    assert load_dataset(ucf).layout == "ucf101"  # detected from the split files beside it
    with pytest.raises(DatasetError, match="missing split file"):
        load_dataset(ucf, layout="ucf101", split=2)

    hmdb = tmp_path / "hmdb51"
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("wave", "climb"):
        for name in ("a.avi", "b.avi", "c.avi"):
            _touch_video(hmdb / cls / f"{cls}_{name}")
        (splits / f"{cls}_test_split1.txt").write_text(
            f"{cls}_a.avi 1 \n{cls}_b.avi 2 \n{cls}_c.avi 0 \n")
    tr = load_dataset(hmdb, layout="hmdb51")
    te = load_dataset(hmdb, layout="hmdb51", subset="test")
    assert tr.labels == ("climb", "wave")
    assert sorted(Path(s.path).name for s in tr.samples) == ["climb_a.avi", "wave_a.avi"]
    assert sorted(Path(s.path).name for s in te.samples) == ["climb_b.avi", "wave_b.avi"]


def test_bad_datasets_are_one_line_input_errors(tmp_path, capsys):
    _touch_video(tmp_path / "only" / "a.mp4")
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "o"), *FAST]) == 3
    assert "at least 2 classes" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), *FAST]) == 3
    err = capsys.readouterr().err.strip()
    assert "nope: no such file or folder" in err and len(err.splitlines()) == 1
    _touch_video(tmp_path / "val" / "other" / "z.mp4")
    _touch_video(tmp_path / "two" / "b" / "x.mp4")
    _touch_video(tmp_path / "two" / "c" / "y.mp4")
    assert main(["train", str(tmp_path / "two"), "--val", str(tmp_path / "val"),
                 "--out", str(tmp_path / "o3"), *FAST]) == 3
    assert "class 'other' is not one of the training classes" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()


def test_out_folder_is_never_written_over(tmp_path, capsys):
    data = make_motion_dataset(tmp_path / "d", 1, frames=16)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.pth").write_text("the user's own file")
    assert main(["train", str(data), "--out", str(mine), *FAST]) == 2
    assert "holds a training run already" in capsys.readouterr().err
    assert (mine / "model.pth").read_text() == "the user's own file"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    assert main(["train", str(data), "--out", str(tmp_path / "notes"), *FAST]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "new"), "--resume", *FAST]) == 2
    assert "no checkpoint.pth to resume from" in capsys.readouterr().err


# -- the motion proof --------------------------------------------------------------------
def test_scratch_training_learns_motion_and_writes_the_run(motion, motion_run, tmp_path):
    train, val = motion
    out = motion_run
    for name in ("model.pth", "labels.txt", "metrics.json", "history.csv", "curves.png",
                 "checkpoint.pth"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".har-tmp-")]
    assert (out / "labels.txt").read_text() == "left\nright\n"
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    img = cv2.imread(str(out / "curves.png"))
    assert img is not None and img.shape[0] >= 300
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schema"] == "har.train/1" and metrics["labels"] == ["left", "right"]
    assert metrics["flip"].startswith("off")  # class names say left/right
    assert metrics["final"]["val_video_acc"] >= 0.9
    ckpt = torch.load(out / "model.pth", weights_only=True)
    assert ckpt["arch"] == "resnet-10" and ckpt["labels"] == ["left", "right"]
    assert ckpt["har"]["model"] == "r3d10-k400" and ckpt["preset"]["crop"] == 112
    assert ckpt["state_dict"]["fc.weight"].shape == (2, 512)

    # har eval through the real pipeline, on held-out videos
    report = tmp_path / "eval.json"
    assert main(["eval", str(val), "--weights", str(out / "model.pth"), "--json",
                 str(report), "--backend", "torch", "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["videos"] == 20 and r["video"]["top1"] >= 0.9
    assert r["confusion_labels"] == ["left", "right"]
    assert sum(map(sum, r["confusion"])) == 20
    png = cv2.imread(r["confusion_png"])
    assert png is not None and min(png.shape[:2]) >= 400
    rows = list(csv.reader(open(r["confusion_csv"])))
    assert rows[0] == ["true\\predicted", "left", "right"]


def test_fine_tuned_checkpoint_predicts_with_its_own_labels(motion, motion_run, tmp_path,
                                                            capsys):
    # No --model: the checkpoint says it is a ResNet-10 with labels left/right.
    video = next((motion[1] / "right").glob("*.mp4"))
    out = tmp_path / "p.json"
    assert main(["predict", str(video), "--weights", str(motion_run / "model.pth"),
                 "--json", str(out), "--no-progress", "--backend", "torch"]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "r3d10-k400"
    assert {p["label"] for p in doc["videos"][0]["top"]} == {"left", "right"}
    assert doc["videos"][0]["top"][0]["label"] == "right"
    # and export carries them too
    onnx = tmp_path / "m.onnx"
    assert main(["export", "onnx", "-o", str(onnx), "--weights",
                 str(motion_run / "model.pth")]) == 0
    from har.runtimes import exported_info

    assert exported_info(onnx).labels == ("left", "right")


def test_one_frame_repeated_stays_at_chance(motion, tmp_path):
    train, val = motion
    out = tmp_path / "single"
    assert main(["train", str(train), "--val", str(val), "--out", str(out), "--epochs", "3",
                 "--single-frame", *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["options"]["single_frame"] is True
    # Any frame of "left" is distributed as a frame of "right": no better than chance
    # (20 videos: 16 or more right by luck has probability 0.6%).
    assert m["final"]["val_video_acc"] <= 0.75


# -- resuming ----------------------------------------------------------------------------
def test_resume_after_a_kill_continues_from_the_last_epoch(motion, tmp_path):
    train, _ = motion
    out = tmp_path / "run"
    args = [sys.executable, "-m", "har", "train", str(train), "--out", str(out),
            "--epochs", "3", "--clips-per-epoch", "32", *FAST]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    history = out / "history.csv"
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = list(csv.DictReader(open(history)))
    assert len(first) == 1 and not (out / "model.pth").exists()
    assert list(out.glob(".har-frames-*"))  # SIGKILL cannot clean up: the frames stay...
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming after epoch 1 of 3" in done.stderr
    rows = list(csv.DictReader(open(history)))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[0] == first[0]  # epoch 1 was not redone
    assert (out / "model.pth").is_file()
    assert not list(out.glob(".har-frames-*"))  # ...and --resume removed them
    # A finished run is not started over by accident.
    again = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr


# -- fine-tuning from published weights ----------------------------------------------------
def test_fine_tuning_freezes_through_the_chosen_stage(motion, tmp_path):
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    ref = randomize_(hara_resnet(18, "A"), seed=18)
    weights = tmp_path / "resnet-18-kinetics.pth"
    torch.save(published_checkpoint(ref, "resnet-18"), weights)
    out = tmp_path / "ft"
    train, _ = motion
    # A low --lr: these random "published" weights give a fresh head logits so large
    # that the default rate sends the loss from chance to 1e3 in two steps, which
    # har train stops as divergence (what this test checks is the freezing).
    assert main(["train", str(train), "--out", str(out), "--model", "r3d18-k400",
                 "--weights", str(weights), "--freeze-through", "layer3", "--epochs", "1",
                 "--clips-per-epoch", "16", "--lr", "0.0001", "--no-progress"]) == 0
    before = {k.replace("module.", ""): v for k, v in
              torch.load(weights, weights_only=True)["state_dict"].items()}
    after = torch.load(out / "model.pth", weights_only=True)
    state = after["state_dict"]
    assert after["labels"] == ["left", "right"] and state["fc.weight"].shape == (2, 512)
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer3.1.bn2.running_mean"):
        assert torch.equal(state[key], before[key]), key  # frozen, BN statistics too
    assert not torch.equal(state["layer4.1.conv2.weight"], before["layer4.1.conv2.weight"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["frozen"] == ["conv1", "bn1", "layer1", "layer2", "layer3"]
    assert m["flip"].startswith("off")  # left/right classes, even when fine-tuning
    import hashlib

    assert after["har"]["base_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


# -- the order proof -------------------------------------------------------------------------
def test_temporal_head_separates_order_that_mean_pooling_cannot(tmp_path, capsys):
    train = make_order_dataset(tmp_path / "train", 16, seed=3)
    val = make_order_dataset(tmp_path / "val", 16, seed=4)
    out = tmp_path / "temporal"
    assert main(["train", str(train), "--val", str(val), "--out", str(out), "--head",
                 "temporal", *FAST]) == 0
    head = json.loads((out / "metrics.json").read_text())["head"]
    assert head["val_video_acc"] >= 0.9
    assert head["val_video_acc_mean_pooling"] <= 0.75  # 32 videos: chance is 0.5
    ckpt = torch.load(out / "model.pth", weights_only=True)
    assert ckpt["video_head"]["type"] == "temporal" and ckpt["har"]["head"] == "temporal"
    capsys.readouterr()
    report = tmp_path / "e.json"
    assert main(["eval", str(val), "--weights", str(out / "model.pth"), "--json", str(report),
                 "--backend", "torch", "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["video_score"] == "temporal head" and r["video"]["top1"] >= 0.9
    # The clips alone carry no order: clip accuracy stays far below the video's.
    assert r["clip"]["top1"] <= 0.75
    # The head travels into an exported file and runs from it, in another runtime.
    onnx = tmp_path / "t.onnx"
    assert main(["export", "onnx", "-o", str(onnx), "--weights", str(out / "model.pth")]) == 0
    assert main(["eval", str(val), "--weights", str(onnx), "--json", str(report),
                 "--backend", "onnxruntime", "--no-progress"]) == 0
    r2 = json.loads(report.read_text())
    assert r2["video_score"] == "temporal head"
    assert r2["video"]["top1"] == r["video"]["top1"]


# -- ActivityNet --------------------------------------------------------------------------------
def test_activitynet_segments_round_trip_through_eval(motion, motion_run, tmp_path):
    left = sorted((motion[1] / "left").glob("*.mp4"))[0]
    right = sorted((motion[1] / "right").glob("*.mp4"))[0]
    from har.video import VideoSource

    frames = []
    for path in (left, right, left):
        with VideoSource(path) as v:
            frames += [f.rgb for f in v.frames()]
    video = tmp_path / "v_clip1.mp4"
    write_video(video, np.stack(frames))
    pred = tmp_path / "pred.json"
    w = ["--weights", str(motion_run / "model.pth"), "--backend", "torch", "--no-progress",
         "--min-duration", "0", "--smooth", "1"]
    assert main(["predict", str(video), "--activitynet", str(pred), *w]) == 0
    doc = json.loads(pred.read_text())
    assert doc["version"] == "VERSION 1.3" and list(doc["results"]) == ["clip1"]
    segs = doc["results"]["clip1"]
    assert {s["label"] for s in segs} == {"left", "right"}
    # Ground truth equal to the predicted segments scores a perfect mAP; shifted far
    # from them, zero.
    gt = {"database": {"clip1": {"subset": "validation", "duration": 3.84, "annotations": [
        {"segment": s["segment"], "label": s["label"]} for s in segs]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    out = tmp_path / "det.json"
    assert main(["eval", str(video), "--segments", str(tmp_path / "gt.json"), "--json",
                 str(out), *w]) == 0
    assert json.loads(out.read_text())["detection"]["average_map"] == pytest.approx(1.0)
    for a in gt["database"]["clip1"]["annotations"]:
        a["segment"] = [a["segment"][0] + 100, a["segment"][1] + 100]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert main(["eval", str(video), "--segments", str(tmp_path / "gt.json"), "--json",
                 str(out), *w]) == 0
    assert json.loads(out.read_text())["detection"]["average_map"] == 0.0


def test_csv_segments_cut_the_right_frames_for_training_and_eval(motion, motion_run, tmp_path):
    from har.train.data import Sample
    from har.train.frames import decode_sample
    from har.transforms import HARA_KINETICS
    from har.video import VideoSource

    frames = []
    for cls in ("left", "right"):
        with VideoSource(sorted((motion[1] / cls).glob("*.mp4"))[0]) as v:
            frames += [f.rgb for f in v.frames()]
    long = tmp_path / "both.mp4"
    write_video(long, np.stack(frames))  # 32 frames left, then 32 right, 25 fps
    got, fps, t0 = decode_sample(Sample(str(long), 0, 1.28, 2.56), HARA_KINETICS)
    assert len(got) == 32 and fps == 25 and t0 == pytest.approx(1.28)
    (tmp_path / "seg.csv").write_text("path,label,start_s,end_s\nboth.mp4,left,0,1.28\n"
                                      "both.mp4,right,1.28,2.56\n")
    report = tmp_path / "e.json"
    assert main(["eval", str(tmp_path / "seg.csv"), "--weights", str(motion_run / "model.pth"),
                 "--json", str(report), "--backend", "torch", "--no-progress"]) == 0
    r = json.loads(report.read_text())
    assert r["videos"] == 2 and r["clips"] == 4 and r["video"]["top1"] == 1.0
    assert [p["path"] for p in r["predictions"]] == [f"{long}[0-1.28]", f"{long}[1.28-2.56]"]


def test_sigterm_stops_cleanly_and_a_full_disk_is_one_line(motion, tmp_path, monkeypatch,
                                                           capsys):
    train, _ = motion
    out = tmp_path / "run"
    args = [sys.executable, "-m", "har", "train", str(train), "--out", str(out),
            "--epochs", "50", "--clips-per-epoch", "16", *FAST]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "history.csv").is_file():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    assert (out / "checkpoint.pth").is_file() and not list(out.glob(".har-frames-*"))

    import har.train.trainer as trainer

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer.torch, "save", full)
    capsys.readouterr()
    rc = main(["train", str(train), "--out", str(tmp_path / "full"), "--epochs", "1",
               "--clips-per-epoch", "8", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("error: ") and "checkpoint.pth: cannot be written " \
        "(No space left on device)" in err[-1]
    assert not [p for p in (tmp_path / "full").iterdir() if p.name.startswith(".har-tmp-")]


def test_eval_output_on_a_full_disk_is_one_line(motion, motion_run, tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    mine = tmp_path / "cm.csv"
    mine.write_text("the user's previous file")
    rc = main(["eval", str(motion[1]), "--weights", str(motion_run / "model.pth"), "--json",
               "/dev/full", "--confusion-csv", str(mine), "--backend", "torch",
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == ["error: --json /dev/full: cannot be written (No space left "
                               "on device); check the path and the free space"]
    assert mine.read_text().startswith("true\\predicted,left,right")  # written atomically
