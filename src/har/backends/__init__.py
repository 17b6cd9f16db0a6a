"""Inference backends: a preprocessed batch in, logits out.

Every backend is a callable ``backend(batch) -> logits`` where ``batch`` is a
``(N, 3, T, H, W) float32`` tensor (or array) and ``logits`` a ``(N, C) float32``
numpy array. Heavy runtimes (OpenVINO, ONNX Runtime, OpenCV DNN) are imported
lazily by the backend that needs them; each is an optional extra.

=============  =======  ===============================================================
backend        device   notes
=============  =======  ===============================================================
torch          cpu      fp32 eager
torch          cuda     fp16 autocast (or bf16/fp32), channels_last_3d, cudnn.benchmark
openvino       cpu      bf16 where the CPU has bf16 instructions (AVX512_BF16/AMX), else fp32
onnxruntime    cpu/cuda fp32
opencv         cpu      cv2.dnn on the ONNX export, the classic approach
=============  =======  ===============================================================
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..errors import HarError

from ..defaults import BACKENDS, PRECISIONS, pip_hint

# What each runtime can compute in, per device ("auto" is always accepted).
SUPPORTED_PRECISIONS = {
    ("torch", "cpu"): ("fp32", "bf16"), ("torch", "cuda"): ("fp32", "fp16", "bf16"),
    ("openvino", "cpu"): ("fp32", "bf16", "int8"),
    ("onnxruntime", "cpu"): ("fp32",), ("onnxruntime", "cuda"): ("fp32",),
    ("opencv", "cpu"): ("fp32",),
}


def check_precision(backend: str, precision: str, device: str = "cpu") -> None:
    """ValueError (a usage error) when ``backend`` cannot run ``precision`` on ``device``:
    a precision is never replaced silently by another."""
    if precision == "auto":
        return
    kind = "cuda" if device.startswith("cuda") else "cpu"
    names = [backend] if backend != "auto" else [auto_backend(device)]
    for name in names:
        ok = SUPPORTED_PRECISIONS.get((name, kind))
        if ok is None:
            raise ValueError(f"--backend {name} does not run on {device}; use --device cpu "
                             "or --backend torch")
        if precision not in ok:
            raise ValueError(f"--precision {precision}: --backend {name} on {kind} runs "
                             f"{', '.join(ok)}; choose one of those or another --backend")
        if name == "openvino" and precision == "bf16" and _installed("openvino"):
            import openvino as ov

            if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise ValueError("--precision bf16: this CPU has no bf16 instructions for "
                                 "OpenVINO; use --precision fp32 (or auto)")


class Backend(Protocol):
    name: str
    device: str
    batch_size: int
    precision: str

    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray: ...


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends(device: str = "cpu") -> list[str]:
    """Backends whose runtime is installed and that can run on ``device``."""
    out = ["torch"]
    if device == "cpu":
        if _installed("openvino"):
            out.append("openvino")
        if _installed("onnxruntime"):
            out.append("onnxruntime")
        out.append("opencv")
    elif _installed("onnxruntime"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            out.append("onnxruntime")
    return out


def auto_backend(device: str = "cpu") -> str:
    """The fastest backend available for ``device`` (measured in bench/)."""
    if device.startswith("cuda"):
        return "torch"
    return "openvino" if _installed("openvino") else "torch"


def make_backend(name: str, model: nn.Module, device: str = "cpu", *,
                 batch_size: int | None = None, precision: str = "auto",
                 input_shape: tuple[int, int, int] = (16, 112, 112)) -> Backend:
    """Wrap ``model`` (a loaded torch module) in the runtime called ``name``.

    ``input_shape`` is (T, H, W) of one clip, used to export to ONNX for the other runtimes.
    """
    if name == "auto":
        name = auto_backend(device)
    if name not in BACKENDS:
        raise HarError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")
    if precision not in PRECISIONS:
        raise HarError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "torch":
        return TorchBackend(model, device, batch_size=batch_size, precision=precision)
    if device != "cpu" and name != "onnxruntime":
        raise HarError(f"backend {name} runs on the CPU only; use --device cpu or --backend torch")
    onnx_path = export_onnx_cached(model, input_shape)
    if name == "openvino":
        return OpenVINOBackend(onnx_path, batch_size=batch_size, precision=precision)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, device, batch_size=batch_size)
    return OpenCVBackend(onnx_path, batch_size=batch_size)


def _need(module: str, extra: str) -> None:
    if not _installed(module):
        raise HarError(f"backend needs the '{module}' package: {pip_hint(extra)} "
                       f"(or pip install {module})")


# -- torch ------------------------------------------------------------------------
class TorchBackend:
    """PyTorch eager with BN folded into the convolutions. On CUDA: fp16 weights and
    activations by default (or bf16/fp32), channels_last_3d and cudnn autotuning; on
    the CPU: fp32 (or bf16 autocast if asked)."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", *, batch_size: int | None = None,
                 precision: str = "auto") -> None:
        self.device = device
        cuda = device.startswith("cuda")
        if precision == "auto":
            precision = "fp16" if cuda else "fp32"
        if precision == "fp16" and not cuda:
            raise HarError("fp16 on the CPU is not supported by PyTorch kernels; use bf16 or fp32")
        self.precision = precision
        self.batch_size = batch_size or (64 if cuda else 4)
        model = fuse_conv_bn(model).to(device).eval()
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self._cast_model = cuda and self._dtype is not None
        if cuda:
            torch.backends.cudnn.benchmark = True
            model = model.to(memory_format=torch.channels_last_3d)
            if self._cast_model:
                # BN is folded, so the whole net can hold fp16/bf16 weights: no per-call
                # autocast of 63M parameters, tensor cores on every conv.
                model = model.to(self._dtype)
        self.model = model

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        x = torch.as_tensor(batch).to(self.device, non_blocking=True)
        if self._cast_model:
            x = x.to(self._dtype).contiguous(memory_format=torch.channels_last_3d)
            out = self.model(x)
        elif self._dtype is not None:  # CPU bf16: autocast keeps accumulations in fp32
            with torch.autocast(device_type="cpu", dtype=self._dtype):
                out = self.model(x)
        else:
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last_3d)
            out = self.model(x)
        return out.float().cpu().numpy()


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm3d that directly follows a Conv3d folded
    into that convolution (inference only: BN then is an affine map). Saves a full
    pass over every activation; the logits agree to float rounding.

    Folding relies on the model's attribute pairs ``convN``/``bnN`` (the Hara family)
    and ``Sequential(Conv3d, BatchNorm3d)`` (type-B shortcuts, torchvision stems).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            items = list(parent._modules.items())
            for (ka, a), (kb, b) in zip(items, items[1:]):
                if isinstance(a, nn.Conv3d) and isinstance(b, nn.BatchNorm3d):
                    parent._modules[ka] = fuse_conv_bn_eval(a, b)
                    parent._modules[kb] = nn.Identity()
        for name, conv in list(parent._modules.items()):
            if not (isinstance(conv, nn.Conv3d) and name.startswith("conv")):
                continue
            bn_name = "bn" + name[len("conv"):]
            bn = parent._modules.get(bn_name)
            if isinstance(bn, nn.BatchNorm3d) and conv.out_channels == bn.num_features:
                parent._modules[name] = fuse_conv_bn_eval(conv, bn)
                parent._modules[bn_name] = nn.Identity()
    return model


# -- ONNX export (shared by the other runtimes) ------------------------------------
def _state_key(model: nn.Module) -> str:
    """A digest of the weights, so an export is reused only for the same weights."""
    h = hashlib.blake2b(digest_size=12)
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_onnx(model: nn.Module, path: str | Path, input_shape=(16, 112, 112),
                opset: int = 17) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis: input ``clips`` (N, 3, T, H, W),
    output ``logits`` (N, C)."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    x = torch.zeros(1, 3, *input_shape)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with warnings.catch_warnings(), _fixed_avgpool(model, x):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["clips"], output_names=["logits"],
                          dynamic_axes={"clips": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _fixed_avgpool(model: nn.Module, x: torch.Tensor):
    """Export adaptive pooling as the fixed AvgPool3d of the original code.

    ONNX's GlobalAveragePool on 5-D input is not supported by OpenCV's DNN module;
    a fixed kernel over the final feature map is identical for the exported size.
    """
    pool = getattr(model, "avgpool", None)
    if not isinstance(pool, nn.AdaptiveAvgPool3d) or pool.output_size not in (1, (1, 1, 1)):
        yield
        return
    seen: dict = {}

    def remember(module, inputs, output) -> None:  # returning None keeps the output
        seen["shape"] = inputs[0].shape

    handle = pool.register_forward_hook(remember)
    with torch.no_grad():
        model(x)
    handle.remove()
    model.avgpool = nn.AvgPool3d(tuple(seen["shape"][2:]), stride=1)
    try:
        yield
    finally:
        model.avgpool = pool


def export_openvino(model: nn.Module, path: str | Path, input_shape=(16, 112, 112),
                    compress_to_fp16: bool = False) -> Path:
    """Export to OpenVINO IR (``path`` .xml plus its .bin), via ONNX."""
    _need("openvino", "openvino")
    import tempfile

    import openvino as ov

    path = Path(path).with_suffix(".xml")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", input_shape)
        ov.save_model(ov.convert_model(str(onnx_path)), str(path),
                      compress_to_fp16=compress_to_fp16)
    return path


def export_onnx_cached(model: nn.Module, input_shape=(16, 112, 112)) -> Path:
    from ..weights import cache_dir

    t, h, w = input_shape
    path = cache_dir() / "exports" / f"{type(model).__name__}-{_state_key(model)}-{t}x{h}x{w}.onnx"
    if not path.is_file():
        export_onnx(model, path, input_shape)
    return path


# -- OpenVINO -----------------------------------------------------------------------
class OpenVINOBackend:
    name = "openvino"
    device = "cpu"

    def __init__(self, onnx_path: str | Path, *, batch_size: int | None = None,
                 precision: str = "auto") -> None:
        _need("openvino", "openvino")
        import openvino as ov

        core = ov.Core()
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "auto":
            precision = "bf16" if "BF16" in caps else "fp32"
        if precision == "bf16" and "BF16" not in caps:
            raise HarError("this CPU has no bf16 instructions; use --precision fp32")
        if precision == "fp16":
            raise HarError("OpenVINO on the CPU runs fp32 or bf16; use one of those")
        self.precision = precision
        from ..weights import cache_dir

        core.set_property({"CACHE_DIR": str(cache_dir() / "openvino")})
        # THROUGHPUT mode runs several streams (one per core or two) in parallel; each
        # batch is split across their infer requests. Measured ~30% faster than one
        # LATENCY stream using all cores, on 2 cores (bench/).
        self._compiled = core.compile_model(
            str(onnx_path), "CPU",
            {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
             "PERFORMANCE_HINT": "THROUGHPUT"})
        n = max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests = [self._compiled.create_infer_request() for _ in range(n)]
        self.batch_size = batch_size or max(4, n)

    def __call__(self, batch) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        parts = np.array_split(x, min(len(self._requests), len(x)))
        for req, part in zip(self._requests, parts):
            req.start_async({0: np.ascontiguousarray(part)})
        outs = []
        for req, _ in zip(self._requests, parts):
            req.wait()
            outs.append(np.array(req.get_output_tensor(0).data, dtype=np.float32))
        return np.concatenate(outs)


# -- ONNX Runtime ------------------------------------------------------------------
class OnnxRuntimeBackend:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", *,
                 batch_size: int | None = None) -> None:
        _need("onnxruntime", "onnxruntime")
        import onnxruntime as ort

        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.batch_size = batch_size or 4

    def __call__(self, batch) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        return self._session.run(None, {self._input: x})[0].astype(np.float32)


# -- OpenCV DNN -----------------------------------------------------------------------
class OpenCVBackend:
    """cv2.dnn on the ONNX export: the widely copied approach (OpenCV's sample)."""

    name = "opencv"
    device = "cpu"
    precision = "fp32"

    def __init__(self, onnx_path: str | Path, *, batch_size: int | None = None) -> None:
        import cv2

        self._net = cv2.dnn.readNetFromONNX(str(onnx_path))
        self.batch_size = batch_size or 1

    def __call__(self, batch) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        outs = []
        for i in range(x.shape[0]):  # OpenCV's ONNX import fixes the batch at export size
            self._net.setInput(x[i:i + 1])
            outs.append(np.asarray(self._net.forward(), dtype=np.float32).reshape(1, -1))
        return np.concatenate(outs)
