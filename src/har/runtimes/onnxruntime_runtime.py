"""ONNX Runtime (CPU, or CUDA when its provider is installed), fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RuntimeBase, as_batch, need


class OnnxRuntimeBackend(RuntimeBase):
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", *,
                 batch_size: int | None = None) -> None:
        need("onnxruntime", "onnxruntime")
        import onnxruntime as ort

        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._n_out = len(self._session.get_outputs())
        shape = self._session.get_outputs()[0].shape
        self.classes = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.batch_size = batch_size or 4

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        outs = self._session.run(None, {self._input: as_batch(batch)})
        feats = outs[1].astype(np.float32) if self._n_out > 1 else None
        return outs[0].astype(np.float32), feats
