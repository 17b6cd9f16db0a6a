"""The first run of a weights file: the conversion for the runtime happens in a child
process when PyTorch is not loaded (har.runtimes.convert), so the process that runs
the model never holds PyTorch or the converter's memory peak. A process-level
property, so these tests start fresh interpreters on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
from har.recognizer import Recognizer
rec = Recognizer("r3d10-k400", weights=sys.argv[1], backend="openvino", precision="fp32")
x = __import__("numpy").random.default_rng(0).standard_normal((2, 3, 16, 112, 112)).astype("float32")
logits, _ = rec.backend.infer(x)
print(json.dumps({"torch": "torch" in sys.modules, "labels": list(rec.labels[:2]),
                  "logits": logits.tolist()}))
"""


def _run(weights: str, home: Path, extra_env: dict | None = None) -> tuple[dict, str]:
    env = {**os.environ, "HAR_HOME": str(home), "PYTHONPATH": str(ROOT / "src"),
           **(extra_env or {})}
    p = subprocess.run([sys.executable, "-c", CHILD, weights], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_first_run_converts_in_a_child_and_never_loads_torch(r10_weights, tmp_path):
    import torch

    from har.models.zoo import load_model

    home = tmp_path / "home"
    first, err = _run(r10_weights, home)
    assert first["torch"] is False  # the conversion ran in the child
    assert err.count("note: converting") == 1 and "Traceback" not in err
    exports = home / "exports"
    xml = sorted(exports.glob("*.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".bin").is_file()
    assert not list(exports.glob("*.onnx"))  # OpenVINO's IR only, no ONNX detour
    assert first["labels"] == ["abseiling", "air drumming"]
    # the IR computes what PyTorch computes
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 112, 112)).astype("float32")
    with torch.no_grad():
        ref = load_model("r3d10-k400", weights=r10_weights)(torch.from_numpy(x)).numpy()
    got = np.asarray(first["logits"], dtype=np.float32)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    # the second run starts from the cache: no conversion, same numbers
    second, err2 = _run(r10_weights, home)
    assert "note: converting" not in err2 and second["torch"] is False
    assert second["logits"] == first["logits"]


def test_a_child_that_fails_leaves_the_error_to_the_parent(tmp_path):
    bad = tmp_path / "resnet-10-kinetics.pth"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    env = {**os.environ, "HAR_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([sys.executable, "-m", "har", "predict", str(ROOT / "tests" / "data"
                        / "v_CricketShot_g04_c01_rgb.gif"), "--model", "r3d10-k400",
                        "--weights", str(bad), "--backend", "openvino", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert "Traceback" not in p.stderr
    assert any(str(bad.name) in line and line.startswith("error:") for line in lines), p.stderr
    assert not list((tmp_path / "home").glob("exports/*.xml"))
