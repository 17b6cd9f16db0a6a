"""What ``har train``'s two modes share: the starting model, the run folder's files,
decoding the datasets and the progress bar.

:mod:`har.train.trainer` (fine-tuning, training from scratch) and
:mod:`har.train.temporal` (the temporal head) both import from here; neither imports
the other's internals.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import HarError
from ..fsutil import atomic_open, atomic_path, display_path
from .frames import FrameStore

SCHEMA = "har.train/1"
Log = Callable[[str], None]


class RunWriteError(HarError):
    """A file of the run folder could not be written (a full disk): `har train` exit 1."""


# -- the starting model ------------------------------------------------------------------
def head_name(model: nn.Module) -> str:
    """The attribute that holds the classifier (the zoo's networks name it in
    ``classifier_attr``, :class:`har.models.nets.pooled.PooledHead`)."""
    named = getattr(model, "classifier_attr", None)
    if named is not None and isinstance(getattr(model, named, None), nn.Linear):
        return named
    for name in ("fc", "classifier"):
        if isinstance(getattr(model, name, None), nn.Linear):
            return name
    raise HarError(f"{type(model).__name__}: cannot find the classifier to replace")


def replace_head(model: nn.Module, num_classes: int, seed: int = 0) -> None:
    name = head_name(model)
    old: nn.Linear = getattr(model, name)
    torch.manual_seed(seed)
    setattr(model, name, nn.Linear(old.in_features, num_classes))


@dataclass
class Base:
    """The starting model: the network, its labels and preset, where it came from."""

    model: nn.Module
    labels: tuple[str, ...]
    preset: Any
    entry: Any
    weights_sha256: str | None
    weights_path: str | None
    video_head: Any = None


def load_base(o) -> Base:
    """The starting model of a run (``o``: its :class:`~har.train.trainer.TrainOptions`):
    random initialisation, or the factory's model with its own labels and preset."""
    from ..models.zoo import get_entry, load_model

    entry = get_entry(o.model)
    if o.scratch:
        torch.manual_seed(o.seed)
        model = entry.build()
        return Base(model, entry.class_names, entry.preset, entry, None, None)
    model = load_model(entry.name, weights=o.weights, sha256=o.sha256)
    info = model.har_info
    return Base(model, tuple(info.labels), info.preset, get_entry(info.model or entry.name),
                info.weights_sha256, info.weights_path, getattr(model, "video_head", None))


# -- the run folder's files ---------------------------------------------------------------
@contextlib.contextmanager
def writing(dest: Path):
    """A failed write (a full disk, a folder removed under us) is one line naming the
    file; the previous version of the file, if any, is still whole."""
    try:
        yield
    except OSError as exc:
        raise RunWriteError(f"{display_path(dest)}: cannot be written "
                            f"({exc.strerror or exc}); free some space and run again with "
                            "--resume") from None


def save_torch(obj: Any, dest: Path) -> None:
    with writing(dest), atomic_path(dest) as tmp:
        torch.save(obj, tmp)


def write_history(out: Path, history: list[dict]) -> None:
    if not history:
        return
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: ("" if row.get(k) is None else
                        round(row[k], 6) if isinstance(row.get(k), float) else row[k])
                    for k in keys})
    with writing(out / "history.csv"), atomic_open(out / "history.csv") as fh:
        fh.write(buf.getvalue())
    from ..plots import curves_png

    with writing(out / "curves.png"):
        curves_png(out / "curves.png", history)


def write_json(path: Path, doc: dict) -> None:
    with writing(path), atomic_open(path) as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


def model_checkpoint(model: nn.Module, base: Base, labels, o, *,
                     epoch: int, data: dict, video_head=None) -> dict:
    """The published layout plus labels, preset and provenance (docs/weights.md)."""
    from .. import __version__
    from ..models.info import preset_to_dict

    doc = {"arch": base.entry.arch, "epoch": epoch,
           "state_dict": {k: v.detach().cpu().contiguous().clone()
                          for k, v in model.state_dict().items()},
           "labels": list(labels), "preset": preset_to_dict(base.preset),
           "har": {"model": base.entry.name, "version": __version__,
                   "base_weights_sha256": base.weights_sha256 or "",
                   "scratch": bool(o.scratch), "head": o.head,
                   "freeze_through": o.freeze_through or "", "epochs": epoch,
                   "data": data}}
    if video_head is not None:
        doc["video_head"] = video_head.to_checkpoint()
    return doc


@dataclass
class RunResult:
    out: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)


# -- datasets, metrics, progress --------------------------------------------------------
def decode_datasets(train_set, val_set, preset, o, progress: bool, log: Log,
            out: Path):
    """Both datasets' frames (val's None without a val set), kept in hidden folders of
    the run folder ``out``; on any failure the stores made so far are removed."""
    n = len(train_set) + (len(val_set) if val_set is not None else 0)
    bar = progress_bar(progress, n, "decoding", unit="video")
    stores: list[FrameStore | None] = []
    try:
        for ds in (train_set, val_set):
            stores.append(None if ds is None else FrameStore(
                ds.samples, preset, workers=o.workers, progress=lambda k: bar.update(k),
                workdir=str(out)))
        for store in stores:
            for _, msg in store.failed if store is not None else ():
                log(f"warning: {msg}; left out")
        train_store = stores[0]
        if not train_store.ok:
            raise HarError(f"{display_path(train_set.source)}: none of the training videos "
                           "could be decoded")
        if len({train_set.samples[i].label for i in train_store.ok}) < 2:
            raise HarError(f"{display_path(train_set.source)}: the decodable videos cover "
                           "fewer than 2 classes")
    except BaseException:
        for store in stores:
            if store is not None:
                store.close()
        raise
    finally:
        bar.close()
    return stores[0], stores[1]


def data_doc(train_set, val_set, train_store, val_store) -> dict:
    doc = {"train": display_path(train_set.source), "layout": train_set.layout,
           "train_videos": len(train_store.ok), "classes": len(train_set.labels),
           "left_out": [display_path(train_set.samples[i].name) for i, _ in train_store.failed]}
    if val_set is not None and val_store is not None:
        doc.update(val=display_path(val_set.source), val_videos=len(val_store.ok))
        doc["left_out"] += [display_path(val_set.samples[i].name) for i, _ in val_store.failed]
    return doc


def metrics_doc(o, base, labels, history, data_doc, precision, flip_why, frozen,
                 elapsed, clips_seen) -> dict:
    from .. import __version__

    last = history[-1] if history else {}
    return {"schema": SCHEMA, "har_version": __version__, "model": base.entry.name,
            "labels": list(labels), "final": last,
            "best_val_video_acc": max((h["val_video_acc"] for h in history
                                       if h.get("val_video_acc") is not None), default=None),
            "options": asdict(o), "precision": precision, "flip": flip_why,
            "frozen": frozen, "data": data_doc,
            "train_seconds": round(elapsed, 2),
            "train_clips_per_s": round(clips_seen / elapsed, 2) if elapsed > 0 else None,
            "device": o.device, "machine": machine()}


def finish_run(out: Path, labels, metrics: dict) -> None:
    with writing(out / "labels.txt"), atomic_open(out / "labels.txt") as fh:
        fh.write("".join(f"{name}\n" for name in labels))
    write_json(out / "metrics.json", metrics)


def machine() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NoBar:
    def update(self, n: int = 1, **postfix) -> None:
        pass

    def close(self) -> None:
        pass


class Bar(NoBar):
    def __init__(self, total: int, desc: str, unit: str) -> None:
        import sys

        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                         dynamic_ncols=True)

    def update(self, n: int = 1, **postfix) -> None:
        if postfix:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "step") -> NoBar:
    return Bar(total, desc, unit) if enabled else NoBar()
