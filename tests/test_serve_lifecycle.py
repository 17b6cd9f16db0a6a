"""`har serve` as a process: SIGTERM in the middle of a job, a second server on the
same --data, a busy port, and the token kept out of the access log (issue 25 items
1, 2, 9 and 10)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import make_video  # noqa: E402
from serve_helpers import Server, free_port  # noqa: E402

pytestmark = pytest.mark.slow


def _har_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "har", "serve", "--host", "127.0.0.1",
                           "--backend", "torch", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_sigterm_requeues_the_running_job_and_one_server_per_folder(tmp_path, r10_weights):
    video = make_video(tmp_path / "long.mp4", 400)
    data = tmp_path / "data"
    auth = {"Authorization": "Bearer s3cret"}
    server = Server(data, r10_weights, "--token", "s3cret", "--log-level", "info",
                    stdout_to_log=True).start()
    try:
        assert httpx.get(f"{server.url}/v1/jobs?token=s3cret", timeout=10).status_code == 200
        # a second server on the same folder: one line, exit 2, before loading a model
        other = _har_serve("--data", str(data), "--port", str(free_port()),
                           "--weights", r10_weights, "--model", "r3d10-k400")
        assert other.returncode == 2, other.stderr
        assert "another har serve" in other.stderr and "Traceback" not in other.stderr
        assert len(other.stderr.strip().splitlines()) == 1
        # a busy port: one line, exit 2
        busy = _har_serve("--data", str(tmp_path / "d2"), "--port", str(server.port),
                          "--weights", r10_weights, "--model", "r3d10-k400")
        assert busy.returncode == 2 and "already in use" in busy.stderr, busy.stderr
        assert "Traceback" not in busy.stderr
        with open(video, "rb") as fh:
            r = httpx.post(f"{server.url}/v1/jobs", files={"file": fh}, data={"stride": "2"},
                           headers=auth, timeout=30)
        job = r.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            doc = httpx.get(f"{server.url}/v1/jobs/{job}", headers=auth, timeout=10).json()
            if doc["status"] == "running" and doc["progress"] > 0:
                break
            assert doc["status"] in ("queued", "running"), doc
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        server.stop()  # SIGTERM while the job runs
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "s3cret" not in log and "token=REDACTED" in log
    db = sqlite3.connect(data / "jobs.sqlite3")
    status, finishes = db.execute("SELECT status, finishes FROM jobs WHERE id = ?",
                                  (job,)).fetchone()
    db.close()
    assert (status, finishes) == ("queued", 0)  # not 'done' with a cut-short result
    assert not (data / "results" / f"{job}.json").exists()
    server.start()
    try:
        final = server.wait_all([job], headers=auth)[job]
        assert final["status"] == "done" and final["attempts"] == 2
        doc = httpx.get(f"{server.url}/v1/jobs/{job}/result", headers=auth, timeout=10).json()
        clips = doc["videos"][0]["clips"]
        assert clips[-1]["end_frame"] >= 390  # the whole video, not the part before the kill
    finally:
        server.stop()
