"""The ``har`` command line. A thin shell: parse -> library call -> writer.

Tests call :func:`main` in-process with an argument list.
"""

from __future__ import annotations

import argparse
import csv
import enum
import json
import os
import sys
from pathlib import Path
from typing import Sequence, TextIO

from . import __version__
from .backends import BACKENDS, PRECISIONS
from .errors import HarError


class ExitCode(enum.IntEnum):
    OK = 0  # every input fully processed
    INPUT_FAILED = 1  # at least one input could not be processed
    USAGE = 2  # bad command line (argparse's own code)
    PARTIAL = 3  # every input gave results, but some only in part (damaged/truncated)
    MODEL = 4  # the model or its weights could not be loaded


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .models.zoo import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="har", description="Recognize human actions (Kinetics-400) in videos.")
    parser.add_argument("--version", action="version", version=f"har {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("predict", help="recognize actions in videos, files or directories",
                       description="Recognize actions in videos. Prints a table per video; "
                                   "--json/--csv write machine-readable results.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help="video files, directories (searched recursively) or http(s) URLs")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL}; "
                   "`har models` lists them)")
    p.add_argument("--weights", help="weights file (.pth/.onnx) or http(s) URL; "
                   "default: the cached download")
    p.add_argument("--sha256", help="expected sha256 of --weights (pins a URL download)")
    p.add_argument("--stride", type=_positive_int, default=16,
                   help="frames between clip starts (default 16: non-overlapping clips)")
    p.add_argument("--sampler", choices=("sliding", "uniform"), default="sliding",
                   help="sliding window over the whole video (default) or N uniform clips")
    p.add_argument("--num-clips", type=_positive_int, default=10,
                   help="clips for --sampler uniform (default 10)")
    p.add_argument("--topk", type=_positive_int, default=5, help="labels per video/clip (default 5)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                   help="inference runtime (default auto: the fastest installed for the "
                        "device: openvino on CPU when installed, torch on CUDA)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="numeric precision (default auto: bf16 with openvino on a CPU with "
                        "bf16 instructions, fp16 with torch on CUDA, else fp32)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="clips per inference batch (default: 4 on CPU, 64 on CUDA)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="videos decoded at once (default 1; more keeps a many-core or GPU "
                        "machine busy on many short videos)")
    p.add_argument("--json", metavar="FILE", help="write JSON results to FILE ('-' for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write one row per clip to FILE ('-' for stdout)")
    p.add_argument("--clips", type=int, default=30, metavar="N",
                   help="show at most N clip rows per video in the table (default 30; 0 hides)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_timeline_arguments(p)
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("export", help="export a model to ONNX or OpenVINO IR",
                       description="Export a zoo model with its weights, dynamic batch axis: "
                                   "input 'clips' (N, 3, T, H, W), output 'logits' (N, C).")
    e.add_argument("format", choices=("onnx", "openvino"))
    e.add_argument("-o", "--output", required=True,
                   help="output file (.onnx, or .xml for OpenVINO; a .bin is written beside it)")
    e.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    e.add_argument("--weights", help="weights file or URL (default: the cached download)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="OpenVINO IR weight precision (default fp32)")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("models", help="list the available models")
    m.add_argument("--json", action="store_true", help="print the registry as JSON")
    m.set_defaults(func=cmd_models)
    _add_weights_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("har: interrupted", file=sys.stderr)
        return 130
    except HarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.MODEL)
    except BrokenPipeError:  # e.g. `har predict ... | head`
        return int(ExitCode.OK)


# -- predict --------------------------------------------------------------------
def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HarError(f"--device {device}: CUDA is not available on this machine "
                       "(no GPU, or a CPU-only PyTorch); use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise HarError(f"--device {device}: unknown device; use cpu, cuda or cuda:N")


def _progress_bar(enabled: bool, label: str):
    """A progress callback drawing a tqdm bar on stderr, and a closer."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    state: dict = {}

    def update(n: int, info) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=info.frames, desc=label, unit="frame",
                                      file=sys.stderr, leave=False, dynamic_ncols=True)
        bar.update(n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def cmd_predict(args: argparse.Namespace) -> int:
    from .recognizer import Recognizer
    from .results import VideoResult, to_json_doc
    from .video import expand_inputs

    _check_device(args.device)
    json_to_stdout = args.json == "-"
    csv_to_stdout = args.csv == "-"
    if json_to_stdout and csv_to_stdout:
        raise HarError("--json - and --csv - both want stdout; send one of them to a file")
    if args.segments_csv == "-" and (json_to_stdout or csv_to_stdout):
        raise HarError("--segments-csv - and --json -/--csv - all want stdout; "
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
    recognizer = Recognizer(args.model, weights=args.weights, device=args.device,
                            stride=args.stride, topk=args.topk, sampler=args.sampler,
                            num_clips=args.num_clips, batch_size=args.batch_size,
                            sha256=args.sha256, aggregate=args.aggregate,
                            backend=args.backend, precision=args.precision,
                            aggregate_k=args.aggregate_k, timeline=_timeline_options(args))
    results: list[VideoResult] = [VideoResult(path=item, error=msg) for item, msg in input_errors]
    for item, msg in input_errors:
        print(f"error: {msg}", file=sys.stderr)
    show_progress = not args.no_progress and sys.stderr.isatty()
    position = {src: i for i, src in enumerate(sources, 1)}
    closers: dict = {}

    def progress_for(src: str):
        if not show_progress or args.workers > 1:
            return None
        update, closers[src] = _progress_bar(True, f"[{position[src]}/{len(sources)}] "
                                             f"{Path(src).name}")
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
            write_table(result, table_out, max_clips=args.clips)
        for msg in _write_video_outputs(result, output_plan, recognizer.labels, args):
            output_errors.append(msg)
            print(f"error: {msg}", file=sys.stderr)
    if overall is not None:
        overall.close()
    if args.json:
        doc = to_json_doc(args.model, results,
                          settings={"stride": args.stride, "sampler": args.sampler,
                                    "clip_len": recognizer.preset.clip_len,
                                    "topk": args.topk, "backend": recognizer.backend.name,
                                    "precision": recognizer.backend.precision,
                                    "device": args.device, **_timeline_settings(args)})
        writes = [("json", args.json, lambda t: _write_text(
            t, json.dumps(doc, indent=2, ensure_ascii=False) + "\n"))]
    else:
        writes = []
    writes += [("csv", args.csv, lambda t: _write_csv(t, results)),
               ("segments-csv", args.segments_csv, lambda t: _write_segments_csv(t, results))]
    for opt, target, write in writes:
        if not target:
            continue
        try:
            write(target)
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


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:05.2f}"


def write_table(result, out: TextIO, max_clips: int = 30) -> None:
    """A readable summary of one video."""
    fps = f"{result.fps:.2f} fps" if result.fps else "? fps"
    out.write(f"\n{result.path}\n  {result.width}x{result.height}, {fps}, {result.frames} frames, "
              f"{_fmt_time(result.duration_s)}, {result.codec}, {len(result.clips)} clips\n")
    width = max(len(p.label) for p in result.top)
    for rank, p in enumerate(result.top, 1):
        bar = "#" * int(round(p.score * 20))
        out.write(f"  {rank}. {p.label:<{width}}  {p.score:6.1%}  {bar}\n")
    if max_clips > 0 and result.clips:
        out.write("  clip  frames          time                top-1\n")
        shown = result.clips if len(result.clips) <= max_clips else result.clips[:max_clips]
        for c in shown:
            t = c.top[0]
            out.write(f"  {c.index:>4}  {c.start_frame:>6}-{c.end_frame:<7} "
                      f"{_fmt_time(c.start_s):>8}-{_fmt_time(c.end_s):<9}  "
                      f"{t.label} ({t.score:.1%})\n")
        if len(result.clips) > len(shown):
            out.write(f"  ... {len(result.clips) - len(shown)} more clips (--clips N, or --json)\n")
    write_segment_table(result, out)


def _write_text(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(target).write_text(text, encoding="utf-8")


def _write_rows(target: str, header: list[str], results, rows) -> None:
    """A CSV of ``header`` + error column: ``rows(result)`` yields each video's rows
    (without the path); a video that failed gets one row holding its error."""
    fh = sys.stdout if target == "-" else open(target, "w", newline="", encoding="utf-8")
    try:
        w = csv.writer(fh)
        w.writerow(["path", *header, "error"])
        for r in results:
            if not r.ok:
                w.writerow([r.path, *[""] * len(header), r.error])
                continue
            for row in rows(r):
                w.writerow([r.path, *row, ""])
    finally:
        if fh is not sys.stdout:
            fh.close()


def _write_csv(target: str, results) -> None:
    _write_rows(target, ["clip", "start_frame", "end_frame", "start_s", "end_s", "rank",
                         "label", "score"], results,
                lambda r: ([c.index, c.start_frame, c.end_frame, f"{c.start_s:.4f}",
                            f"{c.end_s:.4f}", rank, p.label, f"{p.score:.6f}"]
                           for c in r.clips for rank, p in enumerate(c.top, 1)))


# -- timelines: segments, evidence, annotated video, subtitles, plots (har.timeline) ---
# Per-video outputs: option name, what one output is, and its file name in
# directory mode (one output per input: <input stem><suffix>).
_PER_VIDEO_OUTPUTS = (("annotate", "annotated video", ".annotated.mp4"),
                      ("srt", "SRT subtitle file", ".srt"), ("vtt", "WebVTT file", ".vtt"),
                      ("plot", "plot", ".png"))


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {value}")
    return value


def _add_timeline_arguments(p: argparse.ArgumentParser) -> None:
    from .aggregate import AGGREGATES
    from .timeline import SMOOTHING, TimelineOptions

    d = TimelineOptions()
    g = p.add_argument_group(
        "timeline", "Action segments (in the table, the JSON and the outputs below): each "
        "label's clip scores are smoothed over neighbouring clips and thresholded; nearby "
        "runs are merged and short ones dropped. With several inputs, --annotate/--srt/"
        "--vtt/--plot take a directory and write one file per input, named after it.")
    g.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                   help="video score from clip scores: mean (default, the paper's protocol), "
                   "max, or topk-mean (mean of the --aggregate-k best clips per class)")
    g.add_argument("--aggregate-k", type=_positive_int, default=3, metavar="K",
                   help="clips for topk-mean, and evidence clips reported (default 3)")
    g.add_argument("--threshold", type=_probability, default=d.threshold, metavar="P",
                   help=f"smoothed clip probability a segment needs (default {d.threshold})")
    g.add_argument("--smooth", type=_positive_int, default=d.window, metavar="N",
                   help=f"smoothing window in clips, centred; 1 = off (default {d.window})")
    g.add_argument("--smooth-method", choices=SMOOTHING, default=d.smoothing,
                   help=f"moving median or mean (default {d.smoothing})")
    g.add_argument("--min-duration", type=_seconds, default=d.min_duration_s, metavar="S",
                   help=f"drop segments shorter than S seconds (default {d.min_duration_s:g})")
    g.add_argument("--merge-gap", type=_seconds, default=d.max_gap_s, metavar="S",
                   help="merge same-label segments less than S seconds apart "
                   f"(default {d.max_gap_s:g})")
    g.add_argument("--max-labels", type=_positive_int, default=d.max_labels, metavar="N",
                   help=f"at most N different labels get segments (default {d.max_labels})")
    g.add_argument("--annotate", metavar="OUT",
                   help="write the video with the actions drawn on it (MP4; .mkv/.mov also)")
    g.add_argument("--srt", metavar="FILE", help="write SubRip subtitles, one cue per segment")
    g.add_argument("--vtt", metavar="FILE", help="write WebVTT subtitles, one cue per segment")
    g.add_argument("--plot", metavar="FILE.png",
                   help="plot the top actions' probabilities over time (needs har[plot])")
    g.add_argument("--segments-csv", metavar="FILE",
                   help="write one row per segment to FILE ('-' for stdout)")


def _timeline_options(args: argparse.Namespace):
    from .timeline import TimelineOptions

    return TimelineOptions(threshold=args.threshold, window=args.smooth,
                           smoothing=args.smooth_method, min_duration_s=args.min_duration,
                           max_gap_s=args.merge_gap, max_labels=args.max_labels)


def _timeline_settings(args: argparse.Namespace) -> dict:
    """For the JSON document's ``settings``."""
    return {"aggregate": args.aggregate, "aggregate_k": args.aggregate_k,
            "segments": {"threshold": args.threshold, "smooth": args.smooth,
                         "smooth_method": args.smooth_method,
                         "min_duration_s": args.min_duration, "merge_gap_s": args.merge_gap,
                         "max_labels": args.max_labels}}


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
                           "install it with: pip install 'har[plot]'")
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
    from .timeline import to_srt, to_vtt

    errors: list[str] = []
    if not result.ok:
        return errors
    for opt, per in plan.items():
        path = per.get(result.path)
        if path is None:
            continue
        try:
            if opt == "annotate":
                from .render import annotate_video

                stats = annotate_video(result, path)
                for note in stats.notes:
                    print(f"note: {path}: {note}", file=sys.stderr)
            elif opt == "plot":
                from .render import plot_timeline

                plot_timeline(result, labels, path, threshold=args.threshold)
            else:
                text = to_srt(result.segments) if opt == "srt" else to_vtt(result.segments)
                path.write_text(text, encoding="utf-8")
        except HarError as exc:
            errors.append(str(exc))
        except OSError as exc:
            errors.append(f"{path}: cannot be written ({exc.strerror or exc}); "
                          "check the path and that the directory is writable")
        except Exception as exc:  # a bug must not lose the other outputs
            errors.append(f"{path}: internal error writing --{opt} for {result.path} "
                          f"({type(exc).__name__}: {exc}); please report it")
    return errors


def _write_segments_csv(target: str, results) -> None:
    _write_rows(target, ["label", "start_s", "end_s", "duration_s", "mean_score",
                         "peak_score", "start_clip", "end_clip"], results,
                lambda r: ([s.label, f"{s.start_s:.4f}", f"{s.end_s:.4f}",
                            f"{s.duration_s:.4f}", f"{s.mean_score:.6f}",
                            f"{s.peak_score:.6f}", s.start_clip, s.end_clip]
                           for s in r.segments))


def write_segment_table(result, out: TextIO) -> None:
    """The evidence behind the video's top label, and the action segments."""
    if result.evidence and result.top:
        out.write(f"  evidence for {result.top[0].label}: clip(s) "
                  f"{', '.join(str(i) for i in result.evidence)}\n")
    if not result.segments:
        out.write("  segments: none above the threshold (try --threshold)\n")
        return
    width = max(len(s.label) for s in result.segments)
    out.write(f"  {'segment':<{width}}  {'time':^19}  {'length':>7}  {'mean':>6}  "
              f"{'peak':>6}  clips\n")
    for s in result.segments:
        out.write(f"  {s.label:<{width}}  {_fmt_time(s.start_s):>8}-{_fmt_time(s.end_s):<10} "
                  f"{s.duration_s:6.1f}s  {s.mean_score:6.1%}  {s.peak_score:6.1%}  "
                  f"{s.start_clip}-{s.end_clip}\n")


# -- models ---------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from .backends import export_onnx, export_openvino
    from .models.zoo import get_entry, load_model

    entry = get_entry(args.model)
    model = load_model(args.model, weights=args.weights)
    shape = (entry.preset.clip_len, entry.preset.crop, entry.preset.crop)
    out = Path(args.output)
    if args.format == "onnx":
        export_onnx(model, out, shape)
    else:
        export_openvino(model, out, shape, compress_to_fp16=args.precision == "fp16")
    print(f"wrote {out} ({args.format}, input clips (N, 3, {shape[0]}, {shape[1]}, {shape[2]}))")
    return ExitCode.OK


def cmd_models(args: argparse.Namespace) -> int:
    from .models.zoo import DEFAULT_MODEL, REGISTRY

    if args.json:
        print(json.dumps([e.to_dict() for e in REGISTRY.values()], indent=2))
        return ExitCode.OK

    def acc(e) -> str:
        if e.top1 is None:
            return "paper, Table 3" if "Table 3" in e.accuracy else "not reported"
        top5 = f" / {e.top5}%" if e.top5 is not None else ""
        src = "Hara et al. 2018" if e.name.startswith("r3d") else "torchvision"
        return f"{e.top1}%{top5} ({src})"

    rows = [("name", "weights", "top-1 / top-5 (Kinetics-400 val)", "model")]
    rows += [(e.name + (" *" if e.name == DEFAULT_MODEL else ""), e.weights_source, acc(e),
              e.description) for e in REGISTRY.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths)) + "  " + r[3])
    print(f"* default model. `har models --json` gives URLs, sizes, sha256, presets and "
          "the accuracy sources.")
    return ExitCode.OK


# -- weights: fetch / verify / list (har.weights) -----------------------------------
def _add_weights_parser(sub) -> None:
    w = sub.add_parser("weights", help="download, list and verify cached weights",
                       description="Manage the weights cache ($HAR_HOME, else "
                                   "$XDG_CACHE_HOME/har, else ~/.cache/har).")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    f = wsub.add_parser("fetch", help="download a model's weights into the cache")
    f.add_argument("names", nargs="+", metavar="NAME", help="model name(s) (`har models`)")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    f.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    f.set_defaults(func=cmd_weights_fetch)
    v = wsub.add_parser("verify", help="re-check every cached file (size and sha256)")
    v.set_defaults(func=cmd_weights_verify)
    ls = wsub.add_parser("list", help="show the cached weights files")
    ls.set_defaults(func=cmd_weights_list)


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .models.zoo import get_entry
    from .weights import fetch

    for name in args.names:
        entry = get_entry(name)
        path = fetch(entry, force=args.force,
                     progress=False if args.no_progress else None)
        print(f"{entry.name}: {path}")
    return ExitCode.OK


def cmd_weights_list(args: argparse.Namespace) -> int:
    from .weights import list_cache, weights_dir

    rows = list_cache()
    if not rows:
        print(f"no weights cached in {weights_dir()} (`har weights fetch NAME`)")
        return ExitCode.OK
    print(f"{weights_dir()}:")
    for r in rows:
        used = ", ".join(r.models) if r.models else "(--weights URL download)"
        if r.path.name.endswith(".part"):
            used = "(incomplete download)"
        print(f"  {r.path.relative_to(weights_dir())}  {r.size:,} bytes  {used}")
    return ExitCode.OK


def cmd_weights_verify(args: argparse.Namespace) -> int:
    from .weights import verify_cache, weights_dir

    rows = verify_cache()
    if not rows:
        print(f"no weights cached in {weights_dir()}")
        return ExitCode.OK
    bad = 0
    for r in rows:
        bad += r.status.startswith("BAD")
        print(f"{r.status:<10}  {r.path}")
    if bad:
        print(f"har: {bad} damaged file(s): delete them and run `har weights fetch NAME`, "
              "or pass a good copy with --weights FILE", file=sys.stderr)
        return ExitCode.INPUT_FAILED
    return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
