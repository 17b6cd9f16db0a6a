"""Names the command line needs before any heavy import (torch, numpy, PyAV).

`har --help` must start fast, so the parser reads its choices from here; the modules
that own these names (the runtimes, the zoo) import them from here too.
"""

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
