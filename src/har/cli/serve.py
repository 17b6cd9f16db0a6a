"""``har serve``: the HTTP API and web page (FastAPI on uvicorn; extra ``serve``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..defaults import pip_hint
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, make_recognizer, megabytes,
                     port_number, positive_int)

EPILOG = """\
examples:
  har serve                                   http://127.0.0.1:8000/ (page), /docs (API)
  har serve --data /srv/har --token s3cret --max-upload-mb 500
  curl -F file=@video.mp4 http://127.0.0.1:8000/v1/jobs
  curl http://127.0.0.1:8000/v1/jobs/ID/result

Jobs and uploads are kept under --data (SQLite); a restarted server finishes every
accepted job. Binding anything but 127.0.0.1 exposes the API: set --token.
"""


def register(sub) -> None:
    p = add_command(sub, "serve", help="HTTP API and web page: upload a video, see its "
                    "timeline", description="Serve the recognizer over HTTP: a JSON API "
                    "under /v1 (OpenAPI docs at /docs) and a web page at /.", epilog=EPILOG)
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
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data {args.data}: is a file; give a folder")
    check_runtime_options(args)
    rec = make_recognizer(args)

    import uvicorn

    from ..serve.app import ServeConfig, create_app

    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--data {args.data}: cannot be created ({exc.strerror})") from None
    config = ServeConfig(data=data, token=args.token, max_upload_mb=args.max_upload_mb,
                         max_queue=args.max_queue)
    app = create_app(rec, config)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print(f"har serve: warning: listening on {args.host} without --token: anyone who "
              "can reach it can submit jobs", file=sys.stderr)
    print(f"har serve: http://{args.host}:{args.port}/ (API docs at /docs); "
          f"data in {data.resolve()}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return int(ExitCode.OK)
