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
import tempfile
from pathlib import Path
from typing import IO, Iterator

# A prefix every temporary file har writes starts with (`har cache clean` and the
# directory scans of `har predict` skip these).
TEMP_PREFIX = ".har-tmp-"


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
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + dest.name[:40] + ".",
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
