"""The archive database: schema (documented in docs/archive.md) and connections.

SQLite in WAL mode: one writer (the indexer) commits one transaction per video, and
any number of readers (search, similar, export) read a consistent snapshot meanwhile.
A killed indexer loses at most the video it was writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HarError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS videos (
    id             INTEGER PRIMARY KEY,
    path           TEXT NOT NULL UNIQUE,   -- absolute path (or URL) as indexed
    size           INTEGER,                -- bytes, NULL for URLs
    mtime          REAL,                   -- st_mtime, NULL for URLs
    status         TEXT NOT NULL CHECK (status IN ('done', 'partial', 'failed')),
    error          TEXT,                   -- one line, when failed
    warnings       TEXT,                   -- JSON list, when partial
    duration_s     REAL,
    fps            REAL,
    frames         INTEGER,                -- frames decoded
    width          INTEGER,
    height         INTEGER,
    codec          TEXT,
    model          TEXT,
    weights_sha256 TEXT,
    top_label      TEXT,                   -- the video's top-1
    top_score      REAL,
    top            TEXT,                   -- JSON [[label, score], ...] (top-k)
    settings       TEXT,                   -- JSON: stride, tail, backend, ...
    indexed_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE IF NOT EXISTS clips (
    id          INTEGER PRIMARY KEY,       -- also the clip's id in the vector index
    video_id    INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,          -- clip index within the video
    start_frame INTEGER NOT NULL,
    end_frame   INTEGER NOT NULL,          -- exclusive
    start_s     REAL NOT NULL,
    end_s       REAL NOT NULL,
    top_label   TEXT NOT NULL,
    top_score   REAL NOT NULL,
    topk        TEXT NOT NULL,             -- JSON [[label, score], ...]
    UNIQUE (video_id, idx)
);
CREATE INDEX IF NOT EXISTS clips_label ON clips (top_label, top_score);
CREATE TABLE IF NOT EXISTS segments (
    id          INTEGER PRIMARY KEY,
    video_id    INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    start_s     REAL NOT NULL,
    end_s       REAL NOT NULL,
    mean_score  REAL NOT NULL,
    peak_score  REAL NOT NULL,
    start_clip  INTEGER,
    end_clip    INTEGER
);
CREATE INDEX IF NOT EXISTS segments_label ON segments (label, peak_score);
CREATE INDEX IF NOT EXISTS segments_video ON segments (video_id);
CREATE TABLE IF NOT EXISTS embeddings (
    clip_id INTEGER PRIMARY KEY REFERENCES clips(id) ON DELETE CASCADE,
    vector  BLOB NOT NULL                  -- float16 little-endian, meta 'embedding_dim' values
);
"""


# The columns of a har archive's videos table that the readers rely on: a SQLite file
# whose own ``videos`` table lacks them is someone else's database.
ARCHIVE_COLUMNS = {"path", "size", "mtime", "status", "error", "model", "weights_sha256",
                   "top_label", "top_score", "settings"}
SQLITE_MAGIC = b"SQLite format 3\x00"
LOCK_WAIT_S = 2.0  # how long the identity check waits for another process's lock


class ArchiveError(HarError):
    """The ``--db`` file cannot be used as an archive; ``str()`` is one line."""


class NotAnArchive(ArchiveError):
    """The file exists but is not a har archive database (it is never changed)."""


class ArchiveLocked(ArchiveError):
    """Another process holds an exclusive lock on the database."""


def is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def identify(path: str | Path, *, lock_wait_s: float = LOCK_WAIT_S) -> str:
    """What ``path`` is, found without writing anything (no table, no journal switch,
    no side file next to a database that is not in WAL mode already):

    * ``"missing"``: nothing there (a writer creates a new archive);
    * ``"new"``: an empty file or a SQLite database without any table (a writer that
      created it a moment ago may still be writing its schema);
    * ``"archive"``: a har archive.

    Raises :class:`NotAnArchive` for anything else (another program's database, a
    file that is not SQLite, a directory or a device) and :class:`ArchiveLocked` when
    another process holds an exclusive lock on it."""
    import stat as stat_mod
    from ..text import printable

    shown = printable(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise NotAnArchive(f"{shown}: cannot be read ({exc.strerror}); choose another "
                           "file") from None
    if not stat_mod.S_ISREG(st.st_mode):
        raise NotAnArchive(f"{shown}: is not a regular file, so not a har archive; "
                           "give the archive's file name")
    if st.st_size == 0:
        return "new"
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise NotAnArchive(f"{shown}: cannot be read ({exc.strerror}); choose another "
                           "file") from None
    if not head.startswith(SQLITE_MAGIC):
        raise NotAnArchive(f"{shown}: is not a har archive (not a SQLite database); it "
                           "was left as it is; give another --db file name")
    # A WAL database with no -wal file has no open connection and nothing uncommitted:
    # read it as immutable, so that no -wal/-shm file is left beside it.
    wal = len(head) > 19 and head[18] == 2 and head[19] == 2
    quiet = wal and not os.path.exists(os.fspath(path) + "-wal")
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro" + ("&immutable=1" if quiet else "")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=lock_wait_s, check_same_thread=False)
    except sqlite3.Error as exc:
        raise NotAnArchive(f"{shown}: cannot be opened as SQLite ({exc}); choose another "
                           "file") from None
    try:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return "new"
        cols = {r[1] for r in conn.execute("PRAGMA table_info(videos)")}
        version = None
        if "meta" in tables and {"key", "value"} <= {r[1] for r in
                                                     conn.execute("PRAGMA table_info(meta)")}:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else None
    except sqlite3.Error as exc:
        if is_busy(exc):
            raise ArchiveLocked(f"{shown}: is locked by another process; try again when "
                                "it has finished") from None
        raise NotAnArchive(f"{shown}: is not a readable SQLite database ({exc}); it was "
                           "left as it is; give another --db file name") from None
    finally:
        conn.close()
    if version is None or not ARCHIVE_COLUMNS <= cols or \
            not {"clips", "segments", "embeddings"} <= tables:
        what = "its own 'videos' table" if "videos" in tables else "other tables"
        raise NotAnArchive(f"{shown}: is a SQLite database with {what}, not a har archive; "
                           "it was left as it is; give another --db file name")
    if str(version) != str(SCHEMA_VERSION):
        raise NotAnArchive(f"{shown}: is a har archive of schema version {printable(version)}"
                           f", which this har (schema {SCHEMA_VERSION}) does not read; use "
                           "the har that made it, or another --db file")
    return "archive"


def connect(path: str | Path, *, readonly: bool = False, timeout_s: float = 30.0
            ) -> sqlite3.Connection:
    """Open (and for writers create) the archive. Readers never block the writer.

    Whether the file is a har archive is checked first, read-only (:func:`identify`):
    another program's database, or any other file, is refused (:class:`NotAnArchive`)
    and left byte for byte as it was. A reader gets ``FileNotFoundError`` for a
    missing file."""
    path = str(path)
    kind = identify(path)
    if readonly:
        if kind == "missing":
            raise FileNotFoundError(path)
        if kind != "archive":
            from ..text import printable

            raise NotAnArchive(f"{printable(path)}: is an empty database, not a har "
                               "archive yet; index videos into it first")
        # A plain connection that only reads: a "mode=ro" one cannot open a WAL database
        # whose -shm file is missing, and readers never block the writer anyway.
        conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False,
                               isolation_level=None)  # explicit BEGIN/COMMIT
        try:
            if kind != "archive":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints
            # The schema in one transaction: a second indexer starting at the same time
            # sees either no table (a new archive) or all of them.
            conn.executescript("BEGIN IMMEDIATE;" + SCHEMA +
                               "INSERT OR IGNORE INTO meta VALUES ('schema_version', "
                               f"'{SCHEMA_VERSION}');COMMIT;")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            if is_busy(exc):
                from ..text import printable

                raise ArchiveLocked(f"{printable(path)}: is locked by another process; "
                                    "try again when it has finished") from None
            raise
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))


def pack_vector(v: np.ndarray) -> bytes:
    return np.asarray(v, dtype="<f2").tobytes()


def unpack_vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float16)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), dim)


def topk_json(preds) -> str:
    return json.dumps([[p.label, round(float(p.score), 6)] for p in preds])
