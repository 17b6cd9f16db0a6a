"""One thread that runs queued jobs, one at a time, through the shared Recognizer.

A job's clips are scored with :meth:`Recognizer.stream`; each clip becomes a
``har.events/1`` ``clip`` event kept in memory for ``GET /v1/jobs/{id}/events``
(server-sent events), and its last frame moves the job's progress. The result is
written atomically before the job is marked done, so a kill between the two only
makes the job run again (it finishes once).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import HarError
from ..fsutil import atomic_open, atomic_path, clean_text
from ..writers import EVENTS_SCHEMA, dumps, predictions_doc, video_status
from .store import Job, JobStore

log = logging.getLogger("har.serve")


class JobEvents:
    """The events of the job that is running (and of recent ones), for SSE readers."""

    def __init__(self, keep: int = 16) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._ended: dict[str, bool] = {}
        self._order: list[str] = []
        self._keep = keep

    def begin(self, job_id: str) -> None:
        with self._lock:
            self._events[job_id] = []
            self._ended[job_id] = False
            if job_id in self._order:
                self._order.remove(job_id)
            self._order.append(job_id)
            while len(self._order) > self._keep:
                old = self._order.pop(0)
                self._events.pop(old, None)
                self._ended.pop(old, None)

    def add(self, job_id: str, type_: str, **fields: Any) -> None:
        event = {"type": type_, **fields, "wall_time": round(time.time(), 6)}
        with self._lock:
            self._events.setdefault(job_id, []).append(event)

    def end(self, job_id: str) -> None:
        with self._lock:
            self._ended[job_id] = True

    def read(self, job_id: str, start: int) -> tuple[list[dict[str, Any]], bool] | None:
        """Events from ``start`` on, and whether the job's stream has ended; None when
        this server has no events for the job (not run since it started)."""
        with self._lock:
            if job_id not in self._events:
                return None
            return list(self._events[job_id][start:]), self._ended[job_id]


@dataclasses.dataclass
class WorkerSettings:
    max_download_bytes: int = 200 * 1024 * 1024
    download_timeout_s: float = 30.0


class Worker(threading.Thread):
    """Runs queued jobs until :meth:`stop`; the recognizer is used by this thread only."""

    def __init__(self, store: JobStore, rec, events: JobEvents,
                 settings: WorkerSettings | None = None) -> None:
        super().__init__(name="har-serve-worker", daemon=True)
        self.store, self.rec, self.events = store, rec, events
        self.settings = settings or WorkerSettings()
        self._stop = threading.Event()
        self.current: str | None = None
        self.cancelled: set[str] = set()

    def stop(self) -> None:
        self._stop.set()
        self.store.notify()

    def run(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim()
            if job is None:
                with self.store.wakeup:
                    self.store.wakeup.wait(timeout=1.0)
                continue
            self.current = job.id
            try:
                self._run_job(job)
            except Exception as exc:  # never let one job stop the worker
                log.exception("job %s", job.id)
                self.store.finish(job.id, "failed", error=f"{job.name}: internal error: {exc}")
            finally:
                self.events.end(job.id)
                self.current = None

    # -- one job ---------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        store, rec = self.store, self.rec
        self.events.begin(job.id)
        self.events.add(job.id, "start", schema=EVENTS_SCHEMA, model=rec.model_name,
                        job=job.id, settings=job.options)
        path = store.upload_path(job.id)
        if job.kind == "url" and not path.exists():
            try:
                self._download(job.url or "", path)
            except HarError as exc:
                self._fail(job, str(exc))
                return
        opts = job.options
        saved = (rec.stride, rec.k, rec.aggregate, rec.timeline)
        try:
            rec.stride = int(opts.get("stride", rec.stride))
            rec.k = int(opts.get("topk", rec.k))
            rec.aggregate = opts.get("aggregate", rec.aggregate)
            if opts.get("threshold") is not None:
                rec.timeline = dataclasses.replace(rec.timeline,
                                                   threshold=float(opts["threshold"]))
            settings = {"stride": rec.stride, "topk": rec.k, "aggregate": rec.aggregate,
                        "threshold": rec.timeline.threshold,
                        "annotate": bool(opts.get("annotate"))}
            result = self._score(job, path)
        finally:
            rec.stride, rec.k, rec.aggregate, rec.timeline = saved
        if not result.ok:
            self._fail(job, _named(result.error, path, job.name))
            return
        if opts.get("annotate"):
            from ..render import annotate_video

            try:
                with atomic_path(store.annotated_path(job.id), suffix=".mp4") as tmp:
                    annotate_video(result, tmp)
            except HarError as exc:
                result.warnings.append(f"annotated video: {_named(str(exc), path, job.name)}")
        result.path = job.name
        result.warnings = [_named(w, path, job.name) for w in result.warnings]
        doc = predictions_doc(rec.model_name, [result], job=job.id, settings=settings)
        with atomic_open(store.result_path(job.id)) as fh:
            fh.write(dumps(doc))
        top1 = result.top[0].label if result.top else None
        fields = result.to_dict()
        fields.pop("clips", None)
        fields.update(path=job.name, status=video_status(result), clips=len(result.clips))
        self.events.add(job.id, "video", **fields)
        if not store.finish(job.id, "done", top1=top1):
            store.delete(job.id)  # deleted while it ran: leave nothing behind

    def _score(self, job: Job, path: Path):
        stream = self.rec.stream(str(path), keep_clips=True, live=False)
        frames = 0
        last = 0.0
        try:
            for clip in stream:
                self.events.add(job.id, "clip", path=job.name, **clip.to_dict())
                total = stream.info.frames if stream.info else None
                frames = max(frames, clip.end_frame)
                now = time.monotonic()
                if total and now - last > 0.25:
                    self.store.set_progress(job.id, frames / total)
                    last = now
                if job.id in self.cancelled or self._stop.is_set():
                    stream.close()
                    break
        except HarError:
            pass  # recorded in the result
        return stream.result()

    def _fail(self, job: Job, error: str) -> None:
        error = clean_text(error.splitlines()[0] if error else "failed")
        self.events.add(job.id, "video", path=job.name, status="failed", error=error)
        if not self.store.finish(job.id, "failed", error=error):
            self.store.delete(job.id)

    def _download(self, url: str, dest: Path) -> None:
        """Fetch an http(s) URL into ``dest``, at most ``max_download_bytes``."""
        limit = self.settings.max_download_bytes
        opener = urllib.request.build_opener(_HttpOnlyRedirects())
        try:
            with opener.open(url, timeout=self.settings.download_timeout_s) as resp, \
                    atomic_open(dest, "wb") as out:
                size = resp.headers.get("Content-Length")
                if size and size.isdigit() and int(size) > limit:
                    raise HarError(f"{url}: is {int(size) / 2**20:.1f} MB, more than the "
                                   f"server's limit of {limit / 2**20:.0f} MB")
                got = 0
                while chunk := resp.read(1 << 16):
                    got += len(chunk)
                    if got > limit:
                        raise HarError(f"{url}: is more than the server's limit of "
                                       f"{limit / 2**20:.0f} MB")
                    out.write(chunk)
        except HarError:
            raise
        except urllib.error.HTTPError as exc:
            raise HarError(f"{url}: the server answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HarError(f"{url}: cannot be downloaded ({reason})") from None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.URLError(f"redirected to a non-http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _named(message: str | None, path: Path, name: str) -> str:
    """Error text with the stored file's generated name replaced by the user's."""
    return (message or "failed").replace(str(path), name)
