"""One model factory (``har.runtimes.load_runtime``, its PyTorch stage
``har.models.zoo.load_model``): a registry name, a weights file or a ``har train`` run
folder gives a model with its registry entry, labels, preset and head, and every front
end (Recognizer, the Ray engine's actors, the trainer's starting model) keeps a
fine-tuned checkpoint's own labels and preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from har.errors import HarError, WeightsError
from har.models.info import preset_to_dict
from har.transforms import Preset

LABELS = ["pour", "stir", "taste"]
# Another clip length and crop than the registry's: the checkpoint's own must be used.
PRESET = Preset(name="run-preset", clip_len=8, resize=128, crop=96)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as `har train` leaves it: model.pth in the published layout with
    its labels, preset and the registry model it was trained from (r3d10-k400)."""
    from reference_hara import hara_resnet, published_checkpoint, randomize_

    out = tmp_path_factory.mktemp("run")
    ref = randomize_(hara_resnet(10, "A", num_classes=len(LABELS)), seed=3)
    ck = published_checkpoint(ref, "resnet-10") | {
        "labels": LABELS, "preset": preset_to_dict(PRESET),
        "har": {"model": "r3d10-k400", "version": "test", "scratch": True}}
    torch.save(ck, out / "model.pth")
    (out / "labels.txt").write_text("".join(f"{x}\n" for x in LABELS))
    return out


@pytest.mark.parametrize("how", ["file", "folder"])
def test_factory_keeps_the_checkpoints_labels_preset_and_model(run_folder, how):
    from har.models.zoo import load_model
    from har.runtimes import load_runtime

    weights = run_folder / "model.pth" if how == "file" else run_folder
    # --model names another registry model: the checkpoint says which one it is
    rt = load_runtime("r3d34-k400", weights, backend="torch")
    assert tuple(rt.labels) == tuple(LABELS)
    assert rt.preset == PRESET
    assert rt.model_name == "r3d10-k400"
    logits, feats = rt.infer(np.zeros((2, 3, PRESET.clip_len, PRESET.crop, PRESET.crop),
                                      np.float32))
    assert logits.shape == (2, len(LABELS)) and feats.shape == (2, 512)

    module = load_model("r3d34-k400", weights=weights)
    assert module.har_info.labels == tuple(LABELS) and module.har_info.preset == PRESET
    assert module.har_info.weights_path == str(run_folder / "model.pth")


def test_a_folder_without_a_model_is_one_line(tmp_path):
    from har.runtimes import load_runtime

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(WeightsError) as err:
        load_runtime("r3d10-k400", tmp_path, backend="torch")
    text = str(err.value)
    assert "\n" not in text and "model.pth" in text and str(tmp_path.name) in text


def test_recognizer_and_trainer_base_use_the_factory(run_folder):
    from har.recognizer import Recognizer
    from har.train.run import load_base
    from har.train.trainer import TrainOptions

    rec = Recognizer("r3d34-k400", weights=run_folder, backend="torch")
    assert rec.labels == tuple(LABELS) and rec.preset == PRESET
    assert rec.model_name == "r3d10-k400"
    base = load_base(TrainOptions(model="r3d10-k400", weights=str(run_folder)))
    assert base.labels == tuple(LABELS) and base.preset == PRESET
    assert base.entry.name == "r3d10-k400"


def test_ray_actor_loading_path_keeps_the_labels(run_folder):
    """The Ray engine's actor class, run in this process: what it tells the driver,
    and the recognizer the driver builds from it, carry the checkpoint's labels."""
    from har.archive.ray_engine import ActorRuntime, ClipSpecs, ModelActor, ModelSpec, \
        _recognizer

    actor = ModelActor(ModelSpec(model="r3d34-k400", weights=str(run_folder),
                                 backend="torch"))
    info = actor.info()
    assert "error" not in info
    assert tuple(info["model_info"].labels) == tuple(LABELS)
    assert info["model_info"].preset == PRESET

    # The recognizer each Ray Data task builds from what the actor told the driver.
    rec = _recognizer("r3d34-k400", ClipSpecs(), ActorRuntime([None], info))
    assert rec.labels == tuple(LABELS) and rec.preset == PRESET
    assert rec.model_name == "r3d10-k400"


def test_a_bad_checkpoint_is_told_by_the_actor_not_raised(tmp_path):
    from har.archive.ray_engine import ModelActor, ModelSpec

    bad = tmp_path / "model.pth"
    bad.write_bytes(b"not a checkpoint")
    info = ModelActor(ModelSpec(model="r3d10-k400", weights=str(tmp_path),
                                backend="torch")).info()
    assert "error" in info and "\n" not in info["error"]


@pytest.mark.slow
def test_ray_engine_actor_keeps_the_labels(run_folder):
    """Through a real Ray actor, as `har index --engine ray` starts them."""
    ray = pytest.importorskip("ray")
    from har.archive.ray_engine import ModelActor, ModelSpec

    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(ModelActor).remote(
            ModelSpec(model="r3d34-k400", weights=str(run_folder), backend="torch"))
        info = ray.get(actor.info.remote())
        assert "error" not in info, info
        assert tuple(info["model_info"].labels) == tuple(LABELS)
        assert info["model_info"].preset == PRESET
        x = np.zeros((1, 3, PRESET.clip_len, PRESET.crop, PRESET.crop), np.float32)
        logits, _ = ray.get(actor.infer.remote(x))
        assert logits.shape == (1, len(LABELS))
    finally:
        ray.shutdown()


def test_unknown_model_through_the_factory_is_one_line():
    from har.runtimes import load_runtime

    with pytest.raises(HarError) as err:
        load_runtime("resnet34", backend="torch")
    assert "did you mean 'r3d34-k400'" in str(err.value)
