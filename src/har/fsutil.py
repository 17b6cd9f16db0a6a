"""Writing files without ever losing what the user had.

Every output goes to a temporary file in the destination's folder and is renamed over
the destination only once complete, so a full disk, a signal or a crash leaves either
the old file or the new one, never a mix; and a path har did not create is never
removed. Inputs and outputs are compared as files (device and inode), not as strings,
so a hard link or another spelling of an input is still recognised.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

# A prefix every temporary file har writes starts with (`har cache clean` and the
# directory scans of `har predict` skip these).
TEMP_PREFIX = ".har-tmp-"
# A temporary file left by a process that is gone (SIGKILL cannot clean up) is removed
# by the next run; one whose process cannot be told (an older name) after this long.
STALE_TEMP_S = 24 * 3600
_OWNER = re.compile(r"\.pid(\d+)-([0-9a-f]{6})\.")


def _host() -> str:
    """A short id of this machine: a pid means something only on the machine (and in
    the container) that wrote it, so another one's temporary files wait for the age bound."""
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(name: str = "") -> str:
    """The start of a temporary name for ``name``: har's prefix, the name (shortened),
    this process's id and the machine's, so that :func:`remove_stale_temps` knows when
    its owner is gone. E.g. ``.har-tmp-out.json.pid4242-3fa9c1.``"""
    return f"{TEMP_PREFIX}{name[:40]}.pid{os.getpid()}-{_host()}."


def _owner_gone(name: str) -> bool:
    found = _OWNER.findall(name)
    if not found:
        return False
    pid, host = int(found[-1][0]), found[-1][1]
    if pid == os.getpid() or host != _host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove har's temporary files (and folders) in ``folder`` whose process is gone,
    or that are older than :data:`STALE_TEMP_S`; only names that start with
    :data:`TEMP_PREFIX`, never anything else. Returns how many were removed."""
    import shutil
    import time

    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for e in entries:
        if not e.name.startswith(TEMP_PREFIX):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not (_owner_gone(e.name) or now - st.st_mtime > STALE_TEMP_S):
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed += 1
        except OSError:
            continue
    return removed


def display_path(path: str | os.PathLike) -> str:
    """A path as text that always encodes as UTF-8: bytes that are not valid UTF-8
    (held by Python as surrogate escapes) are shown as ``\\xNN``.

    >>> display_path(os.fsdecode(b"caf\\xe9.mp4"))
    'caf\\\\xe9.mp4'
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return clean_text(text)


def clean_text(text: str) -> str:
    """``text`` made encodable as UTF-8 (see :func:`display_path` for the escaped form)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return os.fsencode(text).decode("utf-8", errors="backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that no file name produces
            return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def clean(obj):
    """Every string in a JSON-like structure made encodable as UTF-8. Returns ``obj``
    itself when nothing needs escaping (the usual case: no copy of a large document)."""
    return obj if _encodable(obj) else _clean(obj)


def _encodable(obj) -> bool:
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
            return True
        except UnicodeEncodeError:
            return False
    if isinstance(obj, dict):
        return all(_encodable(k) and _encodable(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_encodable(v) for v in obj)
    return True


def _clean(obj):
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def is_special(path: str | os.PathLike) -> bool:
    """True for an existing path that is not a regular file or a directory (a device
    such as /dev/full or /dev/null, a FIFO, a socket): written in place, never replaced."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed onto ``dest``.

    On any error (or KeyboardInterrupt/SystemExit) only the temporary file is removed,
    and ``dest`` keeps what it held before. ``suffix`` keeps an extension that a writer
    looks at (e.g. ``.mp4`` for a muxer); the default is ``dest``'s own.
    A special file (``/dev/null``, a FIFO) is written directly: it cannot be renamed onto.
    """
    dest = Path(dest)
    if is_special(dest):
        yield dest
        return
    folder = dest.parent if str(dest.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name),
                               suffix=suffix if suffix is not None else dest.suffix,
                               dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """``open(dest, mode)`` that replaces ``dest`` only once everything is written
    and flushed to disk (see :func:`atomic_path`)."""
    if "b" in mode:
        encoding = None
    with atomic_path(dest) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(fh.fileno())


def write_text_atomic(dest: str | os.PathLike, text: str) -> None:
    with atomic_open(dest, "w") as fh:
        fh.write(text)


# -- small JSON files in the cache (memos, sidecars) ------------------------------------
def read_json(path: str | os.PathLike, default=None):
    """The JSON in ``path``, or ``default`` when it is missing, unreadable or not JSON
    (a memo or sidecar in the cache is only ever a shortcut: losing it costs time)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def write_json_quietly(path: str | os.PathLike, obj, **dumps) -> bool:
    """Write ``obj`` as JSON to ``path`` atomically, creating its folder; False (and
    nothing changed) when it cannot be written: a cache that cannot be written is only
    slower. ``dumps``: options for :func:`json.dumps`."""
    import json

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(obj, **dumps))
    except OSError:
        return False
    return True
