"""Where weights come from: an explicit file, the cache, or (later) a download."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError


def cache_dir() -> Path:
    """``$HAR_HOME``, else ``$XDG_CACHE_HOME/har``, else ``~/.cache/har``."""
    home = os.environ.get("HAR_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "har"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def resolve_weights(entry, weights: str | os.PathLike | None = None, *,
                    sha256: str | None = None, download: bool = True) -> Path:
    """Return a local file holding weights for ``entry``."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{weights}: no such weights file; check the --weights path")
        return path
    for wf in entry.weights:
        cached = weights_dir() / wf.filename
        if cached.is_file():
            return cached
    raise WeightsError(missing_weights_message(entry))


def missing_weights_message(entry) -> str:
    where = []
    for wf in entry.weights:
        if wf.urls:
            size = f", {wf.size:,} bytes" if wf.size else ""
            where.append(f"download {wf.urls[0]} ({wf.filename}{size})")
        elif wf.note:
            where.append(f"get {wf.filename} from {wf.note}")
    src = "; or ".join(where) if where else "no public download is known"
    return (f"no weights for {entry.name} in {weights_dir()}: {src}; then pass it with "
            f"--weights FILE or copy it into {weights_dir()}/")
