"""har index / search / similar / export-index: a resumable archive of clip results.

Real pipeline on generated videos (and ../shared/videos when present) with a small
random-weight ResNet-10 checkpoint in the published format, ``--backend torch``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_VIDEOS, make_video
from reference_hara import hara_resnet, published_checkpoint, randomize_

from har.cli import main

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def r10(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("w") / "resnet-10-kinetics.pth"
    torch.save(published_checkpoint(randomize_(hara_resnet(10, "A"), seed=10), "resnet-10"),
               path)
    return str(path)


def _noise_video(path: Path, n_frames: int, seed: int) -> Path:
    """A video whose every clip looks different (moving seeded noise)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    drift = rng.integers(1, 5)

    def frame(i: int) -> np.ndarray:
        shade = (i * 37 + seed * 11) % 200
        return np.clip(np.roll(base, i * drift, axis=1).astype(np.int16) // 2 + shade // 2,
                       0, 255).astype(np.uint8)

    return make_video(path, n_frames, frame_fn=frame)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, list[Path], list[Path]]:
    d = tmp_path_factory.mktemp("videos")
    good = [_noise_video(d / f"good{i}.mp4", 40 + 8 * i, seed=i) for i in range(8)]
    (d / "sub").mkdir()
    good.append(_noise_video(d / "sub" / "nested.mp4", 50, seed=99))
    broken = [d / "empty.mp4", d / "text.mp4", d / "truncated.mp4"]
    broken[0].write_bytes(b"")
    broken[1].write_bytes(b"this is not a video\n" * 50)
    broken[2].write_bytes(good[0].read_bytes()[:600])
    # Real videos from ../shared/videos, when present: two small good ones (QuickTime
    # and H.265) and two broken ones.
    for name, kind in (("decord__video_0.mov", good), ("torchcodec__h265_video.mp4", good),
                       ("broken/garbage_random_bytes.mp4", broken),
                       ("broken/empty.mp4", broken)):
        real = SHARED_VIDEOS / name
        if real.exists():
            link = d / ("real_" + Path(name).name)
            os.symlink(real, link)
            kind.append(link)
    return d, good, broken


def _opts(r10: str) -> list[str]:
    return ["--model", "r3d10-k400", "--weights", r10, "--backend", "torch", "--threshold", "0.2"]


def _index(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "har", "index", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def _index_here(args: list[str], capsys) -> tuple[int, str]:
    """``har index`` in this process (no interpreter start-up): (exit code, stderr)."""
    capsys.readouterr()
    code = main(["index", *args])
    return code, capsys.readouterr().err


def _rows(db: Path, sql: str, *params):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def archive(folder, r10, tmp_path_factory) -> Path:
    """Indexed once with a SIGKILL part-way, then re-run to completion."""
    d, good, broken = folder
    db = tmp_path_factory.mktemp("db") / "archive.db"
    proc = subprocess.Popen([sys.executable, "-m", "har", "index", str(d), "--db", str(db),
                             *_opts(r10)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            n = _rows(db, "SELECT COUNT(*) FROM videos WHERE status != 'failed'")[0][0]
        except sqlite3.Error:
            n = 0
        if n >= 2:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed, "the indexer ended before it could be killed part-way"
    done = _rows(db, "SELECT COUNT(*) FROM videos WHERE status != 'failed'")[0][0]
    assert 2 <= done < len(good), "the kill came too late to test resuming"
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # the re-run in this process (no start-up)
        code = main(["index", str(d), "--db", str(db), *_opts(r10)])
    assert code == 3, err.getvalue()  # the broken inputs failed (input class)
    assert f"{done} already indexed" in err.getvalue()
    return db


def test_every_good_video_once_with_its_clips(archive, folder):
    d, good, broken = folder
    rows = _rows(archive, "SELECT path, status, frames, model, COUNT(c.id), MAX(c.idx) + 1 "
                          "FROM videos v LEFT JOIN clips c ON c.video_id = v.id GROUP BY v.id")
    by_path = {r[0]: r for r in rows}
    assert len(by_path) == len(rows)  # UNIQUE(path)
    for g in good:
        path, status, frames, model, n_clips, max_idx = by_path[os.path.abspath(g)]
        assert status == "done" and model == "r3d10-k400", path
        assert n_clips == max_idx == -(-frames // 16)  # --tail pad: every frame covered
    emb = _rows(archive, "SELECT COUNT(*), MIN(LENGTH(vector)), MAX(LENGTH(vector)) FROM embeddings")
    clips = _rows(archive, "SELECT COUNT(*) FROM clips")[0][0]
    assert emb[0][0] == clips and emb[0][1] == emb[0][2]  # one float16 vector per clip
    dim = int(_rows(archive, "SELECT value FROM meta WHERE key = 'embedding_dim'")[0][0])
    assert emb[0][1] == 2 * dim


def test_broken_inputs_failed_with_one_line_error(archive, folder):
    d, good, broken = folder
    for b in broken:
        status, error, n = _rows(archive, "SELECT status, error, (SELECT COUNT(*) FROM clips "
                                 "WHERE video_id = v.id) FROM videos v WHERE path = ?",
                                 os.path.abspath(b))[0]
        assert status == "failed" and error and "\n" not in error and n == 0
        assert b.name in error or b.resolve().name in error


def test_integrity_and_wal(archive):
    assert _rows(archive, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(archive, "PRAGMA journal_mode")[0][0] == "wal"
    assert _rows(archive, "PRAGMA foreign_key_check") == []


def test_third_run_indexes_nothing_new(archive, folder, r10, capsys):
    d, good, broken = folder
    before = _rows(archive, "SELECT id, path, indexed_at FROM videos ORDER BY id")
    code, err = _index_here([str(d), "--db", str(archive), *_opts(r10)], capsys)
    assert code == 0, err
    assert "0 to index" in err and "failed before" in err
    assert _rows(archive, "SELECT id, path, indexed_at FROM videos ORDER BY id") == before


def test_changed_file_redone_and_failed_retried_on_request(folder, r10, tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    a = _noise_video(work / "a.mp4", 40, seed=5)
    bad = work / "bad.mp4"
    bad.write_bytes(b"junk" * 100)
    db = tmp_path / "x.db"
    args = [str(work), "--db", str(db), *_opts(r10)]
    assert _index_here(args, capsys)[0] == 3  # the broken input (input class)
    _noise_video(a, 72, seed=6)  # changed: size and mtime differ
    bad.write_bytes(a.read_bytes())  # the broken one has been repaired: a new size
    os.utime(bad, (1, 1))
    code, err = _index_here(args, capsys)
    assert code == 0, err
    assert "2 to index, 2 of them changed since indexed" in err
    rows = dict(_rows(db, "SELECT path, status FROM videos"))
    assert rows == {os.path.abspath(a): "done", os.path.abspath(bad): "done"}
    assert _rows(db, "SELECT frames FROM videos WHERE path = ?", os.path.abspath(a))[0][0] == 72
    assert _rows(db, "SELECT COUNT(*) FROM clips c JOIN videos v ON v.id = c.video_id "
                     "WHERE v.path = ?", os.path.abspath(a)) == [(5,)]  # old clips replaced
    # A failure that stays the same file is skipped unless asked.
    bad2 = work / "bad2.mp4"
    bad2.write_bytes(b"junk" * 100)
    assert _index_here(args, capsys)[0] == 3
    code, err = _index_here(args, capsys)
    assert code == 0 and "failed before" in err
    code, err = _index_here([*args, "--retry-failed"], capsys)
    assert code == 3 and "1 to index" in err


def test_search_finds_a_segment_of_the_top_label(archive, folder, capsys):
    d, good, broken = folder
    path = os.path.abspath(good[3])
    label = _rows(archive, "SELECT top_label FROM videos WHERE path = ?", path)[0][0]
    assert main(["search", label, "--db", str(archive), "--json", "--limit", "100"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["match"] == "exact" and doc["labels"] == [label]
    mine = [h for h in doc["results"] if h["path"] == path]
    assert mine and mine[0]["kind"] == "segment" and mine[0]["label"] == label
    scores = [h["score"] for h in doc["results"]]
    assert scores == sorted(scores, reverse=True)
    # A prefix and a misspelling reach the same label.
    assert main(["search", label[:5], "--db", str(archive), "--json"]) == 0
    assert label in json.loads(capsys.readouterr().out)["labels"]
    typo = label[:-1] + ("x" if label[-1] != "x" else "y")
    assert main(["search", typo, "--db", str(archive), "--json"]) == 0
    assert label in json.loads(capsys.readouterr().out)["labels"]
    assert main(["search", "--summary", "--db", str(archive), "--json"]) == 0
    counts = {r["label"]: r for r in json.loads(capsys.readouterr().out)["labels"]}
    assert counts[label]["videos"] >= 1
    assert main(["search", "zzzz qqqq", "--db", str(archive)]) == 3


def test_similar_returns_the_query_clip_first(archive, folder, capsys, r10, tmp_path):
    d, good, broken = folder
    video = good[4]
    assert main(["similar", str(video), "--start", "0.64", "--end", "1.28", "--db",
                 str(archive), "--json", "--include-self"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["path"] == os.path.abspath(video) and hits[0]["clip"] == 1
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    # By default the query's own clips are left out: neighbours only.
    assert main(["similar", str(video), "--start", "0.64", "--end", "1.28", "--db",
                 str(archive), "--json"]) == 0
    mine = json.loads(capsys.readouterr().out)["results"]
    assert mine and not any(h["path"] == os.path.abspath(video) and h["start_s"] < 1.28
                            and h["end_s"] > 0.64 for h in mine)
    others = [(h["path"], h["clip"]) for h in hits
              if (h["path"], h["clip"]) != (os.path.abspath(video), 1)]
    assert [(h["path"], h["clip"]) for h in mine][:len(others)] == others
    # A video that is not in the archive is scored first; its twin's clip comes first.
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    assert main(["similar", str(copy), "--start", "1.3", "--end", "1.9", "--db", str(archive),
                 "--json", *[o for o in _opts(r10) if o not in ("--threshold", "0.2")]]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["path"] == os.path.abspath(video) and hits[0]["clip"] == 2


def test_export_formats(archive, tmp_path, capsys):
    out = tmp_path / "anet.json"
    assert main(["export-index", "--db", str(archive), "--format", "activitynet",
                 "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["version"].startswith("VERSION") and "good3" in doc["results"]
    entry = doc["results"]["good3"][0]
    assert set(entry) == {"label", "score", "segment"} and entry["segment"][1] > 0
    assert main(["export-index", "--db", str(archive), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,status,clip") and \
        len(lines) - 1 == _rows(archive, "SELECT COUNT(*) FROM clips")[0][0]
    pq = pytest.importorskip("pyarrow.parquet")
    assert main(["export-index", "--db", str(archive), "--format", "parquet",
                 "-o", str(tmp_path / "c.parquet")]) == 0
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.num_rows == len(lines) - 1 and "embedding" in table.column_names


def test_reader_while_writer_holds_a_transaction(archive):
    writer = sqlite3.connect(archive, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM segments")
    try:
        assert main(["search", "--summary", "--db", str(archive), "--json"]) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_usage_errors(tmp_path, capsys):
    assert main(["search", "x", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such archive" in capsys.readouterr().err
    notdb = tmp_path / "not.db"
    notdb.write_text("hello")
    assert main(["search", "x", "--db", str(notdb)]) == 2
    assert main(["search", "--db", str(notdb)]) == 2
    assert main(["export-index", "--db", str(notdb), "--format", "parquet"]) == 2
    with pytest.raises(SystemExit):
        main(["index", "--db", "x.db"])  # no input


@pytest.mark.slow
def test_ray_engine_gives_the_same_rows_as_local(folder, r10, tmp_path, capsys):
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    d, good, broken = folder
    inputs = [str(good[1]), str(good[2]), str(broken[1])]
    local, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    code, err = _index_here([*inputs, "--db", str(local), *_opts(r10)], capsys)
    assert code == 3, err
    # Ray in a subprocess: ray.init in the test process would stay for every later test
    env = {**os.environ, "HAR_RAY_NUM_CPUS": "2", "RAY_USAGE_STATS_ENABLED": "0"}
    r = _index([*inputs, "--db", str(ray_db), "--engine", "ray", *_opts(r10)], env=env)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "Traceback" not in r.stderr

    q = ("SELECT v.path, v.status, v.frames, c.idx, c.start_frame, c.end_frame, c.top_label, "
         "c.topk FROM videos v LEFT JOIN clips c ON c.video_id = v.id ORDER BY v.path, c.idx")
    a, b = _rows(local, q), _rows(ray_db, q)
    assert len(a) > 3 and a == b
    seg = "SELECT v.path, s.label, s.start_s, s.end_s FROM segments s JOIN videos v " \
          "ON v.id = s.video_id ORDER BY 1, 2, 3"
    assert _rows(local, seg) == _rows(ray_db, seg)
    assert _rows(ray_db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("ivf_min", [10**9, 100])
def test_vector_index_follows_the_archive(tmp_path, monkeypatch, ivf_min):
    """The saved index is reused, updated for added and removed clips, and finds what
    a fresh exact search finds."""
    from har.archive import db as adb
    from har.archive import similar

    monkeypatch.setattr(similar, "IVF_MIN", ivf_min)
    rng = np.random.default_rng(1)
    path = tmp_path / "a.db"
    conn = adb.connect(path)
    adb.set_meta(conn, "embedding_kind", "features")
    adb.set_meta(conn, "embedding_dim", "32")

    def add_video(name: str, n: int) -> None:
        vid = conn.execute("INSERT INTO videos (path, status) VALUES (?, 'done')",
                           (name,)).lastrowid
        for i in range(n):
            cid = conn.execute("INSERT INTO clips (video_id, idx, start_frame, end_frame, "
                               "start_s, end_s, top_label, top_score, topk) VALUES "
                               "(?, ?, 0, 16, 0, 1, 'x', 1, '[]')", (vid, i)).lastrowid
            conn.execute("INSERT INTO embeddings VALUES (?, ?)",
                         (cid, adb.pack_vector(rng.standard_normal(32))))

    for v in range(6):
        add_video(f"v{v}", 40)
    first = similar.load_index(conn, path)
    assert first.ntotal == 240 and (tmp_path / "a.db.faiss").is_file()
    again = similar.load_index(conn, path)  # unchanged: the saved one
    assert sorted(similar.index_ids(again)) == sorted(similar.index_ids(first))
    conn.execute("DELETE FROM videos WHERE path = 'v2'")  # cascades to its clips
    add_video("v9", 30)
    updated = similar.load_index(conn, path)
    want = sorted(r[0] for r in conn.execute("SELECT clip_id FROM embeddings"))
    assert sorted(similar.index_ids(updated)) == want
    # Every stored vector finds itself first.
    for cid, blob in conn.execute("SELECT clip_id, vector FROM embeddings LIMIT 20"):
        q = np.frombuffer(blob, dtype="<f2").astype(np.float32)
        assert similar.nearest(conn, updated, q, k=1)[0].similarity > 0.99
        _, ids = updated.search(similar.normalize(q).reshape(1, -1), 1)
        assert ids[0][0] == cid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_keeps_finished_videos_and_exits_130(folder, r10, tmp_path, sig):
    """Ctrl-C and SIGTERM (a service manager stopping the run) end the same way."""
    d, good, broken = folder
    db = tmp_path / "int.db"
    proc = subprocess.Popen([sys.executable, "-m", "har", "index", *map(str, good[:8]),
                             "--db", str(db), *_opts(r10)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if _rows(db, "SELECT COUNT(*) FROM videos")[0][0] >= 1:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    n = _rows(db, "SELECT COUNT(*) FROM videos WHERE status = 'done'")[0][0]
    assert 1 <= n < 8
    assert _rows(db, "SELECT COUNT(*) FROM clips c JOIN videos v ON v.id = c.video_id "
                     "WHERE v.frames IS NULL") == [(0,)]
