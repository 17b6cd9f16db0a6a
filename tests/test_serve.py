"""`har serve`: the HTTP API over a real server process on 127.0.0.1.

Jobs survive SIGKILL (every accepted job ends once), results equal `har predict`'s,
and the limits (token, upload size, queue, URL schemes, file names) hold.
"""

from __future__ import annotations

import functools
import http.server
import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import make_video  # noqa: E402
from har.cli import ExitCode, main  # noqa: E402
from serve_helpers import Server  # noqa: E402

pytestmark = pytest.mark.slow


def _pattern(seed: int):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)

    def frame(i: int) -> np.ndarray:
        return np.roll(base, i * (seed + 1), axis=1)

    return frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return [make_video(d / f"clip{i}.mp4", 32 + 8 * i, frame_fn=_pattern(i)) for i in range(4)]


@pytest.fixture
def http_dir(tmp_path):
    """A local http.server on 127.0.0.1 serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _submit(url: str, path: Path, name: str | None = None, **fields):
    with open(path, "rb") as fh:
        return httpx.post(f"{url}/v1/jobs", files={"file": (name or path.name, fh)},
                          data={k: str(v) for k, v in fields.items()}, timeout=30)


def _cli_top1(paths, weights, tmp_path) -> dict[str, str]:
    out = tmp_path / "cli.json"
    code = main(["predict", *map(str, paths), "--model", "r3d10-k400", "--weights", weights,
                 "--backend", "torch", "--json", str(out), "--no-progress", "--clips", "0"])
    assert code == ExitCode.OK
    return {Path(v["path"]).name: v["top"][0]["label"]
            for v in json.loads(out.read_text())["videos"]}


def test_jobs_survive_sigkill_and_match_har_predict(tmp_path, videos, r10_weights, http_dir):
    www, base = http_dir
    (www / "remote.mp4").write_bytes(videos[0].read_bytes())
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    # the URL source runs on 127.0.0.1: allowed only with --allow-private-urls
    server = Server(tmp_path / "data", r10_weights, "--allow-private-urls").start()
    ids: dict[str, str] = {}
    try:
        for v in videos:
            r = _submit(server.url, v)
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "queued"
            ids[v.name] = r.json()["id"]
        r = httpx.post(f"{server.url}/v1/jobs", json={"url": f"{base}/remote.mp4"}, timeout=30)
        assert r.status_code == 202, r.text
        ids["remote.mp4"] = r.json()["id"]
        ids["notes.mp4"] = _submit(server.url, bad).json()["id"]
        # kill part-way: while a job runs (or, at worst, once one is done)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = httpx.get(f"{server.url}/v1/jobs", timeout=10).json()["jobs"]
            if any(j["status"] == "running" and j["progress"] > 0 for j in jobs) or \
                    any(j["status"] == "done" for j in jobs):
                break
            time.sleep(0.05)
        before = {j["id"]: j["status"] for j in
                  httpx.get(f"{server.url}/v1/jobs", timeout=10).json()["jobs"]}
        server.kill()
        assert any(s in ("queued", "running") for s in before.values()), before
        server.start()
        final = server.wait_all(list(ids.values()))
        # the bad file failed with one clear line naming the upload
        err = final[ids["notes.mp4"]]["error"]
        assert final[ids["notes.mp4"]]["status"] == "failed"
        assert "notes.mp4" in err and "\n" not in err and "Traceback" not in err
        assert str(tmp_path / "data") not in err  # the stored (generated) path never shows
        cli = _cli_top1(videos, r10_weights, tmp_path)
        for name, job_id in ids.items():
            if name == "notes.mp4":
                continue
            assert final[job_id]["status"] == "done", final[job_id]
            doc = httpx.get(f"{server.url}/v1/jobs/{job_id}/result", timeout=10).json()
            assert doc["schema"] == "har.predictions/1"
            video = doc["videos"][0]
            expect = cli["clip0.mp4" if name == "remote.mp4" else name]
            assert video["top"][0]["label"] == expect
            assert final[job_id]["top1"] == expect
            assert video["clips"] and video["error"] is None
        # a finished job replays its clips as server-sent events
        with httpx.stream("GET", f"{server.url}/v1/jobs/{ids['clip1.mp4']}/events",
                          timeout=20) as r:
            text = "".join(r.iter_text())
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        assert [e["type"] for e in events].count("clip") >= 2 and events[-1]["type"] == "video"
        assert events[-1]["top"][0]["label"] == cli["clip1.mp4"]
        # the original video is served for the page's player (with range requests)
        r = httpx.get(f"{server.url}/v1/jobs/{ids['clip0.mp4']}/video",
                      headers={"Range": "bytes=0-99"}, timeout=10)
        assert r.status_code == 206 and len(r.content) == 100
    finally:
        server.stop()
    # every job ended exactly once, across the kill
    db = sqlite3.connect(tmp_path / "data" / "jobs.sqlite3")
    rows = db.execute("SELECT status, finishes FROM jobs").fetchall()
    db.close()
    assert len(rows) == len(ids) and all(f == 1 for _, f in rows), rows


def test_live_events_annotate_delete_and_options(tmp_path, videos, r10_weights):
    server = Server(tmp_path / "data", r10_weights).start()
    try:
        r = _submit(server.url, videos[3], annotate="true", topk=2, stride=8, threshold=0.5)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        with httpx.stream("GET", f"{server.url}/v1/jobs/{job_id}/events", timeout=120) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            text = "".join(r.iter_text())
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        types = [e["type"] for e in events]
        assert types[0] in ("start", "clip") and types[-1] == "video"
        clips = [e for e in events if e["type"] == "clip"]
        assert len(clips) >= 4 and all(len(c["top"]) == 2 for c in clips)  # stride 8, topk 2
        final = server.wait_all([job_id])[job_id]
        assert final["status"] == "done" and final["progress"] == 1.0
        doc = httpx.get(f"{server.url}/v1/jobs/{job_id}/result", timeout=10).json()
        assert doc["settings"]["stride"] == 8 and doc["settings"]["segments"]["threshold"] == 0.5
        assert doc["videos"][0]["path"] == videos[3].name
        mp4 = httpx.get(f"{server.url}/v1/jobs/{job_id}/annotated.mp4", timeout=30)
        assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
        # bad options: 400 with the reason
        r = _submit(server.url, videos[0], aggregate="median")
        assert r.status_code == 400 and "aggregate" in r.json()["detail"]
        # file names never become paths: stored under generated names
        r = _submit(server.url, videos[0], name="../../escape.mp4")
        assert r.status_code == 202
        evil = r.json()["id"]
        assert not (tmp_path / "escape.mp4").exists()
        assert sorted(p.name for p in (tmp_path / "data" / "uploads").iterdir()) == \
            sorted(f"{i}.video" for i in (job_id, evil))
        assert httpx.get(f"{server.url}/v1/jobs/{evil}", timeout=10).json()["name"] == \
            "escape.mp4"
        server.wait_all([evil])
        # DELETE removes the job and its files
        assert httpx.delete(f"{server.url}/v1/jobs/{job_id}", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10).status_code == 404
        assert not (tmp_path / "data" / "uploads" / f"{job_id}.video").exists()
        # URLs: http(s) only
        r = httpx.post(f"{server.url}/v1/jobs", json={"url": "file:///etc/passwd"}, timeout=10)
        assert r.status_code == 400 and "http" in r.json()["detail"]
        models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
        assert models["loaded"]["name"] == "r3d10-k400"
        assert "/v1/jobs" in httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
        page = httpx.get(server.url + "/", timeout=10).text
        assert "<html" in page.lower() and "//cdn" not in page
    finally:
        server.stop()


def test_token_upload_limit_and_queue_limit(tmp_path, videos, r10_weights, http_dir):
    www, base = http_dir
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 1024 * 1024))
    (www / "big.mp4").write_bytes(big.read_bytes())
    server = Server(tmp_path / "data", r10_weights, "--token", "s3cret",
                    "--max-upload-mb", "1", "--max-queue", "2", "--allow-private-urls").start()
    auth = {"Authorization": "Bearer s3cret"}
    try:
        assert httpx.get(f"{server.url}/v1/jobs", timeout=10).status_code == 401
        assert httpx.get(f"{server.url}/v1/jobs", timeout=10,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        with open(videos[0], "rb") as fh:
            assert httpx.post(f"{server.url}/v1/jobs", files={"file": fh},
                              timeout=10).status_code == 401
        assert httpx.get(f"{server.url}/v1/jobs", timeout=10, headers=auth).status_code == 200
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        # over the limit: 413, and nothing is kept
        with open(big, "rb") as fh:
            r = httpx.post(f"{server.url}/v1/jobs", files={"file": fh}, headers=auth, timeout=30)
        assert r.status_code == 413 and "1 MB" in r.json()["detail"]

        # without a Content-Length (chunked), the limit is checked as the body streams
        def chunks():
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.mp4\"\r\n\r\n"
            for _ in range(40):
                yield b"\0" * 65536

        r = httpx.post(f"{server.url}/v1/jobs", content=chunks(), timeout=30,
                       headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
        assert list((tmp_path / "data" / "uploads").iterdir()) == []
        # a URL download stops at the same limit: the job fails with the reason
        r = httpx.post(f"{server.url}/v1/jobs", json={"url": f"{base}/big.mp4"}, headers=auth,
                       timeout=10)
        assert r.status_code == 202
        final = server.wait_all([r.json()["id"]], headers=auth)[r.json()["id"]]
        assert final["status"] == "failed" and "limit of 1 MB" in final["error"]
        assert list((tmp_path / "data" / "uploads").iterdir()) == []
        # the queue holds 2: the third waits for room (429)
        codes = []
        for _ in range(3):
            with open(videos[3], "rb") as fh:
                codes.append(httpx.post(f"{server.url}/v1/jobs", files={"file": fh},
                                        headers=auth, timeout=30).status_code)
        assert codes[:2] == [202, 202] and codes[2] == 429
    finally:
        server.stop()
