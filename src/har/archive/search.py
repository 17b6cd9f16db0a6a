"""Search by action: segments ranked by score for a label, and counts per label."""

from __future__ import annotations

import difflib
import sqlite3
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Hit:
    path: str
    label: str
    start_s: float
    end_s: float
    score: float  # peak score over the span
    mean_score: float
    kind: str  # "segment", or "clip" for a label with no segment (a single clip's top-1)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("start_s", "end_s"):
            d[k] = round(d[k], 4)
        for k in ("score", "mean_score"):
            d[k] = round(d[k], 6)
        return d


def known_labels(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT label FROM segments UNION SELECT top_label FROM clips")
    return sorted(r[0] for r in rows)


def normalize(text: str) -> str:
    """A label or query as compared: lower case, ``_`` as a space, spaces collapsed."""
    return " ".join(text.lower().replace("_", " ").split())


def match_labels(query: str, labels: list[str]) -> tuple[list[str], str]:
    """Labels the query names: exact (any case), else by prefix, else close matches.
    Returns (labels, how): how is "exact", "prefix", "close" or "none". A query with
    nothing but spaces and ``_`` names no label (it would be a prefix of every one)."""
    q = normalize(query)
    if not q:
        return [], "none"
    norm = {label: normalize(label) for label in labels}
    exact = [lb for lb, n in norm.items() if n == q]
    if exact:
        return exact, "exact"
    prefix = [lb for lb, n in norm.items() if n.startswith(q)]
    if prefix:
        return prefix, "prefix"
    close = difflib.get_close_matches(q, list(norm.values()), n=3, cutoff=0.6)
    back = {n: lb for lb, n in norm.items()}
    return [back[c] for c in close], ("close" if close else "none")


def search(conn: sqlite3.Connection, labels: list[str], *, min_score: float = 0.0,
           limit: int = 20) -> list[Hit]:
    """Segments of ``labels`` ranked by peak score; labels that have no segment above
    ``min_score`` fall back to the clips whose top-1 they are."""
    hits: list[Hit] = []
    marks = ",".join("?" * len(labels))
    for row in conn.execute(
            f"SELECT v.path, s.label, s.start_s, s.end_s, s.peak_score, s.mean_score "
            f"FROM segments s JOIN videos v ON v.id = s.video_id "
            f"WHERE s.label IN ({marks}) AND s.peak_score >= ? "
            f"ORDER BY s.peak_score DESC, v.path, s.start_s LIMIT ?",
            (*labels, min_score, limit)):
        hits.append(Hit(*row, kind="segment"))
    with_segments = {h.label for h in hits}
    rest = [lb for lb in labels if lb not in with_segments]
    if rest and len(hits) < limit:
        marks = ",".join("?" * len(rest))
        for row in conn.execute(
                f"SELECT v.path, c.top_label, c.start_s, c.end_s, c.top_score, c.top_score "
                f"FROM clips c JOIN videos v ON v.id = c.video_id "
                f"WHERE c.top_label IN ({marks}) AND c.top_score >= ? "
                f"ORDER BY c.top_score DESC, v.path, c.start_s LIMIT ?",
                (*rest, min_score, limit - len(hits))):
            hits.append(Hit(*row, kind="clip"))
    return hits


def label_summary(conn: sqlite3.Connection, limit: int | None = None) -> list[dict]:
    """Per label: segments, videos with a segment, total seconds, clips as top-1."""
    rows = conn.execute("""
        WITH seg AS (SELECT label, COUNT(*) n, COUNT(DISTINCT video_id) videos,
                            SUM(end_s - start_s) secs, MAX(peak_score) peak
                     FROM segments GROUP BY label),
             clp AS (SELECT top_label label, COUNT(*) n FROM clips GROUP BY top_label),
             lab AS (SELECT label FROM seg UNION SELECT label FROM clp)
        SELECT lab.label, COALESCE(seg.n, 0), COALESCE(seg.videos, 0),
               COALESCE(seg.secs, 0.0), COALESCE(seg.peak, 0.0), COALESCE(clp.n, 0)
        FROM lab LEFT JOIN seg ON seg.label = lab.label LEFT JOIN clp ON clp.label = lab.label
        ORDER BY 2 DESC, 6 DESC, 1""").fetchall()
    out = [{"label": r[0], "segments": r[1], "videos": r[2], "seconds": round(r[3], 3),
            "peak_score": round(r[4], 6), "clips_top1": r[5]} for r in rows]
    return out[:limit] if limit else out
