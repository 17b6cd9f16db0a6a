"""Response shapes of the ``/v1`` API, for the OpenAPI document (typed generated
clients). The handlers build plain dicts; these models describe them."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel

Status = Literal["queued", "running", "done", "failed", "cancelled"]


class Error(BaseModel):
    detail: str  # one line: what is wrong and what to change


class Submitted(BaseModel):
    id: str
    status: Status


class Job(BaseModel):
    id: str
    status: Status
    kind: Literal["file", "url"]
    name: str
    options: dict[str, Any]
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    progress: float
    error: Optional[str] = None
    attempts: int
    top1: Optional[str] = None


class JobList(BaseModel):
    jobs: list[Job]
    next: Optional[str] = None  # the cursor of the next page; null on the last


class Deleted(BaseModel):
    id: str
    deleted: bool


class StreamIn(BaseModel):
    """``POST /v1/streams``: the camera's URL, a name, and options."""
    url: str  # rtsp://, rtsps://, rtmp://, udp://, srt://, http(s)://
    name: Optional[str] = None
    # stride, topk, threshold, frame_stride (score every k-th frame) or fps,
    # snapshots, mp4, mp4_max_s, webhook, webhook_secret, mqtt_topic
    options: dict[str, Any] = {}


class Stream(BaseModel):
    id: str
    name: str
    url: str  # without its password
    options: dict[str, Any]
    created: float
    state: str  # connecting, live, stalled, reconnecting, ended
    error: Optional[str] = None
    clips: int
    skipped: int
    reconnects: int
    stalls: int
    gaps: int
    frames: int
    frame_stride: Optional[int] = None
    fps: Optional[float] = None
    queue_depth: int
    latency_p50_s: Optional[float] = None
    latency_p95_s: Optional[float] = None
    # from a clip's last frame's capture on the sender's clock (RTSP with RTCP sender
    # reports) to its scores; null for streams without a sender clock
    sender_latency_p50_s: Optional[float] = None
    sender_latency_p95_s: Optional[float] = None
    last_event_id: Optional[str] = None


class StreamList(BaseModel):
    streams: list[Stream]


def responses(*codes: int, **models) -> dict[str, dict[str, Any]]:
    """``responses=`` for a route: the error codes it may answer (as :class:`Error`),
    401 always (``--token``), and ``ok=Model`` for its 2xx body."""
    words = {400: "bad request (the detail says what to change)",
             401: "missing or wrong bearer token", 404: "no such job",
             409: "the job is not in a state for this (or: too many streams)",
             413: "over the size limit",
             415: "unsupported content type", 429: "the queue is full (see Retry-After)",
             507: "the data folder is full"}
    out: dict[str, dict[str, Any]] = {
        str(c): {"model": Error, "description": words[c]} for c in (401, *codes)}
    ok = models.get("ok")
    if ok is not None:
        out[str(models.get("ok_code", 200))] = {"model": ok}
    return out
