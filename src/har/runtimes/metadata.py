"""Reading and writing har's metadata in exported files, without PyTorch.

ONNX ``metadata_props``, OpenVINO ``rt_info["har"]``, and the ``.meta.json`` sidecar of
the cache's exports (so a cached export is compiled without parsing it first).
"""

from __future__ import annotations

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
    parsing the export, as big as its weights (so OpenVINO can compile straight from
    its blob cache)."""
    return Path(path).with_suffix(".meta.json")


# The sidecar's own check: sha256 of its metadata (the weights' sha256 included), so a
# sidecar edited by hand (labels changed, cut short) no longer matches and is rebuilt
# from the export itself instead of overriding the weights' own labels.
SIDECAR_CHECK = "sidecar_sha256"


def _sidecar_digest(meta: dict[str, str]) -> str:
    import hashlib
    import json

    body = json.dumps({k: v for k, v in meta.items() if k != SIDECAR_CHECK}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def write_sidecar(path: str | Path, meta: dict[str, str]) -> None:
    from ..fsutil import write_json_quietly

    meta = {k: v for k, v in meta.items() if k != SIDECAR_CHECK}
    write_json_quietly(metadata_sidecar(path), {**meta, SIDECAR_CHECK: _sidecar_digest(meta)})


def read_sidecar(path: str | Path) -> dict[str, str] | None:
    """The metadata in ``path``'s sidecar, or None when there is none or it does not
    check out: not JSON, not strings, its digest does not match its content, or it
    names weights other than the ones the export's file name was made from."""
    from ..fsutil import read_json

    meta = read_json(metadata_sidecar(path))
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return None
    check = meta.pop(SIDECAR_CHECK, None)
    if check != _sidecar_digest(meta):
        return None
    sha = meta.get("weights_sha256") or ""
    if sha and not Path(path).name.startswith(sha[:24]):
        return None
    return meta
