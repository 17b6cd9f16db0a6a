"""Inference runtimes: a preprocessed batch in, logits and pooled features out.

One module per runtime (``torch_runtime``, ``openvino_runtime``, ``onnxruntime_runtime``,
``opencv_runtime``) behind one interface (:class:`~har.runtimes.base.Runtime`):
``infer(batch) -> (logits (N, C) float32, features (N, D) float32)`` and
``runtime(batch) -> logits``; ``batch`` is ``(N, 3, T, H, W) float32``. Heavy
runtimes are imported lazily by the module that needs them; each is an optional extra.

=============  =======  ===============================================================
backend        device   notes
=============  =======  ===============================================================
torch          cpu      fp32 eager (bf16 autocast if asked)
torch          cuda     fp16 (or bf16/fp32), channels_last_3d, cudnn.benchmark
openvino       cpu      bf16 where the CPU has bf16 instructions, else fp32; int8 IRs
onnxruntime    cpu/cuda fp32
opencv         cpu      cv2.dnn on the ONNX export, the classic approach
=============  =======  ===============================================================

:func:`load_runtime` is the one model factory: from a registry name, a weights file
(``.pth``, the published ``.onnx``, or an ``.onnx``/``.xml`` written by ``har export``,
which runs directly in its runtime from its own metadata) or a ``har train`` run
folder, it gives a ready runtime that carries the registry entry's name, the labels,
preset and video head of the weights, and their digest. Every front end loads through
it: :class:`har.Recognizer` (so ``har predict``, ``eval``, ``live``, ``serve``,
``index``), the Ray engine's actors; its PyTorch stage,
:func:`har.models.zoo.load_model`, is what ``har train`` and ``har export`` start from.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..defaults import BACKENDS, PRECISIONS, pip_hint  # noqa: F401  (re-exported)
from ..errors import HarError, WeightsError
from .base import Runtime, RuntimeBase, installed as _installed, need as _need  # noqa: F401
from .metadata import read_onnx_metadata  # noqa: F401  (re-exported)

Backend = Runtime  # the old name

# What each runtime can compute in, per device ("auto" is always accepted).
SUPPORTED_PRECISIONS = {
    ("torch", "cpu"): ("fp32", "bf16"), ("torch", "cuda"): ("fp32", "fp16", "bf16"),
    ("openvino", "cpu"): ("fp32", "bf16", "int8"),
    ("onnxruntime", "cpu"): ("fp32",), ("onnxruntime", "cuda"): ("fp32",),
    ("opencv", "cpu"): ("fp32",),
}


def __getattr__(name: str):
    # Runtime classes, imported on first use (each pulls in its runtime).
    where = {"TorchBackend": "torch_runtime", "fuse_conv_bn": "torch_runtime",
             "export_onnx": "export", "export_onnx_cached": "export",
             "export_openvino": "export",
             "OpenVINOBackend": "openvino_runtime", "OnnxRuntimeBackend": "onnxruntime_runtime",
             "OpenCVBackend": "opencv_runtime"}.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{where}", __name__), name)


def _shown(path) -> str:
    """A file name in a message: UTF-8, control characters escaped."""
    from ..fsutil import display_path
    from ..text import printable

    return printable(display_path(path))


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


def _check_names(name: str, precision: str) -> None:
    if name not in BACKENDS:
        raise HarError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")
    if precision not in PRECISIONS:
        raise HarError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def make_backend(name: str, model, device: str = "cpu", *,
                 batch_size: int | None = None, precision: str = "auto",
                 input_shape: tuple[int, int, int] = (16, 112, 112)) -> Runtime:
    """Wrap ``model`` (a loaded torch module) in the runtime called ``name``.

    ``input_shape`` is (T, H, W) of one clip, used to export to ONNX for the other
    runtimes (one export per weights in the cache's ``exports/``).
    """
    if name == "auto":
        name = auto_backend(device)
    _check_names(name, precision)
    info = getattr(model, "har_info", None)
    if name == "torch":
        from .torch_runtime import TorchBackend

        return TorchBackend(model, device, batch_size=batch_size, precision=precision)
    if device != "cpu" and name != "onnxruntime":
        raise HarError(f"backend {name} runs on the CPU only; use --device cpu or --backend torch")
    if name == "opencv" and getattr(model, "dynamic_time", False):
        # Measured (tests/test_i3d.py): OpenCV's DNN module runs I3D's graph (time
        # reversal, dynamic clip length) to logits far from PyTorch's.
        raise HarError(f"--backend opencv computes {getattr(info, 'model', 'this model')} "
                       "wrongly (OpenCV's DNN module does not follow its time-reversed "
                       "padding); use --backend openvino, onnxruntime or torch")
    if precision == "int8":
        if name != "openvino":
            raise HarError("--precision int8 runs on --backend openvino only")
        from .export import int8_ir_cached

        try:
            ir = int8_ir_cached(model, input_shape)
        except OSError as exc:
            from ..weights import cache_dir

            raise HarError(f"--precision int8 keeps its quantized model in the cache "
                           f"{_shown(cache_dir())}, which cannot be written "
                           f"({exc.strerror or exc}); set HAR_HOME to a writable folder "
                           "or use --precision fp32") from None
        rt = _file_runtime(ir, name, device, batch_size, "auto")
        rt.precision = "int8"
    else:
        from .export import export_onnx_cached, export_openvino_cached
        from .metadata import read_sidecar

        export = export_openvino_cached if name == "openvino" else export_onnx_cached
        try:
            path = export(model, input_shape)
        except OSError as exc:  # HAR_HOME read-only, a file, or full
            rt = _uncached_runtime(model, input_shape, name, device, batch_size, precision,
                                   exc)
        else:
            # The runtime runs the file: when the caller drops the module too, it is
            # freed before the compile (its layers hold reference cycles, hence the
            # collect). First run of a ResNet-34 .pth: 896 MB -> 653 MB once compiled
            # (2-core Intel Xeon with AMX, 2026-12-02; docs/performance.md).
            del model
            import gc

            gc.collect()
            rt = _file_runtime(path, name, device, batch_size, precision,
                               read_sidecar(path))
    rt.set_info(info)
    return rt


_warned_uncached = False


def _uncached_runtime(model, input_shape, name: str, device: str, batch_size, precision,
                      exc: OSError) -> RuntimeBase:
    """The export written to a temporary folder, loaded, and removed: the cache cannot
    be written, so this run is slower (one warning line), but it runs."""
    import shutil
    import sys
    import tempfile

    from ..weights import cache_dir
    from .export import export_onnx

    global _warned_uncached
    if not _warned_uncached:
        _warned_uncached = True
        print(f"warning: the cache {_shown(cache_dir())} cannot be written "
              f"({exc.strerror or exc}); running without it (slower starts); set HAR_HOME "
              "to a writable folder", file=sys.stderr)
    from ..fsutil import temp_prefix

    folder = tempfile.mkdtemp(prefix=temp_prefix("export"))
    try:
        path = export_onnx(model, Path(folder) / "model.onnx", input_shape)
        return _file_runtime(path, name, device, batch_size, precision)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_failure(path, exc: BaseException, what: str) -> str:
    """One line for a model file a runtime could not load (truncated, missing its .bin,
    half an .xml, external data outside its folder)."""
    from ..text import printable

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # OpenVINO says where in its sources first; the cause is its last plain line.
    plain = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    reason = (plain[-1] if plain else lines[0]) if lines else type(exc).__name__
    reason = printable(reason)
    if len(reason) > 160:
        reason = reason[:157] + "..."
    xml = str(path).lower().endswith(".xml")
    hint = "an IR .xml needs its complete .bin beside it; " if xml else ""
    return (f"{_shown(path)}: {what} cannot load this model ({reason}); the file is "
            f"damaged, incomplete or refers to data outside its folder; {hint}export it "
            "again or pass the .pth it came from")


@contextlib.contextmanager
def _loading(path, what: str):
    """Any failure to read or compile ``path`` as one WeightsError line (exit 4)."""
    from ..errors import WeightsError

    try:
        yield
    except (HarError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise RuntimeError, protobuf errors...
        raise WeightsError(load_failure(path, exc, what)) from None


def _file_runtime(path: Path, name: str, device: str, batch_size, precision,
                  metadata: dict | None = None) -> RuntimeBase:
    with _loading(path, name):
        return _open_file_runtime(path, name, device, batch_size, precision, metadata)


def _open_file_runtime(path: Path, name: str, device: str, batch_size, precision,
                       metadata: dict | None = None) -> RuntimeBase:
    if name == "openvino":
        from .openvino_runtime import OpenVINOBackend

        return OpenVINOBackend(path, batch_size=batch_size, precision=precision,
                               metadata=metadata)
    if name == "onnxruntime":
        from .onnxruntime_runtime import OnnxRuntimeBackend

        if precision not in ("auto", "fp32"):
            raise HarError(f"--precision {precision}: onnxruntime runs fp32")
        return OnnxRuntimeBackend(path, device, batch_size=batch_size)
    if name == "opencv":
        from .opencv_runtime import OpenCVBackend

        return OpenCVBackend(path, batch_size=batch_size)
    raise HarError(f"{_shown(path)}: --backend {name} cannot run an exported file; use "
                   "--backend openvino or onnxruntime")


def exported_info(path: str | Path):
    """The :class:`~har.models.info.ModelInfo` in an ONNX / OpenVINO file written by
    ``har export``, or None (e.g. the published ONNX, which carries none)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        with _loading(path, "onnx"):
            meta = read_onnx_metadata(path)
    elif path.suffix.lower() == ".xml":
        _need("openvino", "openvino")
        import openvino as ov

        from .metadata import read_ov_metadata

        with _loading(path, "openvino"):
            meta = read_ov_metadata(ov.Core().read_model(str(path)))
    else:
        return None
    info = info_from_metadata(meta, path)
    if info is not None:
        import dataclasses

        info = dataclasses.replace(info, weights_path=str(path))
    return info


def info_from_metadata(meta: dict, path) -> "ModelInfo | None":
    """:meth:`ModelInfo.from_metadata`, with damaged metadata (labels that are not a
    list of names, a preset that is not JSON) as one WeightsError line naming ``path``."""
    from ..errors import WeightsError
    from ..models.info import ModelInfo

    try:
        info = ModelInfo.from_metadata(meta)
        ok = info is None or (len(info.labels) > 0 and
                              all(isinstance(x, str) for x in info.labels))
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise WeightsError(f"{_shown(path)}: its har metadata is damaged (labels or "
                           "preset unreadable); export the model again from its .pth")
    return info


def _published_onnx_runtime(model: str, path: Path, device, batch_size, precision):
    from ..models.info import ModelInfo
    from ..models.onnx_import import read_onnx_state_dict
    from ..models.zoo import get_entry
    from ..weights import file_sha256
    from .openvino_runtime import OpenVINOBackend

    entry = get_entry(model)
    digest = file_sha256(path)
    dim = _graph_checked(digest, entry.arch)
    if dim is None:
        import sys

        from ..weights import cache_dir

        print(f"note: first run with {path.name}: checking it against {entry.name} and "
              f"compiling it, a one-time cost for these weights (cached in {cache_dir()}); "
              "later runs start at once", file=sys.stderr)
        net = entry.build()
        read_onnx_state_dict(path, net)  # raises WeightsError naming where the graph diverges
        dim = getattr(net, "feature_dim", None)
        _graph_checked(digest, entry.arch, remember=dim)
    rt = OpenVINOBackend(path, batch_size=batch_size, precision=precision, add_features=True)
    if getattr(rt, "_n_out", 1) < 2:
        return None
    rt.set_info(ModelInfo(model=entry.name, arch=entry.arch, labels=entry.class_names,
                          preset=entry.preset, weights_sha256=digest,
                          weights_path=str(path), feature_dim=dim))
    return rt


def _graph_checked(digest: str, arch: str, remember: int | None = None) -> int | None:
    """The feature size of an ONNX file with this sha256 if its graph has been checked
    against ``arch`` before, else None (the check builds the network in PyTorch and maps
    every weight: seconds per start). ``remember``: record a check that passed, with
    the feature size. Kept in the cache's ``checked.json``."""
    from ..defaults import cache_dir
    from ..fsutil import read_json, write_json_quietly

    memo = cache_dir() / "checked.json"
    known = read_json(memo, {})
    known = known if isinstance(known, dict) else {}
    if remember is None:
        hit = known.get(digest)
        ok = isinstance(hit, dict) and hit.get("arch") == arch
        return int(hit["feature_dim"]) if ok and isinstance(hit.get("feature_dim"), int) else None
    known[digest] = {"arch": arch, "feature_dim": int(remember)}
    write_json_quietly(memo, known)  # a cache that cannot be written is only slower
    return int(remember)


def _cached_export_runtime(model: str, weights, backend: str, device: str, batch_size,
                           precision: str, sha256: str | None):
    """The runtime straight from the cached ONNX export of these weights, when there is
    one: a second run of the same ``.pth`` skips reading it into PyTorch (unpickling
    the whole file, building the network, loading the state) and exporting. The export's
    metadata brings the labels, preset and video head; it is used only when it names
    this file's sha256 and this registry model, else the full path runs."""
    import dataclasses

    from ..errors import WeightsError
    from ..models.zoo import get_entry
    from ..weights import cache_dir, file_sha256, resolve_weights

    entry = get_entry(model)
    try:
        path = resolve_weights(entry, weights, sha256=sha256, download=False)
    except (WeightsError, OSError):
        return None
    if path.suffix.lower() not in (".pth", ".pt", ".tar"):
        return None
    digest = file_sha256(path)
    # OpenVINO runs its own IR export (converted without ONNX), the others the ONNX
    kind = "xml" if backend == "openvino" else "onnx"
    found = sorted((cache_dir() / "exports").glob(f"{digest[:24]}-*.{kind}"))
    found = [f for f in found if ".tmp" not in f.name
             and (kind == "onnx" or f.with_suffix(".bin").is_file())]
    if len(found) != 1:
        return None
    from .metadata import read_sidecar, write_sidecar

    sidecar = read_sidecar(found[0])  # None when missing, damaged or edited
    try:
        rt = _file_runtime(found[0], backend, device, batch_size, precision, sidecar)
    except WeightsError:  # a damaged cached export: rebuild it the long way
        _discard_export(found[0])
        return None
    try:
        info = info_from_metadata(getattr(rt, "metadata", None) or {}, found[0])
        if info is None or info.weights_sha256 != digest or info.model != entry.name:
            return None
        rt.set_info(dataclasses.replace(info, weights_path=str(path)))
    except WeightsError:  # labels that do not fit the graph: the full path rebuilds
        return None
    if sidecar != rt.metadata:  # missing, rejected, or unlike the file (a runtime that
        # reads the file's own metadata): rebuilt from the export's metadata
        write_sidecar(found[0], rt.metadata)
    return rt


def _convert_in_child(model: str, weights, backend: str, sha256: str | None) -> bool:
    """The cached export of a local ``.pth`` written by a child process (True when it
    was); anything else, or any failure, leaves it to this process."""
    from ..models.zoo import get_entry
    from ..weights import resolve_weights
    from .convert import convert_in_child

    try:  # downloads the registry's file first if needed (errors: as load_model's)
        path = resolve_weights(get_entry(model), weights, sha256=sha256)
    except (WeightsError, OSError):
        return False
    if path.suffix.lower() not in (".pth", ".pt", ".tar"):
        return False
    return convert_in_child(model, path, "xml" if backend == "openvino" else "onnx",
                            sha256)


def _discard_export(path: Path) -> None:
    """Remove a cached export that cannot be loaded (har's own file in its cache)."""
    import contextlib as _cl

    from .metadata import metadata_sidecar

    for p in (path, metadata_sidecar(path)):
        with _cl.suppress(OSError):
            p.unlink()


def load_runtime(model: str, weights=None, *, backend: str = "auto", device: str = "cpu",
                 precision: str = "auto", batch_size: int | None = None,
                 sha256: str | None = None, module=None) -> Runtime:
    """The one model factory: the runtime for registry ``model`` with ``weights``,
    carrying ``labels``, ``preset``, ``model_name``, ``weights_sha256`` and the video
    head (``info``: :class:`~har.models.info.ModelInfo`).

    ``weights``: None (the registry's published weights), a file, an http(s) URL, or
    the folder of a ``har train`` run (its ``model.pth``). A fine-tuned checkpoint
    keeps its own labels, preset and registry model (``model`` may name another).

    An ``.onnx`` or ``.xml`` written by ``har export`` runs directly in OpenVINO / ONNX
    Runtime (``backend="auto"`` picks OpenVINO for ``.xml``) from its metadata; its own
    labels and preset are used. Anything else is loaded into PyTorch first
    (:func:`har.models.zoo.load_model`) and handed to the runtime (exported once per
    weights sha256 for the non-torch runtimes).
    """
    from ..models.zoo import get_entry, load_model, model_file

    weights = model_file(weights)  # a run folder: its model.pth
    if backend == "auto":
        backend = auto_backend(device)
    _check_names(backend, precision)
    text = str(weights) if weights is not None else ""
    suffix = Path(text).suffix.lower() if weights is not None and "://" not in text else ""
    if module is None and suffix in (".onnx", ".xml"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise HarError(f"{_shown(weights)}: no such weights file; check the --weights path")
        if suffix == ".xml" and backend != "openvino":
            if backend == "torch" and precision == "auto" and _installed("openvino"):
                backend = "openvino"
            elif backend != "openvino":
                raise HarError(f"{_shown(weights)}: an OpenVINO IR runs on --backend openvino "
                               "only")
        info = exported_info(path)
        if info is not None and backend in ("openvino", "onnxruntime"):
            if sha256:
                from ..weights import check_digest, file_sha256

                check_digest(path, file_sha256(path), sha256.lower(), str(path))
            from ..weights import file_sha256

            rt = _file_runtime(path, backend, device, batch_size, precision)
            if info.weights_sha256 is None:
                import dataclasses

                info = dataclasses.replace(info, weights_sha256=file_sha256(path))
            rt.set_info(info)
            meta_prec = getattr(rt, "metadata", {}).get("precision")
            if meta_prec == "int8":
                rt.precision = "int8"
            return rt
        if info is None and suffix == ".onnx" and backend == "openvino" and not sha256:
            # A plain export (OpenCV's published resnet-34_kinetics.onnx): check its graph
            # against the architecture with the ONNX import, then run the file itself.
            with _loading(path, "openvino"):
                rt = _published_onnx_runtime(model, path, device, batch_size, precision)
            if rt is not None:
                return rt
        if suffix == ".xml":
            raise HarError(f"{_shown(weights)}: an OpenVINO IR without har metadata; export it "
                           "with `har export openvino` (or pass the .pth/.onnx it came from)")
    get_entry(model)
    if module is None and backend in ("openvino", "onnxruntime") and precision != "int8":
        rt = _cached_export_runtime(model, weights, backend, device, batch_size, precision,
                                    sha256)
        if rt is not None:
            return rt
        if "torch" not in sys.modules and _convert_in_child(model, weights, backend, sha256):
            # first run of these weights: converted in a child process, so this one
            # never loads PyTorch (first-run memory, har.runtimes.convert)
            rt = _cached_export_runtime(model, weights, backend, device, batch_size,
                                        precision, sha256)
            if rt is not None:
                return rt
    if module is None:
        module = load_model(model, weights=weights, device="cpu", sha256=sha256)
    preset = getattr(getattr(module, "har_info", None), "preset", None) or get_entry(model).preset
    holder = [module]
    del module  # make_backend may drop the last reference before it compiles
    return make_backend(backend, holder.pop(), device, batch_size=batch_size,
                        precision=precision,
                        input_shape=(preset.clip_len, preset.crop, preset.crop))
