"""One thread that runs queued jobs, one at a time, through the shared Recognizer.

A job's clips are scored with :meth:`Recognizer.stream`; each clip becomes a
``har.events/1`` ``clip`` event kept in memory for ``GET /v1/jobs/{id}/events``
(server-sent events), and its last frame moves the job's progress. The result is
written atomically before the job is marked done, so a kill between the two only
makes the job run again (it finishes once). A shutdown (:meth:`Worker.stop`) in the
middle of a job puts it back in the queue: a cut-short result is never marked done.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import HarError
from ..fsutil import atomic_open, atomic_path, clean_text
from ..netsafe import FetchLimits, fetch
from ..results import VideoResult
from ..writers import EventWriter, dumps, predictions_doc, run_settings
from .store import Job, JobStore

log = logging.getLogger("har.serve")


class JobEvents:
    """The events of the job that is running (and of recent ones), for SSE readers."""

    def __init__(self, keep: int = 16, on_event=None) -> None:
        # on_event(job_id, event): called with every event (har serve pushes the
        # job's end, the ``video`` event, to webhooks and MQTT)
        self.on_event = on_event
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

    def writer(self, job_id: str) -> EventWriter:
        """The job's ``har.events/1`` writer: the one writer of every front end, with
        this job's events as its sink."""
        return EventWriter(sink=lambda event: self.push(job_id, event))

    def push(self, job_id: str, event: dict[str, Any]) -> None:
        """Keep an event (built by :class:`~har.writers.EventWriter`) for the readers."""
        with self._lock:
            self._events.setdefault(job_id, []).append(event)
        if self.on_event is not None:
            self.on_event(job_id, event)

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


def job_run_options(rec, options: dict[str, Any]):
    """A job's :class:`~har.recognizer.RunOptions`: its own options (``stride``,
    ``topk``, ``aggregate``, ``threshold``, checked by the API) over the server's
    defaults. The shared recognizer is never changed: the job's stream takes these.
    ValueError (from RunOptions) for a value no job could run with."""
    base = rec.options
    changes: dict[str, Any] = {}
    if options.get("stride") is not None:
        changes["stride"] = int(options["stride"])
    if options.get("topk") is not None:
        changes["topk"] = int(options["topk"])
    if options.get("aggregate") not in (None, ""):
        changes["aggregate"] = options["aggregate"]
    if options.get("threshold") is not None:
        changes["timeline"] = dataclasses.replace(base.timeline,
                                                  threshold=float(options["threshold"]))
    return base.replace(**changes)


def job_settings(rec, options: dict[str, Any]) -> dict[str, Any] | None:
    """The job's ``settings`` block (its result and its ``start`` event): the same
    block ``har predict`` writes for the same options (har.writers.run_settings);
    None for options no job could run with."""
    try:
        return run_settings(rec.resolve(job_run_options(rec, options)), rec)
    except (TypeError, ValueError):
        return None


# Codecs FFmpeg picks for bytes that are text or raw data when a name's extension or a
# weak probe suggests them (CD+G graphics, ANSI/binary text art): never a camera video.
NOT_VIDEO_CODECS = frozenset({"cdgraphics", "ansi", "bintext", "xbin", "idf", "tty"})


@dataclasses.dataclass
class WorkerSettings:
    max_download_bytes: int = 200 * 1024 * 1024
    download_timeout_s: float = 300.0  # the whole download of a URL job
    download_idle_s: float = 30.0  # longest wait for the next bytes
    allow_private_urls: bool = False
    keep_s: float | None = None  # ended jobs older than this are deleted (None: kept)


class _Stopped(Exception):
    """The server is shutting down in the middle of a job."""


class Worker(threading.Thread):
    """Runs queued jobs until :meth:`stop`; the recognizer is used by this thread only."""

    def __init__(self, store: JobStore, rec, events: JobEvents,
                 settings: WorkerSettings | None = None) -> None:
        super().__init__(name="har-serve-worker", daemon=True)
        self.store, self.rec, self.events = store, rec, events
        self.settings = settings or WorkerSettings()
        # not ``_stop``: threading.Thread has a method of that name, which
        # join() and the interpreter's shutdown call
        self._stopping = threading.Event()
        self.current: str | None = None
        self.cancelled: set[str] = set()
        self.beat = time.monotonic()  # last sign of life: a job step or an idle wait
        self.job_started: float | None = None

    def stop(self) -> None:
        self._stopping.set()
        self.store.notify()

    def cancel(self, job_id: str) -> None:
        """Stop the job if it is the one running (within about half a second)."""
        self.cancelled.add(job_id)

    def stalled_s(self) -> float:
        """Seconds since the worker last moved (0 while it waits for jobs)."""
        return time.monotonic() - self.beat

    def _expire(self) -> None:
        keep = self.settings.keep_s
        now = time.monotonic()
        if keep is None or now - self._expired_at < min(600.0, keep / 4):
            return
        self._expired_at = now
        for job_id in self.store.expire(keep):
            log.info("job %s: deleted after %g s (--keep-days)", job_id, keep)

    def run(self) -> None:
        self._expired_at = float("-inf")
        while not self._stopping.is_set():
            self.beat = time.monotonic()
            self._expire()
            job = self.store.claim()
            if job is None:
                with self.store.wakeup:
                    self.store.wakeup.wait(timeout=0.5)
                continue
            self.current, self.job_started = job.id, time.monotonic()
            try:
                self._run_job(job)
            except _Stopped:
                # shutting down: the job runs again from the start on the next start
                self.store.requeue(job.id)
                log.info("job %s: stopped by the shutdown, queued again", job.id)
            except _Cancelled:
                # deleted or cancelled by a client: a last event that says so (never a
                # cut-short 'partial' result), and nothing left behind
                self._gone(job)
                now = self.store.get(job.id)  # its record's reason, as the replay says
                why = now.error if now is not None and now.error else \
                    f"{job.name}: the job was cancelled"
                self.events.writer(job.id).video(VideoResult(path=job.name, error=why),
                                                 status="cancelled")
            except Exception as exc:  # never let one job stop the worker
                log.exception("job %s", job.id)
                if isinstance(exc, OSError):  # a full or read-only --data, most often
                    why = (f"{job.name}: the server could not write its files "
                           f"({exc.strerror or type(exc).__name__}); free space under --data")
                else:
                    why = f"{job.name}: internal error: {type(exc).__name__}"
                try:
                    self._fail(job, why)
                except _Cancelled:
                    pass
            finally:
                self.events.end(job.id)
                self.cancelled.discard(job.id)
                self.current, self.job_started = None, None
                self.beat = time.monotonic()

    # -- one job ---------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        store, rec = self.store, self.rec
        self.events.begin(job.id)
        events = self.events.writer(job.id)
        opts = job.options
        settings = job_settings(rec, opts)
        events.start(rec.model_name, settings, job=job.id)
        try:
            options = rec.resolve(job_run_options(rec, opts))
        except (TypeError, ValueError) as exc:  # a row the API would not have taken
            self._fail(job, f"{job.name}: bad job options ({exc}); submit it again")
            return
        path = store.upload_path(job.id)
        if job.kind == "url" and not path.exists():
            try:
                self._download(job, path)
            except HarError as exc:
                self._check_stop(job)
                self._fail(job, str(exc))
                return
        result = self._score(job, path, options, events)
        self._check_stop(job)
        if result.ok and (result.codec or "") in NOT_VIDEO_CODECS:
            result.error = (f"{path}: is not a video (FFmpeg could only read it as "
                            f"{result.codec} data)")
        if not result.ok:
            self._fail(job, _named(result.error, path, job.name))
            return
        if opts.get("annotate"):
            from ..render import annotate_video

            self.beat = time.monotonic()
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
        self._check_stop(job)
        if not store.finish(job.id, "done", top1=top1):
            self._gone(job)
            raise _Cancelled()
        events.video(result)

    def _score(self, job: Job, path: Path, options, events: EventWriter):
        stream = self.rec.stream(str(path), keep_clips=True, live=False, options=options)
        frames = 0
        last = 0.0
        try:
            for clip in stream:
                self.beat = time.monotonic()
                if stream.info is not None and stream.info.codec in NOT_VIDEO_CODECS:
                    stream.close()
                    break
                events.clip(job.name, clip)
                total = stream.info.frames if stream.info else None
                frames = max(frames, clip.end_frame)
                now = time.monotonic()
                if total and now - last > 0.25:
                    self.store.set_progress(job.id, frames / total)
                    last = now
                if job.id in self.cancelled or self._stopping.is_set():
                    stream.close()
                    break
        except HarError:
            pass  # recorded in the result
        return stream.result()

    def _check_stop(self, job: Job) -> None:
        """After a step that a stop or a cancel cuts short: a shutdown raises
        :class:`_Stopped` (the job is queued again); a cancelled job ends with a
        ``cancelled`` event and nothing else (its row is gone already)."""
        if self._stopping.is_set():
            raise _Stopped()
        if job.id in self.cancelled:
            raise _Cancelled()

    def _fail(self, job: Job, error: str) -> None:
        error = clean_text(error.splitlines()[0] if error else "failed")
        if not self.store.finish(job.id, "failed", error=error):
            self._gone(job)
            raise _Cancelled()
        self.events.writer(job.id).video(VideoResult(path=job.name, error=error))

    def _gone(self, job: Job) -> None:
        """The job was deleted (remove what was written since) or cancelled (keep
        its upload, drop its results) while it ran."""
        if self.store.get(job.id) is None:
            self.store.delete(job.id)
        else:
            for path in (self.store.result_path(job.id), self.store.annotated_path(job.id)):
                path.unlink(missing_ok=True)

    def _download(self, job: Job, dest: Path) -> None:
        """Fetch the job's http(s) URL into ``dest``: at most ``max_download_bytes``,
        within ``download_timeout_s``, stopped by a cancel or a shutdown, and never
        from this machine's own network unless ``allow_private_urls``."""
        st = self.settings
        limits = FetchLimits(max_bytes=st.max_download_bytes, deadline_s=st.download_timeout_s,
                             idle_s=st.download_idle_s)

        def beat(_n: int) -> None:
            self.beat = time.monotonic()

        with atomic_open(dest, "wb") as out:
            fetch(job.url or "", out, limits=limits, allow_private=st.allow_private_urls,
                  cancelled=lambda: job.id in self.cancelled or self._stopping.is_set(),
                  on_bytes=beat)


class _Cancelled(Exception):
    """The running job was deleted or cancelled."""


def _named(message: str | None, path: Path, name: str) -> str:
    """Error text with the stored file's generated name replaced by the user's."""
    return (message or "failed").replace(str(path), name)
