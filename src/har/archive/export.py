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
    from ..metrics import activitynet_detection, activitynet_document

    results: dict[str, list] = {}
    for vid, path in conn.execute("SELECT id, path FROM videos WHERE status != 'failed' "
                                  "ORDER BY path"):
        entries = results.setdefault(video_key(path), [])
        for label, s, e, mean in conn.execute(
                "SELECT label, start_s, end_s, mean_score FROM segments WHERE video_id = ? "
                "ORDER BY start_s, label", (vid,)):
            entries.append(activitynet_detection(label, mean, s, e))
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


def parquet_schema(pa):
    """The one schema of clip rows as Parquet, for ``har index-export --format parquet``
    and the Ray engine's ``--parquet DIR``: each clip with its video's fields, its top-k
    as JSON ``[[label, score], ...]`` and its embedding (float32 values of the float16
    that is stored; null when there is none). ``pa``: the pyarrow module."""
    return pa.schema([
        ("path", pa.string()), ("status", pa.string()), ("error", pa.string()),
        ("duration_s", pa.float64()), ("fps", pa.float64()), ("frames", pa.int64()),
        ("clip", pa.int64()), ("start_frame", pa.int64()), ("end_frame", pa.int64()),
        ("start_s", pa.float64()), ("end_s", pa.float64()), ("top_label", pa.string()),
        ("top_score", pa.float64()), ("topk", pa.string()),
        ("embedding", pa.list_(pa.float32()))])


def write_parquet(conn: sqlite3.Connection, path: str | Path, *, embeddings: bool = True) -> int:
    """Every clip in :func:`parquet_schema` (embeddings left null unless ``embeddings``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from . import db

    dim = int(db.get_meta(conn, "embedding_dim") or 0) if embeddings else 0
    vecs = dict(conn.execute("SELECT clip_id, vector FROM embeddings")) if dim else {}
    rows = []
    for (cid, path_, status, error, duration_s, fps, frames, idx, start_frame, end_frame,
         start_s, end_s, top_label, top_score, topk) in conn.execute(
            "SELECT c.id, v.path, v.status, v.error, v.duration_s, v.fps, v.frames, c.idx,"
            " c.start_frame, c.end_frame, c.start_s, c.end_s, c.top_label, c.top_score,"
            " c.topk FROM clips c JOIN videos v ON v.id = c.video_id ORDER BY v.path, c.idx"):
        blob = vecs.get(cid)
        rows.append({"path": path_, "status": status, "error": error,
                     "duration_s": duration_s, "fps": fps, "frames": frames, "clip": idx,
                     "start_frame": start_frame, "end_frame": end_frame, "start_s": start_s,
                     "end_s": end_s, "top_label": top_label, "top_score": top_score,
                     "topk": topk,
                     "embedding": None if blob is None else
                     np.frombuffer(blob, dtype="<f2").astype(np.float32).tolist()})
    table = pa.Table.from_pylist(rows, schema=parquet_schema(pa))
    from ..fsutil import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return len(rows)


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
