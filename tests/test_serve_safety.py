"""`har serve` against hostile clients (issue 21 items 4-7, 10, 12-14; issue 25 item 10).

The app runs in this process on a real uvicorn server on 127.0.0.1 with a real
Recognizer (r3d10, random weights, torch); clients are httpx and raw sockets, the
URL sources are local http.server instances.
"""

from __future__ import annotations

import http.server
import io
import json
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import make_video  # noqa: E402
from har.errors import HarError  # noqa: E402
from har.netsafe import fetch  # noqa: E402
from har.serve.app import ServeConfig, create_app  # noqa: E402
from serve_helpers import free_port  # noqa: E402


@pytest.fixture(scope="module")
def rec(r10_weights):
    from har.recognizer import Recognizer

    return Recognizer("r3d10-k400", weights=r10_weights, backend="torch")


@pytest.fixture(scope="module")
def good_video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "good.mp4", 24)


class App:
    """create_app on a uvicorn server in a thread; :meth:`close` stops it (bounded)."""

    def __init__(self, rec, data: Path, start_worker: bool = True, **config) -> None:
        self.data = data
        self.app = create_app(rec, ServeConfig(data=data, **config), start_worker=start_worker)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="error", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "did not start"
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.app.state.store.close()

    def wait(self, job_id: str, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()
            if doc["status"] not in ("queued", "running"):
                return doc
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not ended in {timeout_s} s")


@pytest.fixture
def app(rec, tmp_path):
    a = App(rec, tmp_path / "data")
    yield a
    a.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def www(tmp_path):
    """A plain http.server on 127.0.0.1 for ``tmp_path/www``, and a trickling path
    (``/trickle``: headers, then one byte every 0.5 s) and a silent one (``/silent``)."""
    root = tmp_path / "www"
    root.mkdir()
    stop = threading.Event()

    class Handler(_Quiet):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):
            if self.path.startswith("/redirect-to/"):
                self.send_response(302)
                self.send_header("Location", self.path[len("/redirect-to/"):])
                self.end_headers()
                return
            if self.path in ("/trickle", "/silent"):
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.end_headers()
                for _ in range(240):
                    if stop.is_set():
                        return
                    if self.path == "/trickle":
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                    stop.wait(0.5)
                return
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def _upload(url, name, data: bytes, **fields):
    return httpx.post(f"{url}/v1/jobs", files={"file": (name, data)},
                      data={k: str(v) for k, v in fields.items()}, timeout=30)


# -- item 4: stored XSS ------------------------------------------------------------
def test_stored_inputs_are_attachments_and_every_response_has_csp(app, good_video):
    page = b"<html><script>fetch('/v1/jobs')</script></html>"
    bad = _upload(app.url, "holiday.html", page).json()["id"]
    good = _upload(app.url, "holiday2.html", good_video.read_bytes()).json()["id"]
    assert app.wait(bad)["status"] == "failed"
    assert app.wait(good)["status"] == "done"
    # bytes that did not decode as video are never served back
    r = httpx.get(f"{app.url}/v1/jobs/{bad}/video", timeout=10)
    assert r.status_code == 409 and page not in r.content
    r = httpx.get(f"{app.url}/v1/jobs/{good}/video", timeout=10)
    assert r.status_code == 200 and r.content == good_video.read_bytes()
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    for path in ("/", "/static/app.js", "/static/style.css", "/v1/jobs", "/healthz",
                 f"/v1/jobs/{good}/video", f"/v1/jobs/{good}/result", "/nothing-here",
                 "/openapi.json"):
        r = httpx.get(app.url + path, timeout=10)
        assert r.headers["x-content-type-options"] == "nosniff", path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    # the page works under that policy: no inline script, style or handler
    html = httpx.get(app.url + "/", timeout=10).text
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", html)
    # /docs (third-party code from a CDN) is off by default; the schema is served
    assert httpx.get(app.url + "/docs", timeout=10).status_code == 404
    schema = httpx.get(app.url + "/openapi.json", timeout=10).json()
    assert "/v1/jobs" in schema["paths"] and "/v1/jobs/{job_id}/cancel" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "429" in schema["paths"]["/v1/jobs"]["post"]["responses"]


# -- item 7: Host and Origin -------------------------------------------------------
def test_foreign_host_and_cross_origin_writes_are_refused(app, good_video):
    r = httpx.get(f"{app.url}/v1/jobs", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 403 and "evil.example" in r.json()["detail"]
    for host in (f"localhost:{app.port}", f"127.0.0.1:{app.port}"):
        assert httpx.get(f"{app.url}/v1/jobs", headers={"Host": host},
                         timeout=10).status_code == 200
    data = good_video.read_bytes()
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(f"{app.url}/v1/jobs", files={"file": ("a.mp4", data)},
                       headers=headers, timeout=10)
        assert r.status_code == 403, headers
    assert httpx.get(f"{app.url}/v1/jobs", timeout=10).json()["jobs"] == []
    r = httpx.post(f"{app.url}/v1/jobs", files={"file": ("a.mp4", data)},
                   headers={"Origin": app.url}, timeout=10)
    assert r.status_code == 202
    job = r.json()["id"]
    r = httpx.delete(f"{app.url}/v1/jobs/{job}", headers={"Origin": "http://evil.example"},
                     timeout=10)
    assert r.status_code == 403
    assert httpx.get(f"{app.url}/v1/jobs/{job}", timeout=10).status_code == 200


# -- item 5: SSRF ------------------------------------------------------------------
def test_url_jobs_refuse_this_machines_network_by_default(app, www, good_video):
    root, base = www
    (root / "secret").write_text("internal secret page\n")
    port = base.rsplit(":", 1)[1]
    for url in (f"{base}/secret", f"HTTP://127.0.0.1:{port}/secret",
                f"http://%31%32%37.0.0.1:{port}/secret", f"http://localhost:{port}/secret",
                f"http://[::1]:{port}/", "http://0.0.0.0/", "http://169.254.169.254/latest",
                "http://10.0.0.1/", "http://224.0.0.1/", "http://[::ffff:127.0.0.1]/"):
        r = httpx.post(f"{app.url}/v1/jobs", json={"url": url}, timeout=10)
        assert r.status_code == 400, (url, r.text)
        assert "--allow-private-urls" in r.json()["detail"]
    # control characters: refused at once, not as a late "internal error"
    r = httpx.post(f"{app.url}/v1/jobs", json={"url": "https://example.org/a\x01b.mp4"},
                   timeout=10)
    assert r.status_code == 400 and "control characters" in r.json()["detail"]
    # a name that resolves to loopback (decimal form): refused after resolution
    r = httpx.post(f"{app.url}/v1/jobs", json={"url": f"http://2130706433:{port}/secret"},
                   timeout=10)
    assert r.status_code == 202
    done = app.wait(r.json()["id"])
    assert done["status"] == "failed" and "loopback" in done["error"]
    assert list((app.data / "uploads").iterdir()) == []


def test_redirects_are_checked_at_every_hop(www):
    root, base = www
    (root / "secret").write_text("internal secret page\n")
    (root / "ok").write_text("fine\n")
    port = int(base.rsplit(":", 1)[1])
    only_first = {"n": 0}

    def allow_once(address, p):  # the first hop only (a stand-in for a public host)
        only_first["n"] += 1
        return only_first["n"] == 1

    for target in (f"{base}/secret", f"http://localhost:{port}/secret"):
        only_first["n"] = 0
        out = io.BytesIO()
        with pytest.raises(HarError, match="loopback|localhost"):
            fetch(f"{base}/redirect-to/{target}", out, allow_private=allow_once)
        assert out.getvalue() == b""
    with pytest.raises(HarError, match="only http"):
        fetch(f"{base}/redirect-to/file:///etc/passwd", io.BytesIO(), allow_private=True)
    out = io.BytesIO()
    assert fetch(f"{base}/redirect-to/{base}/ok", out, allow_private=True) == 5
    assert out.getvalue() == b"fine\n"


# -- item 10: a trickling server, cancel, deadline, /healthz -----------------------------
def test_trickling_download_has_a_deadline_and_a_cancel(rec, tmp_path, www, good_video):
    root, base = www
    (root / "good.mp4").write_bytes(good_video.read_bytes())
    a = App(rec, tmp_path / "data", allow_private_urls=True, stuck_after_s=1.5,
            download_timeout_s=3.0)
    try:
        t0 = time.monotonic()
        slow = httpx.post(f"{a.url}/v1/jobs", json={"url": f"{base}/trickle"}, timeout=10)
        done = a.wait(slow.json()["id"], 30)
        assert done["status"] == "failed" and "longer than 3 s" in done["error"]
        assert time.monotonic() - t0 < 15
        # silent server: /healthz says the worker is stuck; DELETE frees it
        silent = httpx.post(f"{a.url}/v1/jobs", json={"url": f"{base}/silent"},
                            timeout=10).json()["id"]
        nxt = httpx.post(f"{a.url}/v1/jobs", json={"url": f"{base}/good.mp4"},
                         timeout=10).json()["id"]
        deadline = time.monotonic() + 10
        while httpx.get(f"{a.url}/healthz", timeout=10).status_code == 200:
            assert time.monotonic() < deadline, "/healthz never reported the stuck job"
            time.sleep(0.2)
        health = httpx.get(f"{a.url}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["worker"]["stuck"]
        assert health.json()["worker"]["job"] == silent
        assert httpx.delete(f"{a.url}/v1/jobs/{silent}", timeout=10).status_code == 200
        assert a.wait(nxt, 30)["status"] == "done"
        # the deleted job's stream ended with 'cancelled', not a cut-short result
        events, ended = a.app.state.events.read(silent, 0)
        assert ended and events[-1]["type"] == "video"
        assert events[-1]["status"] == "cancelled"
        assert httpx.get(f"{a.url}/healthz", timeout=10).status_code == 200
    finally:
        a.close()


# -- items 6 and 12: bodies that would eat memory, numbers that overflow ----------------
def test_multipart_and_json_limits(app, good_video):
    def many_fields(n):
        yield b"--b\r\n"
        for i in range(n):
            yield (b'Content-Disposition: form-data; name="f%d"\r\n\r\n' % i) + b"x" * 4000 \
                + b"\r\n--b\r\n"
        yield (b'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
               b"xx\r\n--b--\r\n")

    r = httpx.post(f"{app.url}/v1/jobs", content=many_fields(30000), timeout=30,
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and "parts" in r.json()["detail"]
    data = good_video.read_bytes()
    r = httpx.post(f"{app.url}/v1/jobs", files=[("file", ("a.mp4", data)),
                                                ("file", ("b.mp4", data))], timeout=30)
    assert r.status_code == 400 and "two 'file' parts" in r.json()["detail"]
    for body, word in (('{"url": "https://example.org/v.mp4", "stride": 1e400}', "stride"),
                       ('{"url": "https://example.org/v.mp4", "topk": -1e400}', "topk"),
                       ('{"url": "https://example.org/v.mp4", "threshold": NaN}', "threshold"),
                       ('{"url": "https://example.org/v.mp4", "stride": [1]}', "stride"),
                       ('{"url": "x", "stride": ' + "[" * 30000 + "]" * 30000 + "}", "JSON"),
                       ("[" * 30000 + "]" * 30000, "JSON")):
        r = httpx.post(f"{app.url}/v1/jobs", content=body.encode(), timeout=30,
                       headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 413), (body[:60], r.text)
        assert word in r.json()["detail"] or r.status_code == 413, r.text
    assert httpx.get(f"{app.url}/v1/jobs", timeout=10).json()["jobs"] == []
    assert list((app.data / "uploads").iterdir()) == []


# -- item 13: a client that goes away mid-upload; orphans at start-up ---------------------
def test_dropped_upload_leaves_nothing_and_orphans_are_cleaned(rec, tmp_path):
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "results").mkdir()
    orphan = data / "uploads" / ("ab" * 16 + ".video")
    orphan.write_bytes(b"x")
    tmp = data / "results" / ".har-tmp-x.json.123"
    tmp.write_text("{")
    mine = data / "uploads" / "notes.txt"  # not a name har makes: never touched
    mine.write_text("mine")
    a = App(rec, data)
    try:
        assert not orphan.exists() and not tmp.exists() and mine.read_text() == "mine"
        body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
                + b"\0" * 200_000)
        with socket.create_connection(("127.0.0.1", a.port), timeout=10) as s:
            s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 900000\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while not any(p.suffix == ".video" for p in (data / "uploads").iterdir()):
                assert time.monotonic() < deadline, "the upload never started"
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while [p for p in (data / "uploads").iterdir() if p != mine]:
            assert time.monotonic() < deadline, list((data / "uploads").iterdir())
            time.sleep(0.1)
        assert httpx.get(f"{a.url}/v1/jobs", timeout=10).json()["jobs"] == []
    finally:
        a.close()


# -- item 14: text is not a video ----------------------------------------------------------
def test_text_uploads_and_text_urls_fail(rec, tmp_path, www):
    root, base = www
    (root / "page").write_text("<html>an internal page, not a video</html>\n")
    a = App(rec, tmp_path / "data", allow_private_urls=True)
    try:
        text = b"this is 37 bytes of text, not video!\n"
        assert len(text) == 37
        ids = [_upload(a.url, "notes.video", text).json()["id"],
               _upload(a.url, "clip.mp4", text).json()["id"],
               httpx.post(f"{a.url}/v1/jobs", json={"url": f"{base}/page"},
                          timeout=10).json()["id"]]
        for job in ids:
            doc = a.wait(job)
            assert doc["status"] == "failed" and doc["top1"] is None, doc
            assert "\n" not in doc["error"] and str(a.data) not in doc["error"]
            assert httpx.get(f"{a.url}/v1/jobs/{job}/video", timeout=10).status_code == 409
    finally:
        a.close()


# -- SSE: first byte at once, ids, heartbeats, resume; 429 with Retry-After; cancel ------
def test_events_stream_heartbeats_resume_and_queue_limits(rec, tmp_path, good_video):
    a = App(rec, tmp_path / "q", start_worker=False, heartbeat_s=0.5, max_queue=1)
    try:
        job = _upload(a.url, "a.mp4", good_video.read_bytes()).json()["id"]
        r = _upload(a.url, "b.mp4", good_video.read_bytes())
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        t0 = time.monotonic()
        with httpx.stream("GET", f"{a.url}/v1/jobs/{job}/events", timeout=10) as s:
            chunks = s.iter_text()
            first = next(chunks)
            assert time.monotonic() - t0 < 3 and first.startswith(":")
            got = ""
            while "keep-alive" not in got:
                got += next(chunks)
                assert time.monotonic() - t0 < 5
        # cancel without delete: kept, ended, its upload still there
        r = httpx.post(f"{a.url}/v1/jobs/{job}/cancel", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert httpx.post(f"{a.url}/v1/jobs/{job}/cancel", timeout=10).status_code == 409
        assert a.app.state.store.upload_path(job).exists()
        text = httpx.get(f"{a.url}/v1/jobs/{job}/events", timeout=10).text
        assert '"status": "cancelled"' in text
    finally:
        a.close()


def test_finished_job_events_have_ids_and_resume(app, good_video):
    job = _upload(app.url, "a.mp4", good_video.read_bytes(), stride=4).json()["id"]
    assert app.wait(job)["status"] == "done"

    def events(headers=None):
        text = httpx.get(f"{app.url}/v1/jobs/{job}/events", headers=headers, timeout=20).text
        out = []
        for block in text.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines()
                         if not line.startswith(":") and ": " in line)
            if "data" in lines:
                out.append((int(lines["id"]), json.loads(lines["data"])["type"]))
        return out

    # the job document matches the schema the OpenAPI document gives for it
    jsonschema = pytest.importorskip("jsonschema")
    components = httpx.get(f"{app.url}/openapi.json", timeout=10).json()["components"]
    for ref, doc in (("Job", httpx.get(f"{app.url}/v1/jobs/{job}", timeout=10).json()),
                     ("JobList", httpx.get(f"{app.url}/v1/jobs", timeout=10).json())):
        jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{ref}",
                                         "components": components}).validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Job",
                                         "components": components}).validate({"id": job})
    full = events()
    assert [i for i, _ in full] == list(range(len(full)))
    assert full[0][1] == "start" and full[-1][1] == "video" and len(full) >= 4
    assert events({"Last-Event-ID": "1"}) == full[2:]


# -- a full data folder --------------------------------------------------------------
def test_full_disk_upload_is_507_and_removed(rec, tmp_path, good_video):
    resource = pytest.importorskip("resource")

    a = App(rec, tmp_path / "data")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        # a file size limit makes writes fail as on a full disk (EFBIG; Python ignores
        # SIGXFSZ), for this process only and only while the upload is written
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, hard))
        try:
            r = _upload(a.url, "big.mp4", np.random.default_rng(0).bytes(3 * 1024 * 1024))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert r.status_code == 507 and "full" in r.json()["detail"], r.text
        assert list((a.data / "uploads").iterdir()) == []
        assert _upload(a.url, "ok.mp4", good_video.read_bytes()).status_code == 202
    finally:
        a.close()


# -- idempotency keys and cursor pagination (issue 25 item 5) ----------------------------
def test_idempotency_keys_and_cursor_pages(rec, tmp_path, good_video):
    a = App(rec, tmp_path / "data", start_worker=False)
    try:
        data = good_video.read_bytes()
        key = {"Idempotency-Key": "b6a1c0de-0001"}
        first = httpx.post(f"{a.url}/v1/jobs", files={"file": ("a.mp4", data)}, headers=key,
                           timeout=30)
        again = httpx.post(f"{a.url}/v1/jobs", files={"file": ("a.mp4", data)}, headers=key,
                           timeout=30)
        assert first.status_code == 202 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert len(list((a.data / "uploads").iterdir())) == 1
        r = httpx.post(f"{a.url}/v1/jobs", json={"url": "https://example.org/v.mp4"},
                       headers={"Idempotency-Key": "x" * 201}, timeout=10)
        assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"]
        ids = [first.json()["id"]] + [
            httpx.post(f"{a.url}/v1/jobs", json={"url": f"https://example.org/{i}.mp4"},
                       timeout=10).json()["id"] for i in range(6)]
        seen, cursor = [], None
        for _ in range(10):
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = httpx.get(f"{a.url}/v1/jobs", params=params, timeout=10).json()
            seen += [j["id"] for j in page["jobs"]]
            # a job added between pages does not shift the next page
            httpx.post(f"{a.url}/v1/jobs", json={"url": "https://example.org/late.mp4"},
                       timeout=10)
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == ids[::-1]
        assert httpx.get(f"{a.url}/v1/jobs", params={"cursor": "x"},
                         timeout=10).status_code == 400
    finally:
        a.close()


def test_ended_jobs_expire_after_the_retention_time(rec, tmp_path, good_video):
    a = App(rec, tmp_path / "data", keep_days=2 / 86400)  # 2 s
    try:
        job = _upload(a.url, "a.mp4", good_video.read_bytes()).json()["id"]
        assert a.wait(job)["status"] == "done"
        assert (a.data / "results" / f"{job}.json").exists()
        deadline = time.monotonic() + 20
        while httpx.get(f"{a.url}/v1/jobs/{job}", timeout=10).status_code != 404:
            assert time.monotonic() < deadline, "the job was not deleted"
            time.sleep(0.2)
        assert list((a.data / "uploads").iterdir()) == []
        assert list((a.data / "results").iterdir()) == []
    finally:
        a.close()


def test_docs_only_when_asked_and_named_hosts(rec, tmp_path):
    a = App(rec, tmp_path / "data", start_worker=False, docs=True,
            allowed_hosts=("har.example",))
    try:
        r = httpx.get(f"{a.url}/docs", timeout=10)
        assert r.status_code == 200 and "cdn.jsdelivr.net" in r.text
        assert "cdn.jsdelivr.net" in r.headers["content-security-policy"]
        # the relaxed policy is for /docs only
        assert "jsdelivr" not in httpx.get(f"{a.url}/", timeout=10).headers[
            "content-security-policy"]
        r = httpx.get(f"{a.url}/v1/jobs", headers={"Host": "har.example:443"}, timeout=10)
        assert r.status_code == 200
        r = httpx.post(f"{a.url}/v1/jobs", json={"url": "https://example.org/v.mp4"},
                       headers={"Host": "har.example", "Origin": "https://har.example"},
                       timeout=10)
        assert r.status_code == 202
    finally:
        a.close()
