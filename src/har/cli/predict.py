"""``har predict``: recognize actions in videos, files, folders and URLs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from ..defaults import pip_hint
from ..errors import HarError
from ..fsutil import atomic_open
from . import ExitCode, UsageError, add_command
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_runtime_options, make_recognizer, progress_bar,
                     timeline_settings)

# Per-video outputs: option name, what one output is, and its file name in
# directory mode (one output per input: <input stem><suffix>).
_PER_VIDEO_OUTPUTS = (("annotate", "annotated video", ".annotated.mp4"),
                      ("srt", "SRT subtitle file", ".srt"), ("vtt", "WebVTT file", ".vtt"),
                      ("plot", "plot", ".png"))


def register(sub) -> None:
    p = add_command(sub, "predict", help="recognize actions in videos, files or directories",
                    description="Recognize actions in videos. Prints a table per video; "
                                "--json/--csv write machine-readable results.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help="video files, directories (searched recursively) or http(s) URLs")
    add_model_arguments(p)
    add_clip_arguments(p)
    p.add_argument("--workers", type=_pos, default=1,
                   help="videos decoded at once (default 1; more keeps a many-core or GPU "
                        "machine busy on many short videos)")
    o = p.add_argument_group("outputs")
    o.add_argument("--json", metavar="FILE", help="write JSON results to FILE ('-' for stdout)")
    o.add_argument("--csv", metavar="FILE", help="write one row per clip to FILE ('-' for stdout)")
    o.add_argument("--clips", type=int, default=30, metavar="N",
                   help="show at most N clip rows per video in the table (default 30; 0 hides)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_timeline_arguments(p)
    t = p.add_argument_group("timeline outputs", "With several inputs, --annotate/--srt/"
                             "--vtt/--plot take a directory and write one file per input.")
    t.add_argument("--annotate", metavar="OUT",
                   help="write the video with the actions drawn on it (MP4; .mkv/.mov also)")
    t.add_argument("--srt", metavar="FILE", help="write SubRip subtitles, one cue per segment")
    t.add_argument("--vtt", metavar="FILE", help="write WebVTT subtitles, one cue per segment")
    t.add_argument("--plot", metavar="FILE.png",
                   help="plot the top actions' probabilities over time (needs matplotlib)")
    t.add_argument("--segments-csv", metavar="FILE",
                   help="write one row per segment to FILE ('-' for stdout)")
    p.set_defaults(func=cmd_predict)


def _pos(text: str) -> int:
    from .common import positive_int

    return positive_int(text)


def cmd_predict(args: argparse.Namespace) -> int:
    from .. import writers
    from ..results import VideoResult
    from ..video import expand_inputs

    check_runtime_options(args)
    json_to_stdout = args.json == "-"
    csv_to_stdout = args.csv == "-"
    if json_to_stdout and csv_to_stdout:
        raise UsageError("--json - and --csv - both want stdout; send one of them to a file")
    if args.segments_csv == "-" and (json_to_stdout or csv_to_stdout):
        raise UsageError("--segments-csv - and --json -/--csv - all want stdout; "
                         "send all but one of them to a file")
    csv_to_stdout = csv_to_stdout or args.segments_csv == "-"
    table_out: TextIO | None = None if (json_to_stdout or csv_to_stdout) else sys.stdout

    sources, input_errors = expand_inputs(args.inputs)
    try:  # --annotate/--srt/--vtt/--plot targets, checked before any work is done
        output_plan = _plan_outputs(args, sources, len(sources) + len(input_errors))
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    output_errors: list[str] = []
    recognizer = make_recognizer(args)
    results: list[VideoResult] = [VideoResult(path=item, error=msg) for item, msg in input_errors]
    for item, msg in input_errors:
        print(f"error: {msg}", file=sys.stderr)
    show_progress = not args.no_progress and sys.stderr.isatty()
    position = {src: i for i, src in enumerate(sources, 1)}
    closers: dict = {}

    def progress_for(src: str):
        if not show_progress or args.workers > 1:
            return None
        state: dict = {}

        def update(n: int, info) -> None:
            if "bar" not in state:
                state["bar"], closers[src] = progress_bar(
                    True, f"[{position[src]}/{len(sources)}] {Path(src).name}", info.frames)
            state["bar"](n)
        return update

    overall = None
    if show_progress and args.workers > 1:
        from tqdm import tqdm

        overall = tqdm(total=len(sources), unit="video", file=sys.stderr, leave=False)
    for result in recognizer.predict_many(sources, workers=args.workers, progress=progress_for):
        src = result.path
        closers.pop(src, lambda: None)()
        if overall is not None:
            overall.update(1)
        results.append(result)
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
        for w in result.warnings:
            print(f"warning: {src}: {w}; results cover what decoded", file=sys.stderr)
        if table_out is not None and result.ok:
            writers.write_table(result, table_out, max_clips=args.clips)
        for msg in _write_video_outputs(result, output_plan, recognizer.labels, args):
            output_errors.append(msg)
            print(f"error: {msg}", file=sys.stderr)
    if overall is not None:
        overall.close()
    if args.json:
        doc = writers.predictions_doc(args.model, results,
                          settings={"stride": args.stride, "sampler": args.sampler,
                                    "clip_len": recognizer.preset.clip_len,
                                    "topk": args.topk, "backend": recognizer.backend.name,
                                    "precision": recognizer.backend.precision,
                                    "device": args.device, **timeline_settings(args)})
        writes = [("json", args.json, lambda fh: fh.write(writers.dumps(doc)))]
    else:
        writes = []
    writes += [("csv", args.csv, lambda fh: writers.write_clips_csv(fh, results)),
               ("segments-csv", args.segments_csv,
                lambda fh: writers.write_segments_csv(fh, results))]
    for opt, target, write in writes:
        if not target:
            continue
        try:
            _write_to(target, write)
        except OSError as exc:  # e.g. the disk filled up while working
            output_errors.append(f"--{opt} {target}: cannot be written "
                                 f"({exc.strerror or exc}); check the path")
            print(f"error: {output_errors[-1]}", file=sys.stderr)
    if any(not r.ok for r in results):
        failed = sum(not r.ok for r in results)
        print(f"har: {failed} of {len(results)} input(s) failed", file=sys.stderr)
        return ExitCode.INPUT_FAILED
    if output_errors:
        print(f"har: {len(output_errors)} output file(s) could not be written", file=sys.stderr)
        return ExitCode.INPUT_FAILED
    if any(r.warnings for r in results):
        return ExitCode.PARTIAL
    return ExitCode.OK


def _write_to(target: str, write) -> None:
    """Run ``write(stream)`` on stdout ('-') or on FILE, replaced atomically."""
    if target == "-":
        write(sys.stdout)
        sys.stdout.flush()
        return
    with atomic_open(target, "w", newline="") as fh:
        write(fh)


def _plan_outputs(args: argparse.Namespace, sources: list[str], n_inputs: int
                  ) -> dict[str, dict[str, Path]]:
    """``{option: {source: output path}}`` for --annotate/--srt/--vtt/--plot.

    One input: the option names the file (or an existing directory to put it in).
    Several inputs (or a directory input): it must name a directory, created if
    missing, holding ``<stem><suffix>`` per input. Raises HarError (a usage error).
    """
    plan: dict[str, dict[str, Path]] = {}
    if getattr(args, "plot", None):
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise HarError("--plot needs matplotlib, which is not installed; "
                           f"install it with: {pip_hint('plot')}")
    for opt in ("json", "csv", "segments_csv"):  # fail before the work, not after it
        value = getattr(args, opt, None)
        if value and value != "-":
            parent = Path(value).parent
            if not parent.is_dir():
                raise HarError(f"--{opt.replace('_', '-')} {value}: directory {parent} does not "
                               "exist; create it or choose another path")
    many = n_inputs > 1 or any(Path(i).is_dir() for i in args.inputs)
    for opt, what, suffix in _PER_VIDEO_OUTPUTS:
        value = getattr(args, opt, None)
        if value is None:
            continue
        target = Path(value)
        as_dir = many or target.is_dir() or value.endswith(("/", os.sep))
        if not as_dir:
            if target.parent != Path("") and not target.parent.is_dir():
                raise HarError(f"--{opt} {value}: directory {target.parent} does not exist; "
                               "create it or choose another path")
            plan[opt] = {src: target for src in sources}
            continue
        if target.exists() and not target.is_dir():
            raise HarError(f"--{opt} {value}: with several inputs this must be a directory "
                           f"(one {what} per input, named <video>{suffix}); "
                           f"give a directory, e.g. --{opt} {target.with_suffix('')}_out/")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarError(f"--{opt} {value}: cannot create the directory "
                           f"({exc.strerror or exc}); choose another path") from None
        used: set[str] = set()
        per: dict[str, Path] = {}
        for src in sources:
            stem = Path(src.rstrip("/")).stem or "video"
            name, n = stem + suffix, 2
            while name in used:  # same file name in different folders
                name, n = f"{stem}-{n}{suffix}", n + 1
            used.add(name)
            per[src] = target / name
        plan[opt] = per
    return plan


def _write_video_outputs(result, plan: dict[str, dict[str, Path]], labels, args) -> list[str]:
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
                    print(f"note: {path}: {note}", file=sys.stderr)
            elif opt == "plot":
                from ..render import plot_timeline

                plot_timeline(result, labels, path, threshold=args.threshold)
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


