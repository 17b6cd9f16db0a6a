"""Hostile inputs to predict / eval / train and the runtimes and cache (issue 21): an
output that is an input or another output is refused before any work; labels and
file names never reach the terminal raw; a poisoned or damaged cache is rebuilt; a
model that cannot be loaded is one line with exit 4; training that diverges stops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from har.cli import main
from har.train.synthetic import write_video


def _video(path: Path, frames: int = 8, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.full((frames, 32, 32, 3), value, np.uint8))
    return path


@pytest.fixture
def csv_data(tmp_path):
    _video(tmp_path / "a.mp4")
    _video(tmp_path / "b.mp4", value=60)
    data = tmp_path / "data.csv"
    data.write_text("path,label\na.mp4,walk\nb.mp4,run\n")
    return data


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# -- item 1: outputs that are inputs, or another output ------------------------------------
def test_eval_refuses_to_write_over_its_inputs(csv_data, r10_weights, tmp_path, capsys):
    before = csv_data.read_bytes()
    base = ["eval", "--no-progress", "--backend", "torch", "--weights", r10_weights,
            "--model", "r3d10-k400"]
    assert main([*base, str(csv_data), "--json", str(csv_data)]) == 2
    assert "one of the inputs" in _one_error(capsys)
    # a hard link of the dataset CSV is the same file
    link = tmp_path / "link.csv"
    os.link(csv_data, link)
    assert main([*base, str(csv_data), "--confusion-csv", str(link)]) == 2
    assert "one of the inputs" in _one_error(capsys)
    # a video of the dataset, and the weights
    assert main([*base, str(csv_data), "--json", str(tmp_path / "a.mp4")]) == 2
    assert "one of the inputs" in _one_error(capsys)
    assert main([*base, str(csv_data), "--json", r10_weights]) == 2
    assert "one of the inputs" in _one_error(capsys)
    # two outputs naming one file
    assert main([*base, str(csv_data), "--json", str(tmp_path / "r.csv"),
                 "--confusion-csv", str(tmp_path / "r.csv")]) == 2
    assert "both write" in _one_error(capsys)
    assert csv_data.read_bytes() == before
    assert (tmp_path / "a.mp4").stat().st_size > 0 and not (tmp_path / "r.csv").exists()


def test_eval_refuses_to_write_over_the_ground_truth(tmp_path, r10_weights, capsys):
    _video(tmp_path / "v_clip.mp4")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": {"clip": {"subset": "validation", "duration": 0.3,
                                                    "annotations": [{"label": "walk",
                                                                     "segment": [0, 0.2]}]}}}))
    before = gt.read_bytes()
    assert main(["eval", str(tmp_path / "v_clip.mp4"), "--segments", str(gt), "--json",
                 str(gt), "--weights", r10_weights, "--model", "r3d10-k400",
                 "--backend", "torch"]) == 2
    assert "one of the inputs" in _one_error(capsys)
    assert gt.read_bytes() == before


def test_eval_refuses_official_split_files(tmp_path, r10_weights, capsys):
    root = tmp_path / "UCF"
    _video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    _video(root / "Archery" / "v_Archery_g01_c01.avi", value=40)
    splits = root / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    listing = "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n"
    (splits / "testlist01.txt").write_text(listing)
    (splits / "trainlist01.txt").write_text(listing)
    assert main(["eval", str(root), "--layout", "ucf101", "--json",
                 str(splits / "trainlist01.txt"), "--weights", r10_weights,
                 "--model", "r3d10-k400", "--backend", "torch"]) == 2
    assert "one of the inputs" in _one_error(capsys)
    assert (splits / "trainlist01.txt").read_text() == listing


def test_train_out_must_not_be_or_hold_an_input(tmp_path, csv_data, capsys):
    fast = ["--model", "r3d10-k400", "--scratch", "--no-progress"]
    before = csv_data.read_bytes()
    assert main(["train", str(csv_data), "--out", str(csv_data), *fast]) == 2
    _one_error(capsys)
    assert csv_data.read_bytes() == before
    folder = tmp_path / "clips"
    _video(folder / "walk" / "a.mp4")
    _video(folder / "run" / "b.mp4", value=50)
    assert main(["train", str(folder), "--out", str(folder / "run" / "x"), *fast]) == 2
    assert "inside the data folder" in _one_error(capsys)
    assert not (folder / "run" / "x").exists()
    # a run folder whose model.pth is the starting weights (--resume would replace it)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pth").write_bytes(b"weights")
    (run / "checkpoint.pth").write_bytes(b"x")
    assert main(["train", str(csv_data), "--out", str(run), "--resume", "--model",
                 "r3d10-k400", "--weights", str(run / "model.pth"), "--no-progress"]) == 2
    assert "one of the inputs" in _one_error(capsys)
    assert (run / "model.pth").read_bytes() == b"weights"


def test_predict_outputs_that_are_one_file_are_refused(tmp_path, r10_weights, capsys):
    v = _video(tmp_path / "v.mp4")
    out = tmp_path / "o.json"
    out.write_text("mine")
    link = tmp_path / "o-link.csv"
    os.link(out, link)
    base = ["predict", str(v), "--weights", r10_weights, "--model", "r3d10-k400",
            "--backend", "torch", "--no-progress"]
    assert main([*base, "--json", str(out), "--csv", str(link)]) == 2
    assert "both write" in _one_error(capsys)
    sym = tmp_path / "o-sym.csv"
    sym.symlink_to(out)
    assert main([*base, "--json", str(out), "--summary-csv", str(sym)]) == 2
    assert "both write" in _one_error(capsys)
    assert main([*base, "--json", r10_weights]) == 2
    assert "one of the inputs" in _one_error(capsys)
    assert out.read_text() == "mine"
