"""A `har serve` subprocess on 127.0.0.1 for the API, browser and load tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m har serve`` with the given options; :meth:`start` waits for /healthz."""

    def __init__(self, data: Path, weights: str, *extra: str, model: str = "r3d10-k400",
                 log: Path | None = None, stdout_to_log: bool = False) -> None:
        self.data, self.weights, self.extra, self.model = Path(data), weights, extra, model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or (self.data.parent / f"{self.data.name}-server.log")
        self.proc: subprocess.Popen | None = None
        self.stdout_to_log = stdout_to_log  # uvicorn's access log goes to stdout
        self._log_fh = None

    def start(self, timeout_s: float = 90.0) -> "Server":
        cmd = [sys.executable, "-m", "har", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data", str(self.data), "--model", self.model,
               "--weights", self.weights, "--backend", "torch", *self.extra]
        env = dict(os.environ, OMP_NUM_THREADS="2")
        self._close_log()
        self._log_fh = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stderr=self._log_fh,
                                     stdout=self._log_fh if self.stdout_to_log else
                                     subprocess.DEVNULL,
                                     env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"har serve exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"har serve did not answer in {timeout_s} s")

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def wait_all(self, ids, timeout_s: float = 240.0, headers=None) -> dict[str, dict]:
        """Each job's final status document (bounded in time)."""
        deadline = time.monotonic() + timeout_s
        final: dict[str, dict] = {}
        while time.monotonic() < deadline and len(final) < len(ids):
            for job_id in ids:
                if job_id in final:
                    continue
                r = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10, headers=headers)
                r.raise_for_status()
                if r.json()["status"] in ("done", "failed"):
                    final[job_id] = r.json()
            time.sleep(0.3)
        missing = [i for i in ids if i not in final]
        assert not missing, f"jobs not finished in {timeout_s} s: {missing}"
        return final
