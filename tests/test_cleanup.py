"""Issue 22 (items 5 and 6): imports flow one way, one copy of each shared helper."""

from __future__ import annotations

import ast
import http.server
import importlib
import json
import math
import threading
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "har"


def _imports(path: Path) -> set[str]:
    """Every har module ``path`` imports (at any depth, lazy imports included),
    as absolute dotted names."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("har"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("har"):
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _module(name: str) -> Path:
    p = SRC.parent / (name.replace(".", "/") + ".py")
    return p if p.exists() else SRC.parent / name.replace(".", "/") / "__init__.py"


@pytest.mark.parametrize("low, high", [
    ("har.video", "har.sources"),
    ("har.urls", "har.sources"),
    ("har.runtimes.quantize", "har.runtimes.export"),
    ("har.cache", "har.weights"),
    ("har.defaults", "har.weights"),
])
def test_imports_flow_one_way(low, high):
    assert not any(m == high or m.startswith(high + ".") for m in _imports(_module(low)))


def test_the_library_never_imports_the_cli():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "cli" not in p.relative_to(SRC).parts and p.name != "__main__.py"
                 and any(m == "har.cli" or m.startswith("har.cli.") for m in _imports(p))]
    assert offenders == []


def test_the_backends_alias_is_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("har.backends")


def test_one_fmt_time():
    from har import text, writers
    from har.cli import common

    assert writers.fmt_time is text.fmt_time and common.fmt_time is text.fmt_time
    assert text.fmt_time(65.2) == "1:05.20" and text.fmt_time(-1) == "0:00.00"
    assert text.fmt_time(None) == text.fmt_time(math.nan) == text.fmt_time(math.inf) == "?"


def test_one_palette():
    from har import live, palette, render, report  # noqa: F401 (report: its import works)

    assert render.PALETTE is palette.PALETTE and live._COLOURS is palette.OKABE_ITO
    assert palette.PALETTE[:len(palette.OKABE_ITO)] == palette.OKABE_ITO
    assert len(set(palette.PALETTE)) == len(palette.PALETTE)


def test_one_activitynet_detection(tmp_path):
    from har.metrics import activitynet_detection
    from har.results import Segment, VideoResult
    from har.writers import activitynet_doc

    r = VideoResult(path=str(tmp_path / "v_abc.mp4"))
    r.segments = [Segment("run", 0.12345, 2.98765, 0.4444444, 0.9, 0, 3)]
    doc = activitynet_doc([r])
    assert doc["results"] == {"abc": [activitynet_detection("run", 0.4444444, 0.12345,
                                                             2.98765)]}
    assert doc["results"]["abc"][0] == {"label": "run", "score": 0.444444,
                                        "segment": [0.123, 2.988]}


def test_json_memos_never_fail_the_caller(tmp_path):
    from har.fsutil import read_json, write_json_quietly

    plain = tmp_path / "plain.txt"
    plain.write_text("the user's")
    assert write_json_quietly(plain / "memo.json", {"a": 1}) is False  # under a file
    assert plain.read_text() == "the user's"
    assert write_json_quietly(tmp_path / "new" / "memo.json", {"a": 1}) is True
    assert read_json(tmp_path / "new" / "memo.json") == {"a": 1}
    (tmp_path / "bad.json").write_text("{not json")
    assert read_json(tmp_path / "bad.json", {}) == {} and read_json(tmp_path / "none") is None


def test_weights_digest_memo_and_sidecar_use_the_helpers(tmp_path, monkeypatch):
    import hashlib

    from har.runtimes.metadata import read_sidecar, write_sidecar
    from har.weights import file_sha256, sha256_file

    monkeypatch.setenv("HAR_HOME", str(tmp_path / "home"))
    f = tmp_path / "w.pth"
    f.write_bytes(b"weights" * 1000)
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert sha256_file(f) == file_sha256(f) == want
    memo = json.loads((tmp_path / "home" / "digests.json").read_text())
    assert list(memo.values()) == [want]
    export = tmp_path / f"{want[:24]}-16x112x112.onnx"
    write_sidecar(export, {"weights_sha256": want, "labels": "a\nb"})
    assert read_sidecar(export) == {"weights_sha256": want, "labels": "a\nb"}


def test_exports_and_int8_share_one_state_key():
    from har.runtimes import export

    assert hasattr(export, "state_key") and hasattr(export, "int8_ir_cached")
    assert not hasattr(importlib.import_module("har.runtimes.quantize"), "int8_ir_cached")


@pytest.fixture
def http_file(tmp_path):
    body = bytes(range(256)) * 64

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v.mp4", body
    server.shutdown()
    server.server_close()


def test_a_url_input_is_fetched_by_the_one_downloader(http_file, monkeypatch):
    import har.netsafe
    from har.errors import DecodeError
    from har.sources import fetch_url

    url, body = http_file
    used = []
    real = har.netsafe.fetch
    monkeypatch.setattr(har.netsafe, "fetch", lambda *a, **k: used.append(k) or real(*a, **k))
    tmp = fetch_url(url)
    try:
        assert Path(tmp.path).read_bytes() == body and tmp.path.endswith(".mp4")
    finally:
        tmp.remove()
    assert used and used[0]["allow_private"] is True  # the user's machine: its own network
    monkeypatch.setenv("HAR_MAX_FETCH_MB", "0.001")
    with pytest.raises(DecodeError, match="HAR_MAX_FETCH_MB") as e:
        fetch_url(url)
    assert "server's" not in str(e.value)


def test_parquet_export_uses_the_one_schema(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import sqlite3

    from har.archive import db
    from har.archive.export import parquet_schema, write_parquet

    path = tmp_path / "a.db"
    conn = db.connect(path)
    assert isinstance(conn, sqlite3.Connection)
    vid = conn.execute("INSERT INTO videos (path, status, duration_s, fps, frames) "
                       "VALUES ('/v.mp4', 'done', 2.0, 25.0, 50)").lastrowid
    conn.execute("INSERT INTO clips (video_id, idx, start_frame, end_frame, start_s, end_s, "
                 "top_label, top_score, topk) VALUES (?, 0, 0, 16, 0.0, 0.64, 'run', 0.9, "
                 "'[[\"run\", 0.9]]')", (vid,))
    conn.commit()
    write_parquet(conn, tmp_path / "c.parquet")
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.schema.equals(parquet_schema(pa))
    row = table.to_pylist()[0]
    assert (row["path"], row["fps"], row["clip"], row["embedding"]) == ("/v.mp4", 25.0, 0, None)
