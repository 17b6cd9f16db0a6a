"""OpenVINO on the CPU: bf16 where the CPU has bf16 instructions, else fp32; runs an
ONNX file or an IR ``.xml`` (from ``har export openvino``) directly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import HarError
from .base import RuntimeBase, as_batch, need


class OpenVINOBackend(RuntimeBase):
    name = "openvino"
    device = "cpu"

    def __init__(self, model_path: str | Path, *, batch_size: int | None = None,
                 precision: str = "auto", add_features: bool = False,
                 metadata: dict | None = None) -> None:
        # metadata: the file's har metadata when the caller knows it (a cached export's
        # sidecar); the model is then compiled straight from its path, which OpenVINO's
        # cache answers without reading the file (0.05 s instead of 0.6 s for ResNet-34).
        need("openvino", "openvino")
        import openvino as ov

        from ..weights import cache_dir

        core = ov.Core()
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "auto":
            precision = "bf16" if "BF16" in caps else "fp32"
        if precision == "bf16" and "BF16" not in caps:
            raise HarError("this CPU has no bf16 instructions; use --precision fp32")
        if precision == "fp16":
            raise HarError("OpenVINO on the CPU runs fp32 or bf16; use one of those")
        self.precision = precision
        # The compiled-model cache: the second start skips compiling (CACHE_DIR). A
        # cache folder that cannot be made (HAR_HOME read-only, or a file) only costs
        # the compile on every start.
        blobs = cache_dir() / "openvino"
        try:
            blobs.mkdir(parents=True, exist_ok=True)
            if os.access(blobs, os.W_OK):
                core.set_property({"CACHE_DIR": str(blobs)})
        except OSError:
            pass
        hint = "bf16" if precision == "bf16" else "f32"
        # THROUGHPUT mode runs several streams (one per core or two) in parallel; each
        # batch is split across their infer requests. Measured ~30% faster than one
        # LATENCY stream using all cores, on 2 cores (bench/).
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"}
        self._fixed_batch = False
        if metadata is not None and not add_features:
            self.metadata = dict(metadata)
            self._compiled = core.compile_model(str(model_path), "CPU", config)
        else:
            self._compiled = self._read_and_compile(core, model_path, add_features, config)
        self._n_out = len(self._compiled.outputs)
        try:
            dim = self._compiled.outputs[0].get_partial_shape()[1]
            self.classes = dim.get_length() if dim.is_static else None
        except Exception:  # noqa: BLE001 - an output of another rank: unknown
            self.classes = None
        n = max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests = [self._compiled.create_infer_request() for _ in range(n)]
        self.batch_size = batch_size or max(4, n)

    def _read_and_compile(self, core, model_path, add_features: bool, config: dict):
        ov_model = core.read_model(str(model_path))
        from .metadata import read_ov_metadata

        self.metadata = read_ov_metadata(ov_model)
        if not self.metadata and str(model_path).endswith(".onnx"):
            from .metadata import read_onnx_metadata

            self.metadata = read_onnx_metadata(model_path)
        if add_features and len(ov_model.outputs) == 1:
            _add_features_output(ov_model)
            try:  # exports of 2018 fix the batch at 1; make it dynamic where possible
                shape = list(ov_model.input(0).get_partial_shape())
                ov_model.reshape({ov_model.input(0): [-1, *[d.get_length() for d in shape[1:]]]})
            except Exception:  # noqa: BLE001
                self._fixed_batch = True
        return core.compile_model(ov_model, "CPU", config)

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        x = as_batch(batch)
        if self._fixed_batch and len(x) > 1:
            outs = [self.infer(x[i:i + 1]) for i in range(len(x))]
            return (np.concatenate([o[0] for o in outs]),
                    None if outs[0][1] is None else np.concatenate([o[1] for o in outs]))
        parts = np.array_split(x, min(len(self._requests), len(x)))
        for req, part in zip(self._requests, parts):
            req.start_async({0: np.ascontiguousarray(part)})
        logits, feats = [], []
        for req, _ in zip(self._requests, parts):
            req.wait()
            logits.append(np.array(req.get_output_tensor(0).data, dtype=np.float32))
            if self._n_out > 1:
                feats.append(np.array(req.get_output_tensor(1).data, dtype=np.float32))
        return np.concatenate(logits), (np.concatenate(feats) if feats else None)


def _add_features_output(ov_model) -> None:
    """Expose the classifier's input (the pooled features) as a second output of a
    graph that has only the logits (e.g. OpenCV's published ONNX): walk back from the
    result through Add (bias) to the MatMul/Gemm and take that MatMul's data input."""
    node = ov_model.outputs[0].get_node()
    for _ in range(4):
        kind = node.get_type_name()
        if kind in ("MatMul", "Gemm", "FullyConnected"):
            ov_model.add_outputs([node.input(0).get_source_output()])
            return
        if node.get_input_size() == 0:
            return
        node = node.input(0).get_source_output().get_node()
