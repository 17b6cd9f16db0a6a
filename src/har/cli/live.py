"""``har live``: recognize actions on a camera or a network stream as it plays."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from ..fsutil import display_path
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, make_recognizer, positive_int, positive_seconds,
                     timeline_options)

EPILOG = """\
examples:
  har live 0                                       the first camera (V4L2)
  har live rtsp://127.0.0.1:8554/cam --jsonl -     an RTSP camera, events on stdout
  har live udp://127.0.0.1:5000 --duration 600     MPEG-TS over UDP for ten minutes
  har live clip.mp4 --realtime --jsonl events.jsonl  rehearse with a file

exit codes:
  0 the stream ended, or --duration passed   1 the source could not be read
  2 bad command line   4 the model could not be loaded   130 interrupted
"""


def register(sub) -> None:
    p = add_command(sub, "live", help="recognize actions on a camera or a live stream",
                    description="Recognize actions on a camera or stream as it plays. "
                    "Clips the model has no time for are skipped (counted), never queued, "
                    "so results stay close to real time; dropped streams are reopened.",
                    epilog=EPILOG)
    p.add_argument("source", metavar="SOURCE",
                   help="camera index (0) or /dev/videoN, rtsp://, rtmp://, udp://, srt://, "
                        "tcp://, http(s) stream or .m3u8, or a file with --realtime")
    add_model_arguments(p)
    add_clip_arguments(p, sampler=False)
    add_timeline_arguments(p)
    s = p.add_argument_group("stream")
    s.add_argument("--realtime", action="store_true",
                   help="play a file at its own frame rate (to rehearse with a file)")
    s.add_argument("--rtsp-transport", choices=("tcp", "udp"), default="tcp",
                   help="RTSP transport (default tcp)")
    s.add_argument("--open-timeout", type=positive_seconds, default=10.0, metavar="S",
                   help="give up opening after S seconds (default 10)")
    s.add_argument("--read-timeout", type=positive_seconds, default=5.0, metavar="S",
                   help="a stream that sends nothing for S seconds is stalled (default 5)")
    s.add_argument("--max-reconnects", type=int, default=None, metavar="N",
                   help="reopen a dropped stream at most N times (default: unlimited for "
                        "live sources, 0 for files)")
    s.add_argument("--duration", type=positive_seconds, default=None, metavar="S",
                   help="stop after S seconds")
    o = p.add_argument_group("outputs")
    o.add_argument("--jsonl", metavar="FILE", help="write har.events/1 JSON Lines: clip, "
                   "state and segment events ('-' for stdout)")
    o.add_argument("--jsonl-features", action="store_true",
                   help="include each clip's feature vector in the clip events")
    o.add_argument("--record", metavar="FILE.mp4",
                   help="write the stream with the current actions drawn on it (.mp4/.mkv/.mov)")
    o.add_argument("--preview", type=int, metavar="PORT",
                   help="serve the annotated frames as MJPEG on http://127.0.0.1:PORT/ "
                        "(any browser shows it; 0 picks a free port)")
    o.add_argument("--show", action="store_true",
                   help="show the annotated frames in a window (needs a display and an "
                        "OpenCV with window support)")
    o.add_argument("--quiet", action="store_true", help="no line per clip on stderr")
    g = p.add_argument_group("per person (docs/persons.md)")
    g.add_argument("--persons", action="store_true",
                   help="recognize each person's action instead of the whole frame's: "
                        "person_start/person_clip/person_end events")
    g.add_argument("--detector", metavar="hog|hog-fast|FILE.onnx", default="hog",
                   help="person detector: 'hog' (built in; default), 'hog-fast' "
                        "(4-6x faster, finds fewer people) or a YOLOX or "
                        "ultralytics ONNX file")
    g.add_argument("--detect-every", type=positive_int, default=5, metavar="N",
                   help="run the detector on every N-th frame (default 5); a detection "
                        "that would fall behind the stream is skipped, never queued")
    p.set_defaults(func=cmd_live)


def cmd_live(args: argparse.Namespace) -> int:
    from .. import writers
    from ..errors import HarError
    from ..live import LiveSegmenter, LiveSource, Overlay, percentile
    from ..sources import parse_source

    check_runtime_options(args)
    src = parse_source(args.source, rtsp_transport=args.rtsp_transport)
    if src.kind == "stdin":
        raise UsageError("har live reads a camera, a stream or a file, not standard input; "
                         "pipe into `har predict -` instead")
    if src.kind in ("file", "url") and not args.realtime:
        raise UsageError(f"{display_path(args.source)}: is a file, not a live source; add "
                         "--realtime to play it at its own rate, or use `har predict`")
    max_reconnects = args.max_reconnects
    if max_reconnects is None and not src.live:
        max_reconnects = 0
    if args.jsonl_features and not args.jsonl:
        raise UsageError("--jsonl-features adds to --jsonl; give --jsonl FILE as well")
    if args.record:
        from pathlib import Path

        from ..fsutil import same_file

        rec_path = Path(args.record)
        if rec_path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise UsageError(f"--record {display_path(args.record)}: writes .mp4, .mkv or "
                             ".mov; give a name with one of those")
        if not rec_path.parent.is_dir() if str(rec_path.parent) else False:
            raise UsageError(f"--record {display_path(args.record)}: directory "
                             f"{display_path(rec_path.parent)} does not exist")
        if src.local and same_file(args.record, src.url):
            raise UsageError(f"--record {display_path(args.record)}: that is the input; "
                             "choose another file name")
    if args.preview is not None and not 0 <= args.preview <= 65535:
        raise UsageError(f"--preview {args.preview}: not a port number (0-65535)")

    out = None
    if args.jsonl == "-":
        out = sys.stdout
    elif args.jsonl:
        try:
            out = open(args.jsonl, "w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--jsonl {display_path(args.jsonl)}: cannot be written "
                             f"({exc.strerror or exc}); check the path") from None
    events = writers.EventWriter(out, features=args.jsonl_features) if out else None

    def emit(type_: str, **fields) -> None:
        if events is not None:
            try:
                events.emit(type_, **fields)
            except BrokenPipeError:
                stop.set()
            except OSError:
                pass

    stop = threading.Event()
    persons = _person_options(args)
    recognizer = make_recognizer(args, max_latency_s=args.max_latency)
    emit("start", schema=writers.EVENTS_SCHEMA, model=recognizer.model_name, source=src.text,
         settings={"stride": args.stride, "tail": args.tail,
                   "backend": recognizer.backend.name,
                   "precision": recognizer.backend.precision})

    def on_state(state: str, fields: dict) -> None:
        emit("state", state=state, **fields)
        if not args.quiet:
            print(f"har live: {state} {fields.get('reason', '')}".rstrip(), file=sys.stderr)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    latencies: list[float] = []
    scored = 0
    interrupted = False
    live = None
    stream = None
    segmenter = LiveSegmenter(recognizer.labels, timeline_options(args))
    t_start = time.monotonic()
    timer = None
    overlay = None
    if args.record or args.preview is not None or args.show:
        try:
            overlay = Overlay(record=args.record, preview_port=args.preview, show=args.show)
        except OSError as exc:
            raise UsageError(f"--preview {args.preview}: cannot listen on 127.0.0.1 "
                             f"({exc.strerror or exc}); choose another port") from None
        if overlay.preview_url:
            print(f"har live: preview at {overlay.preview_url}", file=sys.stderr)
            emit("state", state="preview", url=overlay.preview_url)
    try:
        try:
            live = LiveSource(src, open_timeout_s=args.open_timeout,
                              read_timeout_s=args.read_timeout,
                              max_reconnects=max_reconnects, realtime=args.realtime,
                              on_state=on_state, tap=overlay)
        except HarError as exc:
            print(f"error: {exc}", file=sys.stderr)
            emit("summary", clips=0, skipped=0, reconnects=0, error=str(exc))
            return ExitCode.INPUT_FAILED
        if persons is not None:
            from ..persons.stream import PersonStream

            stream = PersonStream(recognizer, live, persons, live=True, keep_clips=False)
        else:
            stream = recognizer.stream(live, live=True, keep_clips=False)
        if args.duration:
            timer = threading.Timer(args.duration, stream.stop)
            timer.daemon = True
            timer.start()
        for clip in stream:
            if persons is not None:  # a PersonEvent
                if clip.kind != "clip":
                    _person_event(emit, src.text, clip, stream)
                    continue
                pid, clip = clip.id, clip.clip
            now = time.monotonic()
            latency = now - clip.ready_at if clip.ready_at is not None else None
            if latency is not None:
                latencies.append(latency)
            scored += 1
            if overlay is not None:
                overlay.update(clip)
            if events is not None:
                fields = clip.to_dict()
                if args.jsonl_features and clip.features is not None:
                    fields["features"] = [round(float(v), 6) for v in clip.features]
                emit("clip" if persons is None else "person_clip", path=src.text,
                     **({} if persons is None else {"person": pid}), **fields,
                     latency_s=None if latency is None else round(latency, 4),
                     skipped=stream.skipped)
            if persons is None:
                for type_, fields in segmenter.add(clip):
                    emit(type_, path=src.text, **fields)
            if not args.quiet:
                top = clip.top[0]
                who = "" if persons is None else f"person {pid}: "
                print(f"{clip.start_s:9.2f}s  {who}{top.label} ({top.score:.0%})",
                      file=sys.stderr)
            if stop.is_set():
                break
    except KeyboardInterrupt:
        interrupted = True
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        if timer is not None:
            timer.cancel()
        if stream is not None:
            stream.stop()
            stream.close()
        elif live is not None:
            live.close()
        signal.signal(signal.SIGTERM, old_term)
        if overlay is not None:
            overlay.close()
            for msg in overlay.errors:
                print(f"error: {msg}", file=sys.stderr)
    for type_, fields in segmenter.flush():
        emit(type_, path=src.text, **fields)
    skipped = stream.skipped if stream is not None else 0
    reconnects = live.stats.reconnects if live is not None else 0
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    summary = {"clips": scored, "skipped": skipped, "reconnects": reconnects,
               "latency_p50_s": None if p50 is None else round(p50, 4),
               "latency_p95_s": None if p95 is None else round(p95, 4),
               "latency_max_s": round(max(latencies), 4) if latencies else None,
               "seconds": round(time.monotonic() - t_start, 3),
               "interrupted": interrupted,
               **({} if persons is None or stream is None else
                  {"detections_skipped": stream.detections_skipped})}
    emit("summary", **summary)
    if out is not None and out is not sys.stdout:
        out.close()
    lat = "n/a" if p50 is None else f"p50 {p50:.3f} s, p95 {p95:.3f} s"
    print(f"har live: {scored} clips scored, {skipped} skipped, {reconnects} reconnects, "
          f"latency {lat}", file=sys.stderr)
    if interrupted:
        return ExitCode.INTERRUPTED
    if scored == 0:
        return ExitCode.INPUT_FAILED
    return ExitCode.OK


def _person_options(args):
    """--persons: the PersonOptions (usage errors first), or None."""
    if not args.persons:
        if args.detector != "hog" or args.detect_every != 5:
            raise UsageError("--detector and --detect-every choose how --persons finds "
                             "people; add --persons")
        return None
    import importlib.util

    from ..defaults import pip_hint
    from ..errors import HarError
    from ..persons.detect import load_detector
    from ..persons.stream import PersonOptions

    if importlib.util.find_spec("scipy") is None:
        raise UsageError("--persons tracks people with scipy, which is not installed; "
                         f"install it with: {pip_hint('persons')}")
    try:
        detector = load_detector(args.detector)
    except HarError as exc:
        raise UsageError(str(exc)) from None
    return PersonOptions(detector=detector, detect_every=args.detect_every)


def _person_event(emit, path: str, ev, stream) -> None:
    if ev.kind == "start":
        emit("person_start", path=path, person=ev.id, first_frame=ev.clip.start_frame,
             start_s=ev.clip.start_s)
    elif ev.kind == "end":
        p = ev.person
        emit("person_end", path=path, person=p.id, first_frame=p.first_frame,
             last_frame=p.last_frame, top=[t.to_dict() for t in p.top],
             detections_skipped=stream.detections_skipped)
