"""Exporting a loaded model to ONNX / OpenVINO IR: two outputs (``logits``, ``features``)
and the model's provenance in the file's metadata (ONNX ``metadata_props``, OpenVINO
``rt_info["har"]``), so the file runs directly and describes itself; and the cache's
exports of a model (``exports/`` ONNX, ``int8/`` IR), keyed by :func:`state_key`.

Imports flow one way: this module uses :mod:`har.runtimes.quantize` (NNCF and the
calibration clips) for int8, and quantize never imports this module."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..defaults import cache_dir
from ..fsutil import remove_stale_temps, temp_prefix
from .base import need
from .metadata import set_ov_metadata, write_sidecar


class _TwoOutputs(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, x):
        f = self.m.forward_features(x)
        return self.m.forward_head(f), f


def state_key(model: nn.Module) -> str:
    """The key of a model's cached exports (``exports/``, ``int8/``): the weights'
    sha256 when the model knows it, else a digest of its tensors."""
    info = getattr(model, "har_info", None)
    if info is not None and info.weights_sha256:
        return info.weights_sha256[:24]
    h = hashlib.blake2b(digest_size=12)
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_metadata(model: nn.Module) -> dict[str, str]:
    info = getattr(model, "har_info", None)
    return info.to_metadata() if info is not None else {}


def export_onnx(model: nn.Module, path: str | Path, input_shape=(16, 112, 112),
                opset: int = 17) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis: input ``clips``
    (N, 3, T, H, W), outputs ``logits`` (N, C) and ``features`` (N, D); the model's
    ``har_info`` goes into ``metadata_props``."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    x = torch.zeros(1, 3, *input_shape)
    tmp = path.with_name(temp_prefix(path.name) + "onnx")
    two = hasattr(model, "forward_features")
    net = (_TwoOutputs(model) if two else model).eval()
    names = ["logits", "features"] if two else ["logits"]
    # A network whose padding does not depend on the clip length (I3D) keeps a
    # dynamic time axis too: one file runs 64-frame clips and whole videos.
    axes = {n: {0: "N"} for n in ["clips", *names]}
    if getattr(model, "dynamic_time", False):
        axes["clips"] = {0: "N", 2: "T"}
    try:
        with warnings.catch_warnings(), _fixed_avgpool(model, x):
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["clips"], output_names=names,
                              dynamic_axes=axes)
        meta = model_metadata(model)
        if meta:
            import onnx

            proto = onnx.load(str(tmp))
            del proto.metadata_props[:]
            for k, v in meta.items():
                proto.metadata_props.add(key=k, value=v)
            onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
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


def convert_openvino(model: nn.Module, input_shape=(16, 112, 112)):
    """``model`` as an OpenVINO model with the two outputs (``logits``, ``features``)
    and a dynamic batch axis (and time axis for a network that allows it).

    Converted straight from the PyTorch module by OpenVINO's PyTorch front end, whose
    constants share the module's memory: for ResNet-34 this peaked at 845-867 MB
    against 1600 MB through ``torch.onnx.export`` (one process each, from a loaded
    254 MB ``.pth`` at 714-732 MB; 2-core Intel Xeon with AMX, 2026-12-02; see
    docs/performance.md). A module the front end cannot convert goes through ONNX."""
    import warnings

    import openvino as ov

    model = model.to("cpu").eval()
    two = hasattr(model, "forward_features")
    net = (_TwoOutputs(model) if two else model).eval()
    x = torch.zeros(1, 3, *input_shape)
    t = -1 if getattr(model, "dynamic_time", False) else input_shape[0]
    shape = ov.PartialShape([-1, 3, t, *input_shape[1:]])
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(net, example_input=x, input=[shape])
    except Exception:  # noqa: BLE001 - the front end's gaps: the ONNX route converts it
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ov_model = ov.convert_model(str(export_onnx(model, Path(tmp) / "m.onnx",
                                                        input_shape)))
        return ov_model
    names = ["logits", "features"] if two else ["logits"]
    for out, name in zip(ov_model.outputs, names):
        out.get_tensor().set_names({name})
    ov_model.inputs[0].get_tensor().set_names({"clips"})
    return ov_model


def export_openvino(model: nn.Module, path: str | Path, input_shape=(16, 112, 112),
                    compress_to_fp16: bool = False, precision: str = "fp32",
                    calibration=None) -> Path:
    """Export to OpenVINO IR (``path`` .xml plus its .bin), converted straight from
    the module (:func:`convert_openvino`), with the metadata in ``rt_info["har"]``.
    ``precision="int8"`` quantizes with NNCF on ``calibration`` (an iterable of
    ``(N, 3, T, H, W)`` float32 batches)."""
    need("openvino", "openvino")
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    ov_model = convert_openvino(model, input_shape)
    if precision == "int8":
        from .quantize import quantize_openvino

        ov_model = quantize_openvino(ov_model, calibration, input_shape)
    meta = model_metadata(model)
    if meta:
        set_ov_metadata(ov_model, {**meta, "precision": precision})
    tmp_xml = path.with_name(temp_prefix(path.stem) + "xml")
    try:
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        del ov_model
        os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp_xml, path)
    finally:
        for p in (tmp_xml, tmp_xml.with_suffix(".bin")):
            with contextlib.suppress(OSError):
                p.unlink()
    return path


def export_onnx_cached(model: nn.Module, input_shape=(16, 112, 112)) -> Path:
    """One ONNX per (weights, clip shape) in the cache's ``exports/``."""
    return _export_once(model, input_shape, "onnx", export_onnx, model_metadata(model))


def export_openvino_cached(model: nn.Module, input_shape=(16, 112, 112)) -> Path:
    """One OpenVINO IR per (weights, clip shape) in the cache's ``exports/``, next to
    the ONNX exports the other runtimes use: OpenVINO's first run converts the module
    directly, without the ONNX exporter's memory peak (:func:`convert_openvino`)."""
    return _export_once(model, input_shape, "xml", export_openvino,
                        {**model_metadata(model), "precision": "fp32"})


def _export_once(model: nn.Module, input_shape, suffix: str, export, meta: dict) -> Path:
    """``export(model, path, input_shape)`` into the cache's ``exports/`` unless the
    file (and an IR's ``.bin``) is there; its sidecar holds ``meta``."""
    from .metadata import read_sidecar

    t, h, w = input_shape
    path = cache_dir() / "exports" / f"{state_key(model)}-{t}x{h}x{w}.{suffix}"
    remove_stale_temps(path.parent)  # what a killed export left
    files = [path, path.with_suffix(".bin")] if suffix == "xml" else [path]
    if not all(f.is_file() for f in files):
        # A cache that cannot be written raises here, before the note: the caller then
        # runs uncached and says so instead.
        path.parent.mkdir(parents=True, exist_ok=True)
        name = getattr(getattr(model, "har_info", None), "model", None) or "the model"
        print(f"note: converting {name} for the runtime: a one-time cost for these "
              f"weights (cached in {path.parent}); later runs start at once",
              file=sys.stderr)
        export(model, path, input_shape)
    if read_sidecar(path) != meta:  # missing, damaged or edited: the model's own metadata
        write_sidecar(path, meta)
    return path


def int8_ir_cached(model, input_shape=(16, 112, 112)) -> Path:
    """One int8 IR per weights sha256 in the cache's ``int8/``, calibrated on the
    default clips (``har export openvino --precision int8 --calibrate DIR`` for yours)."""
    from .quantize import default_calibration, default_calibration_size

    t, h, w = input_shape
    path = cache_dir() / "int8" / f"{state_key(model)}-{t}x{h}x{w}.xml"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        preset = getattr(getattr(model, "har_info", None), "preset", None)
        if preset is None:
            from ..transforms import HARA_KINETICS as preset
        name = getattr(getattr(model, "har_info", None), "model", None) or "the model"
        clips = default_calibration_size(preset)
        print(f"note: int8: calibrating {name} on {clips} synthetic "
              f"clips; a one-time cost for these weights (cached in {path.parent}; "
              "`har export openvino --precision int8 --calibrate DIR` calibrates on "
              "your videos)", file=sys.stderr)
        export_openvino(model, path, input_shape, precision="int8",
                        calibration=default_calibration(preset, clips))
    return path
