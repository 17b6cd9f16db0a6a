"""Issue 26: what a newcomer tripped over in the first hour (outputs that must stay
machine-readable, true facts in outputs, the order of checks, training defaults)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_video

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _needs(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")


def _har(*args, env=None, **kw):
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "har", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=e, **kw)


# -- 1. NNCF's progress never reaches stdout -----------------------------------------
def test_int8_quantization_draws_nothing_on_stdout(capfd):
    """NNCF's "Statistics collection" bars and its log lines go to stderr, so a
    `--json -` on stdout stays JSON when the int8 model is calibrated."""
    _needs("openvino")
    _needs("nncf")
    import openvino as ov

    from har.runtimes.quantize import quantize_openvino

    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    ov_model = ov.convert_model(net, example_input=x)
    capfd.readouterr()
    rng = np.random.default_rng(0)
    calib = [rng.normal(size=(1, 3, 4, 16, 16)).astype(np.float32) for _ in range(3)]
    q = quantize_openvino(ov_model, calib, (4, 16, 16))
    out, err = capfd.readouterr()
    assert out == ""
    assert "Statistics collection" in err
    assert q is not None


@pytest.mark.slow
def test_first_int8_predict_keeps_json_on_stdout(tmp_path, r10_weights):
    _needs("openvino")
    _needs("nncf")
    video = make_video(tmp_path / "v.mp4", 20, size=(160, 120))
    r = _har("predict", video, "--model", "r3d10-k400", "--weights", r10_weights,
             "--precision", "int8", "--no-progress", "--json", "-",
             env={"HAR_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["settings"]["precision"] == "int8"
    assert "calibrating r3d10-k400 on 64 synthetic clips" in r.stderr
    assert "one-time" in r.stderr


# -- 4. plots and report -------------------------------------------------------------
def _result(labels, duration=1.0, n=4, segments=()):
    from har.results import ClipResult, Prediction, VideoResult

    clips = []
    step = duration / n
    for i in range(n):
        p = np.full(len(labels), 0.1 / max(len(labels) - 1, 1), np.float32)
        p[i % len(labels)] = 0.9
        clips.append(ClipResult(i, i * 4, i * 4 + 4, i * step, (i + 1) * step,
                                [Prediction(labels[i % len(labels)], 0.9)], probs=p))
    return VideoResult("v.mp4", fps=16 / duration, frames=16, duration_s=duration,
                       clips=clips, segments=list(segments),
                       top=[Prediction(labels[0], 0.5)])


def test_time_axis_of_a_one_second_video_has_distinct_ticks(tmp_path):
    pytest.importorskip("matplotlib")
    from har.render import plot_timeline

    fig = plot_timeline(_result(["a", "b"], duration=1.0), ["a", "b"], tmp_path / "p.png")
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    texts = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks())
             if lo - 1e-9 <= x <= hi + 1e-9]
    assert len(texts) >= 3 and len(set(texts)) == len(texts), texts
    assert texts[0] == "0:00.0" and texts[-1] == "0:01.0"


def test_report_ticks_are_distinct_and_the_last_is_not_cut():
    import re

    from har.report import _W, _axis

    for duration in (1.0, 10.0, 7.3):
        svg = _axis(duration, 100, 80)
        ticks = re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="(\w+)">([^<]+)</text>', svg)
        labels = [t[2] for t in ticks]
        assert len(set(labels)) == len(labels) >= 2, labels
        x, anchor, text = ticks[-1]
        # 11 px sans-serif: under 7 px a character; the text ends inside the SVG
        right = float(x) if anchor == "end" else float(x) + 3.5 * len(text)
        assert right <= _W, (duration, ticks[-1])


def test_report_gives_a_label_one_colour_in_every_video():
    import re

    from har.report import render_html
    from har.results import Segment

    a = _result(["walk", "run"], 4.0, segments=[Segment("walk", 0.0, 4.0, 0.9, 0.9, 0, 3)])
    b = _result(["run", "walk"], 4.0, segments=[Segment("run", 0.0, 2.0, 0.9, 0.9, 0, 1),
                                               Segment("walk", 2.0, 4.0, 0.9, 0.9, 2, 3)])
    b.path = "w.mp4"
    page = render_html({"model": "m", "videos": [a.to_dict(), b.to_dict()]})
    sections = page.split('<section class="video"')[1:]
    assert len(sections) == 2

    def fills(sec):
        return dict((lab, col) for col, lab in
                    re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"><title>(\w+) ', sec))
    first, second = fills(sections[0]), fills(sections[1])
    assert first["walk"] == second["walk"]  # alone, the second video would give it colour 2
    assert second["run"] != second["walk"]


def test_timeline_strip_text_is_readable_at_720p():
    from har.render import _Painter
    from har.results import Segment

    labels = ["HAMMER THROW", "HIT"]  # capitals: the text's height is its cap height
    r = _result(labels, 6.4, n=10, segments=[Segment(labels[0], 0.0, 4.0, 0.6, 0.6, 0, 5),
                                            Segment(labels[1], 2.5, 6.4, 0.5, 0.7, 4, 9)])
    painter = _Painter(r, 1280, 720, 3)
    img = painter.draw(np.full((720, 1280, 3), 90, np.uint8), 5.0)
    strip = img[720 - painter.lay.strip_h:, :300].astype(int)
    # the first row's label is black text on its orange bar, from the left edge
    orange = (np.abs(strip - [230, 159, 0]).sum(-1) < 60).sum(1) > 20
    text = (strip.max(-1) < 100).sum(1) > 0
    rows = np.where(orange & text)[0]
    assert len(rows) >= 13, len(rows)  # 9 px before (issue 26: "about 9 px at 720p")


# -- 5, 3, 8. har predict: order of checks, true facts, the speed summary --------------
def _run(capsys, *argv):
    from har.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_input_is_reported_before_any_model_is_loaded(capsys, tmp_path):
    # HAR_HOME is an empty folder (conftest): no weights, and this must not try to
    # fetch them: the typo is the only thing said.
    code, out, err = _run(capsys, "predict", tmp_path / "typo.mp4", "--json",
                          tmp_path / "r.json")
    assert code == 3  # an input failed (README: exit codes)
    assert err.splitlines()[0] == f"error: {tmp_path / 'typo.mp4'}: no such file; check the path"
    assert "download" not in err and "weights" not in err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["videos"][0]["error"].endswith("no such file; check the path")
    assert not (tmp_path / "har_home" / "weights").exists()


def _trained_checkpoint(path: Path, scratch: bool) -> Path:
    """A checkpoint as `har train` writes it: a 2-class ResNet-10 naming its model."""
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    ck = published_checkpoint(randomize_(hara_resnet(10, "A", num_classes=2), seed=3),
                              "resnet-10", prefix="")
    ck.update(labels=["left", "right"],
              har={"model": "r3d10-k400", "version": "0", "scratch": scratch})
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("scratch", [True, False])
def test_outputs_name_the_model_used_and_its_weights(capsys, tmp_path, scratch):
    pytest.importorskip("matplotlib")
    from PIL import Image

    import har
    from har.weights import sha256_file

    weights = _trained_checkpoint(tmp_path / "model.pth", scratch)
    video = make_video(tmp_path / "v.mp4", 40, size=(64, 48))
    # No --model: the default (r3d34-k400) is not what runs; the checkpoint says r3d10.
    code, out, err = _run(capsys, "predict", video, "--weights", weights, "--backend", "torch",
                          "--json", "-", "--plot", tmp_path / "p.png",
                          "--activitynet", tmp_path / "anet.json", "--no-progress")
    assert code == 0, err
    doc = json.loads(out)  # the speed summary went to stderr
    assert doc["model"] == "r3d10-k400"
    assert doc["settings"]["weights_sha256"] == sha256_file(weights)
    assert doc["settings"]["har_version"] == har.__version__
    assert Image.open(tmp_path / "p.png").info["Title"] == "v.mp4 - model r3d10-k400"
    anet = json.loads((tmp_path / "anet.json").read_text())
    assert anet["external_data"]["used"] is (not scratch)
    speed = [line for line in err.splitlines() if line.startswith("speed:")]
    assert len(speed) == 1
    assert "1 video(s), 3 clip(s)" in speed[0] and "clips/s" in speed[0]
    assert "model " in speed[0] and "total " in speed[0]


def test_zoo_weights_claim_kinetics_pretraining(capsys, tmp_path, r10_weights):
    video = make_video(tmp_path / "v.mp4", 20, size=(64, 48))
    code, out, err = _run(capsys, "predict", video, "--model", "r3d10-k400", "--weights",
                          r10_weights, "--backend", "torch", "--activitynet", "-",
                          "--no-progress")
    assert code == 0, err
    anet = json.loads(out)
    assert anet["external_data"] == {"used": True,
                                     "details": "har: r3d10-k400 pretrained on Kinetics-400"}


# -- 3. har eval: a 2-class model has no top-5, and its title is not "-k400" ----------
def test_eval_of_a_two_class_model_reports_no_top5_and_no_k400(capsys, tmp_path,
                                                                r10_weights):
    import har
    from har.train.evaluate import model_title
    from har.train.synthetic import make_motion_dataset

    weights = _trained_checkpoint(tmp_path / "model.pth", scratch=True)
    data = make_motion_dataset(tmp_path / "val", 1, seed=2, frames=16)
    code, out, err = _run(capsys, "eval", data, "--weights", weights, "--backend", "torch",
                          "--json", tmp_path / "e.json", "--no-progress")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["video"]["top5"] is None and report["clip"]["top5"] is None
    assert report["video"]["top1"] is not None
    assert "top-5   n/a" in out and "top-5 100" not in out
    rec = har.Recognizer(weights=str(weights), backend="torch")
    assert model_title(rec) == "r3d10, 2 classes"
    zoo = har.Recognizer("r3d10-k400", weights=r10_weights, backend="torch")
    assert model_title(zoo) == "r3d10-k400"  # the registry's own labels keep the name


# -- 7. the tests never write into the user's cache ------------------------------------
@pytest.fixture(scope="module")
def module_cache():
    """Where har's cache is while a module-scoped fixture runs (r10_weights,
    a training run): before the function-scoped HAR_HOME fixture."""
    from har.weights import cache_dir

    return cache_dir(), os.environ.get("RAY_TMPDIR"), os.environ.get("RAY_USAGE_STATS_CONFIG_PATH")


def test_module_fixtures_do_not_use_the_real_cache(module_cache):
    cache, ray_tmp, ray_config = module_cache
    home = Path.home()
    assert not str(cache.resolve()).startswith(str(home / ".cache"))
    assert ray_tmp and not ray_tmp.startswith(str(home))
    assert ray_config and not ray_config.startswith(str(home / ".ray"))


# -- 6. training that a newcomer can trust ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_motion(tmp_path_factory):
    from har.train.synthetic import make_motion_dataset

    root = tmp_path_factory.mktemp("tiny")
    return (make_motion_dataset(root / "train", 3, seed=1, frames=16),
            make_motion_dataset(root / "val", 2, seed=2, frames=16))


@pytest.mark.slow
def test_model_pth_is_the_best_epoch_and_last_pth_the_last(capsys, tmp_path, tiny_motion):
    import csv

    train, val = tiny_motion
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", train, "--val", val, "--out", out,
                             "--model", "r3d10-k400", "--scratch", "--epochs", "3",
                             "--clips-per-epoch", "8", "--no-progress")
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "history.csv")))
    key = [(float(r["val_video_acc"]), -float(r["val_loss"])) for r in rows]
    best_epoch = 1 + max(range(len(key)), key=lambda i: (key[i], -i))
    best = torch.load(out / "model.pth", weights_only=True)
    last = torch.load(out / "last.pth", weights_only=True)
    assert best["epoch"] == best_epoch and last["epoch"] == 3
    assert best["labels"] == last["labels"] == ["left", "right"]
    if best_epoch != 3:
        assert not torch.equal(best["state_dict"]["fc.weight"], last["state_dict"]["fc.weight"])
    assert f"model.pth (best epoch {best_epoch}:" in stdout and "last.pth (epoch 3:" in stdout


def test_without_val_model_pth_is_the_last_epoch(capsys, tmp_path, tiny_motion):
    out = tmp_path / "run"
    code, stdout, err = _run(capsys, "train", tiny_motion[0], "--out", out, "--model",
                             "r3d10-k400", "--scratch", "--epochs", "1", "--clips-per-epoch",
                             "4", "--no-progress")
    assert code == 0, err
    assert torch.load(out / "model.pth", weights_only=True)["epoch"] == 1
    assert not (out / "last.pth").exists()


def test_a_result_at_chance_is_said(tiny_motion):
    from har.cli.train import _chance_warning
    from har.train.data import load_dataset
    from har.train.trainer import RunResult

    train = load_dataset(tiny_motion[0])
    val = load_dataset(tiny_motion[1], labels=train.labels)  # 2 + 2 videos: chance 50%
    at_chance = RunResult(Path("."), {}, [{"epoch": 1, "train_acc": 0.6, "val_video_acc": 0.5,
                                           "val_loss": 0.7}])
    learned = RunResult(Path("."), {}, [{"epoch": 1, "train_acc": 0.9, "val_video_acc": 0.75,
                                         "val_loss": 0.4}])
    assert "at chance (50.0%" in _chance_warning(at_chance, train, val)
    assert _chance_warning(learned, train, val) is None
    no_val = RunResult(Path("."), {}, [{"epoch": 1, "train_acc": 0.5}])
    assert "at chance" in _chance_warning(no_val, train, None)


@pytest.mark.slow
def test_scratch_defaults_to_resnet18_and_says_so(capsys, tmp_path, tiny_motion):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "train", tiny_motion[0], "--out", out, "--scratch",
                        "--epochs", "1", "--clips-per-epoch", "2", "--no-progress")
    assert code == 0, err
    assert "model r3d18-k400 (random init)" in err
    assert json.loads((out / "metrics.json").read_text())["model"] == "r3d18-k400"


def test_fine_tuning_without_weights_suggests_scratch(capsys, tmp_path, tiny_motion):
    # ResNet-50's weights have no public URL: fine-tuning it cannot start here.
    code, _, err = _run(capsys, "train", tiny_motion[0], "--out", tmp_path / "run",
                        "--model", "r3d50-k400", "--no-progress")
    assert code == 4
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--weights" in lines[0] and "--scratch" in lines[0]


def test_train_test_subfolders_are_not_taken_silently_as_classes(tmp_path):
    from har.train.data import load_dataset
    from har.train.synthetic import make_motion_dataset

    make_motion_dataset(tmp_path / "data" / "train", 1, seed=1, frames=8)
    make_motion_dataset(tmp_path / "data" / "test", 1, seed=2, frames=8)
    ds = load_dataset(tmp_path / "data")
    assert ds.labels == ("test", "train")
    note = " ".join(ds.notes)
    assert "look like a train/test split" in note
    assert f"give {tmp_path / 'data' / 'train'} as DATA and --val {tmp_path / 'data' / 'test'}" \
        in note
    assert not load_dataset(tmp_path / "data" / "train").notes  # real classes: no note


def test_loss_curve_uses_a_log_axis_so_a_spike_hides_nothing(tmp_path):
    import cv2

    from har.plots import curves_png

    losses = [0.7, 0.6, 0.4, 0.2, 0.1, 0.05]
    history = [{"epoch": i + 1, "train_loss": v, "val_loss": 40.0 if i == 1 else v * 1.2}
               for i, v in enumerate(losses)]
    curves_png(tmp_path / "c.png", history)
    img = cv2.imread(str(tmp_path / "c.png")).astype(int)
    panel = img[100:, :600]  # the loss panel, below its legend
    blue = (np.abs(panel - [180, 119, 31]).sum(-1) < 40).any(1)  # train_loss (BGR)
    rows = np.where(blue)[0]
    # On a linear axis up to 40 the train loss (0.7 -> 0.05) spans about 5% of the
    # plot: ~15 px. On the log axis it spans more than a quarter of it.
    assert rows.max() - rows.min() > 80, rows.max() - rows.min()


@pytest.mark.parametrize("command", [["models"], ["cache"], ["weights"], ["export"]])
def test_help_has_examples(capsys, command):
    from har.cli import main

    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert sum(line.strip().startswith(("har ", "HAR_HOME=")) for line in examples) >= 3


def test_first_run_with_new_weights_says_it_converts_once(capsys, tmp_path, r10_weights):
    _needs("openvino")
    video = make_video(tmp_path / "v.mp4", 20, size=(64, 48))
    argv = ["predict", video, "--model", "r3d10-k400", "--weights", r10_weights,
            "--backend", "openvino", "--precision", "fp32", "--no-progress", "--clips", "0"]
    code, _, first = _run(capsys, *argv)
    assert code == 0, first
    notes = [line for line in first.splitlines() if "one-time" in line]
    assert len(notes) == 1 and "converting r3d10-k400" in notes[0]
    code, _, again = _run(capsys, *argv)
    assert code == 0 and "one-time" not in again  # the export is cached now


@pytest.mark.slow
def test_first_run_of_the_published_onnx_says_it_is_a_one_time_cost(tmp_path, r34_checkpoint,
                                                                     capfd):
    _needs("openvino")
    _needs("onnx")
    from reference_onnx_models import export_legacy_opencv, opencv_style

    from har.runtimes import load_runtime

    _, ref = r34_checkpoint
    x = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(3)) * 50
    path = export_legacy_opencv(opencv_style(ref), x, tmp_path / "resnet-34_kinetics.onnx")
    capfd.readouterr()
    load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    out, err = capfd.readouterr()
    assert out == ""
    notes = [line for line in err.splitlines() if "one-time cost" in line]
    assert len(notes) == 1 and "resnet-34_kinetics.onnx" in notes[0]
    load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    assert "one-time" not in capfd.readouterr().err


def test_the_early_input_check_leaves_a_named_pipe_to_the_decoder(capsys, tmp_path,
                                                                  r10_weights):
    import threading

    data = make_video(tmp_path / "v.ts", 20, size=(64, 48)).read_bytes()
    fifo = tmp_path / "pipe.ts"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as fh:
            try:
                fh.write(data)
            except BrokenPipeError:
                pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    code, out, err = _run(capsys, "predict", fifo, "--model", "r3d10-k400", "--weights",
                          r10_weights, "--backend", "torch", "--json", "-", "--no-progress")
    t.join(timeout=10)
    assert code == 0, err
    assert json.loads(out)["videos"][0]["frames"] == 20
