"""The FastAPI application: ``/v1`` API, OpenAPI at ``/docs``, the page at ``/``.

Uploads are parsed as they arrive (python-multipart's streaming parser) and written
under generated names, so the size limit answers 413 without buffering the body and
no client file name ever becomes a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import mimetypes
import os
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from ..defaults import AGGREGATES
from ..fsutil import clean_text
from .store import JobStore
from .worker import JobEvents, Worker, WorkerSettings

STATIC = Path(__file__).with_name("static")
API_VERSION = "v1"


@dataclass
class ServeConfig:
    data: Path
    token: str | None = None
    max_upload_mb: float = 200.0
    max_queue: int = 100

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class _TooLarge(Exception):
    pass


def create_app(rec, config: ServeConfig, *, start_worker: bool = True) -> FastAPI:
    """The app over a loaded Recognizer; jobs and uploads live under ``config.data``."""
    from .. import __version__

    store = JobStore(config.data)
    events = JobEvents()
    worker = Worker(store, rec, events,
                    WorkerSettings(max_download_bytes=config.max_upload_bytes))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store.recover()  # jobs a killed server left running run again
        if start_worker:
            worker.start()
        yield
        worker.stop()
        if worker.is_alive():
            worker.join(timeout=10)

    app = FastAPI(title="har", version=__version__, lifespan=lifespan,
                  description="Human action recognition (Kinetics-400) in videos: "
                  "submit a video, follow its clips, read its timeline.")
    app.state.store, app.state.worker, app.state.events = store, worker, events

    def auth(request: Request) -> None:
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

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded and the worker runs."""
        return {"ok": worker.is_alive() or not start_worker, "model": rec.model_name,
                "queued": store.count("queued"), "running": store.count("running")}

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
        Answers 202 ``{"id", "status"}``; 413 over the size limit; 429 when the queue
        is full."""
        ctype = request.headers.get("content-type", "")
        if store.count("queued", "running") >= config.max_queue:
            raise HTTPException(429, f"the queue is full ({config.max_queue} jobs); "
                                "try again later")
        job_id = store.new_id()
        if ctype.startswith("multipart/form-data"):
            dest = store.upload_path(job_id)
            try:
                fields, filename = await _read_upload(request, dest, config.max_upload_bytes)
            except _TooLarge:
                dest.unlink(missing_ok=True)
                return JSONResponse({"detail": f"the upload is larger than the server's "
                                     f"limit of {config.max_upload_mb:g} MB"}, status_code=413,
                                    headers={"Connection": "close"})
            except ValueError as exc:
                dest.unlink(missing_ok=True)
                raise HTTPException(400, str(exc)) from None
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
            except ValueError:
                raise HTTPException(400, "the body is not JSON") from None
            if not isinstance(fields, dict) or not isinstance(fields.get("url"), str):
                raise HTTPException(400, 'give {"url": "http(s)://..."}')
            url = fields["url"].strip()
            if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https") or \
                    not urllib.parse.urlsplit(url).netloc:
                raise HTTPException(400, f"{clean_text(url)[:200]}: only http:// and "
                                    "https:// URLs can be fetched")
            kind, name, dest = "url", clean_text(url), None
        else:
            raise HTTPException(415, "send multipart/form-data with a 'file', or "
                                'application/json {"url": ...}')
        try:
            options = _options({**dict(request.query_params), **fields}, len(rec.labels))
        except ValueError as exc:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise HTTPException(400, str(exc)) from None
        job = store.add(job_id, kind, name, options, url=url, max_queue=config.max_queue)
        if job is None:
            if dest is not None:
                dest.unlink(missing_ok=True)
            raise HTTPException(429, f"the queue is full ({config.max_queue} jobs); "
                                "try again later")
        return JSONResponse({"id": job.id, "status": job.status}, status_code=202,
                            headers={"Location": f"{v1}/jobs/{job.id}"})

    @app.get(f"{v1}/jobs", dependencies=[Depends(auth)])
    def list_jobs(limit: int = 200) -> dict[str, Any]:
        """Jobs, newest first."""
        return {"jobs": [j.to_dict() for j in store.list(max(1, min(limit, 1000)))]}

    @app.get(f"{v1}/jobs/{{job_id}}", dependencies=[Depends(auth)])
    def get_job(job_id: str) -> dict[str, Any]:
        """Status (queued, running, done, failed), progress (0..1) and error."""
        return job_or_404(job_id).to_dict()

    @app.get(f"{v1}/jobs/{{job_id}}/result", dependencies=[Depends(auth)])
    def get_result(job_id: str):
        """The har.predictions/1 document of a done job (409 before)."""
        job = job_or_404(job_id)
        path = store.result_path(job.id)
        if job.status != "done" or not path.exists():
            raise HTTPException(409, f"job {job.id} is {job.status}"
                                + (f": {job.error}" if job.error else ""))
        return FileResponse(path, media_type="application/json")

    @app.get(f"{v1}/jobs/{{job_id}}/video", dependencies=[Depends(auth)])
    def get_video(job_id: str):
        """The uploaded (or downloaded) video, as stored."""
        job = job_or_404(job_id)
        path = store.upload_path(job.id)
        if not path.exists():
            raise HTTPException(404, f"job {job.id} has no video yet")
        mime = mimetypes.guess_type(job.name.split("?")[0])[0] or "video/mp4"
        return FileResponse(path, media_type=mime)

    @app.get(f"{v1}/jobs/{{job_id}}/annotated.mp4", dependencies=[Depends(auth)])
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

    @app.get(f"{v1}/jobs/{{job_id}}/events", dependencies=[Depends(auth)])
    async def get_events(job_id: str, request: Request) -> StreamingResponse:
        """``har.events/1`` events as server-sent events: ``start``, a ``clip`` per
        scored clip while the job runs, then ``video``. A job that already ended
        replays its clips from the result."""
        job = job_or_404(job_id)

        async def gen():
            sent = 0
            deadline = time.monotonic() + 6 * 3600
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return
                got = events.read(job.id, sent)
                if got is None:
                    now = store.get(job.id)
                    if now is None:
                        return
                    if now.status in ("done", "failed"):
                        for ev in _replay(store, now):
                            yield _sse(ev)
                        return
                    await asyncio.sleep(0.2)
                    continue
                new, ended = got
                for ev in new:
                    yield _sse(ev)
                sent += len(new)
                if ended and not new:
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.delete(f"{v1}/jobs/{{job_id}}", dependencies=[Depends(auth)])
    def delete_job(job_id: str) -> dict[str, Any]:
        """Remove the job, its upload and its results (a running job is stopped)."""
        job = job_or_404(job_id)
        if job.status == "running":
            worker.cancelled.add(job.id)
        store.delete(job.id)
        return {"id": job.id, "deleted": True}

    return app


# -- helpers -------------------------------------------------------------------
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
        try:
            value = cast(fields[key])
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {fields[key]!r} is not a number") from None
        if not lo <= value <= hi:
            raise ValueError(f"{key}: must be between {lo} and {hi}, not {value}")
        out[key] = value

    num("stride", int, 1, 10_000)
    num("topk", int, 1, n_classes)
    num("threshold", float, 0.0, 1.0)
    agg = fields.get("aggregate")
    if agg not in (None, ""):
        if agg not in AGGREGATES:
            raise ValueError(f"aggregate: must be one of {', '.join(AGGREGATES)}, not {agg!r}")
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
            raise ValueError(f"annotate: {ann!r} is not true or false")
    return out


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n"


def _replay(store: JobStore, job) -> list[dict[str, Any]]:
    if job.status == "failed":
        return [{"type": "video", "path": job.name, "status": "failed", "error": job.error}]
    try:
        doc = json.loads(store.result_path(job.id).read_text(encoding="utf-8"))
        video = doc["videos"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return []
    out = [{"type": "clip", "path": job.name, **c} for c in video.get("clips", [])]
    fields = {k: v for k, v in video.items() if k != "clips"}
    out.append({"type": "video", **fields, "status": "done",
                "clips": len(video.get("clips", []))})
    return out


async def _read_upload(request: Request, dest: Path, limit: int
                       ) -> tuple[dict[str, str], str | None]:
    """Stream a multipart body: the ``file`` part to ``dest`` (at most ``limit``
    bytes, else :class:`_TooLarge` at once), the other parts as small text fields."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > limit + 64 * 1024:
        raise _TooLarge()
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ValueError("the multipart body has no boundary")

    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None,
                             "filename": None, "buf": bytearray(), "written": 0}
    out = open(dest, "wb")

    def on_part_begin():
        state.update(headers={}, field=b"", value=b"", name=None, buf=bytearray())

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "file":
            state["filename"] = disp.get(b"filename", b"upload").decode("utf-8", "replace")

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
                raise ValueError(f"form field {state['name']!r} is too long")

    def on_part_end():
        if state["name"] and state["name"] != "file":
            fields[state["name"]] = bytes(state["buf"]).decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        out.flush()
        os.fsync(out.fileno())
    finally:
        out.close()
    return fields, state["filename"]
