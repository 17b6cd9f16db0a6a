"""Reading and writing har's metadata in exported files, without PyTorch.

ONNX ``metadata_props``, OpenVINO ``rt_info["har"]``, and the ``.meta.json`` sidecar of
the cache's exports (so a cached export is compiled without parsing it first).
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (without loading its weights)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def set_ov_metadata(ov_model, meta: dict[str, str]) -> None:
    for k, v in meta.items():
        ov_model.set_rt_info(v, ["har", k])


def read_ov_metadata(ov_model) -> dict[str, str]:
    out = {}
    try:
        info = ov_model.get_rt_info()
    except Exception:  # noqa: BLE001
        return out
    if "har" not in info:
        return out
    from ..models.info import META_KEYS

    for k in (*META_KEYS, "precision"):
        if ov_model.has_rt_info(["har", k]):
            v = ov_model.get_rt_info(["har", k])
            out[k] = v.astype(str) if hasattr(v, "astype") else str(v)
    return out


def metadata_sidecar(path: str | Path) -> Path:
    """``x.onnx`` -> ``x.meta.json``: a cached export's metadata, readable without
    parsing the 254 MB file (so OpenVINO can compile straight from its blob cache)."""
    return Path(path).with_suffix(".meta.json")


def write_sidecar(path: str | Path, meta: dict[str, str]) -> None:
    import json

    from ..fsutil import write_text_atomic

    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        write_text_atomic(metadata_sidecar(path), json.dumps(meta))


def read_sidecar(path: str | Path) -> dict[str, str] | None:
    import json

    try:
        meta = json.loads(metadata_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values()) \
        else None
