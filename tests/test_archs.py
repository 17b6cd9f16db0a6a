"""The paper's other architectures and torchvision's video ResNets: key names and
shapes of the published files, strict loading, and ONNX round trips."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import har
from har.models.densenet3d import DenseNet3D, densenet3d
from har.models.hara_variants import (PreActResNet3D, ResNeXtBottleneck, WideBottleneck,
                                      preact_resnet, resnext101, wide_resnet50)
from har.models.resnet3d import ResNet3D
from har.models.torchvision_video import mc3_18, r2plus1d_18, r3d_18
from har.models.zoo import REGISTRY
from reference_hara import randomize_


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "cache"))


def _shapes(model: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# Key names and shapes as the authors' code (2017-2018) produces them for the
# published Kinetics checkpoints, written down from reading that code.
HARA_EXPECT = {
    "wrn50-k400": (wide_resnet50, {
        "conv1.weight": (64, 3, 7, 7, 7),
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 128, 3, 3, 3),
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
        "layer2.0.downsample.1.running_var": (512,),
        "layer4.2.conv3.weight": (2048, 1024, 1, 1, 1),
        "fc.weight": (400, 2048),
    }, (3, 4, 6, 3)),
    "resnext101-k400": (resnext101, {
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3, 3),  # 32 groups of 4 channels
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer3.22.conv2.weight": (512, 16, 3, 3, 3),  # planes 512: width 512, 16 per group
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1),
        "fc.weight": (400, 2048),
    }, (3, 4, 23, 3)),
    "preact200-k400": (lambda: preact_resnet(200), {
        "conv1.weight": (64, 3, 7, 7, 7),
        "bn1.weight": (64,),
        "layer1.0.bn1.weight": (64,),  # pre-activation: BN on the block input
        "layer1.0.conv1.weight": (64, 64, 1, 1, 1),
        "layer1.0.bn3.running_mean": (64,),
        "layer1.0.conv3.weight": (256, 64, 1, 1, 1),
        "layer1.1.bn1.weight": (256,),
        "layer2.23.conv3.weight": (512, 128, 1, 1, 1),
        "layer3.35.bn1.weight": (1024,),
        "fc.weight": (400, 2048),
    }, (3, 24, 36, 3)),
}


@pytest.mark.parametrize("name", sorted(HARA_EXPECT))
def test_hara_variant_keys(name):
    build, expect, blocks = HARA_EXPECT[name]
    with torch.device("meta"):  # shapes only: skip the 50-160M-parameter init
        shapes = _shapes(build())
        registered = REGISTRY[name].build()
    for k, shape in expect.items():
        assert shapes.get(k) == shape, k
    for i, n in enumerate(blocks, 1):
        assert f"layer{i}.{n - 1}.conv3.weight" in shapes
        assert f"layer{i}.{n}.conv3.weight" not in shapes
    assert not [k for k in shapes if k.startswith("layer0")]
    assert _shapes(registered) == shapes


DENSENET_EXPECT = {
    121: {"features.conv0.weight": (64, 3, 7, 7, 7),
          "features.norm0.weight": (64,),
          "features.denseblock1.denselayer1.norm.1.weight": (64,),
          "features.denseblock1.denselayer1.conv.1.weight": (128, 64, 1, 1, 1),
          "features.denseblock1.denselayer1.norm.2.running_var": (128,),
          "features.denseblock1.denselayer1.conv.2.weight": (32, 128, 3, 3, 3),
          "features.denseblock1.denselayer6.norm.1.weight": (224,),
          "features.transition1.norm.weight": (256,),
          "features.transition1.conv.weight": (128, 256, 1, 1, 1),
          "features.denseblock4.denselayer16.conv.2.weight": (32, 128, 3, 3, 3),
          "features.norm5.weight": (1024,),
          "classifier.weight": (400, 1024)},
    201: {"features.denseblock3.denselayer48.norm.1.weight": (256 + 47 * 32,),
          "features.norm5.weight": (1920,),
          "classifier.weight": (400, 1920)},
}


def _published_densenet_keys(model: DenseNet3D) -> dict[str, torch.Tensor]:
    """Our state dict under the authors' names (norm1 -> norm.1 inside dense layers)."""
    import re

    pat = re.compile(r"(denselayer\d+)\.(norm|conv)(\d)\.")
    return {pat.sub(r"\1.\2.\3.", k): v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("depth", [121, 201])
def test_densenet_published_keys(depth):
    model = densenet3d(depth)
    published = {k: tuple(v.shape) for k, v in _published_densenet_keys(model).items()}
    for k, shape in DENSENET_EXPECT[depth].items():
        assert published.get(k) == shape, k
    # and the renaming is a bijection back to ours
    back = DenseNet3D.adapt_state_dict(_published_densenet_keys(model))
    assert list(back) == list(model.state_dict())


def _published_checkpoint(model: nn.Module, arch: str, keys=None) -> dict:
    sd = keys if keys is not None else model.state_dict()
    return {"arch": arch, "epoch": 200,
            "state_dict": {"module." + k: v.clone() for k, v in sd.items()
                           if not k.endswith("num_batches_tracked")}}


# Full-size checkpoints of these are 0.2-0.6 GB: the fast tests use one block per
# stage of the same classes (same key scheme); the full ones run with -m slow.
_SMALL = {
    "wrn50-k400": lambda num_classes=400: ResNet3D(WideBottleneck, (1, 1, 1, 1), num_classes,
                                                   "B", widen_factor=2),
    "resnext101-k400": lambda num_classes=400: ResNet3D(ResNeXtBottleneck, (1, 1, 1, 1),
                                                        num_classes, "B", widen_factor=2),
    "preact200-k400": lambda num_classes=400: PreActResNet3D((1, 2, 1, 1), num_classes),
    "densenet121-k400": lambda num_classes=400: DenseNet3D((2, 3, 2, 2), num_classes),
}


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["small", "full"])
@pytest.mark.parametrize("name", sorted(_SMALL))
def test_published_checkpoints_load(name, full, tmp_path, monkeypatch):
    entry = REGISTRY[name]
    if not full:
        entry = dataclasses.replace(entry, builder=_SMALL[name])
        monkeypatch.setitem(REGISTRY, name, entry)
    src = randomize_(entry.build())
    keys = _published_densenet_keys(src) if name.startswith("densenet") else None
    path = tmp_path / f"{entry.arch}-kinetics.pth"
    torch.save(_published_checkpoint(src, entry.arch, keys), path)
    model = har.load_model(name, weights=path)
    x = torch.randn(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), src.eval()(x), atol=1e-5, rtol=0)


def test_wrong_arch_string_is_refused(tmp_path, monkeypatch):
    # The arch string is checked before any key: a ResNeXt checkpoint given to the
    # Wide ResNet entry is refused by name (small stand-ins keep this fast).
    small = dataclasses.replace(REGISTRY["wrn50-k400"], builder=_SMALL["wrn50-k400"])
    monkeypatch.setitem(REGISTRY, "wrn50-k400", small)
    path = tmp_path / "x.pth"
    torch.save(_published_checkpoint(_SMALL["resnext101-k400"](), "resnext-101"), path)
    with pytest.raises(har.WeightsError, match="resnext-101.*wideresnet-50"):
        har.load_model("wrn50-k400", weights=path)


# -- torchvision ------------------------------------------------------------------
# Key names and shapes of torchvision's published r3d_18 / mc3_18 / r2plus1d_18
# state dicts, written down from torchvision/models/video/resnet.py.
TV_EXPECT = {
    "tv-r3d18-k400": (r3d_18, 33_371_472, {
        "stem.0.weight": (64, 3, 3, 7, 7),
        "stem.1.running_mean": (64,),
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
        "layer1.0.conv1.1.weight": (64,),
        "layer1.0.conv2.0.weight": (64, 64, 3, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "layer2.0.downsample.1.weight": (128,),
        "layer4.1.conv2.1.num_batches_tracked": (),
        "fc.weight": (400, 512),
        "fc.bias": (400,),
    }),
    "tv-mc3-18-k400": (mc3_18, 11_695_440, {
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
        "layer2.0.conv1.0.weight": (128, 64, 1, 3, 3),
        "layer4.1.conv2.0.weight": (512, 512, 1, 3, 3),
        "fc.weight": (400, 512),
    }),
    "tv-r2plus1d18-k400": (r2plus1d_18, 31_505_325, {
        "stem.0.weight": (45, 3, 1, 7, 7),
        "stem.1.weight": (45,),
        "stem.3.weight": (64, 45, 3, 1, 1),
        "stem.4.weight": (64,),
        "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3),
        "layer1.0.conv1.0.1.weight": (144,),
        "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1),
        "layer1.0.conv1.1.weight": (64,),
        "layer2.0.conv1.0.0.weight": (230, 64, 1, 3, 3),
        "layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3),  # same width as conv1's
        "layer2.1.conv1.0.0.weight": (288, 128, 1, 3, 3),
        "fc.weight": (400, 512),
    }),
}


@pytest.mark.parametrize("name", sorted(TV_EXPECT))
def test_torchvision_keys_and_sizes(name):
    build, n_params, expect = TV_EXPECT[name]
    with torch.device("meta"):
        model = build()
    assert sum(p.numel() for p in model.parameters()) == n_params
    shapes = _shapes(model)
    for k, shape in expect.items():
        assert shapes.get(k) == shape, k
    assert list(shapes)[0] == "stem.0.weight" and list(shapes)[-1] == "fc.bias"


def test_mc3_downsample_keeps_time():
    m = mc3_18()
    assert m.layer2[0].downsample[0].stride == (1, 2, 2)
    assert r3d_18().layer2[0].downsample[0].stride == (2, 2, 2)
    x = torch.zeros(1, 3, 16, 32, 32)
    with torch.no_grad():
        assert m.layer1(m.stem(x)).shape[2] == 16


@pytest.mark.parametrize("name", sorted(TV_EXPECT))
def test_torchvision_state_dict_loads_strictly(name, tmp_path):
    entry = REGISTRY[name]
    src = randomize_(entry.build())
    path = tmp_path / entry.weights[0].filename
    torch.save(src.state_dict(), path)  # torchvision's format: a bare state dict
    model = har.load_model(name, weights=path)
    for (k, v), w in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(v, w), k
    # a bare state dict missing a key is refused, naming it
    sd = src.state_dict()
    sd.pop("layer3.1.conv2.1.running_var")
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(har.WeightsError, match="running_var"):
        har.load_model(name, weights=tmp_path / "broken.pth")


def test_torchvision_preset_and_urls():
    for name in TV_EXPECT:
        e = REGISTRY[name]
        p = e.preset
        assert (p.resize, p.crop, p.clip_len) == ((128, 171), 112, 16)
        assert p.scale == pytest.approx(1 / 255)
        assert p.mean == (0.43216, 0.394666, 0.37645)
        assert p.std == (0.22803, 0.22145, 0.216989)
        wf = e.weights[0]
        assert wf.urls[0] == "https://download.pytorch.org/models/" + wf.filename
        assert wf.sha256 is None and wf.filename.endswith(f"-{wf.sha256_prefix}.pth")
    assert REGISTRY["tv-r3d18-k400"].weights[0].sha256_prefix == "b3b3357e"
    assert REGISTRY["tv-mc3-18-k400"].weights[0].sha256_prefix == "a90a0ba3"
    assert REGISTRY["tv-r2plus1d18-k400"].weights[0].sha256_prefix == "91a641e6"
    # frames -> (N, 3, T, 112, 112) in torchvision's normalisation
    frames = torch.full((1, 16, 128, 171, 3), 255, dtype=torch.uint8)
    x = REGISTRY["tv-r3d18-k400"].preset(frames)
    assert x.shape == (1, 3, 16, 112, 112)
    assert x[0, 0, 0, 0, 0].item() == pytest.approx((1 - 0.43216) / 0.22803, rel=1e-5)


# -- ONNX round trips through the other architectures ------------------------------
_slow = pytest.mark.slow


@pytest.mark.parametrize("name,fold_bn", [
    ("tv-r2plus1d18-k400", False), ("densenet121-k400", True),
    pytest.param("tv-r2plus1d18-k400", True, marks=_slow),
    pytest.param("densenet121-k400", False, marks=_slow),
    pytest.param("preact200-k400", False, marks=_slow),
    pytest.param("preact200-k400", True, marks=_slow),
    pytest.param("resnext101-k400", True, marks=_slow),
])
def test_onnx_round_trip(name, fold_bn, tmp_path):
    pytest.importorskip("onnx")
    from reference_onnx_models import anonymize, export

    entry = REGISTRY[name]
    src = randomize_(entry.build()).eval()
    x = torch.randn(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    path = anonymize(export(src, x, tmp_path / "m.onnx", fold_bn=fold_bn))
    model = har.load_model(name, weights=path)
    with torch.no_grad():
        ref = src(x)
        # 1e-4 relative to the logits' scale: with random weights a 200-layer
        # pre-activation net's residual stream grows to logits in the hundreds, where
        # float32 reassociation alone (onnxruntime included) moves them by ~1e-3.
        tol = 1e-4 * max(1.0, ref.abs().max().item())
        torch.testing.assert_close(model(x), ref, atol=tol, rtol=0)
