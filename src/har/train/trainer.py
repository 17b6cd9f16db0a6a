"""Fine-tuning and training from scratch (``har train``), and the temporal head.

:func:`train` takes a training set (and optionally a validation set), a model from the
zoo with its weights (or random initialisation) and writes a run folder::

    DIR/model.pth      the model, in the published checkpoint layout plus its labels,
                       preset and training settings (docs/weights.md): `har predict
                       --weights DIR/model.pth` needs no other flag. With a validation
                       set, the epoch with the best validation video accuracy (ties:
                       lower validation loss, then the earlier epoch); else the last
    DIR/last.pth       with a validation set: the model after the last epoch
    DIR/labels.txt     one class name per line, in output order
    DIR/metrics.json   final metrics, settings and timings (schema har.train/1)
    DIR/history.csv    one row per epoch
    DIR/curves.png     loss and accuracy curves
    DIR/checkpoint.pth everything --resume needs (model, optimiser, schedule, RNG)

Every file is written to a temporary name and renamed into place; the checkpoint is
written after every epoch, so a killed run loses at most the epoch in progress.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import DEFAULT_MODEL, FREEZE_POINTS, HEADS
from ..errors import HarError
from ..fsutil import display_path, remove_stale_temps
from .augment import eval_clips, train_clip
from .data import Dataset
from .frames import FRAMES_PREFIX, FrameStore
# Re-exported: the CLI and tests name them from here.
from .run import (SCHEMA, Base, Log, RunResult, RunWriteError, data_doc,  # noqa: F401
                  decode_datasets, finish_run, head_name, load_base, metrics_doc,
                  model_checkpoint, progress_bar, replace_head, save_torch, write_history,
                  write_json)
from .temporal import train_temporal

RUN_FILES = ("model.pth", "last.pth", "checkpoint.pth", "labels.txt", "metrics.json", "history.csv",
             "curves.png")
# Class names that say which way something moves: a horizontal flip swaps them.
_DIRECTION_WORDS = {"left", "right", "leftward", "rightward", "leftwards", "rightwards",
                    "clockwise", "counterclockwise", "anticlockwise", "cw", "ccw",
                    "east", "west", "ltr", "rtl", "l2r", "r2l"}

class ResumeMismatch(HarError):
    """--resume with other data or other settings than the run had: a usage error."""


class TrainingDiverged(HarError):
    """The loss or the weights stopped being finite, or the loss exploded: exit 1. The
    run folder keeps the checkpoint of the last finished (good) epoch, never bad weights."""


# A run diverged when its loss grows to this many times where it started (the first
# batch's loss, at least ln(classes), chance): with ln(classes) that puts the true class at
# a probability below classes**-100, which no learning run reaches. Measuring from the
# start keeps a run whose fresh head begins far from chance (a loss of 1.1e3 at step 2 in
# tests/test_train.py, falling after) from being stopped. A loss that is not finite stops
# at once.
DIVERGED_LOSS_FACTOR = 100.0
# Settings that --resume may change: how long to train, where, and decoding threads.
RESUMABLE_CHANGES = ("epochs", "device", "workers")


@dataclass
class TrainOptions:
    """Settings of a run. ``None`` means "the default for this situation" (see
    :func:`resolve_defaults`), so a run's metrics.json records what was actually used."""

    model: str = DEFAULT_MODEL
    weights: str | None = None  # None: the registry's published weights
    scratch: bool = False  # random initialisation instead of weights
    sha256: str | None = None
    freeze_through: str | None = None  # FREEZE_POINTS; None: layer3 fine-tuning, none scratch
    head: str = "linear"  # "temporal": a learned head over the clip sequence
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    clips_per_epoch: int = 96  # at least this many random clips per epoch (small datasets)
    flip: str = "auto"  # auto | on | off
    single_frame: bool = False  # the no-motion ablation: one frame repeated
    device: str = "cpu"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 0
    workers: int = 2  # decoding threads


def resolve_defaults(o: TrainOptions) -> TrainOptions:
    """Fill in every ``None`` for this run."""
    o = TrainOptions(**asdict(o))
    if o.head not in HEADS:
        raise HarError(f"--head {o.head!r}: use one of {', '.join(HEADS)}")
    if o.freeze_through is None:
        o.freeze_through = "layer4" if o.head == "temporal" else \
            ("none" if o.scratch else "layer3")
    if o.freeze_through not in FREEZE_POINTS:
        raise HarError(f"--freeze-through {o.freeze_through!r}: use one of "
                       f"{', '.join(FREEZE_POINTS)}")
    cuda = o.device.startswith("cuda")
    if o.batch_size is None:
        o.batch_size = 32 if cuda else 8
    if o.epochs is None:
        o.epochs = 60 if o.head == "temporal" else (12 if o.scratch else 8)
    if o.lr is None:
        o.lr = 1e-3 if o.head == "temporal" else (0.01 if o.scratch else 0.003)
    for name in ("epochs", "batch_size", "clips_per_epoch"):
        if getattr(o, name) < 1:
            raise HarError(f"--{name.replace('_', '-')} must be at least 1")
    if not o.lr > 0:
        raise HarError("--lr must be positive")
    if o.flip not in ("auto", "on", "off"):
        raise HarError(f"--flip {o.flip!r}: use auto, on or off")
    return o


def directional(labels) -> list[str]:
    """The class names that name a horizontal direction (a flip would swap them)."""
    out = []
    for name in labels:
        words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()
        if set(re.split(r"[^a-z0-9]+", words)) & _DIRECTION_WORDS:
            out.append(name)
    return out


def flip_decision(o: TrainOptions, labels) -> tuple[bool, str]:
    """Whether to flip clips, and why (printed and kept in metrics.json).

    The authors' recipe flips, which suits Kinetics-like actions: the pretrained
    features are already mirror-invariant. A model trained from scratch learns only
    from the user's data, in which direction may be the whole point, so auto leaves
    flipping off there; and never flips when class names say left or right."""
    if o.flip != "auto":
        return o.flip == "on", f"--flip {o.flip}"
    named = directional(labels)
    if named:
        return False, f"off: class names give a direction ({', '.join(named[:3])})"
    if o.scratch:
        return False, "off: training from scratch (--flip on to mirror clips)"
    return True, "on: the authors' fine-tuning recipe (--flip off if direction matters)"


# -- models --------------------------------------------------------------------------------
def freeze(model: nn.Module, through: str) -> list[str]:
    """Freeze the stem and the stages up to ``through`` (the authors' ``ft_begin_index``:
    conv1 = the stem, layerN = the stem and stages 1..N; layer4 = all but the head).
    Returns the names of the frozen top-level modules."""
    children = list(model.named_children())
    names = [n for n, _ in children]
    head = head_name(model)
    if through == "none":
        return []
    if through == "layer4":
        stop = names.index(head)
    elif through == "conv1":
        if "layer1" not in names:
            raise HarError("--freeze-through conv1: this model has no 'layer1' stage; "
                           "use none or layer4")
        stop = names.index("layer1")
    else:
        if through not in names:
            raise HarError(f"--freeze-through {through}: this model has no stage named "
                           f"{through!r}; use none or layer4")
        stop = names.index(through) + 1
    frozen = []
    for name, module in children[:stop]:
        if name == head:
            continue
        for p in module.parameters():
            p.requires_grad_(False)
        if any(True for _ in module.parameters()):
            frozen.append(name)
    return frozen


def set_train_mode(model: nn.Module, frozen: list[str]) -> None:
    """Train mode, except frozen parts: their BatchNorm statistics stay as loaded."""
    model.train()
    for name in frozen:
        getattr(model, name).eval()


# -- precision -----------------------------------------------------------------------------
def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gradients_agree(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str,
                    dtype: torch.dtype, tol: float = 0.1) -> bool:
    """One backward pass in ``dtype`` autocast against fp32: every parameter's gradient
    within ``tol`` relative error. Guards against low-precision kernels that return
    wrong gradients (PyTorch's oneDNN bf16 Conv3d backward gave 1e35 on an AMD EPYC)."""
    import copy

    grads = []
    for amp in (False, True):
        m = copy.deepcopy(model).to(device).train()
        with torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=amp):
            out = m(x.to(device))
        F.cross_entropy(out.float(), y.to(device)).backward()
        grads.append([p.grad.detach().float().cpu() if p.grad is not None else None
                      for p in m.parameters()])
    for ref, got in zip(*grads):
        if ref is None or got is None:
            continue
        if not torch.isfinite(got).all():
            return False
        if (got - ref).norm() > tol * ref.norm() + 1e-6:
            return False
    return True


def choose_precision(o: TrainOptions, model: nn.Module, sample: torch.Tensor, log: Log
                     ) -> str:
    cuda = o.device.startswith("cuda")
    want = o.precision
    if want not in ("auto", "fp32", "bf16", "fp16"):
        raise HarError(f"--precision {want!r}: use auto, fp32, bf16 or fp16")
    if want == "fp16" and not cuda:
        raise HarError("--precision fp16 needs --device cuda; use bf16 or fp32 on the CPU")
    if want == "auto":
        if cuda:
            want = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            want = "bf16" if _cpu_has_bf16() else "fp32"
            if want == "fp32":
                return "fp32"
    if want == "fp32":
        return want
    dtype = torch.bfloat16 if want == "bf16" else torch.float16
    y = torch.arange(len(sample)) % 2
    if not gradients_agree(model, sample, y, o.device, dtype):
        if o.precision != "auto":
            raise HarError(f"--precision {want}: this machine's {want} kernels give wrong "
                           "gradients for this model (checked against fp32); use fp32")
        log(f"note: {want} training gives wrong gradients on this machine (checked against "
            "fp32 on one batch); training in fp32")
        return "fp32"
    return want


# -- the run folder ---------------------------------------------------------------------------
def prepare_out(out: str | os.PathLike, resume: bool) -> Path:
    """The run folder: new or empty, or (``resume``) one holding a checkpoint."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HarError(f"{display_path(out)}: exists and is not a folder; choose another --out")
    ckpt = out / "checkpoint.pth"
    if out.is_dir():
        remove_stale_temps(out)  # what a killed run left half-written
    if resume:
        if not ckpt.is_file():
            raise HarError(f"{display_path(out)}: no checkpoint.pth to resume from; start "
                           "the run without --resume")
        # Decoded frames left by a run that was killed (SIGKILL cannot clean up).
        for stale in out.glob(f"{FRAMES_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        return out
    if out.is_dir():
        entries = [p.name for p in out.iterdir()
                   if not p.name.startswith((".har-tmp-", FRAMES_PREFIX))]
        if ckpt.is_file() or "model.pth" in entries:
            raise HarError(f"{display_path(out)}: holds a training run already; add "
                           "--resume to continue it, or choose another --out")
        if entries:
            raise HarError(f"{display_path(out)}: the folder is not empty; choose a new or "
                           "empty --out (har never writes over files it did not create)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarError(f"{display_path(out)}: cannot create the folder "
                       f"({exc.strerror or exc})") from None
    return out


# -- training ----------------------------------------------------------------------------------
def _epoch_order(n_ok: list[int], count: int, rng: np.random.Generator) -> list[int]:
    order: list[int] = []
    while len(order) < count:
        order += [n_ok[i] for i in rng.permutation(len(n_ok))]
    return order[:max(count, len(n_ok))]


def _autocast(device: str, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype or torch.float32,
                          enabled=dtype is not None)


@torch.no_grad()
def evaluate_store(model: nn.Module, store: FrameStore, dataset: Dataset, preset, *,
                   device: str, precision: str, single_frame: bool = False,
                   batch: int = 8) -> dict:
    """Test-time recipe over every decoded video: clip and video accuracy, loss."""
    from ..metrics import classification_metrics

    model.eval()
    clip_loss = clip_correct = clips = 0
    video_scores, video_true = [], []
    for i in store.ok:
        x = eval_clips(store.frames(i), preset, single_frame=single_frame)
        label = dataset.samples[i].label
        probs = []
        for s in range(0, len(x), batch):
            xb = x[s:s + batch].to(device)
            if device.startswith("cuda"):
                xb = xb.contiguous(memory_format=torch.channels_last_3d)
            with _autocast(device, precision):
                logits = model(xb).float()
            y = torch.full((len(xb),), label, device=device)
            clip_loss += F.cross_entropy(logits, y, reduction="sum").item()
            clip_correct += int((logits.argmax(1) == y).sum())
            clips += len(xb)
            probs.append(F.softmax(logits, 1).cpu())
        video_scores.append(torch.cat(probs).mean(0).numpy())
        video_true.append(label)
    m = classification_metrics(video_true, np.stack(video_scores), dataset.labels)
    return {"val_loss": clip_loss / max(clips, 1), "val_acc": clip_correct / max(clips, 1),
            "val_video_acc": m["top1"], "val_video_top5": m["top5"],
            "val_mean_class_acc": m["mean_class_accuracy"], "val_clips": clips,
            "val_videos": len(video_true)}


def resume_conflicts(saved: dict, explicit: dict) -> list[str]:
    """The settings in ``explicit`` (given on the command line) that differ from the
    run's ``saved`` options, as ``--name NEW (the run has OLD)``; --epochs, --device and
    --workers may change."""
    from ..models.zoo import get_entry

    def norm(name: str, value):
        if name == "model" and isinstance(value, str):
            try:
                return get_entry(value).name
            except (KeyError, HarError):
                return value
        if name == "sha256" and isinstance(value, str):
            return value.strip().lower()
        return value

    out = []
    for name, new in explicit.items():
        if new is None or name in RESUMABLE_CHANGES or name not in saved:
            continue
        old = saved[name]
        if norm(name, new) != norm(name, old):
            flag = "--" + name.replace("_", "-")
            shown = "" if new is True else f" {new}"
            out.append(f"{flag}{shown} (the run has {old if old is not None else 'none'})")
    return out


def _finite_state(model: nn.Module) -> bool:
    """Every floating-point weight and buffer (BatchNorm statistics too) is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()
               if t.is_floating_point())


def train(train_set: Dataset, out: str | os.PathLike, options: TrainOptions | None = None, *,
          val_set: Dataset | None = None, resume: bool = False, progress: bool = False,
          log: Log = print, explicit: dict | None = None) -> RunResult:
    """Train (see the module docstring); returns the final metrics.

    ``explicit``: the options the user set (on the command line); with ``resume`` any
    of them that differs from the run's own settings is refused (ResumeMismatch)
    rather than silently ignored."""
    o = options or TrainOptions()
    out = prepare_out(out, resume)
    state = None
    if resume:
        state = _load_resume(out, train_set, o)
        changed = resume_conflicts(state.get("options", {}), explicit or {})
        if changed:
            raise ResumeMismatch(f"{display_path(out)}: --resume continues the run with its "
                                 f"own settings, but {', '.join(changed)}; drop the changed "
                                 "option, or start a new run with another --out")
        saved = TrainOptions(**{f.name: state["options"][f.name] for f in fields(TrainOptions)
                                if f.name in state["options"]})
        if options is not None and options.epochs is not None:
            saved.epochs = options.epochs  # --resume --epochs N extends a finished run
        saved.device = o.device  # the run may continue on another device
        saved.workers = o.workers
        o = saved
    o = resolve_defaults(o)
    if len(train_set.labels) < 2:
        raise HarError(f"{display_path(train_set.source)}: training needs at least 2 classes "
                       f"(found {len(train_set.labels)})")
    if o.head == "temporal":
        return train_temporal(train_set, out, o, val_set=val_set, progress=progress, log=log)
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    base = load_base(o)
    labels = train_set.labels
    model = base.model
    if tuple(base.labels) != tuple(labels):
        replace_head(model, len(labels), o.seed)
    frozen = freeze(model, o.freeze_through)
    flip, flip_why = flip_decision(o, labels)
    preset = base.preset
    log(f"model {base.entry.name} ({'random init' if o.scratch else 'from ' + _short(base)}), "
        f"{len(labels)} classes, frozen: {', '.join(frozen) or 'nothing'}; flip {flip_why}")

    try:
        stores = decode_datasets(train_set, val_set, preset, o, progress, log, out)
    except OSError as exc:  # the frames folder could not be made in --out
        raise RunWriteError(f"{display_path(out)}: cannot keep decoded frames there "
                            f"({exc.strerror or exc}); free some space, or give an --out on "
                            "a larger disk") from None
    train_store, val_store = stores
    try:
        device = o.device
        model.to(device)
        if device.startswith("cuda") or device == "cpu":
            model.to(memory_format=torch.channels_last_3d)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=o.lr, momentum=0.9, nesterov=True,
                              weight_decay=o.weight_decay)
        n_ok = train_store.ok
        per_epoch = max(o.clips_per_epoch, len(n_ok))
        steps = math.ceil(per_epoch / o.batch_size)
        total = steps * o.epochs
        warm = min(steps, total // 10 + 1)

        def lr_at(step: int) -> float:  # linear warm-up, then cosine to zero
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        history: list[dict] = []
        start_epoch = 0
        precision = None
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history = list(state["history"])
            start_epoch = int(state["epoch"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            precision = state.get("precision")
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at, last_epoch=start_epoch * steps - 1) \
                if start_epoch else sched
            log(f"resuming after epoch {start_epoch} of {o.epochs}")
        if precision is None:
            sample = torch.stack([train_clip(train_store.frames(n_ok[0]), preset, rng, flip=flip)
                                  for _ in range(2)])
            precision = choose_precision(o, model, sample, log)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        diverged_at = None  # set from this run's first batch
        doc = data_doc(train_set, val_set, train_store, val_store)
        t_start = time.monotonic()
        clips_seen = 0
        for epoch in range(start_epoch, o.epochs):
            set_train_mode(model, frozen)
            order = _epoch_order(n_ok, per_epoch, rng)
            bar = progress_bar(progress, steps, f"epoch {epoch + 1}/{o.epochs}")
            loss_sum = correct = seen = 0
            t0 = time.monotonic()
            for s in range(steps):
                idx = order[s * o.batch_size:(s + 1) * o.batch_size]
                if not idx:
                    break
                x = torch.stack([train_clip(train_store.frames(i), preset, rng, flip=flip,
                                            single_frame=o.single_frame) for i in idx])
                y = torch.tensor([train_set.samples[i].label for i in idx], device=device)
                x = x.to(device).contiguous(memory_format=torch.channels_last_3d)
                with _autocast(device, precision):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
                value = loss.item()
                if diverged_at is None and math.isfinite(value):
                    diverged_at = DIVERGED_LOSS_FACTOR * max(value, math.log(len(labels)), 1.0)
                if not math.isfinite(value) or value > diverged_at:
                    raise TrainingDiverged(_diverged(out, epoch, s, value, o, "loss"))
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                sched.step()
                loss_sum += value * len(idx)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(idx)
                bar.update(1, loss=loss_sum / seen, acc=correct / seen)
            bar.close()
            if not _finite_state(model):  # e.g. inf in BatchNorm's running statistics
                raise TrainingDiverged(_diverged(out, epoch, steps, float("nan"), o,
                                                 "weights"))
            clips_seen += seen
            row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                   "train_acc": correct / max(seen, 1), "lr": opt.param_groups[0]["lr"],
                   "seconds": round(time.monotonic() - t0, 2)}
            if val_store is not None and val_store.ok:
                row.update(evaluate_store(model, val_store, val_set, preset, device=device,
                                          precision=precision, single_frame=o.single_frame,
                                          batch=o.batch_size))
            history.append(row)
            log(_epoch_line(row, o.epochs))
            if _is_best(row, history):  # model.pth: the best epoch by validation
                save_torch(model_checkpoint(model, base, labels, o, epoch=epoch + 1,
                                            data=doc), out / "model.pth")
            save_torch({"format": SCHEMA, "options": asdict(o), "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "history": history, "rng": rng.bit_generator.state,
                        "torch_rng": torch.get_rng_state(), "precision": precision,
                        "labels": list(labels), "samples": len(train_set.samples)},
                       out / "checkpoint.pth")
            write_history(out, history)
        elapsed = time.monotonic() - t_start
        model = model.to(memory_format=torch.contiguous_format).cpu()
        validated = any(h.get("val_video_acc") is not None for h in history)
        save_torch(model_checkpoint(model, base, labels, o, epoch=o.epochs, data=doc),
                   out / ("last.pth" if validated else "model.pth"))
        metrics = metrics_doc(o, base, labels, history, doc, precision, flip_why,
                               frozen, elapsed, clips_seen)
        finish_run(out, labels, metrics)
        return RunResult(out, metrics, history)
    finally:
        for st in stores:
            if st is not None:
                st.close()


def _diverged(out: Path, epoch: int, step: int, value: float, o: TrainOptions,
              what: str) -> str:
    """The one line for a run that diverged; what the run folder still holds."""
    where = f"epoch {epoch + 1}, step {step + 1}" if what == "loss" else f"epoch {epoch + 1}"
    why = (f"the loss reached {value:.3g}" if what == "loss" else
           "the weights became infinite or NaN")
    kept = (f"{display_path(out / 'checkpoint.pth')} keeps epoch {epoch} (the last good one)"
            if epoch > 0 else "no epoch finished, so nothing was saved")
    first = " from scratch" if o.scratch else ""
    return (f"training diverged at {where}: {why}; stopped without saving bad weights "
            f"({kept}); start a new run{first} with a lower --lr (this one used {o.lr:g})")


def _is_best(row: dict, history: list[dict]) -> bool:
    """Whether ``row`` (the newest of ``history``) has the best validation video
    accuracy so far: higher accuracy, then lower validation loss; ties keep the
    earlier epoch."""
    if row.get("val_video_acc") is None:
        return False
    key = (row["val_video_acc"], -row.get("val_loss", 0.0))
    return all(key > (h["val_video_acc"], -h.get("val_loss", 0.0))
               for h in history[:-1] if h.get("val_video_acc") is not None)


def _short(base: Base) -> str:
    return display_path(base.weights_path or "published weights")


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}, "
            f"clip acc {row['train_acc']:.1%}")
    if row.get("val_video_acc") is not None:
        text += (f"; val loss {row['val_loss']:.4f}, clip acc {row['val_acc']:.1%}, "
                 f"video acc {row['val_video_acc']:.1%}")
    return text + f" ({row['seconds']:.0f} s)"


def _load_resume(out: Path, train_set: Dataset, o: TrainOptions) -> dict:
    from ..models.checkpoints import _torch_load

    try:
        state = _torch_load(out / "checkpoint.pth")
    except HarError as exc:
        raise HarError(f"{exc}; cannot --resume (start a new run with another --out)") from None
    if not isinstance(state, dict) or state.get("format") != SCHEMA:
        raise ResumeMismatch(f"{display_path(out / 'checkpoint.pth')}: not a har training "
                             "checkpoint; cannot --resume (start a new run with another --out)")
    if list(state.get("labels", [])) != list(train_set.labels) or \
            state.get("samples") != len(train_set.samples):
        raise ResumeMismatch(f"{display_path(out)}: was trained on other data ("
                       f"{len(state.get('labels', []))} classes, {state.get('samples')} videos; "
                       f"now {len(train_set.labels)} and {len(train_set.samples)}); resume with "
                       "the same DATA")
    return state

