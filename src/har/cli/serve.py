"""``har serve``: the HTTP API and web page (FastAPI on uvicorn; extra ``serve``)."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import socket
import sys
from pathlib import Path

from ..defaults import pip_hint
from ..text import printable
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, make_recognizer, megabytes,
                     port_number, positive_int, positive_seconds)

EPILOG = """\
examples:
  har serve                                   http://127.0.0.1:8000/ (page), /openapi.json
  har serve --data /srv/har --token s3cret --max-upload-mb 500
  curl -F file=@video.mp4 http://127.0.0.1:8000/v1/jobs
  curl http://127.0.0.1:8000/v1/jobs/ID/result
  har serve --allow-private-urls --mqtt 127.0.0.1:1883 --webhook http://10.0.0.5/hook
            --webhook-secret s3cret       cameras on the LAN, events pushed out
  curl -H 'Content-Type: application/json' -d '{"url": "rtsp://10.0.0.20/cam"}'
       http://127.0.0.1:8000/v1/streams   watch a camera (docs/cameras.md)

Jobs and uploads are kept under --data (SQLite); a restarted server finishes every
accepted job, and only one server may use a --data folder at a time. Binding anything
but 127.0.0.1 exposes the API: set --token, and name the host clients use with
--allow-host. URL jobs and streams never reach this machine's own network (loopback,
private, link-local addresses) unless --allow-private-urls is given: cameras are
usually on a private network, so a server that watches them needs it.
"""


def register(sub) -> None:
    p = add_command(sub, "serve", help="HTTP API and web page: upload a video, see its "
                    "timeline", description="Serve the recognizer over HTTP: a JSON API "
                    "under /v1 (OpenAPI at /openapi.json) and a web page at /.", epilog=EPILOG)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    s.add_argument("--data", default="har-serve-data", metavar="DIR",
                   help="folder for the job database, uploads and results "
                        "(default ./har-serve-data)")
    s.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' on the API (default: none)")
    s.add_argument("--max-upload-mb", type=megabytes, default=200.0, metavar="N",
                   help="largest upload or URL download in MB (default 200)")
    s.add_argument("--max-queue", type=positive_int, default=100, metavar="N",
                   help="jobs waiting or running at most; more get 429 (default 100)")
    s.add_argument("--allow-private-urls", action="store_true",
                   help="let URL jobs and streams reach loopback, private and link-local "
                        "addresses: needed for cameras on a private network (default: "
                        "refused, so clients cannot reach this machine's network)")
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name clients use to reach the server (repeatable); "
                        "IP addresses and localhost are always accepted, other Host "
                        "headers get 403 (DNS rebinding)")
    s.add_argument("--download-timeout", type=positive_seconds, default=300.0, metavar="S",
                   help="longest a URL job's download may take, in seconds (default 300)")
    s.add_argument("--keep-days", type=_days, default=None, metavar="D",
                   help="delete ended jobs (done, failed, cancelled), their uploads and "
                        "results D days after they ended (default: keep them)")
    s.add_argument("--max-streams", type=positive_int, default=16, metavar="N",
                   help="live streams (cameras) watched at most (default 16)")
    e = p.add_argument_group("pushed events (job ends; streams' state and segment events)")
    e.add_argument("--webhook", metavar="URL", default=None,
                   help="POST each event as JSON to this http(s) URL (retried with "
                        "backoff)")
    e.add_argument("--webhook-secret", metavar="S", default=None,
                   help="sign each webhook body: X-Har-Signature: sha256=HMAC-SHA256(S, "
                        "body) in hex")
    e.add_argument("--mqtt", metavar="HOST:PORT", type=_host_port, default=None,
                   help="publish each event to this MQTT broker (QoS 1; needs paho-mqtt)")
    e.add_argument("--mqtt-topic", metavar="PREFIX", default="har",
                   help="topics PREFIX/streams/<id>/<type> and PREFIX/jobs/<id>/<type> "
                        "(default har)")
    s.add_argument("--docs", action="store_true",
                   help="serve Swagger UI at /docs (the browser loads it from the "
                        "jsDelivr CDN; default off, /openapi.json is always served)")
    s.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default warning)")
    add_model_arguments(p)
    add_clip_arguments(p, sampler=False)
    add_timeline_arguments(p, files=False)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    missing = [m for m in ("fastapi", "uvicorn", "python_multipart")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"har serve needs {', '.join(missing)}, not installed; "
                         f"install with: {pip_hint('serve')}")
    data = Path(args.data)
    shown = printable(args.data)
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data {shown}: is a file; give a folder")
    check_runtime_options(args)
    _check_push(args)

    import uvicorn

    from ..serve.app import ServeConfig, create_app, redact_access_log
    from ..serve.store import DataInUse, JobStore

    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--data {shown}: cannot be created ({exc.strerror})") from None
    # the folder's lock and the port first: a second server, or a busy port, is one
    # line at once, before the model is loaded
    try:
        store = JobStore(data)
    except DataInUse as exc:
        raise UsageError(f"--data {printable(exc)}") from None
    except Exception as exc:  # OSError, sqlite3.Error: unwritable or not a job database
        raise UsageError(f"--data {shown}: cannot be used ({printable(exc)})") from None
    try:
        sock = _bind(args.host, args.port)
        rec = make_recognizer(args)
        config = ServeConfig(data=data, token=args.token, max_upload_mb=args.max_upload_mb,
                             max_queue=args.max_queue,
                             allow_private_urls=args.allow_private_urls, docs=args.docs,
                             allowed_hosts=(*args.allow_host, args.host),
                             download_timeout_s=args.download_timeout,
                             keep_days=args.keep_days, max_streams=args.max_streams,
                             webhook=args.webhook, webhook_secret=args.webhook_secret,
                             mqtt=args.mqtt, mqtt_topic=args.mqtt_topic)
        app = create_app(rec, config, store=store)
        if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
            print(f"har serve: warning: listening on {printable(args.host)} without --token: "
                  "anyone who can reach it can submit jobs", file=sys.stderr)
        port = sock.getsockname()[1]
        print(f"har serve: http://{printable(args.host)}:{port}/ (API at /v1, "
              f"/openapi.json{', /docs' if args.docs else ''}); data in "
              f"{printable(data.resolve())}", file=sys.stderr, flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level,
                                               timeout_graceful_shutdown=5))
        redact_access_log()
        server.run(sockets=[sock])
    finally:
        store.close()
    return int(ExitCode.OK)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def _check_push(args: argparse.Namespace) -> None:
    from ..netsafe import UrlRefused, check_url

    if args.webhook is not None:
        try:
            check_url(args.webhook)
        except UrlRefused as exc:
            raise UsageError(f"--webhook {printable(exc)}") from None
    if args.webhook_secret is not None and args.webhook is None:
        raise UsageError("--webhook-secret signs --webhook's requests; give --webhook "
                         "URL as well")
    if args.mqtt is not None and importlib.util.find_spec("paho") is None:
        raise UsageError(f"--mqtt needs paho-mqtt, not installed; install with: "
                         f"{pip_hint('serve')}")
    topic = args.mqtt_topic
    if not topic.strip("/") or any(c in topic for c in "#+\0") or len(topic) > 200:
        raise UsageError(f"--mqtt-topic {printable(topic)}: give a topic prefix without "
                         "'#', '+' or NUL, e.g. har or home/cameras")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 days, not {text}")
    return value


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or UsageError in one line (busy port,
    unknown host, an address this machine does not have)."""
    where = f"{printable(host)}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {printable(host)}: cannot be resolved ({exc}); give an "
                         "address of this machine") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: {where} is already in use (another server?); "
                             "stop it or give another --port") from None
        raise UsageError(f"--host/--port {where}: cannot listen there "
                         f"({exc.strerror or exc})") from None
    return sock
