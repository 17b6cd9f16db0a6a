"""The FastAPI application: ``/v1`` API, ``/openapi.json``, the page at ``/``.

Uploads are parsed as they arrive (python-multipart's streaming parser) and written
under generated names, so the size limit answers 413 without buffering the body and
no client file name ever becomes a path.

Every response carries ``X-Content-Type-Options: nosniff`` and a strict
Content-Security-Policy (scripts, styles and media from this server only); stored
inputs are served as ``application/octet-stream`` attachments, and only once they
decoded as video. Requests whose ``Host`` is a name this server was not told about
are refused (DNS rebinding), and so are state-changing requests from another origin
(a cross-site form needs no preflight).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import os
import re
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from ..defaults import AGGREGATES
from ..errors import HarError
from ..fsutil import clean_text
from ..netsafe import UrlRefused, literal_refusal, stream_refusal
from ..results import VideoResult
from ..writers import EventWriter
from . import schemas
from .push import Pusher
from .store import JobStore
from .streams import MP4_KEPT, MP4_MAX_S, StreamHub
from .worker import JobEvents, Worker, WorkerSettings, job_settings

STATIC = Path(__file__).with_name("static")
API_VERSION = "v1"


@dataclass
class ServeConfig:
    data: Path
    token: str | None = None
    max_upload_mb: float = 200.0
    max_queue: int = 100
    allow_private_urls: bool = False  # URL jobs may fetch loopback/private addresses
    docs: bool = False  # /docs (Swagger UI, loaded from a CDN by the browser)
    allowed_hosts: tuple[str, ...] = ()  # Host names besides IP literals and localhost
    download_timeout_s: float = 300.0  # a URL job's whole download
    stuck_after_s: float = 300.0  # /healthz: a job with no progress this long is stuck
    heartbeat_s: float = 15.0  # SSE comment lines while nothing happens
    max_fields: int = 16  # multipart parts in one upload
    retry_after_s: int = 10  # the hint sent with 429
    keep_days: float | None = None  # ended jobs and their files are deleted after this
    # live streams (har.serve.streams) and pushed events (har.serve.push)
    max_streams: int = 16
    stream_ring: int = 1000  # events kept per stream for SSE resume
    webhook: str | None = None  # POST every job end and stream state/segment event
    webhook_secret: str | None = None  # HMAC-SHA256 key of X-Har-Signature
    mqtt: tuple[str, int] | None = None  # broker (host, port)
    mqtt_topic: str = "har"  # PREFIX/streams/<id>/<type>, PREFIX/jobs/<id>/<type>

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class _TooLarge(Exception):
    pass


# Scripts, styles, media and requests from this server only; nothing may frame it.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
# /docs (only with --docs): Swagger UI's files and its inline start-up script come
# from the jsDelivr CDN, as FastAPI serves it.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: "
            "https://fastapi.tiangolo.com; connect-src 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_VIDEO_EXTS = {"mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "m2ts", "mts",
               "flv", "wmv", "3gp", "ogv", "y4m"}


def _host_name(host: str) -> str:
    """The name in a ``Host`` header, without the port, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class _Guard:
    """ASGI middleware: the security headers on every response; 403 for a ``Host``
    that is not an IP address, ``localhost`` or an allowed name (DNS rebinding: the
    browser sends the attacker's name), and for a state-changing request whose
    ``Origin`` is not this server's."""

    def __init__(self, app, allowed_hosts: tuple[str, ...], docs: bool) -> None:
        self.app = app
        self.allowed = {"localhost", *(_host_name(h) for h in allowed_hosts)}
        self.docs = docs

    def _problem(self, method: str, headers: dict[bytes, bytes]) -> str | None:
        host = headers.get(b"host", b"").decode("latin-1")
        name = _host_name(host)
        if host and not (_is_ip(name) or name in self.allowed):
            return (f"Host {clean_text(host)[:100]!r} is not a name of this server; "
                    "start it with --allow-host NAME to serve that name")
        if method in _SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is None:
            site = headers.get(b"sec-fetch-site", b"").decode("latin-1")
            return "cross-site requests are refused" if site == "cross-site" else None
        origin_text = origin.decode("latin-1")
        parts = urllib.parse.urlsplit(origin_text)
        if parts.netloc and parts.netloc.lower() == host.lower():
            return None
        if parts.hostname and _host_name(parts.hostname) in self.allowed - {"localhost"}:
            return None
        return (f"Origin {clean_text(origin_text)[:100]!r} is not this server; "
                "cross-origin requests that change jobs are refused")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = DOCS_CSP if self.docs and scope.get("path") in ("/docs", "/redoc") else CSP

        async def send_secure(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy",
                                                b"x-content-type-options")]
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"content-security-policy", csp.encode()),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"cross-origin-resource-policy", b"same-origin")]
                message = {**message, "headers": headers}
            await send(message)

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        problem = self._problem(scope.get("method", "GET"), headers)
        if problem:
            response = JSONResponse({"detail": problem}, status_code=403)
            return await response(scope, receive, send_secure)
        return await self.app(scope, receive, send_secure)


class _RedactToken(logging.Filter):
    """uvicorn's access log without the value of ``?token=``."""

    _re = re.compile(r"((?:^|[?&])token=)[^&\s]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str) and "token=" in args[2].lower():
                args[2] = self._re.sub(r"\1REDACTED", args[2])
                record.args = tuple(args)
        return True


def redact_access_log() -> None:
    """Install :class:`_RedactToken` on uvicorn's access logger (once)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactToken) for f in logger.filters):
        logger.addFilter(_RedactToken())


def create_app(rec, config: ServeConfig, *, start_worker: bool = True,
               store: JobStore | None = None) -> FastAPI:
    """The app over a loaded Recognizer; jobs and uploads live under ``config.data``
    (``store``: a :class:`JobStore` already opened there, holding its lock)."""
    from .. import __version__

    store = store or JobStore(config.data)
    pusher = Pusher(webhook=config.webhook, secret=config.webhook_secret,
                    mqtt=config.mqtt, topic=config.mqtt_topic,
                    allow_private=config.allow_private_urls)

    def push_job_end(job_id: str, event: dict[str, Any]) -> None:
        if event.get("type") == "video":
            pusher.publish("jobs", job_id, {**event, "job": job_id})

    events = JobEvents(on_event=push_job_end if pusher.enabled else None)
    hub = StreamHub(rec, store, pusher=pusher,  # a stream may have its own webhook
                    ring=config.stream_ring, allow_private=config.allow_private_urls)
    worker = Worker(store, rec, events, WorkerSettings(
        max_download_bytes=config.max_upload_bytes,
        download_timeout_s=config.download_timeout_s,
        allow_private_urls=config.allow_private_urls,
        keep_s=None if config.keep_days is None else config.keep_days * 86400))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_access_log()
        store.recover()  # jobs a killed server left running run again; orphans go
        if start_worker:
            worker.start()
            hub.start()
        yield
        worker.stop()
        await asyncio.to_thread(hub.stop)
        if worker.is_alive():
            await asyncio.to_thread(worker.join, 10)
        await asyncio.to_thread(pusher.close)

    app = FastAPI(title="har", version=__version__, lifespan=lifespan,
                  docs_url="/docs" if config.docs else None, redoc_url=None,
                  description="Human action recognition (Kinetics-400) in videos: "
                  "submit a video, follow its clips, read its timeline.")
    app.add_middleware(_Guard, allowed_hosts=config.allowed_hosts, docs=config.docs)
    app.state.store, app.state.worker, app.state.events = store, worker, events
    app.state.streams, app.state.pusher = hub, pusher

    # the bearer scheme in the OpenAPI document (generated clients send the header);
    # the check itself is below, so ?token= works for the page's <video> and SSE
    bearer = HTTPBearer(auto_error=False, description="--token; or ?token=TOKEN")

    def auth(request: Request, _cred=Depends(bearer)) -> None:
        if not config.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else \
            request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: "
                                "Bearer TOKEN, or ?token=TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    def job_or_404(job_id: str):
        job = store.get(job_id) if _is_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    # -- page and health ------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", responses={"503": {"description": "the worker is dead or stuck"}})
    def healthz() -> JSONResponse:
        """Liveness: the model is loaded and the worker runs. 503 when the worker
        thread died, or when the job it runs has not moved (no clip scored, no bytes
        downloaded) for the server's stuck limit, or when the streams' model loop
        died."""
        alive = worker.is_alive() or not start_worker
        current = worker.current
        stalled = worker.stalled_s() if current else 0.0
        stuck = bool(current) and stalled > config.stuck_after_s
        streams_alive = hub.alive()
        ok = alive and not stuck and streams_alive
        return JSONResponse(
            {"ok": ok, "model": rec.model_name, "queued": store.count("queued"),
             "running": store.count("running"),
             "worker": {"alive": alive, "job": current, "stalled_s": round(stalled, 1),
                        "stuck": stuck},
             "streams": {"count": len(hub.list()), "alive": streams_alive}},
            status_code=200 if ok else 503)

    v1 = f"/{API_VERSION}"

    @app.get(f"{v1}/models", dependencies=[Depends(auth)])
    def models() -> dict[str, Any]:
        """The loaded model (the one jobs use) and the zoo."""
        from ..models.zoo import REGISTRY

        backend = getattr(rec.backend, "name", type(rec.backend).__name__)
        return {"loaded": {"name": rec.model_name, "classes": len(rec.labels),
                           "backend": backend, "clip_len": rec.preset.clip_len},
                "models": [{"name": e.name, "description": e.description}
                           for e in REGISTRY.values()]}

    # -- jobs -----------------------------------------------------------------
    @app.post(f"{v1}/jobs", status_code=202, dependencies=[Depends(auth)],
              responses={**schemas.responses(400, 413, 415, 429, 507, ok=schemas.Submitted,
                                             ok_code=202),
                         "200": {"model": schemas.Submitted, "description": "a retry with "
                                 "an Idempotency-Key already used: the job it made"}},
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "file": {"type": "string", "format": "binary"},
                      "stride": {"type": "integer"}, "topk": {"type": "integer"},
                      "aggregate": {"type": "string", "enum": list(AGGREGATES)},
                      "threshold": {"type": "number"}, "annotate": {"type": "boolean"}},
                      "required": ["file"]}},
                  "application/json": {"schema": {"type": "object", "properties": {
                      "url": {"type": "string"}, "stride": {"type": "integer"},
                      "topk": {"type": "integer"}, "aggregate": {"type": "string"},
                      "threshold": {"type": "number"}, "annotate": {"type": "boolean"}},
                      "required": ["url"]}}}}})
    async def submit(request: Request) -> JSONResponse:
        """Submit a video: a multipart ``file`` upload, or JSON ``{"url": ...}``
        (http/https only), with optional stride, topk, aggregate, threshold, annotate.
        Answers 202 ``{"id", "status"}``; 400 for bad options or a URL this server
        does not fetch; 413 over the size limit; 429 (with ``Retry-After``) when the
        queue is full; 507 when the data folder is full."""
        ctype = request.headers.get("content-type", "")
        key = request.headers.get("idempotency-key")
        if key is not None:
            if not 1 <= len(key) <= 200 or not key.isprintable():
                raise HTTPException(400, "Idempotency-Key: give 1 to 200 printable "
                                    "characters (a UUID, say)")
            seen = store.by_key(key)
            if seen is not None:  # a retry of a submission that was accepted
                return _accepted(seen, replayed=True)
        if store.count("queued", "running") >= config.max_queue:
            raise _queue_full()
        job_id = store.new_id()
        dest: Path | None = None
        if ctype.startswith("multipart/form-data"):
            dest = store.upload_path(job_id)
            try:
                fields, filename = await _read_upload(request, dest, config.max_upload_bytes,
                                                      config.max_fields)
            except _TooLarge:
                dest.unlink(missing_ok=True)
                return JSONResponse({"detail": f"the upload is larger than the server's "
                                     f"limit of {config.max_upload_mb:g} MB"}, status_code=413,
                                    headers={"Connection": "close"})
            except ValueError as exc:
                dest.unlink(missing_ok=True)
                raise HTTPException(400, str(exc)) from None
            except OSError as exc:
                dest.unlink(missing_ok=True)
                raise _disk_error(exc, "the upload") from None
            except BaseException:  # the client went away mid-upload, or a cancel
                dest.unlink(missing_ok=True)
                raise
            if filename is None:
                dest.unlink(missing_ok=True)
                raise HTTPException(400, "the form has no 'file' part; send the video as "
                                    "multipart field 'file'")
            kind, name, url = "file", _display_name(filename), None
        elif ctype.startswith("application/json"):
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > 64 * 1024:
                    raise HTTPException(413, "the JSON body is larger than 64 KB")
            try:
                fields = json.loads(bytes(body))
            except (ValueError, RecursionError):
                raise HTTPException(400, "the body is not JSON (or nests too deep)") from None
            if not isinstance(fields, dict) or not isinstance(fields.get("url"), str):
                raise HTTPException(400, 'give {"url": "http(s)://..."}')
            url = fields["url"].strip()
            try:
                why = literal_refusal(url, config.allow_private_urls)
            except UrlRefused as exc:
                raise HTTPException(400, str(exc)) from None
            if why:
                raise HTTPException(400, f"{clean_text(url)[:200]}: is {why}; this server "
                                    "does not fetch URLs on its own network (start it with "
                                    "--allow-private-urls to allow them)")
            kind, name = "url", clean_text(url)
        else:
            raise HTTPException(415, "send multipart/form-data with a 'file', or "
                                'application/json {"url": ...}')
        try:
            options = _options({**dict(request.query_params), **fields}, len(rec.labels))
        except ValueError as exc:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise HTTPException(400, str(exc)) from None
        try:
            job = store.add(job_id, kind, name, options, url=url, max_queue=config.max_queue,
                            key=key)
        except sqlite3.Error as exc:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise _disk_error(exc, "the job") from None
        if job is None:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise _queue_full()
        if job.id != job_id:  # the same key won a race with this request
            if dest is not None:
                dest.unlink(missing_ok=True)
            return _accepted(job, replayed=True)
        return _accepted(job)

    def _accepted(job, replayed: bool = False) -> JSONResponse:
        headers = {"Location": f"{v1}/jobs/{job.id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse({"id": job.id, "status": job.status},
                            status_code=200 if replayed else 202, headers=headers)

    def _queue_full() -> HTTPException:
        return HTTPException(429, f"the queue is full ({config.max_queue} jobs); try "
                             "again later", headers={"Retry-After": str(config.retry_after_s)})

    @app.get(f"{v1}/jobs", dependencies=[Depends(auth)],
             responses=schemas.responses(400, ok=schemas.JobList))
    def list_jobs(limit: int = 200, cursor: str | None = None) -> dict[str, Any]:
        """Jobs, newest first, ``limit`` at a time (at most 1000); ``next`` is the
        ``cursor`` for the following page (null on the last). Pages stay consistent
        while jobs are added: a cursor names a position, not an offset."""
        if cursor is not None and not (cursor.isdigit() and len(cursor) < 19):
            raise HTTPException(400, "cursor: give the 'next' value of the previous page")
        limit = max(1, min(limit, 1000))
        jobs = store.list(limit, int(cursor) if cursor is not None else None)
        nxt = str(jobs[-1].seq) if len(jobs) == limit and jobs[-1].seq > 1 else None
        return {"jobs": [j.to_dict() for j in jobs], "next": nxt}

    @app.get(f"{v1}/jobs/{{job_id}}", dependencies=[Depends(auth)],
             responses=schemas.responses(404, ok=schemas.Job))
    def get_job(job_id: str) -> dict[str, Any]:
        """Status (queued, running, done, failed), progress (0..1) and error."""
        return job_or_404(job_id).to_dict()

    @app.get(f"{v1}/jobs/{{job_id}}/result", dependencies=[Depends(auth)],
             responses=schemas.responses(404, 409))
    def get_result(job_id: str):
        """The har.predictions/1 document of a done job (409 before)."""
        job = job_or_404(job_id)
        path = store.result_path(job.id)
        if job.status != "done" or not path.exists():
            raise HTTPException(409, f"job {job.id} is {job.status}"
                                + (f": {job.error}" if job.error else ""))
        return FileResponse(path, media_type="application/json")

    @app.get(f"{v1}/jobs/{{job_id}}/video", dependencies=[Depends(auth)],
             responses=schemas.responses(404, 409))
    def get_video(job_id: str):
        """The uploaded (or downloaded) video of a done job, as stored: an
        ``application/octet-stream`` attachment (409 before the job is done: bytes that
        did not decode as a video are never served back)."""
        job = job_or_404(job_id)
        path = store.upload_path(job.id)
        if job.status != "done":
            raise HTTPException(409, f"job {job.id} is {job.status}; its video is served "
                                "once the job is done")
        if not path.exists():
            raise HTTPException(404, f"job {job.id} has no stored video")
        ext = job.name.split("?")[0].rsplit(".", 1)[-1].lower()
        return FileResponse(path, media_type="application/octet-stream",
                            filename=f"{job.id}.{ext if ext in _VIDEO_EXTS else 'video'}")

    @app.get(f"{v1}/jobs/{{job_id}}/annotated.mp4", dependencies=[Depends(auth)],
             responses=schemas.responses(404, 409))
    def get_annotated(job_id: str):
        """The video with the actions drawn on it (jobs submitted with annotate=true)."""
        job = job_or_404(job_id)
        path = store.annotated_path(job.id)
        if not path.exists():
            if job.status == "done" and not job.options.get("annotate"):
                raise HTTPException(404, f"job {job.id} was not submitted with "
                                    "annotate=true")
            raise HTTPException(409 if job.status in ("queued", "running") else 404,
                                f"job {job.id} is {job.status}; no annotated video")
        return FileResponse(path, media_type="video/mp4")

    @app.get(f"{v1}/jobs/{{job_id}}/events", dependencies=[Depends(auth)],
             responses=schemas.responses(404))
    async def get_events(job_id: str, request: Request) -> StreamingResponse:
        """``har.events/1`` events as server-sent events: ``start``, a ``clip`` per
        scored clip while the job runs, then ``video`` (status ``done``, ``failed`` or
        ``cancelled``). A job that already ended replays its events. Each event has an
        ``id:`` (its number in the job's stream); a client that reconnects with
        ``Last-Event-ID`` gets the events after that one. A comment line is sent at
        once and then every few seconds while nothing happens (heartbeat)."""
        job = job_or_404(job_id)
        try:
            first = int(request.headers.get("last-event-id", "-1")) + 1
        except ValueError:
            first = 0
        first = max(first, 0)

        async def gen():
            yield ": har.events/1\nretry: 3000\n\n"  # the first byte at once
            sent = first
            beat = time.monotonic()
            deadline = time.monotonic() + 6 * 3600
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return
                got = events.read(job.id, sent)
                if got is None:
                    now = store.get(job.id)
                    if now is None:
                        return
                    if now.status not in ("queued", "running"):
                        for i, ev in enumerate(_replay(store, now, rec)):
                            if i >= sent:
                                yield _sse(ev, i)
                        return
                    new, ended = [], False
                else:
                    new, ended = got
                for i, ev in enumerate(new):
                    yield _sse(ev, sent + i)
                sent += len(new)
                if new:
                    beat = time.monotonic()
                elif ended:
                    return
                elif time.monotonic() - beat >= config.heartbeat_s:
                    yield ": keep-alive\n\n"
                    beat = time.monotonic()
                await asyncio.sleep(0.1 if got is not None else 0.2)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.post(f"{v1}/jobs/{{job_id}}/cancel", dependencies=[Depends(auth)],
              responses=schemas.responses(404, 409, ok=schemas.Job))
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Stop a queued or running job and keep it (status ``cancelled``); its
        upload stays until DELETE."""
        job = job_or_404(job_id)
        if not store.cancel(job.id):
            raise HTTPException(409, f"job {job.id} is {job.status}; only queued or "
                                "running jobs can be cancelled")
        worker.cancel(job.id)
        return store.get(job.id).to_dict()

    @app.delete(f"{v1}/jobs/{{job_id}}", dependencies=[Depends(auth)],
             responses=schemas.responses(404, ok=schemas.Deleted))
    def delete_job(job_id: str) -> dict[str, Any]:
        """Remove the job, its upload and its results (a running job is stopped)."""
        job = job_or_404(job_id)
        if job.status == "running":
            worker.cancel(job.id)
        store.delete(job.id)
        return {"id": job.id, "deleted": True}

    # -- live streams ---------------------------------------------------------------
    def stream_or_404(stream_id: str):
        s = hub.get(stream_id) if _is_id(stream_id) else None
        if s is None:
            raise HTTPException(404, f"no stream {clean_text(stream_id)[:40]}")
        return s

    @app.post(f"{v1}/streams", status_code=201, dependencies=[Depends(auth)],
              responses=schemas.responses(400, 409, 413, ok=schemas.Stream, ok_code=201),
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": schemas.StreamIn.model_json_schema()}}}})
    async def add_stream(request: Request) -> JSONResponse:
        """Watch a live stream (a camera): ``{"url", "name", "options"}``. The URL is
        rtsp(s)://, rtmp(s)://, udp://, srt:// or http(s)://; like URL jobs, it may
        not point at loopback, private or link-local addresses unless the server
        was started with --allow-private-urls (cameras usually are on a private
        network: start the server with it there). Options: ``stride``, ``topk``,
        ``threshold``, ``frame_stride`` (score every k-th frame) or ``fps``,
        ``snapshots``, ``mp4`` and ``mp4_max_s`` (a short MP4 per segment_start),
        ``webhook`` and ``webhook_secret`` (this stream's own webhook, under the URL
        jobs' address policy) and ``mqtt_topic`` (its own MQTT topic prefix). The
        stream is kept (it is opened again when the server restarts) until DELETE."""
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, 'send application/json {"url": "rtsp://...", '
                                '"name": "...", "options": {...}}')
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > 64 * 1024:
                raise HTTPException(413, "the JSON body is larger than 64 KB")
        try:
            fields = json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise HTTPException(400, "the body is not JSON (or nests too deep)") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("url"), str):
            raise HTTPException(400, 'give {"url": "rtsp://...", "name": "...", '
                                '"options": {...}}')
        if not isinstance(fields.get("name") or "", str):
            raise HTTPException(400, "name: give a string")
        if not isinstance(fields.get("options") or {}, dict):
            raise HTTPException(400, 'options: give an object, e.g. {"stride": 8}')
        url = fields["url"].strip()
        try:
            why = await asyncio.to_thread(stream_refusal, url, config.allow_private_urls)
        except UrlRefused as exc:
            raise HTTPException(400, str(exc)) from None
        if why:
            raise HTTPException(400, f"{_shown_url(url)}: is {why}; this server does not "
                                "open streams on its own network (cameras on a private "
                                "network: start it with --allow-private-urls)")
        try:
            options = _stream_options(fields.get("options") or {}, len(rec.labels))
        except ValueError as exc:
            raise HTTPException(400, f"options: {exc}") from None
        if options.get("mqtt_topic") and not pusher.mqtt_enabled:
            raise HTTPException(400, "options: mqtt_topic: this server has no MQTT "
                                "broker; start it with --mqtt HOST:PORT, or leave the "
                                "option out")
        if options.get("webhook"):  # a client's URL: the URL jobs' SSRF policy
            try:
                await asyncio.to_thread(_check_webhook, options["webhook"],
                                        config.allow_private_urls)
            except (UrlRefused, HarError) as exc:
                raise HTTPException(400, f"options: webhook: {exc}") from None
        name = clean_text(fields.get("name") or "").strip()[:100] or _shown_url(url)
        same = next((s for s in hub.list() if s.url == url), None)
        if same is not None:  # two readers of one UDP port or camera would fight
            raise HTTPException(409, f"{_shown_url(url)}: already watched as stream "
                                f"{same.id}; DELETE it first to change its options")
        if len(hub.list()) >= config.max_streams:
            raise HTTPException(409, f"this server watches {config.max_streams} streams "
                                "already; DELETE one, or start it with a larger "
                                "--max-streams")
        try:
            stream = await asyncio.to_thread(hub.add, url, name, options)
        except sqlite3.Error as exc:
            raise _disk_error(exc, "the stream") from None
        return JSONResponse(hub.stats(stream), status_code=201,
                            headers={"Location": f"{v1}/streams/{stream.id}"})

    @app.get(f"{v1}/streams", dependencies=[Depends(auth)],
             responses=schemas.responses(ok=schemas.StreamList))
    def list_streams() -> dict[str, Any]:
        """Every stream: state, latency p50/p95 (seconds from a clip's last frame's
        arrival to its scores), skipped clips, reconnects, queue depth."""
        return {"streams": [hub.stats(s) for s in hub.list()]}

    @app.get(f"{v1}/streams/{{stream_id}}", dependencies=[Depends(auth)],
             responses=schemas.responses(404, ok=schemas.Stream))
    def get_stream(stream_id: str) -> dict[str, Any]:
        """One stream's state and figures (as in the list)."""
        return hub.stats(stream_or_404(stream_id))

    @app.delete(f"{v1}/streams/{{stream_id}}", dependencies=[Depends(auth)],
                responses=schemas.responses(404, ok=schemas.Deleted))
    def delete_stream(stream_id: str) -> dict[str, Any]:
        """Stop watching the stream and forget it."""
        s = stream_or_404(stream_id)
        hub.remove(s.id)
        return {"id": s.id, "deleted": True}

    @app.get(f"{v1}/streams/{{stream_id}}/snapshot", dependencies=[Depends(auth)],
             responses={**schemas.responses(404, 409),
                        "200": {"content": {"image/jpeg": {}},
                                "description": "a JPEG"}})
    def get_snapshot(stream_id: str, event: str | None = None) -> Response:
        """The stream's newest frame as a JPEG; with ``?event=ID``, the frame taken
        when that ``segment_start`` event happened (the last 16 per stream are
        kept)."""
        s = stream_or_404(stream_id)
        if event is not None:
            jpeg = s.snapshots.get(event)
            if jpeg is None:
                raise HTTPException(404, f"no snapshot for event {clean_text(event)[:40]}; "
                                    "only the last 16 segment_start events have one")
        else:
            jpeg = hub.jpeg(s)
            if jpeg is None and s.options.get("snapshots") is False:
                raise HTTPException(409, f"stream {s.id} was added with snapshots: false; "
                                    "add it again without that option for snapshots")
            if jpeg is None:
                raise HTTPException(409, f"stream {s.id} is {s.state}: no frame yet")
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.get(f"{v1}/streams/{{stream_id}}/clips/{{name}}", dependencies=[Depends(auth)],
             responses={**schemas.responses(404, 409),
                        "200": {"content": {"video/mp4": {}},
                                "description": "an MP4 (H.264)"}})
    def get_segment_mp4(stream_id: str, name: str) -> Response:
        """The short MP4 of a ``segment_start`` event (streams added with
        ``"mp4": true``): the path is the event's ``mp4`` field. 409 while it is
        being written (retry after a second), 404 once removed (the last 32 per
        stream are kept) or for a name the server did not give."""
        s = stream_or_404(stream_id)
        path, pending = hub.mp4_path(s, name)
        if pending:
            raise HTTPException(409, f"{clean_text(name)[:40]} is being written; "
                                "retry in a second", headers={"Retry-After": "1"})
        if path is None:
            raise HTTPException(404, f"no MP4 {clean_text(name)[:40]} for stream {s.id}; "
                                f"only the last {MP4_KEPT} segment MP4s are kept")
        return FileResponse(path, media_type="video/mp4",
                            headers={"Cache-Control": "no-store"})

    @app.get(f"{v1}/streams/{{stream_id}}/events", dependencies=[Depends(auth)],
             responses=schemas.responses(404))
    async def get_stream_events(stream_id: str, request: Request) -> StreamingResponse:
        """The stream's ``har.events/1`` events as server-sent events: ``state``,
        ``gap``, ``clip``, ``segment_start`` and ``segment_end``, each with
        ``wall_time`` and an ``id:``. A client that reconnects with
        ``Last-Event-ID`` gets what it missed, from the last events kept in memory
        (an ``event: missed`` tells how many were no longer kept). The events the
        server still holds are sent first. A comment line is sent at once and every
        few seconds while nothing happens (heartbeat)."""
        s = stream_or_404(stream_id)
        nxt = s.events.start_after(request.headers.get("last-event-id"))

        async def gen():
            nonlocal nxt
            yield ": har.events/1\nretry: 3000\n\n"
            beat = time.monotonic()
            deadline = time.monotonic() + 24 * 3600
            while time.monotonic() < deadline:
                if await request.is_disconnected() or hub.get(s.id) is None:
                    return
                got, missed = s.events.read(nxt)
                if missed:
                    yield ("event: missed\ndata: " + json.dumps(
                        {"type": "missed", "events": missed, "stream": s.id}) + "\n\n")
                for n, ev in got:
                    yield f"id: {ev['id']}\nevent: {ev['type']}\ndata: {json.dumps(ev)}\n\n"
                if got:
                    nxt = got[-1][0] + 1
                    beat = time.monotonic()
                elif missed:
                    nxt += missed
                elif time.monotonic() - beat >= config.heartbeat_s:
                    yield ": keep-alive\n\n"
                    beat = time.monotonic()
                await asyncio.sleep(0.1)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    # -- metrics ----------------------------------------------------------------------
    @app.get("/metrics", dependencies=[Depends(auth)],
             responses={"200": {"content": {"text/plain": {}},
                                "description": "Prometheus text format 0.0.4"}})
    def metrics() -> Response:
        """Prometheus text format: per stream latency (p50, p95), clips, skipped
        clips, reconnects, stalls, queue depth and whether it is live; the share
        of time the model ran for the streams; jobs queued and running; events
        pushed, failed and dropped."""
        return Response(_metrics(hub, store, pusher), media_type=METRICS_TYPE)

    return app


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metrics(hub: StreamHub, store: JobStore, pusher: Pusher) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {float(value):.6g}" if text
                         else f"{name} {float(value):.6g}")

    stats = [hub.stats(s) for s in hub.list()]

    def per(key: str):
        return [({"stream": st["id"], "name": st["name"]}, st[key] or 0) for st in stats]

    lat = []
    for st in stats:
        for q, key in (("0.5", "latency_p50_s"), ("0.95", "latency_p95_s")):
            if st[key] is not None:
                lat.append(({"stream": st["id"], "name": st["name"], "quantile": q}, st[key]))
    family("har_stream_latency_seconds", "gauge", "Seconds from the arrival of a clip's "
           "last frame to its scores (last 1000 clips), by quantile.", lat)
    sender = []
    for st in stats:
        for q, key in (("0.5", "sender_latency_p50_s"), ("0.95", "sender_latency_p95_s")):
            if st.get(key) is not None:
                sender.append(({"stream": st["id"], "name": st["name"], "quantile": q},
                               st[key]))
    family("har_stream_sender_latency_seconds", "gauge", "Seconds from the capture of a "
           "clip's last frame on the sender's clock (RTSP with RTCP sender reports) to "
           "its scores (last 1000 clips), by quantile; only streams with a sender clock.",
           sender)
    family("har_stream_clips_total", "counter", "Clips scored.", per("clips"))
    family("har_stream_skipped_total", "counter", "Clips skipped to stay real time.",
           per("skipped"))
    family("har_stream_reconnects_total", "counter", "Reconnections after a drop.",
           per("reconnects"))
    family("har_stream_stalls_total", "counter", "Times the stream stopped sending.",
           per("stalls"))
    family("har_stream_queue_depth", "gauge", "Clips waiting for the model (0 or 1).",
           per("queue_depth"))
    family("har_stream_up", "gauge", "1 while the stream is live.",
           [({"stream": st["id"], "name": st["name"]}, st["state"] == "live")
            for st in stats])
    family("har_model_busy_seconds_total", "counter", "Seconds the model ran (rate() "
           "of it is the busy fraction), for the streams and for everything (jobs too).",
           [({"work": "streams"}, hub.many.busy_s), ({"work": "all"}, hub.busy_all_s())])
    family("har_model_busy_ratio", "gauge", "Share of the time since the server "
           "started that the model ran for the streams.", [({}, hub.busy_fraction())])
    family("har_jobs", "gauge", "Jobs by status (queued and running).",
           [({"status": st}, store.count(st)) for st in ("queued", "running")])
    family("har_push_sent_total", "counter", "Events pushed.",
           [({"output": k}, v) for k, v in pusher.sent.items()])
    family("har_push_failed_total", "counter", "Events that could not be pushed.",
           [({"output": k}, v) for k, v in pusher.failed.items()])
    family("har_push_dropped_total", "counter", "Events dropped from a full queue.",
           [({"output": k}, v) for k, v in pusher.dropped.items()])
    return "\n".join(lines) + "\n"


# -- helpers -------------------------------------------------------------------
def _disk_error(exc: BaseException, what: str) -> HTTPException:
    """507 for a full data folder (ENOSPC, quota, file size limit), else 500, with
    the reason in one line; the caller has removed what was partly written."""
    code = getattr(exc, "errno", None)
    full = code in _DISK_FULL or "full" in str(exc).lower()
    if full:
        return HTTPException(507, f"the server's data folder is full: {what} was not "
                             "kept; free space under --data and retry")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return HTTPException(500, f"the server could not store {what} ({clean_text(reason)}); "
                         "nothing was kept")


def _is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _display_name(filename: str) -> str:
    """The client's file name for display only (never a path): its last part."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return clean_text(name)[:255] or "upload"


def _options(fields: dict[str, Any], n_classes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def num(key, cast, lo, hi):
        if fields.get(key) in (None, ""):
            return
        raw = fields[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError(f"{key}: {clean_text(repr(raw))[:40]} is not a number")
        try:
            value = cast(float(raw)) if cast is int and isinstance(raw, float) else cast(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{key}: {clean_text(repr(raw))[:40]} is not a "
                             f"{'whole ' if cast is int else ''}number in range") from None
        if cast is int and isinstance(raw, float) and raw != value:
            raise ValueError(f"{key}: must be a whole number, not {raw!r}")
        if not lo <= value <= hi:  # NaN too
            raise ValueError(f"{key}: must be between {lo} and {hi}, not "
                             f"{clean_text(repr(raw))[:40]}")
        out[key] = value

    num("stride", int, 1, 10_000)
    num("topk", int, 1, n_classes)
    num("threshold", float, 0.0, 1.0)
    agg = fields.get("aggregate")
    if agg not in (None, ""):
        if not isinstance(agg, str) or agg not in AGGREGATES:
            raise ValueError(f"aggregate: must be one of {', '.join(AGGREGATES)}, not "
                             f"{clean_text(repr(agg))[:40]}")
        out["aggregate"] = agg
    ann = fields.get("annotate")
    if ann not in (None, ""):
        if isinstance(ann, bool):
            out["annotate"] = ann
        elif str(ann).lower() in ("1", "true", "yes", "on"):
            out["annotate"] = True
        elif str(ann).lower() in ("0", "false", "no", "off"):
            out["annotate"] = False
        else:
            raise ValueError(f"annotate: {clean_text(repr(ann))[:40]} is not true or false")
    return out


def _shown_url(url: str) -> str:
    from .streams import redact_url

    return redact_url(url)[:200]


def _stream_options(raw: dict[str, Any], n_classes: int) -> dict[str, Any]:
    """A stream's options, checked: ValueError naming the bad one."""
    known = {"stride", "topk", "threshold", "frame_stride", "fps", "snapshots", "mp4",
             "mp4_max_s", "webhook", "webhook_secret", "mqtt_topic"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{clean_text(unknown[0])[:40]!r} is not a stream option; give "
                         f"{', '.join(sorted(known))}")
    out = _options({k: raw[k] for k in ("stride", "topk", "threshold") if k in raw},
                   n_classes)
    extra = {k: raw[k] for k in ("frame_stride", "fps") if raw.get(k) not in (None, "")}
    if len(extra) == 2:
        raise ValueError("give frame_stride or fps, not both")
    for key, cast, lo, hi in (("frame_stride", int, 1, 1000), ("fps", float, 0.01, 1000.0)):
        if key not in extra:
            continue
        value = extra[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (cast is int and value != int(value)) or not lo <= value <= hi:
            raise ValueError(f"{key}: must be a {'whole ' if cast is int else ''}number "
                             f"from {lo:g} to {hi:g}, not {clean_text(repr(value))[:40]}")
        out[key] = cast(value)
    if raw.get("snapshots") is not None:
        if not isinstance(raw["snapshots"], bool):
            raise ValueError("snapshots: give true or false")
        out["snapshots"] = raw["snapshots"]
    if raw.get("mp4") is not None:
        if not isinstance(raw["mp4"], bool):
            raise ValueError("mp4: give true or false")
        out["mp4"] = raw["mp4"]
    if raw.get("mp4_max_s") is not None:
        value = raw["mp4_max_s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0.5 <= value <= MP4_MAX_S:
            raise ValueError(f"mp4_max_s: must be a number of seconds from 0.5 to "
                             f"{MP4_MAX_S:g}, not {clean_text(repr(value))[:40]}")
        if not out.get("mp4"):
            raise ValueError("mp4_max_s: give it with \"mp4\": true")
        out["mp4_max_s"] = float(value)
    for key in ("webhook", "webhook_secret", "mqtt_topic"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > 2000:
            raise ValueError(f"{key}: give a non-empty string (at most 2000 characters)")
        out[key] = value.strip() if key != "webhook_secret" else value
    if "webhook_secret" in out and "webhook" not in out:
        raise ValueError("webhook_secret signs the stream's own webhook; give webhook "
                         "as well")
    topic = out.get("mqtt_topic")
    if topic is not None and (not topic.strip("/") or len(topic) > 200
                              or any(c in topic for c in "#+\0")):
        raise ValueError(f"mqtt_topic {clean_text(topic)[:60]!r}: give a topic prefix "
                         "without '#', '+' or NUL, e.g. home/garden")
    return out


def _check_webhook(url: str, allow_private: bool) -> None:
    """A stream's own webhook URL, checked as URL jobs are (har.netsafe): http(s)
    only, and unless ``allow_private`` every address its host resolves to public;
    UrlRefused (or HarError: the name does not resolve) otherwise."""
    from ..netsafe import _resolve, check_url

    why = literal_refusal(url, allow_private)
    if why:
        raise UrlRefused(f"{_shown_url(url)}: is {why}; this server does not send "
                         "webhooks into its own network (start it with "
                         "--allow-private-urls to allow that)")
    _resolve(check_url(url), allow_private)


def _sse(event: dict[str, Any], number: int) -> str:
    return (f"id: {number}\nevent: {event.get('type', 'message')}\n"
            f"data: {json.dumps(event)}\n\n")


def _replay(store: JobStore, job, rec) -> list[dict[str, Any]]:
    """An ended job's events, numbered as they were sent live: start, clips, video;
    built by the same writer with a list as its sink. ``wall_time``: the job's start
    for ``start``, its end for ``video``, null for the clips (their times are not
    stored)."""
    out: list[dict[str, Any]] = []
    events = EventWriter(sink=out.append)
    doc = None
    if job.status not in ("failed", "cancelled"):
        try:
            doc = json.loads(store.result_path(job.id).read_text(encoding="utf-8"))
            video = doc["videos"][0]
            settings = doc["settings"]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            doc = None
    if doc is None:  # what the worker wrote for the same options
        settings = job_settings(rec, job.options)
    events.start(rec.model_name, settings, job=job.id,
                 wall_time=job.started if job.started is not None else job.created)
    if job.status in ("failed", "cancelled"):
        events.video(VideoResult(path=job.name, error=job.error), status=job.status,
                     wall_time=job.finished)
    elif doc is not None:
        for clip in video.get("clips") or []:
            events.clip_fields(job.name, clip, wall_time=None)
        events.video_fields({**video, "path": job.name}, wall_time=job.finished)
    return out


async def _read_upload(request: Request, dest: Path, limit: int, max_fields: int = 16
                       ) -> tuple[dict[str, str], str | None]:
    """Stream a multipart body: the ``file`` part to ``dest`` (at most ``limit``
    bytes, else :class:`_TooLarge` at once), the other parts as small text fields.

    The whole body is counted as it arrives (with or without Content-Length), and
    the number of parts and the size of their headers are capped, so no body makes
    the server hold more than a few kB in memory. A second file part is refused."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    body_limit = limit + 64 * 1024 + max_fields * 8 * 1024  # the file + fields + headers
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > body_limit:
        raise _TooLarge()
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ValueError("the multipart body has no boundary")
    if len(boundary) > 200:
        raise ValueError("the multipart boundary is longer than 200 bytes")

    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None,
                             "filename": None, "buf": bytearray(), "written": 0,
                             "parts": 0, "hbytes": 0}

    def on_part_begin():
        state["parts"] += 1
        if state["parts"] > max_fields:
            raise ValueError(f"the form has more than {max_fields} parts; send the "
                             "'file' and the options only")
        state.update(headers={}, field=b"", value=b"", name=None, buf=bytearray(), hbytes=0)

    def header_bytes(n: int) -> None:
        state["hbytes"] += n
        if state["hbytes"] > 8 * 1024:
            raise ValueError("a form part's headers are longer than 8 kB")

    def on_header_field(data, start, end):
        header_bytes(end - start)
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        header_bytes(end - start)
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "file":
            if state["filename"] is not None:
                raise ValueError("the form has two 'file' parts; send one video per job")
            state["filename"] = disp.get(b"filename", b"upload").decode("utf-8", "replace")
        elif name in fields:
            raise ValueError(f"form field {clean_text(name)[:40]!r} is given twice")

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["name"] == "file":
            state["written"] += len(chunk)
            if state["written"] > limit:
                raise _TooLarge()
            out.write(chunk)
        else:
            state["buf"] += chunk
            if len(state["buf"]) > 4096:
                raise ValueError(f"form field {clean_text(state['name'] or '')[:40]!r} "
                                 "is longer than 4 kB")

    def on_part_end():
        if state["name"] and state["name"] != "file":
            fields[state["name"]] = bytes(state["buf"]).decode("utf-8", "replace")
            state["buf"] = bytearray()

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    received = 0
    with open(dest, "wb") as out:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise _TooLarge()
            try:
                parser.write(chunk)
            except (_TooLarge, ValueError, OSError):
                raise
            except Exception as exc:  # python-multipart's MultipartParseError and kin
                raise ValueError(f"the multipart body is malformed ({exc})") from None
        try:
            parser.finalize()
        except (_TooLarge, ValueError, OSError):
            raise
        except Exception as exc:
            raise ValueError(f"the multipart body is malformed ({exc})") from None
        out.flush()
        os.fsync(out.fileno())
    return fields, state["filename"]
