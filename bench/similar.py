"""Search-by-example benchmark for `har similar`: 1 million clip embeddings.

    flock /tmp/har-bench.lock python bench/similar.py            # 1,000,000 x 512
    python bench/similar.py --n 100000 --queries 100             # quicker

Vectors: 512-d float16 (what the archive stores), drawn around 2,000 random centres
(clusters of very different sizes, plus noise), so nearest neighbours are not trivial.
Queries: stored vectors with extra noise (as a clip of an indexed video would be).

Compared side by side in one run, each with the machine's cores:
* exact: FAISS IndexFlatIP, a brute-force scan of every vector (what sqlite-vec's vec0
  table does: it has no approximate index), the baseline;
* ivf-fp16: FAISS IVF (4*sqrt(N) lists) with float16 codes, nprobe 16: what
  har.archive.similar uses from 200,000 vectors on;
* sqlite-vec (vec0 table, float32, cosine), through pysqlite3-binary where this
  Python's sqlite3 cannot load extensions; fewer queries (each is a full scan).
Reported: build time, index size, single-query p50/p95 latency, recall@10 against exact,
and reading the saved index from disk. Results: bench/results/similar-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import cpu_name  # noqa: E402  (bench/ is on sys.path)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from har.archive.similar import NPROBE, build_index, normalize  # noqa: E402


def make_data(n: int, d: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 2000
    centres = rng.standard_normal((k, d), dtype=np.float32)
    weights = rng.pareto(1.5, k) + 1  # very uneven cluster sizes
    assign = rng.choice(k, size=n, p=weights / weights.sum())
    x = np.empty((n, d), dtype=np.float16)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        part = centres[assign[s:e]] + 0.6 * rng.standard_normal((e - s, d), dtype=np.float32)
        x[s:e] = normalize(part).astype(np.float16)
    qi = rng.choice(n, size=n_queries, replace=False)
    q = normalize(x[qi].astype(np.float32) + 0.02 * rng.standard_normal((n_queries, d),
                                                                        dtype=np.float32))
    return x, q


def time_queries(search, q: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    lat, ids = [], []
    for row in q:
        t = time.perf_counter()
        _, i = search(row.reshape(1, -1), k)
        lat.append((time.perf_counter() - t) * 1000)
        ids.append(i[0])
    return lat, np.array(ids)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_faiss(name: str, x: np.ndarray, q: np.ndarray, k: int, ivf_min: int, tmp: Path,
              threads: int) -> tuple[dict, np.ndarray]:
    import faiss

    t = time.perf_counter()
    index = build_index(x, np.arange(len(x)), ivf_min=ivf_min, threads=threads)
    build_s = time.perf_counter() - t
    path = tmp / f"{name}.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    t = time.perf_counter()
    faiss.read_index(str(path))
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)  # what har similar does
    if hasattr(mapped, "nprobe"):
        mapped.nprobe = NPROBE
    mapped.search(q[:1], k)
    mmap_s = time.perf_counter() - t
    del mapped
    path.unlink()
    index.search(q[:5], k)  # warm
    extra = []
    if hasattr(index, "nprobe"):  # the other probe counts, on the same index
        for nprobe in (8, 16, 64):
            index.nprobe = nprobe
            lat, ids = time_queries(index.search, q, k)
            extra.append((nprobe, lat, ids))
        index.nprobe = NPROBE
    lat, ids = time_queries(index.search, q, k)
    run_faiss.sweep = extra
    return ({"method": name, "build_s": round(build_s, 2), "index_mb": round(size / 2**20, 1),
             "read_index_s": round(read_s, 2),
             "mmap_first_query_s": round(mmap_s, 3), "p50_ms": round(float(np.percentile(lat, 50)), 2),
             "p95_ms": round(float(np.percentile(lat, 95)), 2),
             "nprobe": getattr(index, "nprobe", None)}, ids)


def sqlite_module():
    """A sqlite3 module that can load extensions: the standard one, or pysqlite3 (its
    own SQLite) where the standard one is built without extension loading."""
    if hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as mod
        return mod
    except ImportError:
        return None


def try_sqlite_vec() -> str | None:
    """None when sqlite-vec can be loaded, else why not."""
    try:
        import sqlite_vec
    except ImportError:
        return "sqlite-vec is not installed"
    mod = sqlite_module()
    if mod is None:
        return ("this Python's sqlite3 module is built without extension loading "
                f"(SQLite {sqlite3.sqlite_version}) and pysqlite3-binary is not installed")
    conn = mod.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
    except Exception as exc:  # noqa: BLE001
        return f"sqlite-vec failed to load ({exc})"
    return None


def run_sqlite_vec(x: np.ndarray, q: np.ndarray, k: int, tmp: Path, n_queries: int
                   ) -> tuple[dict, np.ndarray]:
    import sqlite_vec

    path = tmp / "vec.db"
    conn = sqlite_module().connect(str(path))
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    d = x.shape[1]
    t = time.perf_counter()
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{d}] distance_metric=cosine)")
    for s in range(0, len(x), 50_000):
        conn.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)",
                         ((s + i, row.astype(np.float32).tobytes())
                          for i, row in enumerate(x[s:s + 50_000])))
    conn.commit()
    build_s = time.perf_counter() - t

    def search(row, kk):
        ids = [r[0] for r in conn.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (row[0].astype(np.float32).tobytes(), kk))]
        return None, np.array([ids])

    lat, ids = time_queries(search, q[:n_queries], k)
    size = path.stat().st_size
    conn.close()
    return ({"method": "sqlite-vec", "build_s": round(build_s, 2),
             "index_mb": round(size / 2**20, 1), "read_index_s": None,
             "p50_ms": round(float(np.percentile(lat, 50)), 2),
             "p95_ms": round(float(np.percentile(lat, 95)), 2), "nprobe": None}, ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sqlite-vec-queries", type=int, default=40,
                    help="queries for sqlite-vec (a full scan each; default 40)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    t = time.perf_counter()
    x, q = make_data(args.n, args.dim, args.queries)
    print(f"data: {args.n:,} x {args.dim} float16 ({x.nbytes / 2**20:.0f} MB) in "
          f"{time.perf_counter() - t:.1f} s; {args.queries} queries; CPU: {cpu_name()}, "
          f"{os.cpu_count()} cores", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=str(HERE)) as tmp:
        tmp = Path(tmp)
        exact, truth = run_faiss("faiss-exact", x, q, args.k, ivf_min=10**12, tmp=tmp,
                                 threads=args.threads)
        exact["recall@10"] = 1.0
        rows.append(exact)
        print(exact, flush=True)
        ivf, ids = run_faiss("faiss-ivf-fp16", x, q, args.k, ivf_min=0, tmp=tmp,
                             threads=args.threads)
        ivf["recall@10"] = round(recall(ids, truth), 4)
        rows.append(ivf)
        print(ivf, flush=True)
        for nprobe, lat, ids2 in run_faiss.sweep:
            rows.append({**ivf, "method": f"faiss-ivf-fp16/{nprobe}", "nprobe": nprobe,
                         "p50_ms": round(float(np.percentile(lat, 50)), 2),
                         "p95_ms": round(float(np.percentile(lat, 95)), 2),
                         "recall@10": round(recall(ids2, truth), 4)})
        why = try_sqlite_vec()
        if why is None:
            nq = min(args.queries, args.sqlite_vec_queries)
            sv, ids = run_sqlite_vec(x, q, args.k, tmp, nq)
            sv["recall@10"] = round(recall(ids, truth[:nq]), 4)
            sv["queries"] = nq
            rows.append(sv)
        else:
            print(f"sqlite-vec: not measured: {why}", flush=True)

    print(f"\n{'method':20} {'build s':>8} {'index MB':>9} {'read s':>7} {'mmap+q s':>8} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'recall@10':>9}")
    for r in rows:
        print(f"{r['method']:20} {r['build_s']:8.1f} {r['index_mb']:9.0f} "
              f"{(r['read_index_s'] or 0):7.2f} {(r.get('mmap_first_query_s') or 0):8.3f} "
              f"{r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
              f"{r['recall@10']:9.3f}")
    doc = {"bench": "similar", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "host": socket.gethostname(), "cpu": cpu_name(), "cores": os.cpu_count(),
           "n": args.n, "dim": args.dim, "queries": args.queries, "k": args.k,
           "threads": args.threads, "nprobe_default": NPROBE,
           "sqlite_vec": why or "measured", "results": rows,
           "note": "other agents shared the machine's 2 cores during the run"}
    out = args.out or HERE / "results" / \
        f"similar-{socket.gethostname()}-{datetime.now():%Y%m%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
