"""The 3D ResNet family against the original code, and published-checkpoint loading."""

from __future__ import annotations

import pytest
import torch

import har
from har.errors import WeightsError
from har.models.resnet3d import resnet3d
from reference_hara import hara_resnet, published_checkpoint, randomize_


def test_resnet34_published_checkpoint_matches_original_logits(r34_checkpoint):
    path, ref = r34_checkpoint
    model = har.load_model("r3d34-k400", weights=path)
    assert not model.training
    x = torch.randn(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(1)) * 50
    with torch.no_grad():
        want = ref(x)
        got = model(x)
    assert got.shape == (2, 400)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


@pytest.mark.parametrize("depth,shortcut", [(10, "A"), (18, "A"), (50, "B"), (18, "B")])
def test_other_depths_and_shortcuts_match_original(tmp_path, depth, shortcut):
    ref = randomize_(hara_resnet(depth, shortcut), seed=depth)
    path = tmp_path / "ckpt.pth"
    torch.save(published_checkpoint(ref, f"resnet-{depth}"), path)
    from har.models.checkpoints import load_weights_into

    model = resnet3d(depth, shortcut_type=shortcut)
    load_weights_into(model, path)
    model.eval()
    x = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(2)) * 50
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-4, rtol=1e-4)


def test_shortcut_b_keys_match_original_names():
    keys = set(resnet3d(50).state_dict())
    assert "layer1.0.downsample.0.weight" in keys and "layer1.0.downsample.1.running_var" in keys
    keys34 = set(resnet3d(34).state_dict())
    assert not any("downsample" in k for k in keys34)  # type A has no weights
    want = {k for k in hara_resnet(34, "A").state_dict() if "num_batches" not in k}
    assert {k for k in keys34 if "num_batches" not in k} == want


@pytest.mark.parametrize("prefix", ["", "module.", "module.module."])
def test_prefix_variants_load(tmp_path, prefix):
    ref = randomize_(hara_resnet(10, "A"), seed=3)
    path = tmp_path / "c.pth"
    ck = published_checkpoint(ref, "resnet-10", prefix=prefix)
    torch.save(ck if prefix else ck["state_dict"], path)  # a bare CPU state dict too
    model = har.load_model("r3d10-k400", weights=path)
    x = torch.randn(1, 3, 16, 112, 112) * 30
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-4, rtol=1e-4)


def test_any_input_size_and_length():
    model = resnet3d(10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 8, 64, 80)).shape == (1, 400)
        assert model(torch.randn(1, 3, 32, 160, 160)).shape == (1, 400)


def test_wrong_arch_is_refused(tmp_path):
    ref = randomize_(hara_resnet(18, "A"), seed=4)
    path = tmp_path / "r18.pth"
    torch.save(published_checkpoint(ref, "resnet-18"), path)
    with pytest.raises(WeightsError, match="arch 'resnet-18'.*resnet-34"):
        har.load_model("r3d34-k400", weights=path)


def test_wrong_arch_without_arch_field_says_what_does_not_fit(tmp_path):
    ref = randomize_(hara_resnet(18, "A"), seed=4)
    path = tmp_path / "r18.pth"
    torch.save(published_checkpoint(ref, "resnet-18")["state_dict"], path)
    with pytest.raises(WeightsError, match="missing key.*layer1.2"):
        har.load_model("r3d34-k400", weights=path)


def test_wrong_number_of_classes_is_named(tmp_path):
    ref = randomize_(hara_resnet(10, "A", num_classes=101), seed=5)
    path = tmp_path / "ucf.pth"
    torch.save(published_checkpoint(ref, "resnet-10"), path)
    with pytest.raises(WeightsError, match="101 classes but the model expects 400"):
        har.load_model("r3d10-k400", weights=path)


def test_garbage_and_missing_weights_files(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(WeightsError, match="bad.pth: not a PyTorch checkpoint"):
        har.load_model("r3d10-k400", weights=bad)
    with pytest.raises(WeightsError, match="no such weights file"):
        har.load_model("r3d10-k400", weights=tmp_path / "nope.pth")


def test_unknown_model_suggests_the_closest():
    with pytest.raises(har.ModelNotFoundError, match="did you mean 'r3d34-k400'"):
        har.load_model("r3d-34")


def test_list_models_and_labels():
    names = har.list_models()
    assert "r3d34-k400" in names and all(isinstance(n, str) for n in names)
    from har.labels import load_labels

    labels = load_labels()
    assert len(labels) == 400 == len(set(labels))
    assert labels[0] == "abseiling" and labels[-1] == "zumba"
    assert labels[6] == "arm wrestling" and "flipping pancake" in labels
    assert list(labels) == sorted(labels, key=str.lower)
