"""har: human action recognition in videos (Kinetics-400, Hara et al. 3D ResNets).

>>> import har                                                   # doctest: +SKIP
>>> rec = har.Recognizer(weights="resnet-34-kinetics.pth")       # doctest: +SKIP
>>> rec.predict("video.mp4").top[0]                              # doctest: +SKIP
Prediction(label='arm wrestling', score=0.91)

The public names are imported lazily, on first use, so that ``import har`` (and the
``har`` command's start-up) does not pay for torch and PyAV until they are needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "Recognizer": "recognizer", "RunOptions": "recognizer", "VideoResult": "results",
    "ClipResult": "results", "Prediction": "results", "Segment": "results", "load_model": "models.zoo",
    "list_models": "models.zoo", "HarError": "errors", "DecodeError": "errors",
    "WeightsError": "errors", "ModelNotFoundError": "errors",
    "PersonStream": "persons.stream", "PersonOptions": "persons.stream",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'har' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
