"""``har eval``: accuracy on labelled videos; segment mAP against ActivityNet ground truth."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..fsutil import display_path
from ..text import printable
from ..errors import InputError
from . import ExitCode, UsageError, add_command, worst
from .common import (add_clip_arguments, add_model_arguments, add_timeline_arguments,
                     check_distinct_outputs, check_not_input, check_output_path,
                     clean_stale_temps,
                     check_runtime_options,
                     make_recognizer, progress_bar)

EPILOG = """\
examples:
  har eval val/ --weights runs/falls/model.pth --json eval.json
      (also writes eval.confusion.png and eval.confusion.csv beside it)
  har eval UCF-101/ --layout ucf101 --split 1 --weights runs/ucf1/model.pth
  har eval test.csv --weights model.pth --confusion-png cm.png --confusion-csv cm.csv
  har eval videos/ --segments activity_net.v1-3.min.json --subset validation --json det.json

Clip and video top-1/top-5, mean class accuracy, a per-class table and the confusion
matrix, computed through the same pipeline as `har predict`. With --segments, DATA is
any videos (files or folders) and their predicted segments are scored by mAP at tIoU
0.5:0.05:0.95, as ActivityNet's evaluation does.
"""


def register(sub) -> None:
    from .train import add_data_arguments

    p = add_command(sub, "eval", help="accuracy and confusion matrix on labelled videos; "
                    "segment mAP (ActivityNet)", description="Evaluate a model on DATA "
                    "(labelled like `har train` DATA; the official test split for "
                    "--layout ucf101/hmdb51).", epilog=EPILOG)
    p.add_argument("data", metavar="DATA", nargs="+",
                   help="labelled videos (folder of class subfolders, CSV, split list); "
                        "with --segments: any video files or folders")
    add_data_arguments(p)
    o = p.add_argument_group("outputs")
    o.add_argument("--json", metavar="FILE", help="the full report as JSON (and, unless named "
                   "below, FILE's .confusion.png and .confusion.csv beside it)")
    o.add_argument("--confusion-png", metavar="FILE", help="confusion matrix as a PNG image")
    o.add_argument("--confusion-csv", metavar="FILE", help="confusion matrix as CSV")
    o.add_argument("--segments", metavar="GT.json",
                   help="ActivityNet v1.3 ground truth: score predicted segments by mAP")
    o.add_argument("--subset", default=None,
                   help="with --segments: only the ground truth's videos of this subset "
                        "(e.g. validation)")
    o.add_argument("--no-progress", action="store_true", help="no progress output")
    add_model_arguments(p)
    add_clip_arguments(p, sampler=True)
    add_timeline_arguments(p, files=False)
    p.set_defaults(func=cmd_eval)


def _beside(json_path: str, suffix: str, taken=()) -> str:
    """``eval.json`` -> ``eval.confusion.png``; an existing file, or one another output
    of the run names (``taken``), is never replaced: ``eval.confusion-2.png`` and so on."""
    base = json_path[:-5] if json_path.lower().endswith(".json") else json_path
    stem, ext = f"{base}.confusion", suffix
    candidate, n = f"{stem}{ext}", 2
    while os.path.lexists(candidate) or any(
            t and os.path.abspath(t) == os.path.abspath(candidate) for t in taken):
        candidate, n = f"{stem}-{n}{ext}", n + 1
    return candidate


def _check_outputs(args, inputs: list[str]) -> None:
    """Every output can be written, is none of the inputs (DATA's CSV or split files,
    --segments, --weights, a video), and no two options name one file."""
    inputs = list(inputs) + [f for f in (args.segments, args.weights)
                             if f and os.path.isfile(f)]
    named = []
    for opt in ("json", "confusion_png", "confusion_csv"):
        value = getattr(args, opt)
        if value is None or value == "-":
            continue
        flag = "--" + opt.replace("_", "-")
        check_output_path(flag, value)
        check_not_input(flag, value, inputs)
        named.append((flag, value))
    check_distinct_outputs(named)
    clean_stale_temps([v for _, v in named])
    if args.confusion_png and not args.confusion_png.lower().endswith(".png"):
        raise UsageError(f"--confusion-png {printable(display_path(args.confusion_png))}: "
                         "name a .png file")


def cmd_eval(args: argparse.Namespace) -> int:
    check_runtime_options(args)
    from ..fsutil import display_path
    from ..train.data import DatasetError, load_dataset

    if args.segments:
        return _cmd_detection(args)
    if len(args.data) != 1:
        raise UsageError("give one labelled DATA (folder, CSV or split list); several "
                         "inputs only with --segments")
    try:
        dataset = load_dataset(args.data[0], layout=args.layout, split=args.split,
                               subset="test", splits_dir=args.splits_dir)
    except DatasetError as exc:
        raise InputError(printable(exc)) from None
    from .train import input_files

    _check_outputs(args, input_files(args.data, [dataset], layout=args.layout,
                                     splits_dir=args.splits_dir))
    rec = make_recognizer(args)
    from ..train.evaluate import evaluate

    update, close = progress_bar(not args.no_progress and sys.stderr.isatty(), "eval",
                                 total=len(dataset), unit="video")
    try:
        run = evaluate(rec, dataset, progress=lambda name: update(1))
    finally:
        close()
    report = run.report
    for f in report["failed"]:
        print(f"error: {printable(f['error'])}", file=sys.stderr)
    png, csv_path = args.confusion_png, args.confusion_csv
    if args.json and args.json != "-":
        png = png or _beside(args.json, ".png", taken=(args.json, csv_path))
        csv_path = csv_path or _beside(args.json, ".csv", taken=(args.json, png))
    written = True
    if png:
        from ..plots import confusion_png
        from ..train.evaluate import model_title

        written &= _write("--confusion-png", png, lambda: confusion_png(
            png, run.confusion, run.labels,
            title=f"{model_title(rec)} on {Path(report['data']).name}"))
        report["confusion_png"] = display_path(png)
    if csv_path:
        from ..metrics import write_confusion_csv

        written &= _write("--confusion-csv", csv_path,
                          lambda: write_confusion_csv(csv_path, run.confusion, run.labels))
        report["confusion_csv"] = display_path(csv_path)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
        if args.json:
            written &= _write("--json", args.json, lambda: _dump_json(args.json, report))
    return int(worst(ExitCode.OUTPUT if not written else ExitCode.OK,
                     ExitCode.INPUT if report["failed"] else ExitCode.OK))


def _pct(x) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def _print_report(r: dict) -> None:
    print(f"{printable(r['model'])} on {printable(r['data'])}: {r['videos']} videos, "
          f"{r['clips']} clips "
          f"(video score: {r['video_score']})")
    print(f"  clip   top-1 {_pct(r['clip']['top1'])}   top-5 {_pct(r['clip']['top5'])}")
    print(f"  video  top-1 {_pct(r['video']['top1'])}   top-5 {_pct(r['video']['top5'])}   "
          f"mean class accuracy {_pct(r['video']['mean_class_accuracy'])}")
    width = max([len(printable(c["label"])) for c in r["per_class"]] + [5])
    print(f"  {'class':<{width}}  videos  correct  accuracy")
    for c in r["per_class"]:
        print(f"  {printable(c['label']):<{width}}  {c['support']:6d}  {c['correct']:7d}  "
              f"{_pct(c['accuracy'])}")


def _cmd_detection(args: argparse.Namespace) -> int:
    from ..metrics import activitynet_map, load_activitynet_ground_truth, video_id_for
    from ..sources import resolve_inputs
    from ..writers import activitynet_doc

    try:
        gt, _ = load_activitynet_ground_truth(args.segments, subset=args.subset)
    except (OSError, ValueError) as exc:
        raise InputError(f"--segments {printable(display_path(args.segments))}: "
                         f"{printable(exc)}") from None
    sources, errors = resolve_inputs(args.data)
    for _, msg in errors:
        print(f"error: {printable(msg)}", file=sys.stderr)
    sources = [s for s in sources if video_id_for(s.text) in gt]
    if not sources:
        raise UsageError("none of the videos is in the ground truth (video ids are file "
                         "names without extension and without a leading v_)")
    _check_outputs(args, [s.url for s in sources if s.local] +
                   [d for d in args.data if os.path.isfile(d)])
    rec = make_recognizer(args)
    results = list(rec.predict_many(sources))
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {printable(r.error)}", file=sys.stderr)
    preds = activitynet_doc(results)["results"]
    scored = {vid: gt[vid] for vid in preds}
    m = activitynet_map(scored, preds)
    report = {"schema": "har.eval/1", "model": rec.model_name, "ground_truth": args.segments,
              "subset": args.subset, "videos": len(preds), "failed": len(failed),
              "detection": m}
    print(f"{printable(rec.model_name)}: {len(preds)} videos; average mAP "
          f"{m['average_map']:.4f} over "
          f"tIoU {m['thresholds'][0]:.2f}:{m['thresholds'][-1]:.2f}")
    for t, v in zip(m["thresholds"], m["map"]):
        print(f"  mAP@{t:.2f} {v:.4f}")
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    elif args.json and not _write("--json", args.json, lambda: _dump_json(args.json, report)):
        return int(worst(ExitCode.OUTPUT, ExitCode.INPUT if failed or errors else ExitCode.OK))
    return int(ExitCode.INPUT if failed or errors else ExitCode.OK)


def _dump_json(path: str, doc: dict) -> None:
    from ..fsutil import atomic_open

    with atomic_open(path) as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def _write(flag: str, path: str, write) -> bool:
    """Run ``write``; a file that cannot be written (a full disk) is one line, and
    whatever was there before is still whole (every writer is atomic)."""
    from ..fsutil import display_path

    try:
        write()
        return True
    except OSError as exc:
        print(f"error: {flag} {printable(display_path(path))}: cannot be written "
              f"({exc.strerror or exc}); check the path and the free space", file=sys.stderr)
        return False
