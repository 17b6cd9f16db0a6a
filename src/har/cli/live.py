"""``har live``: recognize actions on a camera or a network stream as it plays."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time

from ..fsutil import display_path
from ..text import printable
from . import ExitCode, UsageError, add_command, worst
from .common import (add_clip_arguments, add_model_arguments, add_person_arguments,
                     add_timeline_arguments, check_distinct_outputs, check_not_input,
                     check_person_options_unused, check_output_path, check_runtime_options,
                     clean_stale_temps, make_recognizer, positive_seconds,
                     signals_ignored, signals_interrupt, timeline_options)

EPILOG = """\
examples:
  har live 0                                       the first camera (V4L2)
  har live rtsp://127.0.0.1:8554/cam --jsonl -     an RTSP camera, events on stdout
  har live udp://127.0.0.1:5000 --duration 600     MPEG-TS over UDP for ten minutes
  har live clip.mp4 --realtime --jsonl events.jsonl  rehearse with a file
  har live rtsp://cam1/s rtsp://cam2/s --jsonl -   two cameras, one model

exit codes:  (the table in README.md)
  0 the stream ended, or --duration passed   1 an output could not be written
  2 bad command line   3 a source could not be read   4 the model could not be loaded
  130 interrupted
"""


def register(sub) -> None:
    p = add_command(sub, "live", help="recognize actions on a camera or a live stream",
                    description="Recognize actions on a camera or stream as it plays. "
                    "Clips the model has no time for are skipped (counted), never queued, "
                    "so results stay close to real time; dropped streams are reopened.",
                    epilog=EPILOG)
    p.add_argument("sources", metavar="SOURCE", nargs="+",
                   help="camera index (0) or /dev/videoN, rtsp://, rtmp://, udp://, srt://, "
                        "tcp://, http(s) stream or .m3u8, or a file with --realtime; "
                        "several at once share one model (events name their source)")
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
    add_person_arguments(p, live=True)
    p.set_defaults(func=cmd_live)


def _check_outputs(args: argparse.Namespace, sources) -> None:
    """One-line usage errors for outputs that cannot work, that are an input (hard
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
    local = [src.url for src in sources if src.local]
    for flag, path in outputs:
        check_output_path(flag, path)
        check_not_input(flag, path, local)
    check_distinct_outputs(outputs)


class _Cam:
    """One source of a `har live` run and what it has given so far."""

    def __init__(self, src, max_reconnects) -> None:
        self.src = src
        self.name = src.text
        self.shown = printable(display_path(src.text))
        self.max_reconnects = max_reconnects
        self.live = None
        self.opened: dict = {}
        self.opener: threading.Thread | None = None
        self.abandoned = False
        self.error = None
        self.ended: list[dict] = []  # the reader's `ended`, written after the last clip
        self.latencies: list[float] = []
        self.sender_latencies: list[float] = []  # from the sender's clock (RTSP + RTCP)
        self.scored = 0
        self.segmenter = None


def cmd_live(args: argparse.Namespace) -> int:
    from .. import writers
    from ..errors import HarError
    from ..live import LiveMany, LiveSource, Overlay, percentile
    from ..sources import parse_source
    from ..timeline import Segmenter

    check_runtime_options(args)
    srcs = [parse_source(text, rtsp_transport=args.rtsp_transport) for text in args.sources]
    seen = set()
    for src in srcs:
        shown = printable(display_path(src.text))
        if src.kind == "stdin":
            raise UsageError("har live reads a camera, a stream or a file, not standard "
                             "input; pipe into `har predict -` instead")
        if src.kind in ("file", "url") and not args.realtime:
            raise UsageError(f"{shown}: is a file, not a live source; add "
                             "--realtime to play it at its own rate, or use `har predict`")
        if src.text in seen:
            raise UsageError(f"{shown}: named twice; name each source once")
        seen.add(src.text)
    many = len(srcs) > 1
    persons = _person_options(args, many)  # usage errors before any source is opened
    if many and (args.record or args.preview is not None or args.show):
        raise UsageError("--record, --preview and --show draw one stream; give one source "
                         "with them")
    if args.max_reconnects is not None and args.max_reconnects < 0:
        raise UsageError(f"--max-reconnects {args.max_reconnects}: must be 0 or more")
    if args.jsonl_features and not args.jsonl:
        raise UsageError("--jsonl-features adds to --jsonl; give --jsonl FILE as well")
    _check_outputs(args, srcs)
    if args.preview is not None and not 0 <= args.preview <= 65535:
        raise UsageError(f"--preview {args.preview}: not a port number (0-65535)")
    cams = [_Cam(src, args.max_reconnects if args.max_reconnects is not None
                 else None if src.live else 0) for src in srcs]

    # --jsonl FILE: lines appear as they are written; an existing file is replaced
    # only when the run ends, interrupted or not (har.writers.JsonlFile, as har
    # predict), so a failed run never leaves it half-overwritten.
    clean_stale_temps([args.jsonl])  # what a killed run left beside it
    jsonl_file = None
    out = None
    if args.jsonl == "-":
        out = sys.stdout
    elif args.jsonl:
        try:
            jsonl_file = writers.JsonlFile(args.jsonl)
        except OSError as exc:
            raise UsageError(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                             f"written ({exc.strerror or exc}); check the path") from None
        out = jsonl_file.fh
    # Events before `start` (a source opens while the model loads) are held by the
    # writer, with their times, and follow it.
    events = writers.EventWriter(out, features=args.jsonl_features, hold=True) \
        if out else None
    lock = threading.RLock()
    output_errors: list[str] = []
    stop = threading.Event()  # set by --duration, a failed output, a closed stdout
    stream = None  # a ClipStream (one source) or a LiveMany (several)

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

    def write(fn) -> None:
        """``fn(events)`` writes events; a failed output stops the run."""
        nonlocal events
        with lock:
            if events is None:
                return
            try:
                fn(events)
            except BrokenPipeError:  # `har live ... --jsonl - | head`
                events = None
                stop_all()
            except (OSError, ValueError) as exc:
                events = None
                output_failed(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                              f"written ({getattr(exc, 'strerror', None) or exc})")

    def emit(type_: str, **fields) -> None:
        write(lambda w: w.emit(type_, **fields))

    def say(cam: _Cam, text: str) -> None:
        if not args.quiet:
            who = f" {cam.shown}:" if many else ""
            print(f"har live:{who} {text}".rstrip(), file=sys.stderr)

    def on_state_of(cam: _Cam):
        def on_state(state: str, fields: dict) -> None:
            if state == "ended":
                cam.ended[:] = [{**fields, "wall_time": time.time()}]
                return
            emit("state", state=state, **fields)
            say(cam, f"{state} {printable(fields.get('reason', ''))}")
        return on_state

    def on_gap_of(cam: _Cam):
        def on_gap(fields: dict) -> None:
            emit("gap", **fields)
            say(cam, f"gap of {fields['seconds']:.2f} s ({fields['reason']}); a new clip "
                "run starts")
        return on_gap

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

    # SIGTERM stops the run like Ctrl-C: the events so far, the summary and the
    # --jsonl file are still written (as har predict).
    term = contextlib.ExitStack()
    term.enter_context(signals_interrupt())
    t_start = time.monotonic()
    # --duration counts from here: opening (and its retries) is bounded by it too.
    timer = threading.Timer(args.duration, stop_all) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()

    # The sources are opened while the model loads (converting weights can take
    # seconds), so a camera's first seconds are not lost to the loading.
    def open_source(cam: _Cam) -> None:
        try:
            live_ = LiveSource(cam.src, open_timeout_s=args.open_timeout,
                               read_timeout_s=args.read_timeout,
                               max_reconnects=cam.max_reconnects, realtime=args.realtime,
                               on_state=on_state_of(cam), tap=overlay,
                               on_gap=on_gap_of(cam), stop_event=stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            cam.opened["error"] = exc
            return
        with lock:
            if cam.abandoned:
                live_.close()
            else:
                cam.opened["live"] = live_

    for cam in cams:
        cam.opener = threading.Thread(target=open_source, args=(cam,), name="har-live-open",
                                      daemon=True)
        cam.opener.start()
    try:
        recognizer = make_recognizer(args, max_latency_s=args.max_latency)
    except BaseException:  # the model could not be loaded (exit 4), or Ctrl-C
        stop_all()
        _close_all(timer, overlay, None, jsonl_file, keep=False)
        term.close()
        raise
    load_s = time.monotonic() - t_start
    interrupted = crashed = False
    try:
        which = {"sources": [cam.name for cam in cams]} if many else \
            {"source": cams[0].name}
        settings = writers.run_settings(recognizer.options, recognizer)
        write(lambda w: w.start(recognizer.model_name, settings, **which,
                                model_load_s=round(load_s, 3)))
        for cam in cams:
            cam.segmenter = Segmenter(recognizer.labels, timeline_options(args), keep=0)
        for cam in cams:
            while cam.opener.is_alive() and not stop.is_set():
                cam.opener.join(0.2)
        deadline = time.monotonic() + 1.0  # stopped while FFmpeg is still opening
        for cam in cams:
            cam.opener.join(max(0.0, deadline - time.monotonic()))
            with lock:
                cam.abandoned = cam.opener.is_alive()
            if cam.abandoned:  # it ends at its open timeout, and closes what it opened
                cam.error = HarError(f"{cam.shown}: stopped before the stream could be "
                                     "opened")
            elif "error" in cam.opened:
                if not isinstance(cam.opened["error"], HarError):
                    raise cam.opened["error"]
                cam.error = cam.opened["error"]
            else:
                cam.live = cam.opened["live"]
        ready = [cam for cam in cams if cam.live is not None]
        if ready and any(cam.src.live for cam in ready) and load_s > 1.0 and not args.quiet:
            print(f"har live: the model took {load_s:.1f} s to load; the stream was "
                  "opened meanwhile: what it buffered is read now (clips the model "
                  "cannot catch up with are skipped, frames the sender dropped are a "
                  "gap event)", file=sys.stderr)
        if ready:
            if many:
                stream = LiveMany(recognizer, [cam.live for cam in ready])
                clips = ((ready[j], clip) for j, clip in stream)
            elif persons is not None:
                from ..persons.stream import PersonStream

                stream = PersonStream(recognizer, ready[0].live, persons, live=True,
                                      keep_clips=False)
                clips = ((ready[0], ev) for ev in stream)
            else:
                stream = recognizer.stream(ready[0].live, live=True, keep_clips=False)
                clips = ((ready[0], clip) for clip in stream)
            if stop.is_set():
                stream.stop()
            try:
                for cam, clip in clips:
                    if persons is not None:  # a PersonEvent
                        if clip.kind != "clip":
                            _person_event(emit, cam.name, clip, stream)
                            continue
                        _clip_out(args, cam, clip.clip, write, stream, ready, overlay,
                                  output_failed, person=clip.id)
                        continue
                    _clip_out(args, cam, clip, write, stream, ready, overlay, output_failed)
                    if stop.is_set():
                        break
            except HarError as exc:  # the one source ended in error
                ready[0].error = exc
            if many:
                for cam, err in zip(ready, stream.errors):
                    if err is not None:
                        cam.error = HarError(err)
        for cam in cams:
            if cam.segmenter is not None:
                for type_, fields in cam.segmenter.flush():
                    emit(type_, path=cam.name, **fields)
    except KeyboardInterrupt:
        interrupted = True
        stop_all()
    except BaseException:
        crashed = True
        raise
    finally:
        # From here on the recording, the last events and the --jsonl file are
        # written whole: a second Ctrl-C or SIGTERM must not cut them short (as har
        # predict).
        term.enter_context(signals_ignored())
        _close_all(timer, overlay, stream, None, keep=True)
        for cam in cams:
            if cam.live is None and "live" in cam.opened:
                cam.opened["live"].close()
        if crashed:
            term.close()  # the signal handlers as they were
    for cam in cams:
        if cam.error is not None and not output_errors:  # else the output stopped it
            print(f"error: {printable(cam.error)}", file=sys.stderr)
    if overlay is not None:
        for msg in overlay.take_errors():
            output_failed(msg)
    for cam in cams:
        if cam.ended:
            emit("state", state="ended", **cam.ended[0])
            say(cam, f"ended {printable(cam.ended[0].get('reason', ''))}")

    def summary_of(cam: _Cam, skipped: int) -> dict:
        stats = cam.live.stats if cam.live is not None else None
        lat = cam.latencies
        p50, p95 = percentile(lat, 50), percentile(lat, 95)
        fields = {"clips": cam.scored, "skipped": skipped,
                  "reconnects": stats.reconnects if stats else 0,
                  "stalls": stats.stalls if stats else 0,
                  "gaps": stats.gaps if stats else 0,
                  "latency_p50_s": None if p50 is None else round(p50, 4),
                  "latency_p95_s": None if p95 is None else round(p95, 4),
                  "latency_max_s": round(max(lat), 4) if lat else None}
        if cam.sender_latencies:  # only streams with a sender clock
            s50, s95 = (percentile(cam.sender_latencies, q) for q in (50, 95))
            fields["sender_latency_p50_s"] = round(s50, 4)
            fields["sender_latency_p95_s"] = round(s95, 4)
        if cam.error is not None and cam.scored == 0:
            fields["error"] = str(cam.error)
        return fields

    ready = [cam for cam in cams if cam.live is not None]
    skipped_of = {id(cam): 0 for cam in cams}
    if stream is not None:
        if many:
            for cam, n in zip(ready, stream.skipped):
                skipped_of[id(cam)] = n
        else:
            skipped_of[id(ready[0])] = stream.skipped
    per = [summary_of(cam, skipped_of[id(cam)]) for cam in cams]
    if many:
        all_lat = [x for cam in cams for x in cam.latencies]
        p50, p95 = percentile(all_lat, 50), percentile(all_lat, 95)
        summary = {"clips": sum(f["clips"] for f in per),
                   "skipped": sum(f["skipped"] for f in per),
                   "reconnects": sum(f["reconnects"] for f in per),
                   "stalls": sum(f["stalls"] for f in per),
                   "gaps": sum(f["gaps"] for f in per),
                   "latency_p50_s": None if p50 is None else round(p50, 4),
                   "latency_p95_s": None if p95 is None else round(p95, 4),
                   "latency_max_s": round(max(all_lat), 4) if all_lat else None,
                   "sources": [{"source": cam.name, **f} for cam, f in zip(cams, per)]}
    else:
        summary = per[0]
    summary.update(seconds=round(time.monotonic() - t_start, 3), interrupted=interrupted)
    if persons is not None and stream is not None:
        summary["detections_skipped"] = stream.detections_skipped
    emit("summary", **summary)
    if jsonl_file is not None:
        # An existing file is replaced only by a complete stream of events.
        jsonl_ok = not any(m.startswith("--jsonl ") for m in output_errors)
        try:
            jsonl_file.close(keep=jsonl_ok)
        except OSError as exc:
            output_failed(f"--jsonl {printable(display_path(args.jsonl))}: cannot be "
                          f"written ({exc.strerror or exc})")
    p50, p95 = summary["latency_p50_s"], summary["latency_p95_s"]
    lat = "n/a" if p50 is None else f"p50 {p50:.3f} s, p95 {p95:.3f} s"
    print(f"har live: {summary['clips']} clips scored, {summary['skipped']} skipped, "
          f"{summary['reconnects']} reconnects, latency {lat}", file=sys.stderr)
    term.close()
    if interrupted:
        return ExitCode.INTERRUPTED
    bad_source = any(cam.scored == 0 or cam.error is not None and many for cam in cams)
    return worst(ExitCode.OUTPUT if output_errors else ExitCode.OK,
                 ExitCode.INPUT if bad_source else ExitCode.OK)


def _clip_out(args, cam: _Cam, clip, write, stream, ready, overlay, output_failed,
              person: int | None = None) -> None:
    """One scored clip: its latency, events, segments and stderr line. ``write(fn)``
    hands the run's EventWriter to ``fn``."""
    now = time.monotonic()
    # latency from the arrival of the clip's last frame
    arrival = cam.live.arrival(clip.end_frame - 1)
    if arrival is None:
        arrival = clip.ready_at
    latency = now - arrival if arrival is not None else None
    if latency is not None:
        cam.latencies.append(latency)
    cam.scored += 1
    if overlay is not None:
        overlay.update(clip)
        for msg in overlay.take_errors():
            output_failed(msg)
    skipped = stream.skipped[ready.index(cam)] if isinstance(stream.skipped, list) \
        else stream.skipped
    latency_s = None if latency is None else round(latency, 4)
    # the sender's clock, where the stream has one (RTSP with RTCP sender reports): the
    # clip's first and last frame on it, and the latency from its last frame's capture
    sent = {}
    sent_end = cam.live.sender_time(clip.end_frame - 1)
    sent_start = cam.live.sender_time(clip.start_frame)
    if sent_end is not None and sent_start is not None:
        sender_latency = time.time() - sent_end
        cam.sender_latencies.append(sender_latency)
        sent = {"sender_start_wall_time": round(sent_start, 6),
                "sender_wall_time": round(sent_end, 6),
                "sender_latency_s": round(sender_latency, 4)}
    write(lambda w: w.clip(cam.name, clip, person=person, latency_s=latency_s,
                           skipped=skipped, **sent))
    if person is None:
        for type_, seg in cam.segmenter.add(clip):
            write(lambda w, type_=type_, seg=seg: w.emit(type_, path=cam.name, **seg))
    if not args.quiet:
        top = clip.top[0]
        who = f"{cam.shown}  " if len(ready) > 1 else ""
        if person is not None:
            who += f"person {person}: "
        print(f"{who}{clip.start_s:9.2f}s  {printable(top.label)} ({top.score:.0%})",
              file=sys.stderr)


def _close_all(timer, overlay, stream, jsonl_file, keep: bool) -> None:
    """Stop the timer and the stream, close the overlay (its MP4 is renamed into
    place) and, when given, the --jsonl file."""
    if timer is not None:
        timer.cancel()
    if stream is not None:
        stream.stop()
        stream.close()
    if overlay is not None:
        overlay.close()
    if jsonl_file is not None:
        try:
            jsonl_file.close(keep=keep)
        except OSError:
            pass


def _person_options(args, many: bool):
    """--persons: the PersonOptions (usage errors first), or None."""
    if not args.persons:
        check_person_options_unused(args)
        return None
    if many:
        raise UsageError("--persons takes one source; run one har live per camera")
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
