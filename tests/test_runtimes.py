"""Runtimes give logits and features; exported files describe themselves and run
directly through `har predict --weights`; the cache keeps one artifact per weights."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import har_main, make_video


def _needs(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")


def _har(*args):
    """`har ARGS` in this process (conftest.har_main): returncode, stdout, stderr."""
    return har_main(*args)


def _har_process(*args):
    """`python -m har ARGS`: for int8 calibration, whose NNCF changes process-wide state
    (its logging, and its patches when it sees torch) that later tests must not see."""
    return subprocess.run([sys.executable, "-m", "har", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def clips():
    return torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(5)) * 50


@pytest.mark.parametrize("backend,module", [("torch", "torch"), ("openvino", "openvino"),
                                            ("onnxruntime", "onnxruntime"), ("opencv", "cv2")])
def test_every_runtime_gives_logits_and_features(r34_checkpoint, clips, backend, module):
    _needs(module)
    from har.runtimes import load_runtime

    path, ref = r34_checkpoint
    rt = load_runtime("r3d34-k400", path, backend=backend, precision="fp32")
    assert rt.labels[0] == "abseiling" and rt.model_name == "r3d34-k400"
    assert rt.weights_sha256 and len(rt.weights_sha256) == 64
    logits, feats = rt.infer(clips.numpy())
    with torch.no_grad():
        want = ref(clips).numpy()
    assert logits.shape == (2, 400) and feats.shape == (2, 512)
    assert logits.dtype == np.float32 and feats.dtype == np.float32
    assert np.abs(logits - want).max() / np.abs(want).max() < 1e-4
    assert np.allclose(rt(clips.numpy()), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_exported_files_run_directly_and_match_torch(tmp_path, r34_checkpoint):
    _needs("openvino")
    _needs("onnxruntime")
    from har.recognizer import Recognizer
    from har.runtimes import exported_info

    path, _ = r34_checkpoint
    video = make_video(tmp_path / "v.mp4", 40, size=(160, 120))
    onnx_file, xml_file = tmp_path / "m.onnx", tmp_path / "m.xml"
    for fmt, out in (("onnx", onnx_file), ("openvino", xml_file)):
        r = _har("export", fmt, "-o", out, "--weights", path)
        assert r.returncode == 0, r.stderr
    for f in (onnx_file, xml_file):
        info = exported_info(f)
        assert info.model == "r3d34-k400" and len(info.labels) == 400
        assert info.weights_sha256 and info.preset.crop == 112

    ref = Recognizer(weights=path, backend="torch", precision="fp32").predict(video)
    ref_probs = np.stack([c.probs for c in ref.clips])
    for f, backend in ((onnx_file, "onnxruntime"), (onnx_file, "openvino"),
                       (xml_file, "openvino")):
        rec = Recognizer(weights=f, backend=backend, precision="fp32")
        assert type(rec.backend).__module__.endswith(backend + "_runtime")
        res = rec.predict(video)
        probs = np.stack([c.probs for c in res.clips])
        assert np.abs(probs - ref_probs).max() < 1e-4
        feats = np.stack([c.features for c in res.clips])
        assert feats.shape == (len(res.clips), 512)
    # and through the command line
    for f in (onnx_file, xml_file):
        out = tmp_path / f"{f.suffix[1:]}.json"
        r = _har("predict", video, "--weights", f, "--json", out, "--precision", "fp32")
        assert r.returncode == 0, r.stderr
        doc = json.loads(out.read_text())
        vid = doc["videos"][0] if "videos" in doc else doc
        top = vid["top"][0]
        assert top["label"] == ref.top[0].label
        assert abs(top["score"] - ref.top[0].score) < 1e-4


def test_fine_tuned_labels_reach_the_recognizer(tmp_path):
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    from har.recognizer import Recognizer

    ref = randomize_(hara_resnet(18, "A", num_classes=2), seed=1)
    ck = published_checkpoint(ref, "resnet-18") | {"labels": ["yes", "no"]}
    torch.save(ck, tmp_path / "model.pth")
    rec = Recognizer("r3d18-k400", weights=tmp_path / "model.pth", backend="torch")
    assert rec.labels == ("yes", "no")
    res = rec.predict(make_video(tmp_path / "v.mp4", 20, size=(128, 112)))
    assert res.top[0].label in ("yes", "no")


def test_same_weights_twice_add_no_bytes_and_cache_clean(r34_checkpoint):
    _needs("onnxruntime")
    from har.cache import cache_entries
    from har.runtimes import load_runtime

    path, _ = r34_checkpoint
    load_runtime("r3d34-k400", path, backend="onnxruntime")
    size1 = sum(e.size for e in cache_entries())
    assert any(e.kind == "exports" for e in cache_entries())
    load_runtime("r3d34-k400", path, backend="onnxruntime")
    assert sum(e.size for e in cache_entries()) == size1
    r = _har("cache")
    assert r.returncode == 0 and "exports" in r.stdout and "total" in r.stdout
    r = _har("cache", "clean")
    assert r.returncode == 0 and "removed" in r.stdout
    assert cache_entries() == []
    assert path.exists()  # the user's file is never touched


@pytest.mark.slow
def test_int8_openvino_export_with_calibration_runs_and_agrees(tmp_path):
    _needs("openvino")
    _needs("nncf")
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    from har.runtimes import exported_info, load_runtime

    ref = randomize_(hara_resnet(10, "A"), seed=10)
    ck = tmp_path / "resnet-10-kinetics.pth"
    torch.save(published_checkpoint(ref, "resnet-10"), ck)
    vids = tmp_path / "calib"
    vids.mkdir()
    make_video(vids / "a.mp4", 40, size=(160, 120))
    out = tmp_path / "q.xml"
    r = _har_process("export", "openvino", "--model", "r3d10-k400", "--weights", ck, "-o",
                     out, "--precision", "int8", "--calibrate", vids)
    assert r.returncode == 0, r.stderr
    assert exported_info(out).model == "r3d10-k400"
    rt = load_runtime("r3d10-k400", out, backend="openvino")
    assert rt.precision == "int8"
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(2)) * 50
    logits, feats = rt.infer(x.numpy())
    with torch.no_grad():
        want = ref(x).numpy()
    assert feats.shape == (2, 512)
    assert np.abs(logits - want).max() / np.abs(want).max() < 0.2
    r = _har("export", "onnx", "--model", "r3d10-k400", "--weights", ck, "-o", tmp_path / "x.onnx",
             "--calibrate", vids)
    assert r.returncode == 2 and "--calibrate goes with --precision int8" in r.stderr


def test_published_onnx_layout_runs_directly_in_openvino(tmp_path, r34_checkpoint):
    _needs("openvino")
    _needs("onnx")
    from reference_onnx_models import export_legacy_opencv, opencv_style

    from har.runtimes import load_runtime

    _, ref = r34_checkpoint
    x = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(3)) * 50
    path = export_legacy_opencv(opencv_style(ref), x, tmp_path / "resnet-34_kinetics.onnx")
    rt = load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    assert type(rt).__name__ == "OpenVINOBackend" and rt.model_name == "r3d34-k400"
    xs = torch.cat([x, x * 0.5])
    logits, feats = rt.infer(xs.numpy())
    seen = {}
    h = ref.avgpool.register_forward_hook(lambda m, i, o: seen.setdefault("f", o))
    with torch.no_grad():
        want = ref(xs).numpy()
    h.remove()
    want_f = seen["f"].flatten(1).numpy()
    assert feats.shape == (2, 512)
    assert np.abs(logits - want).max() / np.abs(want).max() < 1e-4
    assert np.abs(feats - want_f).max() / np.abs(want_f).max() < 1e-4


def test_second_start_runs_the_cached_export_without_pytorch_loading(r34_checkpoint, clips,
                                                                      monkeypatch):
    _needs("onnxruntime")
    import har.models.zoo as zoo
    from har.runtimes import load_runtime

    path, _ = r34_checkpoint
    first = load_runtime("r3d34-k400", path, backend="onnxruntime")
    want = first.infer(clips.numpy())

    def no_torch_load(*a, **k):
        raise AssertionError("the .pth was read again although its export is cached")

    monkeypatch.setattr(zoo, "load_model", no_torch_load)
    second = load_runtime("r3d34-k400", path, backend="onnxruntime")
    got = second.infer(clips.numpy())
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert second.labels == first.labels and second.preset == first.preset
    assert second.weights_sha256 == first.weights_sha256 and second.model_name == "r3d34-k400"
    # Another model name for the same file takes the full path (and its arch check).
    from har.errors import WeightsError

    monkeypatch.undo()
    with pytest.raises(WeightsError, match="arch 'resnet-34'.*pick the matching --model"):
        load_runtime("r3d18-k400", path, backend="onnxruntime")


def test_published_onnx_graph_is_checked_once_per_file(tmp_path, r34_checkpoint, monkeypatch):
    _needs("openvino")
    _needs("onnx")
    from reference_onnx_models import export_legacy_opencv, opencv_style

    import har.models.onnx_import as onnx_import
    from har.runtimes import load_runtime

    _, ref = r34_checkpoint
    x = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(3)) * 50
    path = export_legacy_opencv(opencv_style(ref), x, tmp_path / "resnet-34_kinetics.onnx")
    calls = []
    real = onnx_import.read_onnx_state_dict
    monkeypatch.setattr(onnx_import, "read_onnx_state_dict",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    a = load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    b = load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    assert len(calls) == 1
    assert a.info.feature_dim == b.info.feature_dim == 512
    la, fa = a.infer(x.numpy())
    lb, fb = b.infer(x.numpy())
    assert np.array_equal(la, lb) and np.array_equal(fa, fb)
    # A changed file is a new file: checked again.
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))  # same bytes, new mtime: the digest memo re-hashes
    load_runtime("r3d34-k400", path, backend="openvino", precision="fp32")
    assert len(calls) == 1  # same sha256: still known
