"""Inference backends: a preprocessed batch in, logits out.

Every backend is a callable ``backend(batch) -> logits`` where ``batch`` is a
``(N, 3, T, H, W) float32`` tensor and ``logits`` a ``(N, C) float32`` numpy array.
Heavy runtimes are imported lazily by the backend that needs them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn


class Backend(Protocol):
    name: str
    device: str
    batch_size: int

    def __call__(self, batch: torch.Tensor) -> np.ndarray: ...


class TorchBackend:
    """Plain PyTorch eager inference (fp32 on CPU)."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", batch_size: int | None = None):
        self.device = device
        self.model = model.to(device).eval()
        self.batch_size = batch_size or (32 if device.startswith("cuda") else 8)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        out = self.model(batch.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()
