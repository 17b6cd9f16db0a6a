"""forward_features / forward_head on every model family, against the authors' code;
load_model's provenance (har_info) and fine-tuned checkpoints with their own labels."""

from __future__ import annotations

import pytest
import torch

from har.models import densenet3d, hara_variants, resnet3d, torchvision_video
from har.models.info import ModelInfo, preset_to_dict
from har.transforms import HARA_KINETICS

from reference_hara import hara_resnet, published_checkpoint, randomize_


def _authors_pooled(ref, x):
    seen = {}
    h = ref.avgpool.register_forward_hook(lambda m, i, o: seen.setdefault("f", o))
    with torch.no_grad():
        logits = ref(x)
    h.remove()
    return seen["f"].flatten(1), logits


@pytest.mark.parametrize("depth,dim", [(18, 512), (34, 512),
                                       pytest.param(50, 2048, marks=pytest.mark.slow)])
def test_features_equal_the_authors_pooled_activations(tmp_path, depth, dim):
    import har

    ref = randomize_(hara_resnet(depth, "A" if depth < 50 else "B"), seed=depth)
    path = tmp_path / f"resnet-{depth}-kinetics.pth"
    torch.save(published_checkpoint(ref, f"resnet-{depth}"), path)
    model = har.load_model(f"r3d{depth}-k400", weights=path)
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1))
    want, want_logits = _authors_pooled(ref, x)
    with torch.no_grad():
        got = model.forward_features(x)
        logits = model.forward_head(got)
        full = model(x)
    assert got.shape == (2, dim)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel < 1e-4, rel
    assert torch.equal(full, logits)
    assert torch.allclose(logits, want_logits, rtol=1e-4, atol=1e-4 * want_logits.abs().max())
    info = model.har_info
    assert isinstance(info, ModelInfo)
    assert info.model == f"r3d{depth}-k400" and info.num_classes == 400
    assert info.preset == HARA_KINETICS and info.feature_dim == dim
    import hashlib
    assert info.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _small_x(t=16, s=64):
    return torch.randn(1, 3, t, s, s, generator=torch.Generator().manual_seed(0))


FAMILIES = [
    ("r3d10-A", lambda: resnet3d.resnet3d(10, num_classes=7, shortcut_type="A"), 512),
    ("r3d10-B", lambda: resnet3d.resnet3d(10, num_classes=7, shortcut_type="B"), 512),
    ("r3d18", lambda: resnet3d.resnet3d(18, num_classes=7), 512),
    ("wide", lambda: hara_variants.ResNet3D(hara_variants.WideBottleneck, (1, 1, 1, 1),
                                            num_classes=7, shortcut_type="B",
                                            widen_factor=2), 2048),
    ("resnext", lambda: hara_variants.ResNet3D(hara_variants.ResNeXtBottleneck, (1, 1, 1, 1),
                                               num_classes=7, shortcut_type="B",
                                               widen_factor=2), 2048),
    ("preact", lambda: hara_variants.PreActResNet3D((1, 1, 1, 1), num_classes=7), 2048),
    ("densenet", lambda: densenet3d.DenseNet3D((1, 1, 1, 1), num_classes=7), 64 // 8 + 32 * 0),
    ("tv-r3d", lambda: torchvision_video.r3d_18(num_classes=7), 512),
    ("tv-mc3", lambda: torchvision_video.mc3_18(num_classes=7), 512),
    ("tv-r2plus1d", lambda: torchvision_video.r2plus1d_18(num_classes=7), 512),
]


@pytest.mark.parametrize("name,build,dim", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_family_splits_features_and_head(name, build, dim):
    model = build().eval()
    x = _small_x()
    with torch.no_grad():
        f = model.forward_features(x)
        assert f.ndim == 2 and f.shape[0] == 1 and f.shape[1] == model.feature_dim
        if name != "densenet":
            assert f.shape[1] == dim
        assert torch.equal(model.forward_head(f), model(x))


def test_fine_tuned_checkpoint_brings_its_own_labels_and_preset(tmp_path):
    import har

    labels = ["wave", "clap", "jump"]
    ref = randomize_(hara_resnet(18, "A", num_classes=3), seed=3)
    ckpt = published_checkpoint(ref, "resnet-18")
    preset = preset_to_dict(HARA_KINETICS) | {"name": "my-preset"}
    ckpt.update(labels=labels, preset=preset, har={"model": "r3d18-k400", "version": "0.2.0"})
    path = tmp_path / "model.pth"
    torch.save(ckpt, path)
    model = har.load_model("r3d18-k400", weights=path)
    assert model.har_info.labels == tuple(labels)
    assert model.har_info.preset.name == "my-preset"
    with torch.no_grad():
        assert model(_small_x()).shape == (1, 3)

    # Without labels in the file: num_classes= is needed, and names the classes.
    bare = published_checkpoint(ref, "resnet-18")
    torch.save(bare, tmp_path / "bare.pth")
    with pytest.raises(har.WeightsError, match="3 classes.*num_classes"):
        har.load_model("r3d18-k400", weights=tmp_path / "bare.pth")
    m = har.load_model("r3d18-k400", weights=tmp_path / "bare.pth", num_classes=3)
    assert m.har_info.labels == ("class 0", "class 1", "class 2")


def test_model_info_metadata_round_trip():
    info = ModelInfo(model="r3d34-k400", arch="resnet-34", labels=("a", "b"),
                     preset=HARA_KINETICS, weights_sha256="ab" * 32, feature_dim=512)
    meta = info.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    back = ModelInfo.from_metadata(meta)
    assert back == info
    assert ModelInfo.from_metadata({"foo": "bar"}) is None
