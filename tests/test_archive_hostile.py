"""Hostile inputs to the archive commands (issue 21 items 3, 8, 12, 14, 15; issue 25
item 10; issue 22's Ray engine): a --db that is not a har archive is refused and left
byte for byte; a locked one says so; one model per archive; outside text is escaped.

Real pipeline on generated videos with small random-weight ResNet-10 checkpoints in the
published format (one with its own labels, as a fine-tuned checkpoint carries them).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_video
from reference_hara import hara_resnet, published_checkpoint, randomize_

from har.cli import main

pytest.importorskip("faiss")

# Labels a checkpoint may carry: an escape sequence and a newline that would split lines.
EVIL_LABELS = ["wave\x1b[31m hands", "jump\nrope"]


def _ckpt(path: Path, seed: int, labels: list[str] | None = None) -> str:
    n = 400 if labels is None else len(labels)
    ck = published_checkpoint(randomize_(hara_resnet(10, "A", num_classes=n), seed=seed),
                              "resnet-10")
    if labels is not None:
        ck["labels"] = list(labels)
    torch.save(ck, path)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("w")
    return {"a": _ckpt(d / "a.pth", 10), "b": _ckpt(d / "b.pth", 11),
            "tuned": _ckpt(d / "tuned.pth", 12, EVIL_LABELS)}


def _model(w: str) -> list[str]:
    return ["--model", "r3d10-k400", "--weights", w, "--backend", "torch"]


def _opts(w: str) -> list[str]:
    return [*_model(w), "--threshold", "0.2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("v")
    # A file name with a newline and an escape sequence in it.
    return [make_video(d / "plain.mp4", 40), make_video(d / "evil\n\x1b[2Jname.mp4", 36),
            make_video(d / "other.mp4", 34)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def _error_line(err: str) -> str:
    """The one error line among progress lines (har index says what it will do first)."""
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


# -- item 3 / 12: a --db that is not a har archive ----------------------------------
def _foreign_files(d: Path) -> dict[str, Path]:
    photos = d / "photos.db"  # another program's database (rollback journal)
    c = sqlite3.connect(photos)
    c.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO photos (name) VALUES ('beach.jpg')")
    c.commit()
    c.close()
    own = d / "library.db"  # one with its own `videos` table, in WAL mode
    c = sqlite3.connect(own)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT, year INTEGER)")
    c.execute("INSERT INTO videos (title, year) VALUES ('Heat', 1995)")
    c.commit()
    c.close()
    text = d / "notes.db"
    text.write_text("not a database\n")
    return {"photos": photos, "own_videos": own, "text": text}


def test_index_refuses_a_database_that_is_not_an_archive_and_leaves_it(videos, weights,
                                                                      tmp_path, capsys):
    files = _foreign_files(tmp_path)
    before = {p: _sha(p) for p in files.values()}
    listing = sorted(os.listdir(tmp_path))
    for name, path in files.items():
        code, _, err = _run(["index", str(videos[0]), "--db", str(path),
                             *_opts(weights["a"])], capsys)
        assert code == 2, (name, err)
        line = _one_line_error(err)
        assert "not a har archive" in line and path.name in line, line
        assert "left as it is" in line, line
    # search, similar and export-index: the same one line, nothing changed either.
    for path in files.values():
        for argv in (["search", "x"], ["search", "--summary"],
                     ["similar", str(videos[0])],
                     ["export-index", "--format", "csv"]):
            code, out, err = _run([*argv, "--db", str(path)], capsys)
            assert code == 2, (argv, err)
            assert "not a har archive" in _one_line_error(err)
            assert out == ""
    assert {p: _sha(p) for p in files.values()} == before
    assert sorted(os.listdir(tmp_path)) == listing  # no -wal/-shm/-journal left beside
    with sqlite3.connect(files["photos"]) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["photos"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_db_that_is_a_fifo_or_a_device_is_refused_without_blocking(videos, tmp_path, capsys):
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)  # opening it to read would block forever
    for path in (fifo, Path(os.devnull)):
        for argv in (["index", str(videos[0])], ["search", "x"]):
            code, _, err = _run([*argv, "--db", str(path)], capsys)
            assert code == 2 and "not a regular file" in _one_line_error(err)


def test_db_that_is_an_input_video_is_refused(videos, weights, tmp_path, capsys):
    folder = videos[0].parent
    before = _sha(videos[0])
    for inputs in ([str(videos[0])], [str(folder)]):  # named, or found in a folder
        code, _, err = _run(["index", *inputs, "--db", str(videos[0]),
                             *_opts(weights["a"])], capsys)
        assert code == 2, err
        assert "one of the input" in _one_line_error(err)
    assert _sha(videos[0]) == before


def test_locked_archive_says_locked(videos, weights, tmp_path, capsys):
    from har.archive import db as adb

    path = tmp_path / "a.db"
    adb.connect(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO meta VALUES ('x', 'y')")
    try:
        for argv in (["search", "--summary"], ["export-index", "--format", "csv"],
                     ["index", str(videos[0]), *_opts(weights["a"])]):
            t0 = time.monotonic()
            code, _, err = _run([*argv, "--db", str(path)], capsys)
            assert code == 2, err
            line = _one_line_error(err)
            assert "locked by another process" in line and "not a har archive" not in line
            assert time.monotonic() - t0 < 20
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_blank_query_is_a_usage_error(tmp_path, capsys):
    from har.archive import db as adb

    path = tmp_path / "a.db"
    adb.connect(path).close()
    for q in (" ", "\t", "_", ""):
        code, out, err = _run(["search", q, "--db", str(path)], capsys)
        assert code == 2, (q, err)
        assert "give an action" in _one_line_error(err) and out == ""


# -- one archive, one model; escaped output; the vector index --------------------------
@pytest.fixture(scope="module")
def tuned_archive(videos, weights, tmp_path_factory) -> Path:
    """The three videos indexed with the checkpoint whose labels need escaping."""
    path = tmp_path_factory.mktemp("db") / "tuned.db"
    assert main(["index", *map(str, videos[:2]), "--db", str(path),
                 *_opts(weights["tuned"]), "--topk", "2"]) == 0
    return path


def test_another_model_into_the_same_archive_is_refused(tuned_archive, videos, weights,
                                                        capsys, tmp_path):
    before = sqlite3.connect(tuned_archive).execute("SELECT COUNT(*) FROM videos").fetchone()
    code, _, err = _run(["index", str(videos[2]), "--db", str(tuned_archive),
                         *_opts(weights["a"])], capsys)
    assert code == 2, err
    line = _error_line(err)
    tuned_sha = hashlib.sha256(Path(weights["tuned"]).read_bytes()).hexdigest()
    a_sha = hashlib.sha256(Path(weights["a"]).read_bytes()).hexdigest()
    assert tuned_sha[:12] in line and a_sha[:12] in line  # names both models
    assert sqlite3.connect(tuned_archive).execute(
        "SELECT COUNT(*) FROM videos").fetchone() == before
    # har similar scores a new video with the archive's model, not another one.
    code, _, err = _run(["similar", str(videos[2]), "--db", str(tuned_archive),
                         *_model(weights["b"])], capsys)
    assert code == 2 and tuned_sha[:12] in _one_line_error(err)
    code, out, err = _run(["similar", str(videos[2]), "--db", str(tuned_archive), "--json",
                           *_model(weights["tuned"])], capsys)
    assert code == 0, err
    assert json.loads(out)["results"]


def test_search_and_similar_escape_file_names_and_labels(tuned_archive, videos, capsys):
    code, out, err = _run(["search", "--summary", "--db", str(tuned_archive), "--json"],
                          capsys)
    labels = {r["label"] for r in json.loads(out)["labels"]}
    assert labels and labels <= set(EVIL_LABELS)  # the checkpoint's own labels
    for label in labels:
        code, out, err = _run(["search", label.split()[0][:4], "--db", str(tuned_archive),
                               "--limit", "50"], capsys)
        assert code == 0, err
        code_j, out_j, _ = _run(["search", label.split()[0][:4], "--db", str(tuned_archive),
                                 "--json", "--limit", "50"], capsys)
        hits = json.loads(out_j)["results"]
        assert hits and len(out.splitlines()) == len(hits)  # one line per result
        assert "\x1b" not in out + err and "\\x1b" in out
        assert any("evil\\n\\x1b[2Jname.mp4" in ln for ln in out.splitlines()) or \
            all(h["path"] != str(videos[1]) for h in hits)
    code, out, err = _run(["search", "--summary", "--db", str(tuned_archive)], capsys)
    assert code == 0 and "\x1b" not in out and len(out.splitlines()) == 1 + len(labels)
    # --include-self: the query's own (oddly named) clip comes first.
    code, out, err = _run(["similar", str(videos[1]), "--db", str(tuned_archive),
                           "--include-self"], capsys)
    assert code == 0, err
    n = len(json.loads(_run(["similar", str(videos[1]), "--db", str(tuned_archive),
                             "--include-self", "--json"], capsys)[1])["results"])
    assert "\x1b" not in out and len(out.splitlines()) == n
    assert "evil\\n\\x1b[2Jname.mp4" in out.splitlines()[0]


def test_faiss_file_of_another_dimension(tuned_archive, videos, capsys):
    import faiss

    idx, stamp = Path(f"{tuned_archive}.faiss"), Path(f"{tuned_archive}.faiss.json")
    code, out, _ = _run(["similar", str(videos[0]), "--db", str(tuned_archive), "--json"],
                        capsys)
    assert code == 0 and stamp.is_file()
    want = json.loads(out)["results"]
    # Another index of another dimension under har's name, with a current stamp.
    other = faiss.IndexIDMap2(faiss.IndexFlatIP(7))
    other.add_with_ids(np.ones((3, 7), np.float32), np.arange(3, dtype=np.int64))
    faiss.write_index(other, str(idx))
    code, out, err = _run(["similar", str(videos[0]), "--db", str(tuned_archive), "--json"],
                          capsys)
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)["results"] == want
    assert faiss.read_index(str(idx)).d != 7  # rebuilt: it was har's own file
    # A .faiss har did not write (no stamp of its own): read neither, nor replaced.
    stamp.unlink()
    faiss.write_index(other, str(idx))
    before = _sha(idx)
    code, out, err = _run(["similar", str(videos[0]), "--db", str(tuned_archive), "--json"],
                          capsys)
    assert code == 0 and json.loads(out)["results"] == want
    assert "not written by har" in _one_line_error(err)
    assert _sha(idx) == before and not stamp.exists()
    idx.unlink()


def test_similar_checks_the_span_before_loading_a_model(tuned_archive, videos, tmp_path,
                                                        capsys, monkeypatch):
    # An empty HAR_HOME: loading r3d34-k400's default weights would need a download.
    monkeypatch.setenv("HAR_HOME", str(tmp_path / "home"))
    new = make_video(tmp_path / "new.mp4", 30)  # 1.2 s, not in the archive
    for video in (videos[0], new):
        code, _, err = _run(["similar", str(video), "--start", "50", "--db",
                             str(tuned_archive), "--model", "r3d34-k400"], capsys)
        assert code == 2, err
        assert "past the end" in _one_line_error(err)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 20)
    code, _, err = _run(["similar", str(junk), "--db", str(tuned_archive),
                         "--model", "r3d34-k400"], capsys)
    assert code == 3 and "junk.mp4" in _one_line_error(err)
    assert not any((tmp_path / "home").rglob("*.pth"))  # no download was started


# -- the library does not import the CLI (issue 22) ------------------------------------
def test_archive_modules_import_nothing_from_the_cli():
    import har.archive

    for path in Path(har.archive.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = ("." * node.level) + (node.module or "")
                assert not (mod in ("..cli", "har.cli") or mod.startswith(("..cli.", "har.cli."))), \
                    f"{path.name} imports {mod}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("har.cli") for a in node.names), path.name


@pytest.mark.slow
def test_ray_engine_keeps_a_fine_tuned_checkpoints_labels(videos, weights, tmp_path, capsys):
    pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    local, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    inputs = [str(videos[0]), str(videos[2])]
    code, _, err = _run(["index", *inputs, "--db", str(local), *_opts(weights["tuned"])],
                        capsys)
    assert code == 0, err
    code, err = _run_ray(["index", *inputs, "--db", str(ray_db), "--engine", "ray",
                          *_opts(weights["tuned"])])
    assert code == 0, err
    q = ("SELECT v.path, v.model, v.weights_sha256, v.top_label, c.idx, c.top_label, c.topk "
         "FROM videos v JOIN clips c ON c.video_id = v.id ORDER BY v.path, c.idx")
    a = sqlite3.connect(local).execute(q).fetchall()
    b = sqlite3.connect(ray_db).execute(q).fetchall()
    assert a and a == b
    used = {r[3] for r in b} | {r[5] for r in b}
    assert used <= set(EVIL_LABELS)  # the checkpoint's labels, not Kinetics names
    # The Ray run claimed the archive for its model, as the local one does.
    code, err = _run_ray(["index", str(videos[1]), "--db", str(ray_db), "--engine", "ray",
                          *_opts(weights["a"])])
    assert code == 2 and "was indexed with" in err and "Traceback" not in err, err


def _run_ray(argv: list[str]) -> tuple[int, str]:
    """A Ray run in its own process: ray.init in the test process would stay for every
    later test, its log handlers bound to one test's captured (then closed) stderr."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "HAR_RAY_NUM_CPUS": "2",
           "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-m", "har", *argv], capture_output=True, text=True,
                       env=env, timeout=600)
    return p.returncode, p.stderr


def test_a_runtime_without_features_is_refused_not_silently_dropped(tmp_path):
    """Same model, but a runtime that gives no pooled features (a plain ONNX file): its
    clips would have no vectors for har similar. The video is refused and rolled back."""
    from har.archive import db as adb
    from har.archive import indexer
    from har.results import ClipResult, Prediction, VideoResult

    rng = np.random.default_rng(0)

    def video(name: str, features: bool) -> VideoResult:
        clips = []
        for i in range(3):
            probs = rng.dirichlet(np.ones(5)).astype(np.float32)
            clips.append(ClipResult(i, 16 * i, 16 * i + 16, 0.64 * i, 0.64 * i + 0.64,
                                    [Prediction("a", float(probs[0]))], probs=probs,
                                    features=rng.standard_normal(8).astype(np.float32)
                                    if features else None))
        return VideoResult(path=name, frames=48, duration_s=1.92, clips=clips,
                           top=[Prediction("a", 0.5)])

    conn = adb.connect(tmp_path / "a.db")
    info = indexer.IndexedWith("r3d10-k400", None, {})
    indexer.write_result(conn, indexer.FileKey("/v/one.mp4", 1, 1.0), video("one", True), info)
    assert adb.get_meta(conn, "embedding_kind") == "features"
    with pytest.raises(indexer.ModelMismatch, match="'features' .* gives 'logits'"):
        indexer.write_result(conn, indexer.FileKey("/v/two.mp4", 1, 1.0), video("two", False),
                             info)
    assert [r[0] for r in conn.execute("SELECT path FROM videos")] == ["/v/one.mp4"]
    assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 3
    assert not conn.in_transaction
    conn.close()
