"""OpenVINO on the CPU: bf16 where the CPU has bf16 instructions, else fp32; runs an
ONNX file or an IR ``.xml`` (from ``har export openvino``) directly."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import HarError
from .base import Pending, RuntimeBase, as_batch, need


class OpenVINOBackend(RuntimeBase):
    name = "openvino"
    device = "cpu"

    def __init__(self, model_path: str | Path, *, batch_size: int | None = None,
                 precision: str = "auto", add_features: bool = False,
                 metadata: dict | None = None, static_batch: bool = False,
                 clip_shape: tuple[int, ...] | None = None) -> None:
        # static_batch: compile for exactly batch_size clips (shorter batches are
        # padded); clip_shape (3, T, H, W) fills the graph's dynamic dimensions (I3D's
        # time axis).
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
        self._static = None
        self._clip_shape = clip_shape
        if static_batch and batch_size:
            self._static = batch_size
        if metadata is not None and not add_features and self._static is None:
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
        self._n_requests = n
        self.batch_size = batch_size or max(4, n)
        # submit(): an AsyncInferQueue over the same number of requests (made on first
        # use). split: one batch spread over the requests (as infer() does) instead of
        # one batch per request; shared: the input tensor wraps the NumPy buffer
        # (no copy). Defaults from bench/run.py's model-only rows (docs/performance.md).
        self._queue = None
        self._in_flight = 0  # batches submitted and not yet answered
        self._count_lock = threading.Lock()
        # split: None (default) splits a batch over the requests only when the runtime
        # is idle (a pipeline starting or a lone batch: one request per batch would
        # leave the other streams idle), else one batch per request.
        self.split: bool | None = None
        self.shared = True
        self._ov = ov

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
        if self._static:  # one static shape: the batch is padded up to it
            shape = list(ov_model.input(0).get_partial_shape())
            dims = [d.get_length() if d.is_static else self._clip_shape[i]
                    for i, d in enumerate(shape[1:])]
            ov_model.reshape({ov_model.input(0): [self._static, *dims]})
        return core.compile_model(ov_model, "CPU", config)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        if self._static and len(x) < self._static:
            x = np.concatenate([x, np.zeros((self._static - len(x), *x.shape[1:]), x.dtype)])
        return x

    def submit(self, batch) -> Pending:
        """Start ``batch`` and return at once (double buffering: the caller assembles
        the next batch while this one runs). Results come back through the queue's
        callback; :meth:`Pending.result` waits for them."""
        x = as_batch(batch)
        n = len(x)
        if self._fixed_batch or (self._static and n > self._static):
            return Pending.run(self.infer, x)
        x = self._pad(x)
        if self._queue is None:
            self._queue = self._ov.AsyncInferQueue(self._compiled, self._n_requests)
            self._queue.set_callback(self._done)
        split = self.split if self.split is not None else self._in_flight == 0
        parts = (np.array_split(x, min(self._n_requests, len(x)))
                 if split and not self._static else [x])
        job = Pending()
        job.submitted_at = time.monotonic()
        # per batch: its parts' outputs (None: not back yet), its row count, inputs
        state = {"job": job, "outs": [None] * len(parts), "n": n, "inputs": []}
        with self._count_lock:
            self._in_flight += 1
        for i, part in enumerate(parts):
            part = np.ascontiguousarray(part)
            tensor = self._ov.Tensor(part, shared_memory=self.shared)  # False: a copy
            state["inputs"].append((part, tensor))  # alive until the request is done
            try:
                self._queue.start_async({0: tensor}, (state, i))
            except Exception as exc:  # noqa: BLE001 - re-raised by result()
                for k in range(i, len(parts)):  # never started: count them as back
                    self._part_back(state, k, exc)
                break
        return job

    def _done(self, request, userdata) -> None:
        state, i = userdata
        try:
            out = (np.array(request.get_output_tensor(0).data, dtype=np.float32),
                   np.array(request.get_output_tensor(1).data, dtype=np.float32)
                   if self._n_out > 1 else None)
        except Exception as exc:  # noqa: BLE001 - re-raised by result()
            out = exc
        self._part_back(state, i, out)

    def _part_back(self, state: dict, i: int, out) -> None:
        """Part ``i`` of a batch is back (outputs or an error); the last part
        completes the job."""
        with self._count_lock:
            outs = state["outs"]
            outs[i] = out
            if any(o is None for o in outs) or state.get("closed"):
                return
            state["closed"] = True
            self._in_flight -= 1
        state["inputs"] = None
        job, n = state["job"], state["n"]
        errors = [o for o in outs if isinstance(o, BaseException)]
        if errors:
            job.fail(errors[0])
            return
        job.set((np.concatenate([o[0] for o in outs])[:n],
                 None if outs[0][1] is None else np.concatenate([o[1] for o in outs])[:n]))

    def infer(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        x = as_batch(batch)
        if self._fixed_batch and len(x) > 1:
            outs = [self.infer(x[i:i + 1]) for i in range(len(x))]
            return (np.concatenate([o[0] for o in outs]),
                    None if outs[0][1] is None else np.concatenate([o[1] for o in outs]))
        if self._static:
            n = len(x)
            outs = [self._infer(self._pad(x[i:i + self._static]))
                    for i in range(0, n, self._static)]
            return (np.concatenate([o[0] for o in outs])[:n],
                    None if outs[0][1] is None else np.concatenate([o[1] for o in outs])[:n])
        return self._infer(x)

    def _infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        parts = [x] if self._static else np.array_split(x, min(len(self._requests), len(x)))
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
