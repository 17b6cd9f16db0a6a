"""Names the command line needs before any heavy import (torch, numpy, PyAV), and
where har keeps its cache.

`har --help` must start fast, so the parser reads its choices from here; the modules
that own these names (the runtimes, the zoo) import them from here too. The cache
folder is here, below every module that keeps something in it (weights, the cache
listing, exports, int8 IRs), so they all import it from one low place.
"""

import os
from pathlib import Path

DEFAULT_MODEL = "r3d34-k400"
BACKENDS = ("torch", "openvino", "onnxruntime", "opencv")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
AGGREGATES = ("mean", "max", "topk-mean")
SMOOTHING = ("median", "mean")
# The distribution's name on PyPI ("har" there is an unrelated HAR-file parser); the
# import name and the command stay `har`. Every install hint uses it.
DIST = "har-video"


def pip_hint(extra: str | None = None) -> str:
    """What to type to install an optional part: ``pip install 'har-video[plot]'``."""
    return f"pip install '{DIST}[{extra}]'" if extra else f"pip install {DIST}"

# har train: where fine-tuning begins (the authors' ft_begin_index) and the heads.
FREEZE_POINTS = ("none", "conv1", "layer1", "layer2", "layer3", "layer4")
HEADS = ("linear", "temporal")


def cache_dir() -> Path:
    """``$HAR_HOME``, else ``$XDG_CACHE_HOME/har``, else ``~/.cache/har``."""
    home = os.environ.get("HAR_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "har"
