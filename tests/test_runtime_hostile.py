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


# -- item 9: a cache sidecar edited by hand does not override the weights' labels ---------
def test_edited_export_sidecar_is_rebuilt_not_trusted(r10_weights):
    from har.runtimes import load_runtime
    from har.runtimes.metadata import metadata_sidecar, write_sidecar
    from har.weights import cache_dir

    # each runtime's cached export (OpenVINO's IR, ONNX Runtime's ONNX) has a sidecar
    for backend, kind in (("openvino", "xml"), ("onnxruntime", "onnx")):
        good = load_runtime("r3d10-k400", r10_weights, backend=backend)  # exports once
        assert good.labels[0] == "abseiling" and len(good.labels) == 400
        export = next((cache_dir() / "exports").glob(f"*.{kind}"))
        side = metadata_sidecar(export)
        original = json.loads(side.read_text())

        def poisoned(labels, *, recheck=False):
            meta = {k: v for k, v in original.items() if k != "sidecar_sha256"}
            meta["labels"] = json.dumps(labels)
            if recheck:  # a forger who also recomputes the sidecar's own digest
                write_sidecar(export, meta)
            else:
                side.write_text(json.dumps({**meta, "sidecar_sha256":
                                            original["sidecar_sha256"]}))

        cases = [lambda: poisoned(["\x1b[31mPWNED"] + list(good.labels[1:])),
                 lambda: poisoned(list(good.labels[:3])),
                 lambda: poisoned(list(good.labels[:3]), recheck=True),
                 lambda: side.write_text("not json {"),
                 lambda: side.write_bytes(b"\xff\xfe\x00garbage")]
        for i, make in enumerate(cases):
            make()
            rt = load_runtime("r3d10-k400", r10_weights, backend=backend)
            assert rt.labels == good.labels, (backend, i)
            # the sidecar was rebuilt from the export's own metadata
            assert json.loads(side.read_text())["labels"] == original["labels"], (backend, i)


# -- item 12: model files that cannot be loaded, and a cache that cannot be written --------
@pytest.fixture(scope="module")
def exported(r10_weights, tmp_path_factory):
    from har.models.zoo import load_model
    from har.runtimes.export import export_onnx, export_openvino

    folder = tmp_path_factory.mktemp("exp")
    model = load_model("r3d10-k400", weights=r10_weights)
    onnx = export_onnx(model, folder / "m.onnx")
    xml = export_openvino(model, folder / "m.xml")
    return onnx, xml


def _damaged_models(exported, tmp_path):
    import onnx as onnx_lib

    onnx, xml = exported
    out = []
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(onnx.read_bytes()[:1_000_000])
    out.append(trunc)
    for name, xml_bytes, bin_bytes in (
            ("short-bin", xml.read_bytes(), xml.with_suffix(".bin").read_bytes()[:100_000]),
            ("no-bin", xml.read_bytes(), None),
            ("half-xml", xml.read_bytes()[:3000], xml.with_suffix(".bin").read_bytes())):
        (tmp_path / f"{name}.xml").write_bytes(xml_bytes)
        if bin_bytes is not None:
            (tmp_path / f"{name}.bin").write_bytes(bin_bytes)
        out.append(tmp_path / f"{name}.xml")
    # ONNX whose external data points outside its folder
    (tmp_path / "ext").mkdir()
    proto = onnx_lib.load(str(onnx))
    onnx_lib.save(proto, str(tmp_path / "ext" / "x.onnx"), save_as_external_data=True,
                  all_tensors_to_one_file=True, location="x.data")
    proto = onnx_lib.load(str(tmp_path / "ext" / "x.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../../../../../../etc/passwd"
    onnx_lib.save(proto, str(tmp_path / "ext" / "evil.onnx"))
    out.append(tmp_path / "ext" / "evil.onnx")
    return out


def test_damaged_model_files_are_one_line_exit_4(exported, tmp_path, capsys):
    video = _video(tmp_path / "v.mp4", frames=16)
    for model in _damaged_models(exported, tmp_path):
        for backend in ("auto", "openvino", "onnxruntime"):
            if model.suffix == ".xml" and backend == "onnxruntime":
                continue
            rc = main(["predict", str(video), "--weights", str(model), "--model",
                       "r3d10-k400", "--backend", backend, "--no-progress"])
            line = _one_error(capsys)
            assert rc == 4, (model, backend, line)
            assert line.startswith(f"error: {model}: ") and "export it again" in line


def test_labels_edited_in_an_exported_file_are_refused(exported, tmp_path, capsys):
    import onnx as onnx_lib

    onnx, _ = exported
    proto = onnx_lib.load(str(onnx))
    for p in proto.metadata_props:
        if p.key == "labels":
            p.value = json.dumps(["a", "b", "c"])
    onnx_lib.save(proto, str(tmp_path / "short.onnx"))
    proto = onnx_lib.load(str(onnx))
    for p in proto.metadata_props:
        if p.key == "labels":
            p.value = "not json ["
    onnx_lib.save(proto, str(tmp_path / "broken.onnx"))
    video = _video(tmp_path / "v.mp4", frames=16)
    for name in ("short.onnx", "broken.onnx"):
        for backend in ("openvino", "onnxruntime"):
            rc = main(["predict", str(video), "--weights", str(tmp_path / name), "--model",
                       "r3d10-k400", "--backend", backend, "--no-progress"])
            line = _one_error(capsys)
            assert rc == 4 and name in line and "export the model again" in line, line


def test_har_home_that_is_a_file_runs_uncached_with_one_warning(r10_weights, tmp_path,
                                                                monkeypatch, capsys):
    import har.runtimes as runtimes

    home = tmp_path / "home-file"
    home.write_text("the user's file")
    monkeypatch.setenv("HAR_HOME", str(home))
    monkeypatch.setattr(runtimes, "_warned_uncached", False)
    video = _video(tmp_path / "v.mp4", frames=16)
    out = tmp_path / "p.json"
    rc = main(["predict", str(video), "--weights", r10_weights, "--model", "r3d10-k400",
               "--backend", "openvino", "--json", str(out), "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines()
           if not ln.startswith("speed:")]  # predict's closing speed line
    assert rc == 0 and len(err) == 1 and err[0].startswith("warning: the cache ")
    assert "HAR_HOME" in err[0]
    assert json.loads(out.read_text())["videos"][0]["top"][0]["label"]
    assert home.read_text() == "the user's file"
    import tempfile

    assert not [p for p in Path(tempfile.gettempdir()).glob(".har-tmp-export-*")
                if p.stat().st_mtime > out.stat().st_mtime - 120]  # the export was removed
    # weights cannot be downloaded into the cache either: one line (before any connection)
    from har.errors import WeightsError
    from har.weights import download, weights_dir

    with pytest.raises(WeightsError) as info:
        download(["http://127.0.0.1:9/w.pth"], weights_dir() / "w.pth")
    assert "HAR_HOME" in str(info.value) and "--weights FILE" in str(info.value)
    assert home.read_text() == "the user's file"


# -- items 14 and 15: training that diverges; --resume with changed settings ---------------
TRAIN_FAST = ["--model", "r3d10-k400", "--scratch", "--no-progress", "--clips-per-epoch",
              "8", "--batch-size", "4"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from har.train.synthetic import make_motion_dataset

    return make_motion_dataset(tmp_path_factory.mktemp("mini") / "d", 2, frames=16, size=64)


def test_diverging_training_stops_with_one_line_and_saves_no_weights(mini, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", str(mini), "--out", str(out), "--lr", "9.9", "--epochs", "3",
               *TRAIN_FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert err[-1].startswith("error: training diverged at epoch 1")
    assert "lower --lr (this one used 9.9)" in err[-1] and "Traceback" not in "".join(err)
    left = sorted(p.name for p in out.iterdir())
    assert left == [], left  # no model.pth, no checkpoint of bad weights, no temp files


def test_non_finite_batchnorm_statistics_are_seen():
    import torch

    from har.models.zoo import get_entry
    from har.train.trainer import _finite_state

    model = get_entry("r3d10-k400").build()
    assert _finite_state(model)
    model.bn1.running_var[0] = float("inf")
    assert not _finite_state(model)


def test_resume_refuses_changed_settings(mini, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(mini), "--out", str(out), "--epochs", "1", *TRAIN_FAST]) == 0
    capsys.readouterr()
    before = (out / "checkpoint.pth").read_bytes()
    for extra, named in ((["--lr", "0.5"], "--lr 0.5 (the run has 0.01)"),
                         (["--model", "r3d18-k400"], "--model r3d18-k400 (the run has "
                                                     "r3d10-k400)"),
                         (["--seed", "3"], "--seed 3 (the run has 0)"),
                         (["--flip", "on"], "--flip on (the run has auto)")):
        args = [a for a in TRAIN_FAST if a not in ("--model", "r3d10-k400")] + extra
        rc = main(["train", str(mini), "--out", str(out), "--resume", "--epochs", "2", *args])
        line = _one_error(capsys)
        assert rc == 2 and named in line and "--resume" in line, line
    assert (out / "checkpoint.pth").read_bytes() == before
    # the same settings (given again explicitly), a longer run and other workers: accepted
    assert main(["train", str(mini), "--out", str(out), "--resume", "--epochs", "2",
                 "--workers", "1", *TRAIN_FAST]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().err
    # A run whose learning rate is far too high (set in its checkpoint, as if started
    # with --lr 9.9) diverges in epoch 3 or 4: the checkpoint of the last good epoch
    # stays, and no model.pth of bad weights replaces the good one.
    import re

    import torch

    state = torch.load(out / "checkpoint.pth", weights_only=False)
    state["options"]["lr"] = 9.9
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = group["initial_lr"] = 9.9
    torch.save(state, out / "checkpoint.pth")
    good_model = (out / "model.pth").read_bytes()
    rc = main(["train", str(mini), "--out", str(out), "--resume", "--epochs", "4",
               *TRAIN_FAST])
    err = capsys.readouterr().err.strip().splitlines()
    m = re.match(r"error: training diverged at epoch (\d+)", err[-1])
    assert rc == 1 and m and int(m.group(1)) >= 3, err
    n = int(m.group(1))
    assert f"checkpoint.pth keeps epoch {n - 1} (the last good one)" in err[-1]
    kept = torch.load(out / "checkpoint.pth", weights_only=False)
    assert kept["epoch"] == n - 1 and all(
        bool(torch.isfinite(t).all()) for t in kept["model"].values() if t.is_floating_point())
    assert (out / "model.pth").read_bytes() == good_model
    assert not [p for p in out.iterdir() if p.name.startswith((".har-tmp-", ".har-frames-"))]


# -- item 8: labels and file names never reach the terminal raw ----------------------------
def test_labels_and_names_with_escapes_are_printed_escaped(r10_weights, tmp_path, capsys):
    import torch

    ckpt = torch.load(r10_weights, weights_only=True)
    ckpt["labels"] = [f"\x1b[31mred{i}\nFAKE LINE" for i in range(400)]
    weights = tmp_path / "evil.pth"
    torch.save(ckpt, weights)
    video = _video(tmp_path / "v\x1b[2J\x07.mp4", frames=16)
    out = tmp_path / "p.json"
    capsys.readouterr()
    rc = main(["predict", str(video), "--weights", str(weights), "--model", "r3d10-k400",
               "--backend", "torch", "--no-progress", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\x07" not in text
        assert "FAKE LINE" not in "".join(line[:9] for line in text.splitlines())
    assert "\\x1b[31mred" in captured.out and "v\\x1b[2J\\x07.mp4" in captured.out
    doc = json.loads(out.read_text())  # JSON keeps the exact text (it escapes by itself)
    assert doc["videos"][0]["top"][0]["label"].startswith("\x1b[31mred")


# -- item 15: URLs that cannot be URLs fail at once, the other inputs keep their results ---
def test_urls_with_control_characters_fail_at_once(r10_weights, tmp_path, capsys):
    video = _video(tmp_path / "v.mp4", frames=16)
    out = tmp_path / "p.json"
    bad = ["http://127.0.0.1:9/a\nb.mp4", "https://127.0.0.1:9/\x1b[31mx.mp4",
           "rtsp://127.0.0.1:9/a b", "http://127.0.0.1:99999/x.mp4", "http:///x.mp4"]
    rc = main(["predict", *bad, str(video), "--weights", r10_weights, "--model",
               "r3d10-k400", "--backend", "torch", "--no-progress", "--json", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3  # the bad URLs are failed inputs; the video keeps its result
    errors = [e for e in err if e.startswith("error: ")]
    assert len(errors) == len(bad), err
    assert all("internal error" not in e and "\x1b" not in e for e in err)
    assert "a\\nb.mp4: the URL contains control characters" in errors[0]
    assert "contains a space" in errors[2] and "Port out of range" in errors[3]
    assert "names no host" in errors[4]
    doc = json.loads(out.read_text())
    assert [v["error"] is None for v in doc["videos"]].count(True) == 1
    from har.errors import WeightsError
    from har.models.zoo import get_entry
    from har.weights import resolve_weights

    with pytest.raises(WeightsError, match="contains control characters"):
        resolve_weights(get_entry("r3d10-k400"), "http://127.0.0.1:9/w\r\n.pth")


# -- item 13: temporary files a SIGKILL left behind are removed by the next run -----------
def test_temp_files_of_a_killed_har_are_removed_at_start(r10_weights, tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    spool = tmp_path / "systmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    outdir = tmp_path / "out"
    outdir.mkdir()
    src = Path(__file__).resolve().parents[1] / "src"
    # A process that is half-way through writing an output and a URL spool, then killed.
    code = ("import os, signal, tempfile\n"
            f"tempfile.tempdir = {str(spool)!r}\n"
            "from har.fsutil import atomic_path\n"
            "from har.sources import _TempVideo\n"
            f"p = atomic_path({str(outdir / 'clip.annotated.mp4')!r}).__enter__()\n"
            "p.write_bytes(b'half a video')\n"
            "_TempVideo('.mp4')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert proc.returncode == -9
    left = sorted(p.name for p in [*outdir.iterdir(), *spool.iterdir()])
    assert len(left) == 2 and all(n.startswith(".har-tmp-") for n in left), left
    # what is not har's, or belongs to a live process, stays
    (outdir / "notes.txt").write_text("mine")
    (outdir / ".har-tmp-mine").write_text("no owner recorded: kept (younger than a day)")
    from har.fsutil import temp_prefix

    live = outdir / (temp_prefix("x.json") + "abc.json")
    live.write_text("a live run's file")
    other_host = outdir / ".har-tmp-y.json.pid999999-000000.abc.json"
    other_host.write_text("another machine's run: its pid means nothing here")
    video = _video(tmp_path / "v.mp4", frames=16)
    assert main(["predict", str(video), "--weights", r10_weights, "--model", "r3d10-k400",
                 "--backend", "torch", "--no-progress", "--json",
                 str(outdir / "p.json")]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == sorted(
        [".har-tmp-mine", live.name, other_host.name, "notes.txt", "p.json"])
    assert list(spool.iterdir()) == []


def test_eval_default_outputs_do_not_take_a_named_one(tmp_path, r10_weights, capsys):
    _video(tmp_path / "a.mp4", frames=16)
    _video(tmp_path / "b.mp4", frames=16, value=60)
    data = tmp_path / "data.csv"
    data.write_text("path,label\na.mp4,abseiling\nb.mp4,air drumming\n")
    report = tmp_path / "e.json"
    rc = main(["eval", str(data), "--json", str(report), "--confusion-csv",
               str(tmp_path / "e.confusion.png"), "--weights", r10_weights, "--model",
               "r3d10-k400", "--backend", "torch", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(report.read_text())
    assert doc["confusion_csv"].endswith("e.confusion.png")
    assert doc["confusion_png"].endswith("e.confusion-2.png")
    assert (tmp_path / "e.confusion.png").read_text().startswith("true\\predicted")
    assert (tmp_path / "e.confusion-2.png").read_bytes()[:4] == b"\x89PNG"


def test_read_only_har_home_runs_uncached(r10_weights, tmp_path, monkeypatch, capsys):
    import har.runtimes as runtimes

    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc: a folder nobody can write to, not even root")
    monkeypatch.setenv("HAR_HOME", "/proc")
    monkeypatch.setattr(runtimes, "_warned_uncached", False)
    video = _video(tmp_path / "v.mp4", frames=16)
    rc = main(["predict", str(video), "--weights", r10_weights, "--model", "r3d10-k400",
               "--backend", "onnxruntime", "--json", str(tmp_path / "p.json"),
               "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines()
           if not ln.startswith("speed:")]  # predict's closing speed line
    assert rc == 0 and len(err) == 1 and err[0].startswith("warning: the cache /proc ")
    rc = main(["predict", str(video), "--weights", r10_weights, "--model", "r3d10-k400",
               "--backend", "openvino", "--precision", "int8", "--no-progress"])
    line = _one_error(capsys)
    assert rc == 4 and "HAR_HOME" in line and "--precision fp32" in line


def test_eval_report_escapes_class_names(tmp_path, r10_weights, capsys):
    _video(tmp_path / "a.mp4", frames=16)
    _video(tmp_path / "b.mp4", frames=16, value=60)
    data = tmp_path / "data.csv"
    data.write_text('path,label\na.mp4,"\x1b]0;owned\x07walk"\nb.mp4,run\n')
    import torch

    ckpt = torch.load(r10_weights, weights_only=True)
    ckpt["labels"] = ["\x1b]0;owned\x07walk", "run"] + [f"c{i}" for i in range(398)]
    weights = tmp_path / "w.pth"
    torch.save(ckpt, weights)
    report = tmp_path / "e.json"
    main(["eval", str(data), "--json", str(report), "--weights", str(weights), "--model",
          "r3d10-k400", "--backend", "torch", "--no-progress"])
    captured = capsys.readouterr()
    assert "\\x1b]0;owned\\x07walk" in captured.out
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out
    assert "\x1b]0;owned\x07walk" in json.loads(report.read_text())["confusion_labels"]
