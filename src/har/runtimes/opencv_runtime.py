"""cv2.dnn on the ONNX export: the widely copied approach (OpenCV's sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import RuntimeBase, as_batch


class OpenCVBackend(RuntimeBase):
    name = "opencv"
    device = "cpu"
    precision = "fp32"

    def __init__(self, onnx_path: str | Path, *, batch_size: int | None = None) -> None:
        import cv2

        self._net = cv2.dnn.readNetFromONNX(str(onnx_path))
        names = list(self._net.getUnconnectedOutLayersNames())
        self._outs = names if len(names) > 1 else None
        self.batch_size = batch_size or 1

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        x = as_batch(batch)
        logits, feats = [], []
        for i in range(x.shape[0]):  # OpenCV's ONNX import fixes the batch at export size
            self._net.setInput(x[i:i + 1])
            if self._outs:
                outs = [np.asarray(o, dtype=np.float32).reshape(1, -1)
                        for o in self._net.forward(self._outs)]
                # logits are the output with the classes; features the other one
                a, b = outs[0], outs[1]
                lg, ft = (a, b) if self._outs[0] == "logits" else (b, a)
                logits.append(lg)
                feats.append(ft)
            else:
                logits.append(np.asarray(self._net.forward(), dtype=np.float32).reshape(1, -1))
        return np.concatenate(logits), (np.concatenate(feats) if feats else None)
