"""Indexing: which inputs need work, and writing one video's results in one transaction.

The engines (local: :meth:`har.Recognizer.run_many`; Ray: :mod:`har.archive.ray_engine`)
produce :class:`~har.results.VideoResult` objects with their clips; :func:`write_result`
stores each in a single transaction, replacing an older row for the same path.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import HarError
from ..results import VideoResult
from . import db


@dataclass(frozen=True)
class FileKey:
    """What identifies an input's content for re-runs: path, size and mtime."""

    path: str  # absolute path, or the URL as given
    size: int | None
    mtime: float | None


@dataclass
class Plan:
    todo: list[tuple[Any, FileKey]] = field(default_factory=list)  # (source, key)
    skipped: int = 0  # already indexed, unchanged
    skipped_failed: int = 0  # failed before; retried only with --retry-failed
    changed: int = 0  # indexed before, changed since: redone


@dataclass(frozen=True)
class IndexedWith:
    """What a video was indexed with (its row's model, weights_sha256 and settings);
    not to be confused with :class:`har.models.info.ModelInfo`, a model's provenance."""

    model: str
    weights_sha256: str | None
    settings: dict


def file_key(source) -> FileKey:
    """The key of a :class:`har.sources.Source` (or a path)."""
    if hasattr(source, "local") and not source.local:
        return FileKey(source.url, None, None)
    path = os.path.abspath(getattr(source, "url", source))
    try:
        st = os.stat(path)
        return FileKey(path, st.st_size, st.st_mtime)
    except OSError:
        return FileKey(path, None, None)


def plan(conn: sqlite3.Connection, sources: Iterable, *, retry_failed: bool = False) -> Plan:
    """Split the inputs into work to do and inputs already indexed as they are now."""
    out = Plan()
    known = {row[0]: row[1:] for row in
             conn.execute("SELECT path, size, mtime, status FROM videos")}
    for src in sources:
        key = file_key(src)
        old = known.get(key.path)
        if old is not None:
            size, mtime, status = old
            same = size == key.size and mtime == key.mtime
            if same and status == "failed" and not retry_failed:
                out.skipped_failed += 1
                continue
            if same and status != "failed":
                out.skipped += 1
                continue
            if not same:
                out.changed += 1
        out.todo.append((src, key))
    return out


def weights_sha256(args_weights: str | None, recognizer) -> str | None:
    """The sha256 of the weights in use: what the loaded model carries (``har_info``),
    else the file's."""
    backend = getattr(recognizer, "backend", None)
    for holder in (recognizer, backend, getattr(backend, "model", None)):
        info = getattr(holder, "har_info", None) or getattr(holder, "info", None)
        value = getattr(info, "weights_sha256", None)
        if isinstance(value, str) and len(value) == 64:
            return value
    for obj in (backend, recognizer):
        for attr in ("weights_sha256", "sha256"):
            value = getattr(obj, attr, None)
            if isinstance(value, str) and len(value) == 64:
                return value
    if args_weights and os.path.isfile(args_weights):
        from ..weights import sha256_file

        return sha256_file(args_weights)
    return None


def _embedding(clip, kind: str | None = None) -> tuple[str, np.ndarray] | None:
    """The clip's vector for search by example: the runtime's pooled features, or, from
    a runtime that gives none, its centred logits (log-probabilities minus their mean,
    which are the logits up to a shift; probabilities themselves are nearly one-hot).
    ``kind``: the archive's kind, kept when the clip can give it."""
    if kind == "logits" and clip.probs is not None:
        return "logits", centred_logits(clip.probs)
    if clip.features is not None:
        return "features", np.asarray(clip.features, dtype=np.float32)
    if clip.probs is not None:
        return "logits", centred_logits(clip.probs)
    return None


def centred_logits(probs: np.ndarray) -> np.ndarray:
    lp = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-38))
    return (lp - lp.mean()).astype(np.float32)


def write_result(conn: sqlite3.Connection, key: FileKey, result: VideoResult,
                 info: IndexedWith) -> int:
    """Store one video (replacing any older row for its path) in one transaction.
    Returns the video's id."""
    from ..writers import video_status

    status = video_status(result)
    top = result.top[0] if result.top else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM videos WHERE path = ?", (key.path,))
        # Tells har similar's saved vector index that the archive changed (O(1) check).
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('embeddings_version', '0')")
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                     "WHERE key = 'embeddings_version'")
        cur = conn.execute(
            "INSERT INTO videos (path, size, mtime, status, error, warnings, duration_s, fps,"
            " frames, width, height, codec, model, weights_sha256, top_label, top_score, top,"
            " settings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (key.path, key.size, key.mtime, status, result.error,
             json.dumps(result.warnings) if result.warnings else None,
             result.duration_s, result.fps, result.frames if result.ok else None,
             result.width, result.height, result.codec, info.model, info.weights_sha256,
             top.label if top else None, float(top.score) if top else None,
             db.topk_json(result.top) if result.top else None,
             json.dumps(info.settings, sort_keys=True)))
        vid = cur.lastrowid
        if result.ok:
            _write_clips(conn, vid, result)
            conn.executemany(
                "INSERT INTO segments (video_id, label, start_s, end_s, mean_score,"
                " peak_score, start_clip, end_clip) VALUES (?,?,?,?,?,?,?,?)",
                [(vid, s.label, s.start_s, s.end_s, float(s.mean_score),
                  float(s.peak_score), s.start_clip, s.end_clip) for s in result.segments])
        conn.execute("COMMIT")
    except BaseException:
        # in_transaction: a signal that lands just after COMMIT must not turn into a
        # "no transaction is active" error that hides it.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return vid


def _write_clips(conn: sqlite3.Connection, vid: int, result: VideoResult) -> None:
    kind = db.get_meta(conn, "embedding_kind")
    dim = db.get_meta(conn, "embedding_dim")
    for c in result.clips:
        top = c.top[0]
        cur = conn.execute(
            "INSERT INTO clips (video_id, idx, start_frame, end_frame, start_s, end_s,"
            " top_label, top_score, topk) VALUES (?,?,?,?,?,?,?,?,?)",
            (vid, c.index, c.start_frame, c.end_frame, c.start_s, c.end_s, top.label,
             float(top.score), db.topk_json(c.top)))
        emb = _embedding(c, kind)
        if emb is None:
            continue
        k, vec = emb
        if kind is None:  # the first vectors fix the archive's embedding kind and size
            kind, dim = k, str(vec.shape[0])
            db.set_meta(conn, "embedding_kind", kind)
            db.set_meta(conn, "embedding_dim", dim)
        if k != kind or vec.shape[0] != int(dim):
            # Same model (claim_model checked it), but a runtime without pooled features
            # (a plain ONNX file): its clips would silently lack vectors.
            raise ModelMismatch(
                f"the archive holds clip vectors of kind '{kind}' ({dim} values) but this "
                f"run's runtime gives '{k}' ({vec.shape[0]} values); index with a runtime "
                "that gives the same (the one the archive was made with), or into another "
                "--db")
        conn.execute("INSERT INTO embeddings VALUES (?, ?)", (cur.lastrowid, db.pack_vector(vec)))


def write_failed_input(conn: sqlite3.Connection, text: str, error: str, info: IndexedWith) -> None:
    """An input that could not even be resolved (missing file, bad glob)."""
    key = file_key(text)
    write_result(conn, key, VideoResult(path=text, error=error), info)


def index_local(recognizer, conn: sqlite3.Connection, todo: list, info: IndexedWith, *,
                workers: int = 1, on_result: Callable[[VideoResult], None] | None = None
                ) -> list[VideoResult]:
    """Run the recognizer over ``todo`` ([(source, key)]) and store each video as it
    ends. Returns the (lightened) results."""
    from ..recognizer import ClipEvent

    keys = [key for _, key in todo]
    done: list[VideoResult] = []
    events = recognizer.run_many([s for s, _ in todo], workers=workers, keep_clips=True)
    try:
        for ev in events:
            if isinstance(ev, ClipEvent):
                continue
            write_result(conn, keys[ev.input_index], ev, info)
            ev.probs = None
            ev.clips = []
            done.append(ev)
            if on_result is not None:
                on_result(ev)
    finally:
        # An interrupt (Ctrl-C, SIGTERM) while a result is written must stop the video
        # in flight here, where its decode thread is stopped and joined before its
        # container is closed, not later when the garbage collector (or interpreter
        # exit) happens to finalize the generator under a thread that is still reading.
        events.close()
    return done


def model_info(recognizer, settings: dict, weights: str | None) -> IndexedWith:
    """What an archive records about the model of a run: its name, its weights' sha256,
    and ``settings`` (the clip and timeline options) with the clip length, runtime and
    precision in use."""
    backend = recognizer.backend
    full = {**settings, "clip_len": recognizer.preset.clip_len, "backend": backend.name,
            "precision": getattr(backend, "precision", None)}
    return IndexedWith(recognizer.model_name, weights_sha256(weights, recognizer), full)


class ModelMismatch(HarError):
    """The archive was indexed with another model: its vectors are not comparable."""


def _short(sha: str | None) -> str:
    return f"weights sha256 {sha[:12]}" if sha else "weights of unknown sha256"


def archive_model(conn: sqlite3.Connection) -> tuple[str, str | None] | None:
    """(model, weights sha256) the archive's vectors come from, or None when it holds
    none yet. Archives written before this was recorded: from their indexed videos."""
    name = db.get_meta(conn, "model")
    if name is not None:
        return name, db.get_meta(conn, "weights_sha256") or None
    row = conn.execute("SELECT model, weights_sha256 FROM videos WHERE status != 'failed' "
                       "AND model IS NOT NULL ORDER BY id LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1])


def same_model(stored: tuple[str, str | None], model: str, sha: str | None) -> bool:
    """Whether ``model``/``sha`` give vectors comparable with ``stored``'s (the weights
    are compared when both digests are known)."""
    name, stored_sha = stored
    return name == model and (stored_sha is None or sha is None or stored_sha == sha)


def describe_model(model: str, sha: str | None) -> str:
    from ..text import printable

    return f"{printable(model)} ({_short(sha)})"


def claim_model(conn: sqlite3.Connection, info: IndexedWith, db_name: str) -> None:
    """Record the run's model as the archive's, or raise :class:`ModelMismatch` when the
    archive was indexed with another one (another model or other weights: a different
    feature space, whose vectors and labels must not be mixed with these)."""
    from ..text import printable

    conn.execute("BEGIN IMMEDIATE")  # two runs starting at once: one claims, one compares
    try:
        stored = archive_model(conn)
        if stored is not None and not same_model(stored, info.model, info.weights_sha256):
            raise ModelMismatch(
                f"--db {printable(db_name)} was indexed with {describe_model(*stored)}, "
                f"but this run uses {describe_model(info.model, info.weights_sha256)}; "
                "their clip vectors and labels cannot be mixed: give the archive's model "
                "(--model/--weights), or index into another --db")
        if db.get_meta(conn, "model") is None:
            db.set_meta(conn, "model", (stored or (info.model,))[0])
            sha = (stored[1] if stored is not None else None) or info.weights_sha256
            db.set_meta(conn, "weights_sha256", sha or "")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
