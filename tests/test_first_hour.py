"""Issue 26: what a newcomer tripped over in the first hour (outputs that must stay
machine-readable, true facts in outputs, the order of checks, training defaults)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_video

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _needs(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed")


def _har(*args, env=None, **kw):
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "har", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=e, **kw)


# -- 1. NNCF's progress never reaches stdout -----------------------------------------
def test_int8_quantization_draws_nothing_on_stdout(capfd):
    """NNCF's "Statistics collection" bars and its log lines go to stderr, so a
    `--json -` on stdout stays JSON when the int8 model is calibrated."""
    _needs("openvino")
    _needs("nncf")
    import openvino as ov

    from har.runtimes.quantize import quantize_openvino

    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    ov_model = ov.convert_model(net, example_input=x)
    capfd.readouterr()
    rng = np.random.default_rng(0)
    calib = [rng.normal(size=(1, 3, 4, 16, 16)).astype(np.float32) for _ in range(3)]
    q = quantize_openvino(ov_model, calib, (4, 16, 16))
    out, err = capfd.readouterr()
    assert out == ""
    assert "Statistics collection" in err
    assert q is not None


@pytest.mark.slow
def test_first_int8_predict_keeps_json_on_stdout(tmp_path, r10_weights):
    _needs("openvino")
    _needs("nncf")
    video = make_video(tmp_path / "v.mp4", 20, size=(160, 120))
    r = _har("predict", video, "--model", "r3d10-k400", "--weights", r10_weights,
             "--precision", "int8", "--no-progress", "--json", "-",
             env={"HAR_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["settings"]["precision"] == "int8"
    assert "calibrating r3d10-k400 on 64 synthetic clips" in r.stderr
    assert "one-time" in r.stderr
