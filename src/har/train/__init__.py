"""Training and evaluation: datasets, fine-tuning, the temporal head (``har train``,
``har eval``). See docs/train.md.

The names below load on first use, so ``import har.train.data`` (and ``har --help``)
does not import PyTorch.
"""

from __future__ import annotations

_LAZY = {"Dataset": "data", "DatasetError": "data", "Sample": "data", "load_dataset": "data",
         "TrainOptions": "trainer", "train": "trainer", "evaluate": "evaluate"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
