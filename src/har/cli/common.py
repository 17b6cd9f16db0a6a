"""Argument groups and helpers shared by the commands (predict, live, index, serve, ...).

One place defines the model, runtime, clip and timeline options, so every front end
takes the same flags with the same defaults and the same checks.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

from ..defaults import AGGREGATES, BACKENDS, DEFAULT_MODEL, PRECISIONS, SMOOTHING
from ..fsutil import display_path, is_special, same_file
from ..text import fmt_time  # noqa: F401 (the commands take it from here)
from ..errors import OutputError
from . import UsageError

# Defaults of har.timeline.TimelineOptions, restated so the parser needs no numpy;
# tests/test_cli.py checks that the two agree.
TIMELINE_DEFAULTS = {"threshold": 0.3, "window": 3, "smoothing": "median",
                     "min_duration_s": 1.0, "max_gap_s": 1.0, "max_labels": 5}


# -- value types -------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {text}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 MB, not {text}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, not {value}")
    return value


# -- option groups -----------------------------------------------------------------
def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --weights, --sha256, --device, --backend, --precision, --batch-size."""
    g = p.add_argument_group("model and runtime")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name (default {DEFAULT_MODEL}; `har models` lists them)")
    g.add_argument("--weights", help="weights file (.pth/.onnx/.xml), a `har train` run "
                   "folder, or http(s) URL; default: the cached download")
    g.add_argument("--sha256", help="expected sha256 of --weights (pins a URL download)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    g.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                   help="inference runtime (default auto: the fastest installed for the "
                        "device: openvino on CPU when installed, torch on CUDA)")
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="numeric precision (default auto: bf16 with openvino on a CPU with "
                        "bf16 instructions, fp16 with torch on CUDA, else fp32)")
    g.add_argument("--batch-size", type=positive_int, default=None,
                   help="clips per inference batch (default: 4 on CPU, 64 on CUDA)")


def add_clip_arguments(p: argparse.ArgumentParser, *, sampler: bool = True) -> None:
    """--stride, --tail, --topk (and --sampler/--num-clips for finite videos)."""
    g = p.add_argument_group("clips")
    g.add_argument("--stride", type=positive_int, default=None,
                   help="frames between clip starts (default: the model's clip length, "
                        "so clips do not overlap: 16 for the 3D ResNets, 64 for i3d-k400)")
    g.add_argument("--tail", choices=("pad", "drop"), default="pad",
                   help="the last partial clip: pad (default; loop its frames, as the "
                        "authors' evaluation code, so every frame is covered) or drop "
                        "(full clips only, as their video tool and OpenCV's sample)")
    if sampler:
        g.add_argument("--sampler", choices=("sliding", "uniform"), default="sliding",
                       help="sliding window over the whole video (default) or N uniform clips")
        g.add_argument("--num-clips", type=positive_int, default=10,
                       help="clips for --sampler uniform (default 10)")
    g.add_argument("--topk", type=positive_int, default=5,
                   help="labels per video/clip (default 5)")
    g.add_argument("--max-latency", type=positive_seconds, default=None, metavar="S",
                   help="score a partly filled batch once its first clip has waited S "
                        "seconds (default: 0 for live sources, whatever is waiting is "
                        "scored at once; else only full batches)")


def add_timeline_arguments(p: argparse.ArgumentParser, *, files: bool = True) -> None:
    """Video score pooling and action segments; with ``files``, the per-video outputs."""
    d = TIMELINE_DEFAULTS
    g = p.add_argument_group(
        "timeline", "Action segments: each label's clip scores are smoothed over "
        "neighbouring clips and thresholded; nearby runs are merged and short ones dropped.")
    g.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                   help="video score from clip scores: mean (default, the paper's protocol), "
                   "max, or topk-mean (mean of the --aggregate-k best clips per class)")
    g.add_argument("--aggregate-k", type=positive_int, default=3, metavar="K",
                   help="clips for topk-mean, and evidence clips reported (default 3)")
    g.add_argument("--threshold", type=probability, default=d["threshold"], metavar="P",
                   help=f"smoothed clip probability a segment needs (default {d['threshold']})")
    g.add_argument("--smooth", type=positive_int, default=d["window"], metavar="N",
                   help=f"smoothing window in clips, centred; 1 = off (default {d['window']})")
    g.add_argument("--smooth-method", choices=SMOOTHING, default=d["smoothing"],
                   help=f"moving median or mean (default {d['smoothing']})")
    g.add_argument("--min-duration", type=seconds, default=d["min_duration_s"], metavar="S",
                   help=f"drop segments shorter than S seconds (default {d['min_duration_s']:g})")
    g.add_argument("--merge-gap", type=seconds, default=d["max_gap_s"], metavar="S",
                   help="merge same-label segments less than S seconds apart "
                   f"(default {d['max_gap_s']:g})")
    g.add_argument("--max-labels", type=positive_int, default=d["max_labels"], metavar="N",
                   help=f"at most N segments open at once (default {d['max_labels']})")


def timeline_options(args: argparse.Namespace):
    from ..timeline import TimelineOptions

    return TimelineOptions(threshold=args.threshold, window=args.smooth,
                           smoothing=args.smooth_method, min_duration_s=args.min_duration,
                           max_gap_s=args.merge_gap, max_labels=args.max_labels)


def run_options(args: argparse.Namespace):
    """The run's :class:`har.recognizer.RunOptions` from the clip and timeline options
    (a command without some of them gets the defaults for those)."""
    from ..recognizer import RunOptions

    d = RunOptions()
    return RunOptions(stride=getattr(args, "stride", None), topk=getattr(args, "topk", d.topk),
                      aggregate=getattr(args, "aggregate", d.aggregate),
                      aggregate_k=getattr(args, "aggregate_k", d.aggregate_k),
                      timeline=timeline_options(args) if hasattr(args, "threshold") else None,
                      tail=getattr(args, "tail", d.tail),
                      sampler=getattr(args, "sampler", d.sampler),
                      num_clips=getattr(args, "num_clips", d.num_clips),
                      max_latency_s=getattr(args, "max_latency", None))


# -- checks and construction -------------------------------------------------------
def _shown(path) -> str:
    """A path in a message: UTF-8, control characters escaped (har.text.printable)."""
    from ..text import printable

    return printable(display_path(path))


def check_device(device: str) -> None:
    """Usage error (exit 2) for a device that is malformed or not on this machine."""
    if not (device == "cpu" or device == "cuda" or
            (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"--device {device}: unknown device; use cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine "
                             "(no GPU, or a CPU-only PyTorch); use --device cpu")


def check_runtime_options(args: argparse.Namespace) -> None:
    """Usage errors (exit 2) in the device/backend/precision choice, before any loading."""
    device = args.device
    check_device(device)
    from ..runtimes import check_precision

    try:
        check_precision(args.backend, args.precision, device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_output_path(opt: str, value: str) -> None:
    """A one-line output error (exit 1) for an output path that cannot work, before
    any work is done: a folder that does not exist (or is a file), a name too long, a
    symbolic link loop, a directory where a file is wanted."""
    try:
        os.stat(value)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise OutputError(f"{opt} {_shown(value)}: the name is longer than this "
                              "system allows; choose a shorter one") from None
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{opt} {_shown(value)}: is a symbolic link loop; "
                              "choose another path") from None
    parent = Path(value).parent
    if not parent.is_dir():
        what = "is a file, not a directory" if parent.exists() else "does not exist"
        raise OutputError(f"{opt} {_shown(value)}: directory {_shown(parent)} "
                          f"{what}; create it or choose another path")
    if os.path.isdir(value):
        raise OutputError(f"{opt} {_shown(value)}: is a directory; give a file name")


def check_not_input(opt: str, value: str, inputs: list[str]) -> None:
    for path in inputs:
        if same_file(value, path):
            raise UsageError(f"{opt} {_shown(value)}: that is one of the inputs "
                             f"({_shown(path)}); choose another file name "
                             "(har never overwrites an input)")


def same_output(a: str, b: str) -> bool:
    """Whether two output paths write one file: the same path after resolving links,
    or two names of one existing file (a hard link). Special files (/dev/null) can be
    shared: nothing is replaced there."""
    if is_special(a) or is_special(b):
        return False
    return os.path.realpath(a) == os.path.realpath(b) or same_file(a, b)


def check_distinct_outputs(outputs: list[tuple[str, str]]) -> None:
    """A usage error when two options of one run name the same file (one would lose
    the other's content). ``outputs``: (option, path); '-' and None are skipped."""
    seen: list[tuple[str, str]] = []
    for opt, path in outputs:
        if not path or path == "-":
            continue
        for other_opt, other in seen:
            if same_output(path, other):
                raise UsageError(f"{opt} and {other_opt} both write {_shown(path)} (the "
                                 "same file); give them different files")
        seen.append((opt, path))


def clean_stale_temps(outputs) -> None:
    """At start-up: remove the temporary files a killed har left (its process is gone)
    in the system's temporary folder and beside each of this run's ``outputs``."""
    import tempfile

    from ..fsutil import remove_stale_temps

    folders = {tempfile.gettempdir()}
    for out in outputs:
        if out and out != "-" and not is_special(out):
            folders.add(out if os.path.isdir(out) else os.path.dirname(out) or ".")
    for folder in folders:
        remove_stale_temps(folder)


def make_recognizer(args: argparse.Namespace, **overrides):
    """A Recognizer from the model, clip and timeline options (a ModelError, exit 4,
    if the model, its weights or its runtime cannot be loaded)."""
    from ..recognizer import Recognizer

    opts = run_options(args)
    kw = dict(weights=args.weights, device=args.device, batch_size=args.batch_size,
              sha256=args.sha256, backend=args.backend, precision=args.precision,
              stride=opts.stride, topk=opts.topk, sampler=opts.sampler,
              num_clips=opts.num_clips, tail=opts.tail, max_latency_s=opts.max_latency_s,
              aggregate=opts.aggregate, aggregate_k=opts.aggregate_k, timeline=opts.timeline)
    kw.update(overrides)
    from ..errors import HarError, ModelError

    try:
        rec = Recognizer(args.model, **kw)
    except HarError as exc:
        if type(exc) is HarError:  # unclassified, while loading the model: a model error
            raise ModelError(str(exc)) from None
        raise
    if getattr(args, "stride", None) is None and hasattr(args, "stride"):
        args.stride = rec.stride  # the model's default, for the outputs' settings
    return rec


def progress_bar(enabled: bool, label: str, total: int | None = None, unit: str = "frame"):
    """``(update(n), close())`` drawing a tqdm bar on stderr, or no-ops."""
    if not enabled:
        return (lambda n, *_: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=False,
               dynamic_ncols=True)
    return (lambda n, *_: bar.update(n)), bar.close


@contextlib.contextmanager
def signals_interrupt():
    """SIGTERM stops the run like Ctrl-C (outputs are still written)."""
    def on_term(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_ignored():
    """While the final outputs are written: a second Ctrl-C or SIGTERM must not cut
    them short."""
    saved = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved.append((sig, signal.signal(sig, signal.SIG_IGN)))
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in saved:
            signal.signal(sig, handler)


# -- per person (har.persons; docs/persons.md): predict and live -----------------------
# --detect-every's default: every frame of a file; every 5th of a live stream, where a
# detection must never hold the reader back
DETECT_EVERY = {"file": 1, "live": 5}


def add_person_arguments(p, *, live: bool) -> None:
    """The --persons options of `har predict` (``live=False``: also --tracks, --mot and
    --ava, which belong to one file) and `har live`."""
    every = DETECT_EVERY["live" if live else "file"]
    g = p.add_argument_group("per person", "Find the people in each video, follow them and "
                             "recognize each one's action in a square crop around them "
                             "(docs/persons.md). --jsonl then has person_start/"
                             "person_clip/person_end events"
                             + ("." if live else "; the JSON has a 'persons' list per video."))
    g.add_argument("--persons", action="store_true",
                   help="recognize each person's action instead of the whole frame's "
                        "(one source)" if live else
                        "recognize each person's action, besides the whole frame's")
    if not live:
        g.add_argument("--tracks", metavar="FILE",
                       help="use these person tracks (MOTChallenge text: frame,id,left,top,"
                            "width,height,conf,... with frames from 1) instead of detecting; "
                            "one input only; implies --persons")
    g.add_argument("--detector", metavar="hog|hog-fast|FILE.onnx", default="hog",
                   help="person detector: 'hog' (built in, no download; default), "
                        "'hog-fast' (4-6x faster, finds fewer people) or a YOLOX or "
                        "ultralytics ONNX file")
    g.add_argument("--detect-every", type=positive_int, default=every, metavar="N",
                   help=f"run the detector on every N-th frame (default {every}); the "
                        "tracker predicts the frames between"
                        + ("; a detection that would fall behind the stream is skipped, "
                           "never queued" if live else ""))
    if not live:
        g.add_argument("--mot", metavar="FILE",
                       help="write the tracks har followed as MOTChallenge text (one input "
                            "only); --tracks reads it back")
        g.add_argument("--ava", metavar="FILE",
                       help="write one CSV row per person, second and label in the AVA "
                            "layout: video_id,timestamp,x1,y1,x2,y2,action_id,person_id,"
                            "score ('-' for stdout)")
    p.set_defaults(_detect_every_default=every)


def check_person_options_unused(args) -> None:
    """Without --persons: a usage error for the options that only --persons reads."""
    for opt in ("mot", "ava"):
        if getattr(args, opt, None):
            raise UsageError(f"--{opt} writes per-person results; add --persons")
    if args.detector != "hog" or args.detect_every != args._detect_every_default:
        raise UsageError("--detector and --detect-every choose how --persons finds "
                         "people; add --persons")
