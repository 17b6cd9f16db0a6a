"""``har train``: fine-tune a model on your own classes, or train one from scratch."""

from __future__ import annotations

import argparse
import sys

from ..defaults import DEFAULT_MODEL
from . import ExitCode, UsageError, add_command
from .common import positive_int, signals_interrupt

EPILOG = """\
examples:
  har train clips/ --out runs/falls --val val/          one subfolder per class
  har train data/train --out runs/a --val data/test     DATA/train/<class>/..., not DATA:
                                                        train/ and test/ are not classes
  har train train.csv --out runs/a                      path,label[,start_s,end_s]
  har train UCF-101/ --layout ucf101 --split 1 --out runs/ucf1   (validates on testlist01)
  har train motion/ --out runs/m --scratch              from random weights (ResNet-18)
  har train clips/ --out runs/falls --resume            continue an interrupted run
  har train clips/ --out runs/order --head temporal --weights runs/falls/model.pth
  har predict video.mp4 --weights runs/falls/model.pth  uses the run's labels and preset
  har eval val/ --weights runs/falls/model.pth --json eval.json

DIR gets model.pth (with --val: the best epoch by validation; last.pth is the last
epoch), labels.txt, metrics.json, history.csv, curves.png and checkpoint.pth (what
--resume needs). See docs/train.md.
"""

# --scratch without --model: ResNet-18. The default ResNet-34 stayed at chance from
# scratch on the small generated motion set where ResNet-18 learned it (docs/train.md).
SCRATCH_MODEL = "r3d18-k400"


def _lr(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 10:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10, not {text}")
    return value


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.data import LAYOUTS

    g = p.add_argument_group("data")
    g.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="how DATA is organised (default auto: a folder = one subfolder per "
                        "class, .csv = path,label[,start_s,end_s], .txt = a split list)")
    g.add_argument("--split", type=int, choices=(1, 2, 3), default=1,
                   help="official split for --layout ucf101/hmdb51 (default 1)")
    g.add_argument("--splits-dir", metavar="DIR",
                   help="folder of the official split files (default: searched in and beside DATA)")


def register(sub) -> None:
    from ..defaults import FREEZE_POINTS, HEADS

    p = add_command(sub, "train", help="fine-tune on your own classes (or train from scratch)",
                    description="Train a model on DATA and write the run to --out DIR. "
                    "Clips are drawn at random positions with the authors' multi-scale "
                    "corner crop (and flip, see --flip); validation uses the test-time "
                    "recipe of `har predict`.", epilog=EPILOG)
    p.add_argument("data", metavar="DATA", help="training videos: a folder with one subfolder "
                   "per class, a CSV, or the UCF101/HMDB51 video folder (with --layout)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: new or empty (or, with --resume, a run to continue)")
    p.add_argument("--val", metavar="DATA", help="validation videos (same forms as DATA, or a "
                   "split list .txt with paths relative to DATA); default for ucf101/hmdb51: "
                   "the official test split")
    add_data_arguments(p)
    m = p.add_argument_group("model")
    m.add_argument("--model", default=None,
                   help=f"architecture from the zoo (default {DEFAULT_MODEL}; with --scratch "
                        f"{SCRATCH_MODEL}, which learns small datasets from random weights)")
    w = m.add_mutually_exclusive_group()
    w.add_argument("--weights", help="starting weights (.pth, .onnx or URL; a har model.pth "
                   "or run folder too); default: the model's published Kinetics-400 weights")
    w.add_argument("--scratch", action="store_true", default=None,
                   help="random initialisation, no weights")
    m.add_argument("--sha256", help="expected sha256 of --weights")
    m.add_argument("--freeze-through", choices=FREEZE_POINTS, default=None,
                   help="freeze the stem and stages up to this one (the authors' fine-tuning "
                        "begin point; default layer3 from weights, none from scratch, "
                        "layer4 for --head temporal)")
    m.add_argument("--head", choices=HEADS, default=None,
                   help="linear (default): fine-tune the clip classifier (and unfrozen "
                        "stages); temporal: freeze the backbone and learn a head over each "
                        "video's sequence of clips (for actions that only show over time)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=None,
                   help="default 12 from scratch, 8 fine-tuning, 60 for --head temporal")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help="clips per step (default 8 on CPU, 32 on CUDA)")
    t.add_argument("--lr", type=_lr, default=None,
                   help="peak learning rate (default 0.01 scratch, 0.003 fine-tuning, "
                        "0.001 temporal head); warm-up then cosine decay")
    t.add_argument("--clips-per-epoch", type=positive_int, default=None, metavar="N",
                   help="random clips per epoch at least (default 96; at least one per video)")
    t.add_argument("--flip", choices=("auto", "on", "off"), default=None,
                   help="mirror clips at random (default auto: on when fine-tuning, off from "
                        "scratch or when class names say left/right)")
    t.add_argument("--single-frame", action="store_true", default=None,
                   help="ablation: show the network one frame repeated (no motion)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                   help="mixed precision (default auto: bf16/fp16 where the device has it and "
                        "its gradients check out against fp32, else fp32)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    t.add_argument("--workers", type=positive_int, default=2,
                   help="videos decoded at once (default 2)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last finished epoch")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def input_files(specs, datasets, *, layout: str = "auto", splits_dir: str | None = None,
                weights: str | None = None) -> list[str]:
    """Every file a run reads: the DATA/--val files themselves (CSV, split list), the
    official split files, the videos, and a local --weights file. No output may be one
    of them (har never overwrites an input)."""
    import os
    from pathlib import Path

    from ..train.data import _find_splits

    files: list[str] = []
    for spec in specs:
        if not spec:
            continue
        spec = os.fspath(spec)
        if os.path.isfile(spec):
            files.append(spec)
        elif os.path.isdir(spec):
            for kind in ("ucf101", "hmdb51") if layout in ("auto", "ucf101", "hmdb51") else ():
                where = _find_splits(Path(spec), kind, splits_dir)
                if where is not None:
                    files += [str(p) for p in where.iterdir() if p.is_file()]
    if splits_dir and os.path.isdir(splits_dir):
        files += [str(p) for p in Path(splits_dir).iterdir() if p.is_file()]
    for ds in datasets:
        if ds is not None:
            files += [s.path for s in ds.samples]
    if weights and "://" not in str(weights) and os.path.isfile(weights):
        files.append(weights)
    return files


def load_train_data(args):
    """The training and validation datasets named on the command line."""
    from ..train.data import load_dataset

    train_set = load_dataset(args.data, layout=args.layout, split=args.split, subset="train",
                             splits_dir=args.splits_dir)
    val_set = None
    if args.val:
        root = args.data if train_set.layout in ("folder", "ucf101", "hmdb51") else None
        val_set = load_dataset(args.val, labels=train_set.labels, root=root)
    elif train_set.layout in ("ucf101", "hmdb51"):
        val_set = load_dataset(args.data, layout=train_set.layout, split=args.split,
                               subset="test", labels=train_set.labels,
                               splits_dir=args.splits_dir)
    return train_set, val_set


def cmd_train(args: argparse.Namespace) -> int:
    from .common import check_device

    check_device(args.device)
    from ..train.data import DatasetError
    from ..train.trainer import TrainOptions, train

    from ..errors import HarError, InputError, OutputError, WeightsError
    from ..fsutil import display_path
    from ..text import printable
    from ..train.trainer import prepare_out

    try:
        train_set, val_set = load_train_data(args)
    except DatasetError as exc:
        raise InputError(printable(exc)) from None
    if len(train_set.labels) < 2:
        raise InputError(f"{display_path(args.data)}: training needs at least 2 classes "
                         f"(found {len(train_set.labels)}: "
                         f"{printable(', '.join(train_set.labels))})")
    _check_out(args, input_files([args.data, args.val], [train_set, val_set],
                                 layout=args.layout, splits_dir=args.splits_dir,
                                 weights=args.weights))
    try:
        prepare_out(args.out, args.resume)
    except HarError as exc:
        raise UsageError(printable(exc)) from None
    counts = train_set.counts()
    first = ", ".join(f"{n} {c}" for n, c in zip(train_set.labels[:4], counts[:4]))
    # Printed with the run's first message, so a run refused at once (--resume with
    # changed settings) says only why.
    intro = [f"training on {len(train_set)} videos, {len(train_set.labels)} classes "
             f"({printable(first)}{', ...' if len(counts) > 4 else ''})"
             + (f"; validating on {len(val_set)}" if val_set is not None else
                "; no --val: metrics are on the training videos only")]
    intro += [f"note: {printable(note)}" for note in train_set.notes]

    def log(message: str) -> None:
        while intro:
            print(intro.pop(0), file=sys.stderr)
        print(printable(message), file=sys.stderr)
    # What the user set (None: not given), so --resume can refuse a changed setting
    # instead of silently keeping the run's own.
    explicit = {name: getattr(args, name) for name in (
        "model", "weights", "scratch", "sha256", "freeze_through", "head", "batch_size", "lr",
        "clips_per_epoch", "flip", "single_frame", "precision", "seed")}
    if explicit["model"] is None and args.scratch:
        explicit["model"] = SCRATCH_MODEL  # random weights learn small sets with ResNet-18
    options = TrainOptions(**{k: v for k, v in explicit.items() if v is not None},
                           epochs=args.epochs, device=args.device, workers=args.workers)
    progress = not args.no_progress and sys.stderr.isatty()
    from ..train.trainer import ResumeMismatch, RunWriteError, TrainingDiverged

    try:
        with signals_interrupt():  # SIGTERM stops like Ctrl-C
            result = train(train_set, args.out, options, val_set=val_set, resume=args.resume,
                           progress=progress, log=log, explicit=explicit)
    except KeyboardInterrupt:
        print(f"har train: interrupted; `--resume` continues {display_path(args.out)} from "
              "its last finished epoch", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except ResumeMismatch as exc:
        raise UsageError(printable(exc)) from None
    except RunWriteError as exc:  # the run folder cannot be written: an output error
        raise OutputError(printable(exc)) from None
    except TrainingDiverged as exc:  # the run failed (exit 1); not the model, not an input
        print(f"error: {printable(exc)}", file=sys.stderr)
        return int(ExitCode.OUTPUT)
    except WeightsError as exc:
        if args.scratch or args.weights or args.resume:
            raise
        # Fine-tuning starts from the published weights; offline without them, say
        # the other way to start.
        raise WeightsError(f"{exc}; or train from random weights with --scratch "
                           "(no download needed)") from None
    print(_result_line(result, printable(display_path(args.out))))
    warning = _chance_warning(result, train_set, val_set)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return int(ExitCode.OK)


def _result_line(result, out: str) -> str:
    """What was written and how good it is: the best epoch (model.pth) and the
    last (last.pth) when there was a validation set."""
    final = result.metrics.get("final", {})
    head = result.metrics.get("head")
    if head and head.get("val_video_acc") is not None:
        return (f"wrote {out}/model.pth: val video acc {head['val_video_acc']:.1%} (mean "
                f"pooling {head['val_video_acc_mean_pooling']:.1%})")
    rows = [h for h in result.history if h.get("val_video_acc") is not None]
    if not rows:
        return f"wrote {out}/model.pth (last epoch)"
    best = max(rows, key=lambda h: (h["val_video_acc"], -h.get("val_loss", 0.0),
                                    -h["epoch"]))
    return (f"wrote {out}/model.pth (best epoch {best['epoch']}: val video acc "
            f"{best['val_video_acc']:.1%}) and {out}/last.pth (epoch {final['epoch']}: "
            f"{final['val_video_acc']:.1%})")


def _chance_warning(result, train_set, val_set) -> str | None:
    """A line when the model did no better than guessing the commonest class."""
    if result.metrics.get("head"):
        return None
    rows = [h for h in result.history if h.get("val_video_acc") is not None]
    if rows and val_set is not None:
        counts = val_set.counts()
        chance = max(counts) / max(sum(counts), 1)
        best = max(h["val_video_acc"] for h in rows)
        if best <= chance + 1e-9:
            return (f"the best validation video accuracy, {best:.1%}, is at chance "
                    f"({chance:.1%} by always answering the commonest class): the model "
                    "has not learned. Try more epochs, a smaller model (--model "
                    "r3d10-k400) or another --lr")
        return None
    final = result.history[-1] if result.history else {}
    counts = train_set.counts()
    chance = max(counts) / max(sum(counts), 1)
    if final.get("train_acc") is not None and final["train_acc"] <= chance + 0.05:
        return (f"the training clip accuracy, {final['train_acc']:.1%}, is at chance "
                f"({chance:.1%}): the model has not learned. Try more epochs, a smaller "
                "model (--model r3d10-k400) or another --lr; give --val to measure it")
    return None


def _check_out(args, inputs: list[str]) -> None:
    """--out must not hold an input, and must not lie inside a DATA/--val folder (the
    run's files would become part of the data the next time the folder is read)."""
    import os
    from pathlib import Path

    from ..fsutil import display_path
    from ..text import printable
    from ..train.trainer import RUN_FILES
    from .common import check_not_input

    out = os.path.realpath(args.out)
    shown = printable(display_path(args.out))
    for spec in (args.data, args.val):
        if spec and os.path.isdir(spec):
            root = os.path.realpath(spec)
            if out == root or out.startswith(root.rstrip(os.sep) + os.sep):
                raise UsageError(f"--out {shown}: is inside the data folder "
                                 f"{printable(display_path(spec))}; the run's files would mix "
                                 "with the videos; choose a folder outside it")
    for path in inputs:
        if os.path.realpath(path) == out:
            raise UsageError(f"--out {shown}: that is one of the inputs; choose another "
                             "folder (har never overwrites an input)")
    for name in RUN_FILES:
        check_not_input("--out", str(Path(args.out) / name), inputs)

