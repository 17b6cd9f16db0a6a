"""What har keeps in its cache directory, and removing it.

Layout under :func:`har.defaults.cache_dir`:

- ``weights/``   downloaded weights (registry files, ``urls/`` for ``--weights URL``)
- ``exports/``   one ONNX per (weights sha256, clip shape), for OpenVINO/ONNX Runtime/OpenCV
- ``int8/``      one NNCF-quantized OpenVINO IR per (weights sha256, clip shape)
- ``openvino/``  OpenVINO's compiled-model cache (``CACHE_DIR``; keyed by OpenVINO
                 itself on the model and the device settings)
- ``converted/`` state dicts converted from ONNX files (the ONNX import)
- ``digests.json`` sha256 of weights files, by path, size and mtime
- ``checked.json`` sha256 of ONNX files whose graph was checked against the architecture

``har cache clean`` removes only these names, never anything else in the folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .defaults import cache_dir

KINDS = ("weights", "exports", "int8", "openvino", "converted")
FILES = ("digests.json", "checked.json")


@dataclass(frozen=True)
class CacheEntry:
    kind: str  # one of KINDS, or "index" for digests.json
    path: Path
    size: int
    mtime: float


def cache_entries() -> list[CacheEntry]:
    root = cache_dir()
    out: list[CacheEntry] = []
    for kind in KINDS:
        base = root / kind
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and not p.is_symlink():
                st = p.stat()
                out.append(CacheEntry(kind, p, st.st_size, st.st_mtime))
    for name in FILES:
        p = root / name
        if p.is_file():
            st = p.stat()
            out.append(CacheEntry("index", p, st.st_size, st.st_mtime))
    return out


def totals(entries: list[CacheEntry]) -> dict[str, tuple[int, int]]:
    """kind -> (files, bytes)."""
    out: dict[str, tuple[int, int]] = {}
    for e in entries:
        n, b = out.get(e.kind, (0, 0))
        out[e.kind] = (n + 1, b + e.size)
    return out


def clean(older_than_days: float | None = None, keep_weights: bool = False) -> tuple[int, int]:
    """Remove har's cached files (only those older than ``older_than_days`` if given).
    Returns (files removed, bytes freed)."""
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    n = freed = 0
    for e in cache_entries():
        if keep_weights and e.kind == "weights":
            continue
        if cutoff is not None and e.mtime > cutoff:
            continue
        try:
            e.path.unlink()
        except OSError:
            continue
        n += 1
        freed += e.size
    for kind in KINDS:  # drop emptied folders
        base = cache_dir() / kind
        if base.is_dir():
            for d in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                with _quiet():
                    d.rmdir()
            with _quiet():
                base.rmdir()
    return n, freed


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"

