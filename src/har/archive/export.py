"""Exports of the archive: ActivityNet detection JSON, clip CSV, Parquet."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import TextIO

FORMATS = ("activitynet", "csv", "parquet")
CLIP_COLUMNS = ["path", "status", "clip", "start_frame", "end_frame", "start_s", "end_s",
                "top_label", "top_score", "topk"]


def video_key(path: str) -> str:
    """ActivityNet names videos by id: the file name without its extension and without
    a leading ``v_`` (as ``har predict --activitynet``; :func:`har.metrics.video_id_for`)."""
    from ..metrics import video_id_for

    return video_id_for(path)


def activitynet(conn: sqlite3.Connection) -> dict:
    """The ActivityNet v1.3 detection format, as ``har predict --activitynet`` writes
    it: ``results[video] = [{label, score, segment}]``, one entry per action segment,
    scored by its mean clip probability."""
    from ..metrics import activitynet_document

    results: dict[str, list] = {}
    for vid, path in conn.execute("SELECT id, path FROM videos WHERE status != 'failed' "
                                  "ORDER BY path"):
        entries = results.setdefault(video_key(path), [])
        for label, s, e, mean in conn.execute(
                "SELECT label, start_s, end_s, mean_score FROM segments WHERE video_id = ? "
                "ORDER BY start_s, label", (vid,)):
            entries.append({"label": label, "score": round(mean, 6),
                            "segment": [round(s, 3), round(e, 3)]})
    return activitynet_document(results)


def clip_rows(conn: sqlite3.Connection):
    yield from conn.execute(
        "SELECT v.path, v.status, c.idx, c.start_frame, c.end_frame, c.start_s, c.end_s,"
        " c.top_label, c.top_score, c.topk FROM clips c JOIN videos v ON v.id = c.video_id "
        "ORDER BY v.path, c.idx")


def write_csv(conn: sqlite3.Connection, out: TextIO) -> int:
    w = csv.writer(out)
    w.writerow(CLIP_COLUMNS)
    n = 0
    for row in clip_rows(conn):
        w.writerow(row)
        n += 1
    return n


def write_parquet(conn: sqlite3.Connection, path: str | Path, *, embeddings: bool = True) -> int:
    """Clips (with their top-k as JSON and, when stored, the embedding as float16 list)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import db

    rows = list(clip_rows(conn))
    cols = {name: [r[i] for r in rows] for i, name in enumerate(CLIP_COLUMNS)}
    table = pa.table(cols)
    if embeddings:
        dim = int(db.get_meta(conn, "embedding_dim") or 0)
        vecs = dict(conn.execute(
            "SELECT v.path || '#' || c.idx, e.vector FROM embeddings e "
            "JOIN clips c ON c.id = e.clip_id JOIN videos v ON v.id = c.video_id"))
        values = []
        for r in rows:
            blob = vecs.get(f"{r[0]}#{r[2]}")
            values.append(None if blob is None or not dim
                          else np.frombuffer(blob, dtype="<f2").astype(np.float32).tolist())
        table = table.append_column("embedding", pa.array(values, type=pa.list_(pa.float32())))
    from ..fsutil import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return len(rows)


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
