"""``har predict``: recognize actions in videos, files, folders, globs, URLs and stdin.

A loop over :meth:`har.Recognizer.run_many`: clip events go to ``--jsonl`` as they are
scored; when a video ends its table, per-video files and ``video`` event are written.
``--json``/``--csv``/``--segments-csv``/``--summary-csv``/``--features`` are written at
the end, atomically, and also when the run is interrupted (SIGINT, SIGTERM): they then
hold every video that finished, and the JSON says ``"interrupted": true``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from ..defaults import pip_hint
from ..errors import HarError
from ..fsutil import atomic_open, display_path
from ..text import printable
from . import ExitCode, UsageError, add_command, worst
from .common import (DETECT_EVERY, add_clip_arguments, add_model_arguments,
                     add_person_arguments, add_timeline_arguments, check_person_options_unused,
                     check_runtime_options, make_recognizer, positive_int, progress_bar,
                     check_not_input, check_output_path, clean_stale_temps, run_options,
                     same_output, signals_ignored, signals_interrupt)

# Per-video outputs: option, what one output is, its file name in directory mode
# (<input stem><suffix>), and the extensions it can write.
_PER_VIDEO_OUTPUTS = (
    ("annotate", "annotated video", ".annotated.mp4", (".mp4", ".m4v", ".mov", ".mkv", ".avi")),
    ("srt", "SRT subtitle file", ".srt", None),
    ("vtt", "WebVTT file", ".vtt", None),
    ("plot", "plot", ".png", (".png", ".svg", ".pdf", ".jpg", ".jpeg")),
)
# Whole-run outputs: option (attribute) and whether '-' (stdout) is allowed.
_RUN_OUTPUTS = (("json", True), ("jsonl", True), ("csv", True), ("segments_csv", True),
                ("summary_csv", True), ("features", False), ("report", False),
                ("activitynet", True), ("ava", True), ("mot", False))

EPILOG = """\
examples:
  har predict video.mp4                         table: top-5 and each clip's top-1
  har predict videos/ --json out.json --csv clips.csv
  har predict 'archive/**/*.mkv' --jsonl events.jsonl --summary-csv runs.csv
  har predict https://host/v.mp4 --annotate v_annotated.mp4
  cat v.mp4 | har predict - --json -            a video on standard input

exit codes:  (the table in README.md)
  0 every input fully processed   1 an output could not be written
  2 bad command line              3 an input failed or was read only in part (damaged or
                                    truncated); the others keep their results
  4 the model or its weights could not be loaded
  130 interrupted: --json/--csv/... hold every video that finished
"""


def register(sub) -> None:
    p = add_command(sub, "predict", help="recognize actions in videos, files or directories",
                    description="Recognize actions in videos. Prints a table per video; "
                                "--json/--jsonl/--csv write machine-readable results.",
                    epilog=EPILOG)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, directories (searched recursively), quoted globs "
                        "('v/**/*.mp4'), http(s) URLs, or - for standard input")
    add_model_arguments(p)
    add_clip_arguments(p)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="videos decoded at once (default 1; more keeps a many-core or GPU "
                        "machine busy on many short videos)")
    o = p.add_argument_group("outputs")
    o.add_argument("--json", metavar="FILE", help="write har.predictions/1 JSON to FILE "
                   "('-' for stdout)")
    o.add_argument("--jsonl", metavar="FILE", help="write har.events/1 JSON Lines as results "
                   "happen: a line per clip, per video and a summary ('-' for stdout)")
    o.add_argument("--jsonl-features", action="store_true",
                   help="include each clip's feature vector in the --jsonl clip events")
    o.add_argument("--csv", metavar="FILE", help="write one row per clip and label to FILE "
                   "('-' for stdout)")
    o.add_argument("--summary-csv", metavar="FILE",
                   help="write one row per input (status, duration, top-1, top-5, error)")
    o.add_argument("--activitynet", metavar="FILE",
                   help="write the predicted segments as an ActivityNet v1.3 detection "
                        "file (video id = file name without extension and leading v_; "
                        "'-' for stdout); `har eval --segments` scores it")
    o.add_argument("--features", metavar="FILE.npz",
                   help="write every clip's feature vector (float32, N x D) with its path, "
                        "frame range and time range")
    o.add_argument("--clips", type=int, default=30, metavar="N",
                   help="show at most N clip rows per video in the table (default 30; 0 hides)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_timeline_arguments(p)
    t = p.add_argument_group("timeline outputs", "With several inputs, --annotate/--srt/"
                             "--vtt/--plot take a directory and write one file per input "
                             "(<video><suffix>; an existing file is never replaced: the "
                             "name gets -2, -3, ...).")
    t.add_argument("--annotate", metavar="OUT",
                   help="write the video with the actions drawn on it (.mp4, .mkv, .mov, .avi)")
    t.add_argument("--srt", metavar="FILE", help="write SubRip subtitles, one cue per segment")
    t.add_argument("--vtt", metavar="FILE", help="write WebVTT subtitles, one cue per segment")
    t.add_argument("--plot", metavar="FILE.png",
                   help="plot the top actions' probabilities over time (.png/.svg/.pdf; "
                        "needs matplotlib)")
    t.add_argument("--report", metavar="FILE.html",
                   help="write one self-contained HTML page of the run: a sortable table "
                        "of every input, and per video thumbnails, the segment timeline "
                        "and the probabilities over time (opens offline; docs/report.md)")
    t.add_argument("--segments-csv", metavar="FILE",
                   help="write one row per segment to FILE ('-' for stdout)")
    add_person_arguments(p, live=False)
    p.set_defaults(func=cmd_predict)


def _shown(path) -> str:
    """A file name or URL as a person sees it: UTF-8, control characters escaped."""
    return printable(display_path(path))


# -- checking the command line before any work ---------------------------------------
def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _plan_outputs(args: argparse.Namespace, sources, n_inputs: int
                  ) -> dict[str, dict[str, Path]]:
    """Check every output before the work and plan the per-video files:
    ``{option: {input: output path}}`` for --annotate/--srt/--vtt/--plot."""
    inputs = [s.url for s in sources if s.local]
    if args.weights and "://" not in args.weights and os.path.isfile(args.weights):
        inputs.append(args.weights)
    claimed: dict[str, str] = {}  # output path -> option, to catch one file named twice

    def claim(opt: str, path: str) -> None:
        for key, other in claimed.items():
            if same_output(path, key):
                raise UsageError(f"{opt} and {other} both write {_shown(path)}; "
                                 "give them different files")
        claimed[os.path.abspath(path)] = opt

    for name, stdout_ok in _RUN_OUTPUTS:
        value = getattr(args, name, None)
        if not value:
            continue
        if value == "-":
            if not stdout_ok:
                raise UsageError(f"{_opt(name)} cannot go to stdout; give a file name")
            continue
        check_output_path(_opt(name), value)
        check_not_input(_opt(name), value, inputs)
        claim(_opt(name), value)
    if args.features and not args.features.lower().endswith(".npz"):
        raise UsageError(f"--features {_shown(args.features)}: writes a NumPy .npz "
                         "archive; give a name ending in .npz")
    if args.jsonl_features and not args.jsonl:
        raise UsageError("--jsonl-features adds to --jsonl; give --jsonl FILE as well")

    plan: dict[str, dict[str, Path]] = {}
    if getattr(args, "plot", None):
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(f"--plot needs matplotlib, which is not installed; "
                             f"install it with: {pip_hint('plot')}")
    if getattr(args, "annotate", None) and any(s.kind == "stdin" for s in sources):
        # The annotated video is drawn from a second read of the input, after scoring:
        # standard input is gone by then (refused here, before any work).
        raise UsageError("--annotate reads the video a second time, which standard input "
                         "cannot do; save it to a file and give that")
    many = n_inputs > 1 or any(os.path.isdir(i) for i in args.inputs if isinstance(i, str))
    for opt, what, suffix, extensions in _PER_VIDEO_OUTPUTS:
        value = getattr(args, opt, None)
        if value is None:
            continue
        flag = _opt(opt)
        target = Path(value)
        as_dir = target.is_dir() or value.endswith(("/", os.sep))
        if not as_dir and many:
            if target.suffix:
                raise UsageError(f"{flag} {_shown(value)}: with several inputs this "
                                 f"must be a directory (one {what} per input, named "
                                 f"<video>{suffix}); e.g. {flag} {target.with_suffix('')}/")
            as_dir = True
        if not as_dir:
            if extensions and target.suffix.lower() not in extensions:
                raise UsageError(f"{flag} {_shown(value)}: writes {what}s as "
                                 f"{', '.join(extensions)}; give a name with one of those")
            check_output_path(flag, value)
            check_not_input(flag, value, inputs)
            claim(flag, value)
            plan[opt] = {s.text: target for s in sources}
            continue
        if target.exists() and not target.is_dir():
            raise UsageError(f"{flag} {_shown(value)}: is a file; with several inputs "
                             "this must be a directory")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{flag} {_shown(value)}: cannot create the directory "
                             f"({exc.strerror or exc}); choose another path") from None
        plan[opt] = _directory_names(target, sources, suffix, claimed, flag)
    return plan


def _directory_names(folder: Path, sources, suffix: str, claimed: dict, flag: str
                     ) -> dict[str, Path]:
    """``<stem><suffix>`` per input in ``folder``; a name that exists already (an input,
    the user's own file) or is taken by another input gets ``-2``, ``-3``, ..."""
    per: dict[str, Path] = {}
    for src in sources:
        stem = Path(src.text.rstrip("/")).stem or "video"
        if len(stem.encode("utf-8", "surrogateescape")) > 200:
            stem = stem[:60]
        n = 1
        while True:
            name = f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}"
            path = folder / name
            key = os.path.abspath(path)
            if key not in claimed and not os.path.lexists(path):
                break
            n += 1
        if n > 1:
            print(f"note: {_shown(folder / (stem + suffix))} exists; {flag} for "
                  f"{_shown(src.text)} writes {_shown(path)}", file=sys.stderr)
        claimed[key] = flag
        per[src.text] = path
    return per


# -- stdout ------------------------------------------------------------------------
class _Stdout:
    """Writes to stdout that cannot lose the run: a closed pipe (``| head``) quietly
    stops them; a full disk is reported once as a one-line error."""

    def __init__(self) -> None:
        self.closed = False
        self.error: str | None = None

    def write(self, fn: Callable[[TextIO], Any]) -> bool:
        if self.closed or self.error:
            return False
        try:
            fn(sys.stdout)
            sys.stdout.flush()
            return True
        except BrokenPipeError:
            self.closed = True
            _quiet_stdout()
        except OSError as exc:
            self.error = f"stdout: cannot be written ({exc.strerror or exc}); the other " \
                         "outputs are still written"
            print(f"error: {self.error}", file=sys.stderr)
            _quiet_stdout()
        return False


def _quiet_stdout() -> None:
    from . import _silence_stdout

    _silence_stdout()


# -- the command --------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from .. import writers
    from ..recognizer import ClipEvent
    from ..results import VideoResult
    from ..sources import resolve_inputs

    check_runtime_options(args)
    to_stdout = [name for name, _ in _RUN_OUTPUTS if getattr(args, name, None) == "-"]
    if len(to_stdout) > 1:
        raise UsageError(f"{' and '.join(_opt(n) + ' -' for n in to_stdout)} all want "
                         "stdout; send all but one of them to a file")
    t_start = time.monotonic()
    sources, input_errors = resolve_inputs(args.inputs)
    named = list(sources)
    n_unresolved = len(input_errors)  # a missing glob, a name given twice: listed first
    sources, input_errors = _readable(sources, input_errors)
    plan = _plan_outputs(args, sources, len(sources) + len(input_errors))
    clean_stale_temps([getattr(args, n, None) for n, _ in _RUN_OUTPUTS] +
                      [str(p) for per in plan.values() for p in per.values()])
    persons = _check_persons(args, sources, len(sources) + len(input_errors))
    # Inputs and outputs are checked before the model is loaded (or downloaded): a
    # mistyped file name is the first thing said, not after a weights download.
    failed_inputs: list[VideoResult] = []
    for item, msg in input_errors:
        print(f"error: {printable(msg)}", file=sys.stderr)
        failed_inputs.append(VideoResult(path=display_path(item), error=msg))
    recognizer = None
    speed = _Speed(t_start)
    if sources:
        recognizer = make_recognizer(args)
        recognizer.keep_features = bool(args.features or args.jsonl_features)
        speed.loaded(recognizer)
    model_name = recognizer.model_name if recognizer is not None else args.model

    out = _Stdout()
    show_table = not to_stdout
    only_stdout = not any(getattr(args, n, None) not in (None, "-") for n, _ in _RUN_OUTPUTS) \
        and not plan
    finished: list[VideoResult] = []
    output_errors: list[str] = []
    features: list[tuple[int, Any]] = []  # (video position, ClipResult) for --features

    events = None
    jsonl_file: writers.JsonlFile | None = None
    if args.jsonl == "-":
        events = writers.EventWriter(sys.stdout, features=args.jsonl_features)
    elif args.jsonl:
        try:
            jsonl_file = writers.JsonlFile(args.jsonl)
        except OSError as exc:
            raise UsageError(f"--jsonl {_shown(args.jsonl)}: cannot be written "
                             f"({exc.strerror or exc}); check the path") from None
        events = writers.EventWriter(jsonl_file.fh, features=args.jsonl_features)

    def emit(fn: Callable[[], Any]) -> None:
        if events is None:
            return
        if events.out is sys.stdout:
            out.write(lambda _: fn())
        else:
            try:
                fn()
            except OSError as exc:
                output_errors.append(f"--jsonl {_shown(args.jsonl)}: cannot be "
                                     f"written ({exc.strerror or exc})")
                print(f"error: {printable(output_errors[-1])}", file=sys.stderr)
                _disable(events)

    settings = _settings(args, recognizer)
    emit(lambda: events.start(model_name, settings,
                              inputs=len(sources) + len(input_errors)))
    for r in failed_inputs:
        emit(lambda r=r: events.video(r))

    show_progress = not args.no_progress and sys.stderr.isatty()
    closers: dict = {}

    def progress_for(name: str):
        if not show_progress or args.workers > 1:
            return None
        state: dict = {}
        label = f"[{len(finished) + 1}/{len(sources)}] {_shown(Path(name).name)}"

        def update(n: int, info) -> None:
            if "bar" not in state:
                state["bar"], closers[name] = progress_bar(True, label, info.frames)
            state["bar"](n)
        return update

    overall = None
    if show_progress and args.workers > 1:
        from tqdm import tqdm

        overall = tqdm(total=len(sources), unit="video", file=sys.stderr, leave=False)

    interrupted = False
    with signals_interrupt():
        try:
            events_of_run = () if recognizer is None else recognizer.run_many(
                sources, workers=args.workers, keep_clips=True, progress=progress_for)
            for ev in events_of_run:
                if out.closed and only_stdout:
                    break  # the reader has gone (`| head`): nothing left to write to
                if isinstance(ev, ClipEvent):
                    emit(lambda ev=ev: events.clip(ev.path, ev.clip))
                    continue
                result = ev
                closers.pop(result.path, lambda: None)()
                if overall is not None:
                    overall.update(1)
                if persons is not None and result.ok:
                    _persons_pass(recognizer, result, persons, sources, emit, events)
                _report(result)
                if show_table and result.ok:
                    out.write(lambda fh, r=result: writers.write_table(r, fh,
                                                                        max_clips=args.clips))
                    if persons is not None:
                        from ..persons.outputs import write_person_table

                        out.write(lambda fh, r=result: write_person_table(r, fh))
                speed.add(result)
                for msg in _write_video_outputs(result, plan, recognizer.labels, args,
                                                model_name):
                    output_errors.append(msg)
                    print(f"error: {printable(msg)}", file=sys.stderr)
                emit(lambda r=result: events.video(r))
                if args.features:
                    features.extend((result.input_index or 0, c) for c in result.clips)
                _lighten(result, keep_features=bool(args.features))
                finished.append(result)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if overall is not None:
                overall.close()
            for close in closers.values():
                close()

    finished.sort(key=lambda r: r.input_index if r.input_index is not None else -1)
    # Results in the order the inputs were given: a file found unreadable before the
    # model loaded keeps its place among the others.
    place = {id(src): i for i, src in enumerate(named)}
    kept_place = [place[id(src)] for src in sources]
    unreadable = {display_path(src.text): place[id(src)] for src in named
                  if id(src) not in {id(k) for k in sources}}

    def order(item: tuple[int, VideoResult]) -> tuple[int, int]:
        i, r = item
        if i < n_unresolved:
            return (-1, i)
        if i < len(failed_inputs):
            return (unreadable.get(r.path, -1), 0)
        idx = r.input_index
        return (kept_place[idx] if idx is not None and idx < len(kept_place) else -1, 1)

    results = [r for _, r in sorted(enumerate(failed_inputs + finished), key=order)]
    with signals_ignored():
        emit(lambda: events.summary(results, interrupted=interrupted))
        if jsonl_file is not None:
            try:
                jsonl_file.close()
            except OSError as exc:
                output_errors.append(f"--jsonl {_shown(args.jsonl)}: cannot be "
                                     f"written ({exc.strerror or exc})")
        extra: dict[str, Any] = {"settings": settings}
        if interrupted:
            extra = {"interrupted": True, **extra}
        doc = writers.predictions_doc(model_name, results, **extra) \
            if args.json or args.report else None
        writes = [
            ("json", lambda fh: writers.dump(doc, fh)),
            ("csv", lambda fh: writers.write_clips_csv(fh, results)),
            ("segments_csv", lambda fh: writers.write_segments_csv(fh, results)),
            ("summary_csv", lambda fh: writers.write_summary_csv(fh, results)),
            ("activitynet", lambda fh: writers.dump(writers.activitynet_doc(
                results, external_data=_external_data(args, recognizer)), fh)),
            *_person_writes(args, results, recognizer.labels if recognizer is not None else ()),
        ]
        # Files first, stdout last: a closed pipe must not cost a file.
        writes.sort(key=lambda w: getattr(args, w[0]) == "-")
        for name, write in writes:
            target = getattr(args, name)
            if not target:
                continue
            if target == "-":
                out.write(write)
                continue
            try:
                with atomic_open(target, "w", newline="") as fh:
                    write(fh)
            except OSError as exc:  # e.g. the disk filled up while working
                output_errors.append(f"{_opt(name)} {_shown(target)}: cannot be "
                                     f"written ({exc.strerror or exc}); check the path")
                print(f"error: {printable(output_errors[-1])}", file=sys.stderr)
        if args.report:
            try:
                from ..fsutil import clean
                from ..report import write_report

                write_report(clean(doc), args.report)
            except OSError as exc:
                output_errors.append(f"--report {_shown(args.report)}: cannot be "
                                     f"written ({exc.strerror or exc}); check the path")
                print(f"error: {printable(output_errors[-1])}", file=sys.stderr)
        if args.features:
            msg = _write_features(args.features, features, results)
            if msg:
                output_errors.append(msg)
                print(f"error: {printable(msg)}", file=sys.stderr)
    if out.error:
        output_errors.append(out.error)
    speed.report()

    if interrupted:
        print(f"har: interrupted; the outputs hold the {len(finished)} video(s) that "
              "finished", file=sys.stderr)
        return ExitCode.INTERRUPTED
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"har: {failed} of {len(results)} input(s) failed", file=sys.stderr)
    if output_errors:
        print(f"har: {len(output_errors)} output(s) could not be written", file=sys.stderr)
    return worst(ExitCode.OUTPUT if output_errors else ExitCode.OK,
                 ExitCode.INPUT if failed or any(r.warnings for r in results) else ExitCode.OK)


def _readable(sources, input_errors):
    """Local files that cannot be opened (a typo, no permission) move to the errors
    before any model is loaded, with the message the decoder would give."""
    from ..video import _local_error

    import errno

    kept = []
    errors = list(input_errors)
    for src in sources:
        if src.local:  # stat, not open: a named pipe must be read once, by the decoder
            try:
                os.stat(src.url)
                if not os.access(src.url, os.R_OK):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            except OSError as exc:
                errors.append((src.text, str(_local_error(display_path(src.text), exc,
                                                          src.url))))
                continue
        kept.append(src)
    return kept, errors


def _settings(args: argparse.Namespace, recognizer) -> dict[str, Any]:
    """The JSON's ``settings`` (har.writers.run_settings): the options that ran and what
    ran them; when no model was loaded (every input failed first), what was asked."""
    from ..writers import run_settings

    if recognizer is not None:
        return run_settings(recognizer.options, recognizer)
    return run_settings(run_options(args), backend=args.backend, precision=args.precision,
                        device=args.device)


def _external_data(args: argparse.Namespace, recognizer) -> dict[str, Any]:
    """ActivityNet's ``external_data``: used only when the model's weights were
    pretrained on another dataset (the zoo's Kinetics weights, or a har train
    fine-tuning of them); a model har trained with --scratch used none."""
    model = recognizer.model_name if recognizer is not None else args.model
    record = _training_record(args.weights)
    if record is not None and record.get("scratch"):
        return {"used": False, "details": f"har: {model} trained from scratch "
                                          "(random initialisation) on the user's data only"}
    if record is not None:
        return {"used": True, "details": f"har: {model} fine-tuned from weights "
                                         "pretrained on Kinetics-400"}
    if recognizer is not None and _own_labels(recognizer):
        # An exported file of a trained model: it does not say how it was trained.
        return {"used": True, "details": f"har: {model} with its own classes; how its "
                                         "weights were trained is not recorded (assumed "
                                         "pretrained on Kinetics-400)"}
    return {"used": True, "details": f"har: {model} pretrained on Kinetics-400"}


def _own_labels(recognizer) -> bool:
    from ..models.zoo import get_entry

    try:
        return tuple(recognizer.labels) != tuple(get_entry(recognizer.model_name).class_names)
    except Exception:  # noqa: BLE001
        return True


def _training_record(weights) -> dict | None:
    """The ``har`` record of a checkpoint written by ``har train`` (``--weights
    DIR/model.pth``), or None (the zoo's weights, URLs, exported files)."""
    if not weights or "://" in str(weights) or \
            Path(str(weights)).suffix.lower() not in (".pth", ".pt", ".tar"):
        return None
    try:
        from ..models.checkpoints import read_checkpoint

        record = read_checkpoint(Path(str(weights)).expanduser()).har
    except Exception:  # noqa: BLE001 - the model loaded it already; say the default
        return None
    return record or None


class _Speed:
    """The speed summary printed at the end (stderr): model load, inference, the
    time spent waiting for decoded clips, the total, and clips per second."""

    def __init__(self, t_start: float) -> None:
        self.t_start = t_start
        self.t_loaded: float | None = None
        self.load_s = 0.0
        self.infer_s = [0.0]
        self.timed = False
        self.clips = 0
        self.videos = 0
        self.video_s = 0.0

    def loaded(self, recognizer) -> None:
        self.t_loaded = time.monotonic()
        self.load_s = self.t_loaded - self.t_start
        backend = recognizer.backend
        infer = getattr(backend, "infer", None)
        if infer is None:
            return

        def timed(batch, _infer=infer, _acc=self.infer_s):
            t0 = time.perf_counter()
            try:
                return _infer(batch)
            finally:
                _acc[0] += time.perf_counter() - t0
        try:
            backend.infer = timed
            self.timed = True
        except AttributeError:  # a runtime with slots: no split, only the totals
            pass

    def add(self, result) -> None:
        if result.ok:
            self.videos += 1
            self.clips += len(result.clips)
            self.video_s += result.duration_s or 0.0

    def report(self) -> None:
        if self.t_loaded is None or not self.clips:
            return
        now = time.monotonic()
        run_s = max(now - self.t_loaded, 1e-9)
        parts = [f"load {self.load_s:.1f} s"]
        if self.timed:
            parts += [f"model {self.infer_s[0]:.1f} s",
                      f"decoding and the rest {max(run_s - self.infer_s[0], 0.0):.1f} s"]
        parts.append(f"total {now - self.t_start:.1f} s")
        rate = f"{self.clips / run_s:.1f} clips/s"
        if self.video_s > 0:
            rate += f", {self.video_s / run_s:.1f}x real time"
        print(f"speed: {self.videos} video(s), {self.clips} clip(s): {', '.join(parts)}; "
              f"{rate}", file=sys.stderr)


def _disable(events) -> None:
    events.emit = lambda *a, **k: None  # type: ignore[method-assign]


def _report(result) -> None:
    if result.error:
        print(f"error: {printable(result.error)}", file=sys.stderr)
    for w in result.warnings:
        print(f"warning: {_shown(result.path)}: {printable(w)}; results cover what decoded",
              file=sys.stderr)


def _lighten(result, keep_features: bool) -> None:
    """Drop what no whole-run output needs (each clip's 400 probabilities), so a run
    over thousands of videos keeps only what it will write."""
    result.probs = None
    for c in result.clips:
        c.probs = None
        if not keep_features:
            c.features = None


def _write_features(target: str, clips: list, results) -> str | None:
    import numpy as np

    if clips and any(c.features is None for _, c in clips):
        return (f"--features {_shown(target)}: this runtime gives no features; "
                "use --backend torch or a runtime that exports them")
    by_pos = {r.input_index: r.path for r in results if r.input_index is not None}
    dim = clips[0][1].features.shape[0] if clips else 0
    arrays = {
        "features": (np.stack([c.features for _, c in clips]).astype(np.float32)
                     if clips else np.zeros((0, dim), np.float32)),
        "path": np.array([display_path(by_pos.get(p, "")) for p, _ in clips], dtype=str),
        "clip": np.array([c.index for _, c in clips], dtype=np.int64),
        "start_frame": np.array([c.start_frame for _, c in clips], dtype=np.int64),
        "end_frame": np.array([c.end_frame for _, c in clips], dtype=np.int64),
        "start_s": np.array([c.start_s for _, c in clips], dtype=np.float64),
        "end_s": np.array([c.end_s for _, c in clips], dtype=np.float64),
    }
    try:
        with atomic_open(target, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:
        return f"--features {_shown(target)}: cannot be written ({exc.strerror or exc})"
    return None


def _write_video_outputs(result, plan: dict[str, dict[str, Path]], labels, args,
                         model_name: str | None = None) -> list[str]:
    """Write this video's --annotate/--srt/--vtt/--plot files; one-line errors back."""
    from ..timeline import to_srt, to_vtt

    errors: list[str] = []
    if not result.ok:
        return errors
    for opt, per in plan.items():
        path = per.get(result.path)
        if path is None:
            continue
        try:
            if opt == "annotate":
                from ..render import annotate_video

                stats = annotate_video(result, path)
                for note in stats.notes:
                    print(f"note: {_shown(path)}: {printable(note)}", file=sys.stderr)
            elif opt == "plot":
                from ..render import plot_timeline

                plot_timeline(result, labels, path, threshold=args.threshold,
                              model=model_name or args.model)
            else:
                text = to_srt(result.segments) if opt == "srt" else to_vtt(result.segments)
                with atomic_open(path, "w") as fh:
                    fh.write(text)
        except HarError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{path}: cannot be written ({exc.strerror or exc}); "
                          "check the path and that the directory is writable")
        except Exception as exc:  # a bug must not lose the other outputs
            errors.append(f"{path}: internal error writing --{opt} for {result.path} "
                          f"({type(exc).__name__}: {exc}); please report it")
    return errors


# -- per person (har.persons; docs/persons.md) ------------------------------------------
def _check_persons(args, sources, n_inputs: int):
    """The PersonOptions for this run, or None without --persons; usage errors first."""
    if not (args.persons or args.tracks):
        for opt in ("mot", "ava"):
            if getattr(args, opt):
                raise UsageError(f"--{opt} writes per-person results; add --persons")
        check_person_options_unused(args)
        return None
    if args.tracks and (args.detector != "hog" or args.detect_every != DETECT_EVERY["file"]):
        raise UsageError("--tracks gives the people, so --detector/--detect-every have "
                         "nothing to do; drop one or the other")
    for opt in ("tracks", "mot"):
        if getattr(args, opt) and n_inputs != 1:
            raise UsageError(f"--{opt} {display_path(getattr(args, opt))}: a tracks file "
                             "belongs to one video; give one input")
    if any(s.kind == "stdin" for s in sources):
        raise UsageError("--persons reads each video a second time, which standard input "
                         "cannot do; save it to a file and give that")
    from ..persons.stream import PersonOptions

    detector = args.detector
    if not args.tracks:
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise UsageError("--persons tracks people with scipy, which is not installed; "
                             f"install it with: {pip_hint('persons')}, or give --tracks")
        from ..persons.detect import load_detector

        try:
            detector = load_detector(detector)
        except HarError as exc:
            raise UsageError(str(exc)) from None
    else:
        from ..persons.mot import read_mot

        try:
            tracks = read_mot(args.tracks)
        except HarError as exc:
            raise UsageError(f"--tracks {exc}") from None
        return PersonOptions(tracks=tracks)
    return PersonOptions(detector=detector, detect_every=args.detect_every)


def _persons_pass(recognizer, result, options, sources, emit, events) -> None:
    """Read the video again for its people; their results go on ``result.persons``."""
    from ..persons.stream import PersonStream

    src = next((s for s in sources if s.text == result.path), result.path)
    stream = PersonStream(recognizer, src, options, live=False)
    path = display_path(result.path)
    try:
        for ev in stream:
            if ev.kind == "start":
                emit(lambda ev=ev: events.emit("person_start", path=path, person=ev.id,
                                               first_frame=ev.clip.start_frame,
                                               start_s=ev.clip.start_s))
            elif ev.kind == "clip":
                emit(lambda ev=ev: events.clip_fields(path, ev.clip.to_dict(), person=ev.id))
            else:
                p = ev.person
                emit(lambda p=p: events.emit(
                    "person_end", path=path, person=p.id, first_frame=p.first_frame,
                    last_frame=p.last_frame, clips=len(p.clips),
                    top=[t.to_dict() for t in p.top]))
    except HarError as exc:
        result.warnings.append(f"per-person pass failed: {exc}")
    finally:
        stream.close()
    result.persons = stream.persons()
    for p in result.persons:  # what no output reads (the clips' probabilities)
        p.probs = None
        for c in p.clips:
            c.probs = None


def _person_writes(args, results, labels) -> list:
    from ..persons.outputs import write_ava, write_tracks

    out = []
    if getattr(args, "ava", None):
        out.append(("ava", lambda fh: write_ava(fh, results, labels)))
    if getattr(args, "mot", None):
        done = [r for r in results if r.ok and r.persons is not None]
        if done:
            out.append(("mot", lambda fh: write_tracks(fh, done[0])))
    return out
