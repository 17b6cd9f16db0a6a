"""Issue 24's proof: two actors doing different things in one video, given as
--tracks, with a model trained here on single-actor clips (a ResNet-10 from scratch on
har.train.synthetic's left/right motion data). Each person gets their own action; the
whole frame, which sees both, cannot. Slow: training takes minutes on 2 CPU cores."""

from __future__ import annotations

import json

import pytest

from har.cli import main
from har.persons.mot import write_mot
from har.train.synthetic import make_motion_dataset

from persons_helpers import two_actor_scene

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_actor_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    train = make_motion_dataset(root / "train", 16, seed=1, frames=32)
    val = make_motion_dataset(root / "val", 8, seed=2, frames=32)
    out = root / "run"
    assert main(["train", str(train), "--val", str(val), "--out", str(out), "--epochs", "3",
                 "--model", "r3d10-k400", "--scratch", "--no-progress"]) == 0
    return out / "model.pth"


def test_each_person_gets_their_own_action_and_the_whole_frame_cannot(single_actor_model,
                                                                      tmp_path):
    video, tracks = two_actor_scene(tmp_path / "two.mp4", frames=48, seed=5)
    given = tmp_path / "tracks.txt"
    with open(given, "w") as fh:
        write_mot(fh, tracks)
    out = tmp_path / "p.json"
    assert main(["predict", str(video), "--weights", str(single_actor_model), "--tracks",
                 str(given), "--json", str(out), "--backend", "torch", "--no-progress"]) == 0
    v = json.loads(out.read_text())["videos"][0]
    persons = {p["id"]: p for p in v["persons"]}
    # person 1 acts on the left (square sliding left), person 2 on the right
    assert persons[1]["top"][0]["label"] == "left"
    assert persons[2]["top"][0]["label"] == "right"
    for p in persons.values():
        assert p["top"][0]["score"] > 0.8
        assert len(p["clips"]) == 3 and p["segments"][0]["label"] == p["top"][0]["label"]
        assert all(c["top"][0]["label"] == p["top"][0]["label"] for c in p["clips"])
    # The whole frame sees both actions: one label for two people, and less sure of it
    # than either person's own crop is of theirs.
    whole = v["top"][0]
    assert whole["label"] in ("left", "right")
    assert whole["score"] < min(p["top"][0]["score"] for p in persons.values())
