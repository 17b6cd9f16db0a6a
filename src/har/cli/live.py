"""``har live``: recognize actions on a camera or a network stream as it plays."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from ..fsutil import display_path
from ..text import printable
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_not_input, check_output_path, check_runtime_options,
                     make_recognizer, positive_seconds, timeline_options)

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
                   help="try to reopen a dropped stream at most N times in all (default: "
                        "without end for live sources, 0 for files and http(s) URLs)")
    s.add_argument("--duration", type=positive_seconds, default=None, metavar="S",
                   help="stop after S seconds (opening and reconnecting included; more "
                        "than 0)")
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
    p.set_defaults(func=cmd_live)


def _same_output(a: str, b: str) -> bool:
    import os

    from ..fsutil import same_file

    try:
        return same_file(a, b) or os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def _check_outputs(args: argparse.Namespace, src) -> None:
    """One-line usage errors for outputs that cannot work, that are the input (hard
    links and other spellings included), or that name the same file twice."""
    from pathlib import Path

    outputs = []
    if args.jsonl and args.jsonl != "-":
        outputs.append(("--jsonl", args.jsonl))
    if args.record:
        if Path(args.record).suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise UsageError(f"--record {printable(display_path(args.record))}: writes .mp4, "
                             ".mkv or .mov; give a name with one of those")
        outputs.append(("--record", args.record))
    for flag, path in outputs:
        check_output_path(flag, path)
        if src.local:
            check_not_input(flag, path, [src.url])
    if len(outputs) == 2 and _same_output(outputs[0][1], outputs[1][1]):
        raise UsageError(f"--jsonl {printable(display_path(args.jsonl))} and --record "
                         f"{printable(display_path(args.record))} name the same file; give "
                         "each its own")


def cmd_live(args: argparse.Namespace) -> int:
    from .. import writers
    from ..errors import HarError
    from ..live import LiveSegmenter, LiveSource, Overlay, percentile
    from ..sources import parse_source
    from .predict import _JsonlFile

    check_runtime_options(args)
    src = parse_source(args.source, rtsp_transport=args.rtsp_transport)
    shown = printable(display_path(args.source))
    if src.kind == "stdin":
        raise UsageError("har live reads a camera, a stream or a file, not standard input; "
                         "pipe into `har predict -` instead")
    if src.kind in ("file", "url") and not args.realtime:
        raise UsageError(f"{shown}: is a file, not a live source; add "
                         "--realtime to play it at its own rate, or use `har predict`")
    max_reconnects = args.max_reconnects
    if max_reconnects is not None and max_reconnects < 0:
        raise UsageError(f"--max-reconnects {max_reconnects}: must be 0 or more")
    if max_reconnects is None and not src.live:
        max_reconnects = 0
    if args.jsonl_features and not args.jsonl:
        raise UsageError("--jsonl-features adds to --jsonl; give --jsonl FILE as well")
    _check_outputs(args, src)
    if args.preview is not None and not 0 <= args.preview <= 65535:
        raise UsageError(f"--preview {args.preview}: not a port number (0-65535)")

    # --jsonl FILE: lines appear as they are written; an existing file is replaced
    # only at the end (see har.cli.predict._JsonlFile), so a failed run never leaves
    # it half-overwritten.
    jsonl_file = None
    out = None
    if args.jsonl == "-":
        out = sys.stdout
    elif args.jsonl:
        try:
            jsonl_file = _JsonlFile(args.jsonl)
        except OSError as exc:
            raise UsageError(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                             f"written ({exc.strerror or exc}); check the path") from None
        out = jsonl_file.fh
    events = writers.EventWriter(out, features=args.jsonl_features) if out else None
    lock = threading.RLock()
    output_errors: list[str] = []
    stop = threading.Event()  # set by --duration, a failed output, a closed stdout
    stream = None
    started = False  # `start` written: events before it are held (with their times)
    held: list[tuple[str, dict]] = []

    def stop_all() -> None:
        stop.set()
        if stream is not None:
            stream.stop()

    def output_failed(message: str) -> None:
        with lock:
            if message not in output_errors:
                output_errors.append(message)
                print(f"error: {message}", file=sys.stderr)
        stop_all()

    def emit(type_: str, **fields) -> None:
        nonlocal events
        with lock:
            if events is None:
                return
            if not started and type_ != "start":
                held.append((type_, {**fields, "wall_time": time.time()}))
                return
            try:
                events.emit(type_, **fields)
            except BrokenPipeError:  # `har live ... --jsonl - | head`
                events = None
                stop_all()
            except (OSError, ValueError) as exc:
                events = None
                output_failed(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                              f"written ({getattr(exc, 'strerror', None) or exc})")

    ended: list[dict] = []  # the reader's `ended`, written after the last clip

    def on_state(state: str, fields: dict) -> None:
        if state == "ended":
            ended[:] = [{**fields, "wall_time": time.time()}]
            return
        emit("state", state=state, **fields)
        if not args.quiet:
            print(f"har live: {state} {printable(fields.get('reason', ''))}".rstrip(),
                  file=sys.stderr)

    def on_gap(fields: dict) -> None:
        emit("gap", **fields)
        if not args.quiet:
            print(f"har live: gap of {fields['seconds']:.2f} s ({fields['reason']}); "
                  "a new clip run starts", file=sys.stderr)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    overlay = None
    if args.record or args.preview is not None or args.show:
        try:
            overlay = Overlay(record=args.record, preview_port=args.preview, show=args.show)
        except OSError as exc:
            if jsonl_file is not None:
                jsonl_file.close(keep=False)
            raise UsageError(f"--preview {args.preview}: cannot listen on 127.0.0.1 "
                             f"({exc.strerror or exc}); choose another port") from None
        if overlay.preview_url:
            print(f"har live: preview at {overlay.preview_url}", file=sys.stderr)
            emit("state", state="preview", url=overlay.preview_url)

    old_term = signal.signal(signal.SIGTERM, on_term)
    t_start = time.monotonic()
    # --duration counts from here: opening (and its retries) is bounded by it too.
    timer = threading.Timer(args.duration, stop_all) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    # The source is opened while the model loads (converting weights can take
    # seconds), so a camera's first seconds are not lost to the loading.
    opened: dict = {}
    abandoned = False

    def open_source() -> None:
        try:
            live_ = LiveSource(src, open_timeout_s=args.open_timeout,
                                        read_timeout_s=args.read_timeout,
                                        max_reconnects=max_reconnects, realtime=args.realtime,
                                        on_state=on_state, tap=overlay, on_gap=on_gap,
                                        stop_event=stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            opened["error"] = exc
            return
        with lock:
            if abandoned:
                live_.close()
            else:
                opened["live"] = live_

    opener = threading.Thread(target=open_source, name="har-live-open", daemon=True)
    latencies: list[float] = []
    scored = 0
    interrupted = False
    live = None
    source_error = None
    opener.start()
    try:
        recognizer = make_recognizer(args, max_latency_s=args.max_latency)
    except BaseException:  # the model could not be loaded (exit 4), or Ctrl-C
        stop_all()
        _close_all(timer, overlay, None, old_term, jsonl_file, keep=False)
        raise
    load_s = time.monotonic() - t_start
    try:
        with lock:
            started = True
            emit("start", schema=writers.EVENTS_SCHEMA, model=recognizer.model_name,
                 source=src.text, settings={"stride": args.stride, "tail": args.tail,
                                            "backend": recognizer.backend.name,
                                            "precision": recognizer.backend.precision},
                 model_load_s=round(load_s, 3))
            for type_, fields in held:
                emit(type_, **fields)
            held.clear()
        segmenter = LiveSegmenter(recognizer.labels, timeline_options(args))
        while opener.is_alive() and not stop.is_set():
            opener.join(0.2)
        opener.join(1.0)  # stopped (--duration) while FFmpeg is still opening: not long
        with lock:
            abandoned = opener.is_alive()
        if abandoned:  # it ends at its open timeout, and closes what it opened
            source_error = HarError(f"{shown}: stopped before the stream could be opened")
        elif "error" in opened:
            if not isinstance(opened["error"], HarError):
                raise opened["error"]
            source_error = opened["error"]
        else:
            live = opened["live"]
            if src.live and load_s > 1.0 and not args.quiet:
                print(f"har live: the model took {load_s:.1f} s to load; the stream was "
                      "opened meanwhile: what it buffered is read now (clips the model "
                      "cannot catch up with are skipped, frames the sender dropped are a "
                      "gap event)", file=sys.stderr)
            stream = recognizer.stream(live, live=True, keep_clips=False)
            if stop.is_set():
                stream.stop()
            for clip in stream:
                now = time.monotonic()
                # latency from the arrival of the clip's last frame
                arrival = live.arrival(clip.end_frame - 1)
                if arrival is None:
                    arrival = clip.ready_at
                latency = now - arrival if arrival is not None else None
                if latency is not None:
                    latencies.append(latency)
                scored += 1
                if overlay is not None:
                    overlay.update(clip)
                    for msg in overlay.take_errors():
                        output_failed(msg)
                if events is not None:
                    fields = clip.to_dict()
                    if args.jsonl_features and clip.features is not None:
                        fields["features"] = [round(float(v), 6) for v in clip.features]
                    emit("clip", path=src.text, **fields,
                         latency_s=None if latency is None else round(latency, 4),
                         skipped=stream.skipped)
                for type_, fields in segmenter.add(clip):
                    emit(type_, path=src.text, **fields)
                if not args.quiet:
                    top = clip.top[0]
                    print(f"{clip.start_s:9.2f}s  {printable(top.label)} ({top.score:.0%})",
                          file=sys.stderr)
                if stop.is_set():
                    break
            for type_, fields in segmenter.flush():
                emit(type_, path=src.text, **fields)
    except KeyboardInterrupt:
        interrupted = True
        stop_all()
    except HarError as exc:
        source_error = exc
    finally:
        _close_all(timer, overlay, stream, old_term, None, keep=True)
        if live is None and "live" in opened:
            opened["live"].close()
    if source_error is not None and not output_errors:  # else the output stopped it
        print(f"error: {printable(source_error)}", file=sys.stderr)
    if overlay is not None:
        for msg in overlay.take_errors():
            output_failed(msg)
    if ended:
        emit("state", state="ended", **ended[0])
        if not args.quiet:
            print(f"har live: ended {printable(ended[0].get('reason', ''))}".rstrip(),
                  file=sys.stderr)
    skipped = stream.skipped if stream is not None else 0
    stats = live.stats if live is not None else None
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    summary = {"clips": scored, "skipped": skipped,
               "reconnects": stats.reconnects if stats else 0,
               "stalls": stats.stalls if stats else 0,
               "gaps": stats.gaps if stats else 0,
               "latency_p50_s": None if p50 is None else round(p50, 4),
               "latency_p95_s": None if p95 is None else round(p95, 4),
               "latency_max_s": round(max(latencies), 4) if latencies else None,
               "seconds": round(time.monotonic() - t_start, 3),
               "interrupted": interrupted}
    if source_error is not None and scored == 0:
        summary["error"] = str(source_error)
    emit("summary", **summary)
    if jsonl_file is not None:
        try:
            jsonl_file.close(keep=True)
        except OSError as exc:
            output_failed(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                          f"written ({exc.strerror or exc})")
    lat = "n/a" if p50 is None else f"p50 {p50:.3f} s, p95 {p95:.3f} s"
    print(f"har live: {scored} clips scored, {skipped} skipped, {summary['reconnects']} "
          f"reconnects, latency {lat}", file=sys.stderr)
    if interrupted:
        return ExitCode.INTERRUPTED
    if output_errors or scored == 0:
        return ExitCode.INPUT_FAILED
    return ExitCode.OK


def _close_all(timer, overlay, stream, old_term, jsonl_file, keep: bool) -> None:
    """Stop the timer and the stream, restore SIGTERM, close the overlay (its MP4 is
    renamed into place) and, when given, the --jsonl file."""
    if timer is not None:
        timer.cancel()
    if stream is not None:
        stream.stop()
        stream.close()
    signal.signal(signal.SIGTERM, old_term)
    if overlay is not None:
        overlay.close()
    if jsonl_file is not None:
        try:
            jsonl_file.close(keep=keep)
        except OSError:
            pass
