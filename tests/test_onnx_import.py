"""ONNX exports of the authors' model code load into ours with exact logits."""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("onnx")

import har  # noqa: E402
from har.errors import WeightsError  # noqa: E402
from har.models import onnx_import  # noqa: E402
from har.models.resnet3d import resnet3d  # noqa: E402
from reference_hara import hara_resnet, randomize_  # noqa: E402
from reference_onnx_models import (anonymize, constants_and_identities, export,  # noqa: E402
                                   gemm_to_matmul_add, op_types)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "cache"))


def _original(depth, size=32, seed=0):
    shortcut = "A" if depth <= 34 else "B"
    return randomize_(hara_resnet(depth, shortcut, sample_size=size, sample_duration=16),
                      seed=seed)


def _clip(size=32, seed=1):
    return torch.randn(2, 3, 16, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _check(depth, tmp_path, fold_bn, size=32, name=None):
    orig = _original(depth, size)
    x = _clip(size)
    path = anonymize(export(orig, x[:1], tmp_path / f"r{depth}.onnx", fold_bn=fold_bn))
    ops = op_types(path)
    # The export really is of the kind the test claims.
    assert ("BatchNormalization" in ops) is (not fold_bn)
    model = har.load_model(name or f"r3d{depth}-k400", weights=path)
    out = model(x)
    ref = orig(x)
    assert ref.abs().max() > 0.5  # not a degenerate comparison
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    return path, model


@pytest.fixture(scope="module")
def r10(tmp_path_factory):
    """One original ResNet-10 with its two exports (BN kept, BN folded), anonymized."""
    d = tmp_path_factory.mktemp("r10")
    orig, x = _original(10), _clip()
    kept = anonymize(export(orig, x[:1], d / "kept.onnx", fold_bn=False))
    folded = anonymize(export(orig, x[:1], d / "folded.onnx", fold_bn=True))
    return orig, x, kept, folded


def test_r3d34_full_size_bn_kept(tmp_path):
    """The issue's check: 16x112x112, through har.load_model("r3d34-k400")."""
    _check(34, tmp_path, False, size=112)


def test_r3d34_opencv_style_export(tmp_path):
    """As OpenCV's resnet-34_kinetics.onnx was made: the shortcut patched to F.pad,
    opset 9, BN kept, initializers also listed as graph inputs."""
    import onnx

    from reference_onnx_models import export_legacy_opencv, opencv_style

    orig = opencv_style(_original(34))
    x = _clip()
    path = anonymize(export_legacy_opencv(orig, x[:1], tmp_path / "resnet-34_kinetics.onnx"))
    m = onnx.load(str(path))
    assert m.opset_import[0].version == 9 and len(m.graph.input) > 1
    assert "Pad" in op_types(path) and "BatchNormalization" in op_types(path)
    model = har.load_model("r3d34-k400", weights=path)
    with torch.no_grad():
        torch.testing.assert_close(model(x), orig(x), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_r3d34_full_size_bn_folded(tmp_path):
    _check(34, tmp_path, True, size=112)


@pytest.mark.slow
def test_r3d34_bn_folded(tmp_path):
    _check(34, tmp_path, True, size=32)


@pytest.mark.parametrize("fold_bn", [False, True], ids=["bn-kept", "bn-folded"])
def test_r10_matches_original(r10, fold_bn):
    orig, x, kept, folded = r10
    assert ("BatchNormalization" in op_types(kept)) and \
        ("BatchNormalization" not in op_types(folded))
    model = har.load_model("r3d10-k400", weights=folded if fold_bn else kept)
    with torch.no_grad():
        torch.testing.assert_close(model(x), orig(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("fold_bn", [pytest.param(False, marks=pytest.mark.slow), True],
                         ids=["bn-kept", "bn-folded"])
def test_r50_matches_original(tmp_path, fold_bn):
    # ResNet-50's first block has a 1x1 conv3 and a 1x1 shortcut conv of the same
    # shape, and the original runs the shortcut last, ours first: only the dataflow
    # tells them apart.
    _check(50, tmp_path, fold_bn)


def test_initializer_names_are_numbers(r10):
    import onnx

    path = r10[2]
    names = [t.name for t in onnx.load(str(path)).graph.initializer]
    assert names and all(n.isdigit() for n in names)


@pytest.mark.parametrize("fold_bn", [False, True])
def test_constant_and_identity_nodes_and_matmul(r10, tmp_path, fold_bn):
    import shutil

    orig, x = r10[0], r10[1]
    path = shutil.copy(r10[3] if fold_bn else r10[2], tmp_path / "variant.onnx")
    path = constants_and_identities(gemm_to_matmul_add(path))
    ops = op_types(path)
    assert "Constant" in ops and "Identity" in ops and "MatMul" in ops and "Gemm" not in ops
    model = har.load_model("r3d10-k400", weights=path)
    with torch.no_grad():
        torch.testing.assert_close(model(x), orig(x), atol=1e-4, rtol=0)


def test_onnxruntime_agrees(r10):
    ort = pytest.importorskip("onnxruntime")
    path = r10[3]
    model = har.load_model("r3d10-k400", weights=path)
    x = _clip(seed=5)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x[:1].numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), torch.from_numpy(got), atol=1e-4, rtol=0)


def test_wrong_architecture_says_where(r10, tmp_path):
    path = r10[2]
    with pytest.raises(WeightsError) as err:
        har.load_model("r3d18-k400", weights=path)
    msg = str(err.value)
    assert "ONNX node" in msg and "layer" in msg and "--model" in msg
    assert "\n" not in msg
    # A deeper file into a shallower model: the graph has layers left over.
    path18 = anonymize(export(_original(18), _clip()[:1], tmp_path / "r18.onnx", fold_bn=True))
    with pytest.raises(WeightsError, match="ONNX"):
        har.load_model("r3d10-k400", weights=path18)


def test_classifier_size_mismatch(tmp_path):
    orig = randomize_(hara_resnet(10, "A", sample_size=32, num_classes=101))
    path = export(orig, _clip()[:1], tmp_path / "ucf.onnx", fold_bn=False)
    with pytest.raises(WeightsError, match="fc"):
        har.load_model("r3d10-k400", weights=path)


def test_second_load_uses_cache(r10, tmp_path, monkeypatch):
    path = r10[2]
    model = har.load_model("r3d10-k400", weights=path)
    cached = list((tmp_path / "cache" / "converted").glob("*.pt"))
    assert len(cached) == 1

    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(onnx_import, "_convert", boom)
    again = har.load_model("r3d10-k400", weights=path)
    for (k, v), w in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(v, w), k


def test_cache_is_keyed_by_file_content(tmp_path):
    # Overwriting the file at the same path must not serve stale weights.
    x = _clip()
    path = tmp_path / "m.onnx"
    export(_original(10, seed=0), x[:1], path, fold_bn=True)
    har.load_model("r3d10-k400", weights=path)
    orig2 = _original(10, seed=7)
    export(orig2, x[:1], path, fold_bn=True)
    import os
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    model = har.load_model("r3d10-k400", weights=path)
    with torch.no_grad():
        torch.testing.assert_close(model(x), orig2(x), atol=1e-4, rtol=0)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(WeightsError, match="broken.onnx"):
        onnx_import.read_onnx_state_dict(bad, resnet3d(10), use_cache=False)


def test_missing_onnx_package_is_explained(r10, monkeypatch):
    path = r10[3]
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(WeightsError, match="pip install onnx"):
        onnx_import.read_onnx_state_dict(path, resnet3d(10), use_cache=False)


def test_cast_weights_match_onnxruntime(r10, tmp_path):
    """fp16-stored weights behind Cast nodes: the loaded model computes what the file
    computes (checked with onnxruntime, since fp16 rounding changed the weights)."""
    import shutil

    ort = pytest.importorskip("onnxruntime")
    from reference_onnx_models import fp16_conv_weights

    path = fp16_conv_weights(shutil.copy(r10[3], tmp_path / "half.onnx"))
    assert "Cast" in op_types(path)
    model = har.load_model("r3d10-k400", weights=path)
    x = r10[1][:1]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, torch.from_numpy(got), atol=1e-4, rtol=0)
    assert not torch.allclose(out, r10[0](x), atol=1e-6)  # the weights really changed
