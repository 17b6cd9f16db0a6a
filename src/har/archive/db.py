"""The archive database: schema (documented in docs/archive.md) and connections.

SQLite in WAL mode: one writer (the indexer) commits one transaction per video, and
any number of readers (search, similar, export) read a consistent snapshot meanwhile.
A killed indexer loses at most the video it was writing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

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


def connect(path: str | Path, *, readonly: bool = False, timeout_s: float = 30.0
            ) -> sqlite3.Connection:
    """Open (and for writers create) the archive. Readers never block the writer."""
    path = str(path)
    if readonly:
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        # A plain connection that only reads: a "mode=ro" one cannot open a WAL database
        # whose -shm file is missing, and readers never block the writer anyway.
        conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
        try:
            ok = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                              "name='videos'").fetchone()
        except sqlite3.DatabaseError:
            ok = None
        if not ok:
            conn.close()
            raise NotAnArchive(path)
    else:
        conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False,
                               isolation_level=None)  # explicit BEGIN/COMMIT
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


class NotAnArchive(Exception):
    """The file exists but is not a har archive database."""


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
