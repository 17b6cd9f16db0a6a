"""Jobs in SQLite: what was accepted survives a crash, and each job finishes once.

Layout of the data folder::

    DATA/jobs.sqlite3          the job table (WAL journal)
    DATA/uploads/<id>.video    the uploaded or downloaded video (generated name)
    DATA/results/<id>.json     the har.predictions/1 document of a done job
    DATA/results/<id>.annotated.mp4
    (table ``streams``)        the live streams, opened again when the server starts

A job moves ``queued -> running -> done | failed`` (or ``cancelled`` by a client).
On start, jobs left ``running`` by a killed server go back to ``queued`` (their
``attempts`` count says so); the final transition is one ``UPDATE ... WHERE status =
'running'``, so a job can end only once. A job stopped by a shutdown (SIGTERM, Ctrl-C) goes back to ``queued``.

``DATA/serve.lock`` is held (``flock``) while a server uses the folder, so a second
server on the same folder refuses to start instead of running the same jobs twice.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HarError
from ..fsutil import TEMP_PREFIX

STATUSES = ("queued", "running", "done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'file' | 'url'
    name TEXT NOT NULL,            -- the uploaded file name or the URL (display only)
    url TEXT,
    options TEXT NOT NULL,         -- JSON
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    finishes INTEGER NOT NULL DEFAULT 0,
    top1 TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    options TEXT NOT NULL,         -- JSON
    created REAL NOT NULL
);
"""
_COLUMNS = ("id, seq, status, kind, name, url, options, created, started, finished, "
            "progress, error, attempts, finishes, top1")


@dataclass
class Job:
    id: str
    seq: int
    status: str
    kind: str
    name: str
    url: str | None
    options: dict[str, Any]
    created: float
    started: float | None = None
    finished: float | None = None
    progress: float = 0.0
    error: str | None = None
    attempts: int = 0
    finishes: int = 0
    top1: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "kind": self.kind, "name": self.name,
                "options": self.options, "created": self.created, "started": self.started,
                "finished": self.finished, "progress": round(self.progress, 4),
                "error": self.error, "attempts": self.attempts, "top1": self.top1}


class DataInUse(HarError):
    """Another server holds the data folder's lock."""


def _lock_folder(data: Path):
    """An open file holding an exclusive ``flock`` on ``data/serve.lock`` (None where
    the platform has no flock); :class:`DataInUse` when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        return None
    path = data / "serve.lock"
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the store's life
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return fh  # a file system without locks (some network mounts): go on
        fh.seek(0)
        pid = fh.read().strip()[:20]
        fh.close()
        raise DataInUse(f"{data}: another har serve uses this --data folder"
                        + (f" (pid {pid})" if pid.isdigit() else "")
                        + "; stop it, or give this server another --data") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


class JobStore:
    """Thread-safe access to the job table under ``data``; ``lock`` (default) takes
    the folder's lock file first (:class:`DataInUse` when another server has it)."""

    def __init__(self, data: str | Path, *, lock: bool = True) -> None:
        self.data = Path(data).resolve()
        self.uploads = self.data / "uploads"
        self.results = self.data / "results"
        for d in (self.data, self.uploads, self.results):
            d.mkdir(parents=True, exist_ok=True)
        self._lockfile = _lock_folder(self.data) if lock else None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data / "jobs.sqlite3", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        names = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
        if "idem" not in names:  # a folder from an older version: add the column
            self._db.execute("ALTER TABLE jobs ADD COLUMN idem TEXT")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(idem) "
                         "WHERE idem IS NOT NULL")
        self.wakeup = threading.Condition()

    # -- paths (generated names only; nothing from the client reaches a path) --
    def upload_path(self, job_id: str) -> Path:
        return self.uploads / f"{_check_id(job_id)}.video"

    def result_path(self, job_id: str) -> Path:
        return self.results / f"{_check_id(job_id)}.json"

    def annotated_path(self, job_id: str) -> Path:
        return self.results / f"{_check_id(job_id)}.annotated.mp4"

    # -- queries ------------------------------------------------------------
    def _row(self, row) -> Job:
        (id_, seq, status, kind, name, url, options, created, started, finished, progress,
         error, attempts, finishes, top1) = row
        return Job(id_, seq, status, kind, name, url, json.loads(options), created, started,
                   finished, progress, error, attempts, finishes, top1)

    def get_unlocked(self, job_id: str) -> Job | None:
        """:meth:`get` for a caller that holds the lock already."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?",
                                (job_id,)).fetchall()
        return self._row(rows[0]) if rows else None

    def _query(self, sql: str, args: tuple = ()) -> list[Job]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def get(self, job_id: str) -> Job | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def by_key(self, key: str) -> Job | None:
        """The job submitted with this idempotency key, if any."""
        rows = self._query(f"SELECT {_COLUMNS} FROM jobs WHERE idem = ?", (key,))
        return rows[0] if rows else None

    def list(self, limit: int = 200, before: int | None = None) -> list[Job]:
        """Jobs newest first; ``before``: only those older than that ``seq`` (a cursor)."""
        if before is None:
            return self._query(f"SELECT {_COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?",
                               (limit,))
        return self._query(f"SELECT {_COLUMNS} FROM jobs WHERE seq < ? ORDER BY seq DESC "
                           "LIMIT ?", (before, limit))

    def count(self, *statuses: str) -> int:
        marks = ",".join("?" * len(statuses))
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})",
                                    statuses).fetchone()[0]

    # -- changes ------------------------------------------------------------
    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def add(self, job_id: str, kind: str, name: str, options: dict[str, Any],
            url: str | None = None, max_queue: int | None = None,
            key: str | None = None) -> Job | None:
        """Queue a job; None when ``max_queue`` jobs are already waiting or running.
        With an idempotency ``key`` that a job already has, that job is returned and
        nothing is added."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if key is not None:
                    row = self._db.execute("SELECT id FROM jobs WHERE idem = ?",
                                           (key,)).fetchone()
                    if row is not None:
                        self._db.execute("ROLLBACK")
                        job_id = row[0]
                        return self.get_unlocked(job_id)
                    waiting = self._db.execute(
                        "SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running')"
                    ).fetchone()[0]
                    if waiting >= max_queue:
                        self._db.execute("ROLLBACK")
                        return None
                seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
                self._db.execute(
                    "INSERT INTO jobs (id, seq, status, kind, name, url, options, created, "
                    "idem) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                    (job_id, seq, kind, name, url, json.dumps(options), time.time(), key))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.notify()
        return self.get(job_id)

    def notify(self) -> None:
        with self.wakeup:
            self.wakeup.notify_all()

    def recover(self) -> int:
        """Jobs a killed server left running go back to the queue (run again), and
        files that no job owns are removed (see :meth:`clean_orphans`)."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET status = 'queued', progress = 0 "
                                   "WHERE status = 'running'")
        self.clean_orphans()
        return cur.rowcount

    def requeue(self, job_id: str) -> bool:
        """running -> queued: the job was stopped by a shutdown and runs again."""
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET status = 'queued', progress = 0 "
                                   "WHERE id = ? AND status = 'running'", (job_id,))
            return cur.rowcount == 1

    def clean_orphans(self) -> list[str]:
        """Remove what a killed server or a dropped upload left: har's temporary files
        and uploads/results of jobs that do not exist. Only names har generates are
        touched (``<32 hex>.*`` and ``.har-tmp-*``); anything else is left alone."""
        with self._lock:
            ids = {r[0] for r in self._db.execute("SELECT id FROM jobs").fetchall()}
        removed = []
        for folder in (self.uploads, self.results):
            for path in folder.iterdir():
                name = path.name
                stem = name.split(".", 1)[0]
                ours = name.startswith(TEMP_PREFIX) or (
                    _is_id(stem) and stem not in ids and name[32:33] == ".")
                if ours and path.is_file() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed.append(name)
        return removed

    def claim(self) -> Job | None:
        """The oldest queued job, now running; None when the queue is empty."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT id FROM jobs WHERE status = 'queued' "
                                   "ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                self._db.execute("COMMIT")
                return None
            self._db.execute("UPDATE jobs SET status = 'running', started = ?, progress = 0, "
                             "attempts = attempts + 1 WHERE id = ?", (time.time(), row[0]))
            self._db.execute("COMMIT")
        return self.get(row[0])

    def set_progress(self, job_id: str, progress: float) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running'",
                             (min(max(progress, 0.0), 1.0), job_id))

    def finish(self, job_id: str, status: str, error: str | None = None,
               top1: str | None = None) -> bool:
        """running -> done/failed, once: False when the job was not running (deleted)."""
        assert status in ("done", "failed")
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, top1 = ?, finished = ?, "
                "progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, "
                "finishes = finishes + 1 WHERE id = ? AND status = 'running'",
                (status, error, top1, time.time(), status, job_id))
            return cur.rowcount == 1

    def expire(self, max_age_s: float) -> list[str]:
        """Delete ended jobs (done, failed, cancelled) that finished more than
        ``max_age_s`` ago, with their upload and results; their ids."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed', 'cancelled') "
                "AND finished < ?", (time.time() - max_age_s,)).fetchall()]
        for job_id in ids:
            self.delete(job_id)
        return ids

    def cancel(self, job_id: str) -> bool:
        """queued/running -> cancelled (kept, with its upload); False when it ended."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'cancelled', error = 'cancelled by a client', "
                "finished = ? WHERE id = ? AND status IN ('queued', 'running')",
                (time.time(), job_id))
            return cur.rowcount == 1

    def delete(self, job_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        for path in (self.upload_path(job_id), self.result_path(job_id),
                     self.annotated_path(job_id)):
            path.unlink(missing_ok=True)
        return cur.rowcount == 1

    # -- live streams (har.serve.streams): kept so that they restart with the server
    def add_stream(self, stream_id: str, name: str, url: str, options: dict[str, Any]
                   ) -> float:
        """Keep a stream; its creation time."""
        created = time.time()
        with self._lock:
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM streams"
                                   ).fetchone()[0]
            self._db.execute("INSERT INTO streams (id, seq, name, url, options, created) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (stream_id, seq, name, url, json.dumps(options), created))
        return created

    def streams(self) -> list[dict[str, Any]]:
        """The kept streams, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, url, options, created FROM streams "
                                    "ORDER BY seq").fetchall()
        return [{"id": r[0], "name": r[1], "url": r[2], "options": json.loads(r[3]),
                 "created": r[4]} for r in rows]

    def delete_stream(self, stream_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
        return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._lockfile is not None:
            self._lockfile.close()  # releases the flock
            self._lockfile = None


def _is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _check_id(job_id: str) -> str:
    if not _is_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id
