"""Every backend against torch fp32 on the same input, export, and the CLI flags."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from har.runtimes import auto_backend, available_backends, export_onnx, make_backend
from har.errors import HarError
from har.models.resnet3d import resnet3d
from reference_hara import randomize_


@pytest.fixture(scope="module")
def r10():
    return randomize_(resnet3d(10), seed=11)


@pytest.fixture(scope="module")
def clips():
    return torch.randn(3, 3, 16, 112, 112, generator=torch.Generator().manual_seed(5)) * 50


def _needs(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")


@pytest.mark.parametrize("depth", [10, 50])
def test_bn_folding_is_exact(depth, clips):
    from har.runtimes import fuse_conv_bn

    model = randomize_(resnet3d(depth), seed=depth)
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())  # not modified
    with torch.no_grad():
        a, b = model(clips[:1]), fused(clips[:1])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-3 * a.abs().max().item())


@pytest.mark.parametrize("backend,precision,module,rel_tol", [
    ("torch", "fp32", "torch", 1e-5),
    ("onnxruntime", "fp32", "onnxruntime", 1e-5),
    ("openvino", "fp32", "openvino", 1e-5),
    ("opencv", "fp32", "cv2", 1e-5),
    ("openvino", "bf16", "openvino", 3e-2),
    ("torch", "bf16", "torch", 3e-2),
])
def test_backend_parity_with_torch_fp32(r10, clips, backend, precision, module, rel_tol):
    _needs(module)
    if backend == "openvino" and precision == "bf16":
        import openvino as ov

        if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            pytest.skip("this CPU has no bf16 instructions for OpenVINO")
    with torch.no_grad():
        ref = r10(clips).numpy()  # the plain model, no fusion, fp32
    be = make_backend(backend, r10, precision=precision)  # any HarError here fails
    out = be(clips if backend == "torch" else clips.numpy())
    assert out.shape == ref.shape == (3, 400) and out.dtype == np.float32
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < rel_tol, rel
    assert (out.argmax(1) == ref.argmax(1)).all()
    if precision == "fp32":  # exact runtimes keep the whole ranking's head
        for i in range(3):
            assert list(np.argsort(-out[i])[:5]) == list(np.argsort(-ref[i])[:5])


def test_onnx_export_has_dynamic_batch_and_matches(tmp_path, r10, clips):
    _needs("onnxruntime")
    import onnxruntime as ort

    path = export_onnx(r10, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name == "clips"
    for n in (1, 3):
        out = sess.run(None, {"clips": clips[:n].numpy()})[0]
        assert out.shape == (n, 400)
    ref = r10(clips).detach().numpy()
    assert np.allclose(out, ref, atol=1e-3, rtol=1e-4)
    assert r10.avgpool.__class__.__name__ == "AdaptiveAvgPool3d"  # restored after export


def test_auto_and_errors():
    assert auto_backend("cuda") == "torch"
    assert "torch" in available_backends("cpu")
    with pytest.raises(HarError, match="unknown backend"):
        make_backend("tensorrt", resnet3d(10))
    with pytest.raises(HarError, match="fp16 on the CPU"):
        make_backend("torch", resnet3d(10), precision="fp16")


def test_recognizer_results_agree_across_backends(video_factory, r10):
    _needs("openvino")
    import har

    video = video_factory(40, size=(96, 72))
    a = har.Recognizer("r3d10-k400", module=r10, backend="torch").predict(video)
    b = har.Recognizer("r3d10-k400", module=r10, backend="openvino", precision="fp32",
                       batch_size=3).predict(video)
    assert a.ok and b.ok and len(a.clips) == len(b.clips) == 3
    assert np.allclose(a.probs, b.probs, atol=1e-4)
    assert [c.top[0].label for c in a.clips] == [c.top[0].label for c in b.clips]


def test_cli_export_and_backend_flag(tmp_path, capsys, video_factory):
    _needs("onnxruntime")
    from har.cli import main
    from reference_hara import hara_resnet, published_checkpoint

    w = tmp_path / "r10.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(10, "A"), seed=1), "resnet-10"), w)
    out = tmp_path / "r10.onnx"
    assert main(["export", "onnx", "--model", "r3d10-k400", "--weights", str(w),
                 "-o", str(out)]) == 0
    assert out.stat().st_size > 1_000_000
    assert "wrote" in capsys.readouterr().out
    video = video_factory(20, size=(64, 64))
    code = main(["predict", str(video), "--model", "r3d10-k400", "--weights", str(w),
                 "--backend", "onnxruntime", "--json", "-"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    import json

    assert json.loads(captured.out)["videos"][0]["clips"]
