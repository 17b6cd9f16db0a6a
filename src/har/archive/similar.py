"""Search by example: the nearest clips by cosine similarity, through a FAISS index.

Vectors are stored in SQLite as float16 (table ``embeddings``). The index is built from
them and kept beside the database (``<db>.faiss``, with a ``.json`` stamp), updated in
place when the archive has changed a little, rebuilt when it has changed a lot. Small archives use an exact inner-product index;
from ``IVF_MIN`` vectors on an IVF index with float16 residuals (see bench/similar.py
for the measurement behind the choice).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import db

IVF_MIN = 200_000  # below this an exact search is fast enough (< 20 ms at 512-d)
NPROBE = 32  # bench/similar.py at 1M: recall@10 0.999, p95 0.8 ms (16: 0.987)


@dataclass(frozen=True)
class Neighbour:
    path: str
    clip: int
    start_s: float
    end_s: float
    similarity: float
    top_label: str
    top_score: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start_s"], d["end_s"] = round(self.start_s, 4), round(self.end_s, 4)
        d["similarity"] = round(self.similarity, 6)
        d["top_score"] = round(self.top_score, 6)
        return d


def _faiss():
    try:
        import faiss
    except ImportError:
        from ..errors import HarError
        from ..defaults import pip_hint

        raise HarError("har similar needs FAISS, which is not installed; install it "
                       f"with: {pip_hint('archive')}") from None
    return faiss


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def build_index(vectors: np.ndarray, ids: np.ndarray, *, ivf_min: int | None = None,
                nlist: int | None = None, nprobe: int = NPROBE, threads: int | None = None):
    """A FAISS inner-product index over L2-normalized ``vectors`` (cosine similarity)."""
    faiss = _faiss()
    if threads:
        faiss.omp_set_num_threads(threads)
    x = normalize(vectors)
    n, d = x.shape
    if n < (IVF_MIN if ivf_min is None else ivf_min):
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    else:
        nlist = nlist or int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist,
                                              faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = x[rng.choice(n, size=min(n, nlist * 39), replace=False)]
        index.train(train)
        index.nprobe = nprobe
    index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
    return index


def _stamp(conn: sqlite3.Connection) -> dict:
    """What the saved index must match. The indexer bumps ``embeddings_version`` in
    every video's transaction, so this costs no scan of the (large) embeddings table;
    an archive changed by hand (without it) is checked by its row count and largest id."""
    version = db.get_meta(conn, "embeddings_version")
    stamp = {"version": version, "kind": db.get_meta(conn, "embedding_kind"),
             "dim": db.get_meta(conn, "embedding_dim")}
    if version is None:
        n, mx = conn.execute("SELECT COUNT(*), COALESCE(MAX(clip_id), 0) "
                             "FROM embeddings").fetchone()
        stamp.update(count=n, max_id=mx)
    return stamp


def index_ids(index) -> np.ndarray:
    """The ids an index holds."""
    faiss = _faiss()
    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    il = faiss.extract_index_ivf(index).invlists
    parts = [faiss.rev_swig_ptr(il.get_ids(i), il.list_size(i)).copy()
             for i in range(il.nlist) if il.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _vectors(conn: sqlite3.Connection, dim: int, ids: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 vectors) of all embeddings, or of ``ids``."""
    out_ids, blobs = [], []
    if ids is None:
        rows = conn.execute("SELECT clip_id, vector FROM embeddings ORDER BY clip_id")
    else:
        rows = (r for chunk in range(0, len(ids), 900) for r in conn.execute(
            "SELECT clip_id, vector FROM embeddings WHERE clip_id IN (%s)"
            % ",".join("?" * len(ids[chunk:chunk + 900])),
            [int(i) for i in ids[chunk:chunk + 900]]))
    for cid, blob in rows:
        out_ids.append(cid)
        blobs.append(blob)
    return np.array(out_ids, dtype=np.int64), db.unpack_vectors(blobs, dim).astype(np.float32)


def load_index(conn: sqlite3.Connection, db_path: str | Path):
    """The archive's index, kept in ``<db>.faiss``: read (memory-mapped) when current;
    brought up to date in place when the archive changed a little (clips added, or
    removed by a re-indexed video); built anew when it changed a lot, or its kind."""
    faiss = _faiss()
    stamp = _stamp(conn)
    if stamp["dim"] is None or conn.execute("SELECT 1 FROM embeddings LIMIT 1").fetchone() is None:
        return None
    idx_path = Path(str(db_path) + ".faiss")
    stamp_path = Path(str(db_path) + ".faiss.json")
    try:
        old = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        old = None
    index = None
    dim = int(stamp["dim"])
    if isinstance(old, dict) and idx_path.is_file():
        try:
            if old == stamp:
                index = faiss.read_index(str(idx_path), faiss.IO_FLAG_MMAP)
                if _fits(index, dim):
                    if hasattr(index, "nprobe"):
                        index.nprobe = NPROBE
                    return index
                index = None  # another index under our name (another dimension): rebuilt
            elif (old.get("kind"), old.get("dim")) == (stamp["kind"], stamp["dim"]):
                index = faiss.read_index(str(idx_path))
                if not _fits(index, dim):
                    index = None
        except (RuntimeError, ValueError, TypeError):
            index = None
    if index is not None:
        have = index_ids(index)
        want = np.array([r[0] for r in conn.execute("SELECT clip_id FROM embeddings")],
                        dtype=np.int64)
        gone = np.setdiff1d(have, want, assume_unique=True)
        new = np.setdiff1d(want, have, assume_unique=True)
        exact = hasattr(index, "id_map")
        if (len(gone) + len(new) > len(want) // 2) or (exact and len(want) >= IVF_MIN):
            index = None  # rebuilt below: many changes, or large enough for IVF now
        else:
            if len(gone):
                index.remove_ids(faiss.IDSelectorBatch(gone))
            if len(new):
                ids, vecs = _vectors(conn, dim, new)
                index.add_with_ids(normalize(vecs), ids)
    if index is None:
        ids, vecs = _vectors(conn, dim)
        index = build_index(vecs, ids)
    if hasattr(index, "nprobe"):
        index.nprobe = NPROBE
    if os.access(idx_path.parent, os.W_OK) and not foreign_index(db_path):
        from ..fsutil import atomic_path

        try:
            with atomic_path(idx_path) as tmp:
                faiss.write_index(index, str(tmp))
            with atomic_path(stamp_path) as tmp:
                Path(tmp).write_text(json.dumps(stamp))
        except (OSError, RuntimeError):
            pass  # a read-only place: brought up to date again next time
    return index


def _fits(index, dim: int) -> bool:
    """Whether a read index is one har writes for vectors of ``dim`` values: an id-mapped
    exact index or an IVF one, inner product, of that dimension."""
    faiss = _faiss()
    if getattr(index, "d", None) != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return False
    if hasattr(index, "id_map"):
        return True
    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def foreign_index(db_path: str | Path) -> bool:
    """True when ``<db>.faiss`` or ``<db>.faiss.json`` exists but har did not write them
    (no stamp of har's): they are then neither read nor replaced, and the index is
    built in memory."""
    idx_path, stamp_path = Path(str(db_path) + ".faiss"), Path(str(db_path) + ".faiss.json")
    if not (os.path.lexists(idx_path) or os.path.lexists(stamp_path)):
        return False
    try:
        old = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return True
    return not (isinstance(old, dict) and {"version", "kind", "dim"} <= set(old))


def indexed_video(conn: sqlite3.Connection, path: str) -> tuple[int, float | None] | None:
    """(id, duration in seconds) of ``path`` in the archive, or None when it is not
    there as it is now on disk (same size and mtime), or failed."""
    from .indexer import file_key

    key = file_key(path)
    row = conn.execute("SELECT id, size, mtime, duration_s FROM videos WHERE path = ? AND "
                       "status != 'failed'", (key.path,)).fetchone()
    if row is None or (row[1], row[2]) != (key.size, key.mtime):
        return None
    return row[0], row[3]


def stored_query(conn: sqlite3.Connection, path: str, start_s: float | None,
                 end_s: float | None) -> np.ndarray | None:
    """The mean (normalized) vector of an indexed video's clips that overlap the span,
    or None when the video is not in the archive (as it is now on disk) or has no
    clip in the span."""
    row = indexed_video(conn, path)
    if row is None:
        return None
    dim = int(db.get_meta(conn, "embedding_dim") or 0)
    lo = -1e18 if start_s is None else start_s
    hi = 1e18 if end_s is None else end_s
    blobs = [r[0] for r in conn.execute(
        "SELECT e.vector FROM clips c JOIN embeddings e ON e.clip_id = c.id "
        "WHERE c.video_id = ? AND c.end_s > ? AND c.start_s < ? ORDER BY c.idx",
        (row[0], lo, hi if hi > lo else lo + 1e-9))]
    if not blobs or not dim:
        return None
    return normalize(normalize(db.unpack_vectors(blobs, dim).astype(np.float32)).mean(0))


def query_vector(clips, start_s: float | None, end_s: float | None, kind: str | None
                 ) -> np.ndarray | None:
    """The mean vector of freshly scored clips overlapping the span."""
    lo = -1e18 if start_s is None else start_s
    hi = 1e18 if end_s is None else end_s
    vecs = []
    for c in clips:
        if c.end_s > lo and c.start_s < max(hi, lo + 1e-9):
            if kind == "features":
                v = c.features
            else:
                from .indexer import centred_logits

                v = None if c.probs is None else centred_logits(c.probs)
            if v is not None:
                vecs.append(np.asarray(v, dtype=np.float32))
    if not vecs:
        return None
    return normalize(normalize(np.stack(vecs)).mean(0))


def nearest(conn: sqlite3.Connection, index, query: np.ndarray, k: int = 10
            ) -> list[Neighbour]:
    if index is None or index.ntotal == 0:
        return []
    sims, ids = index.search(normalize(query).reshape(1, -1), min(k, index.ntotal))
    out = []
    for sim, cid in zip(sims[0], ids[0]):
        if cid < 0:
            continue
        row = conn.execute(
            "SELECT v.path, c.idx, c.start_s, c.end_s, c.top_label, c.top_score "
            "FROM clips c JOIN videos v ON v.id = c.video_id WHERE c.id = ?",
            (int(cid),)).fetchone()
        if row is not None:  # the index may be a moment older than the database
            out.append(Neighbour(row[0], row[1], row[2], row[3], float(sim), row[4], row[5]))
    return out
