"""Datasets for training and evaluation: which videos, with which labels.

One function, :func:`load_dataset`, reads every layout a user may have:

- a folder with one subfolder per class (``DATA/<class>/**/<video>``);
- a CSV file ``path,label[,start_s,end_s]`` (paths relative to the CSV's folder; a
  header row is optional; the optional times cut a segment out of a longer video);
- UCF101 (``--layout ucf101``): the video folder ``UCF-101/<Class>/v_*.avi`` and the
  official split files ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``;
- HMDB51 (``--layout hmdb51``): ``hmdb51/<class>/*.avi`` and the official
  ``<class>_test_splitN.txt`` files (``name.avi 1`` = train, ``2`` = test, ``0`` = unused);
- a list file (``.txt``): one path per line relative to a root, the class being the
  path's folder (UCF101's ``testlist`` format); used for ``--val`` splits.

Class order is the order of the label list: sorted class names for folders and CSVs,
``classInd.txt`` for UCF101, sorted names for HMDB51. A validation set is always read
with the training set's class order (:func:`load_dataset` ``labels=``).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import HarError
from ..fsutil import display_path

LAYOUTS = ("auto", "folder", "csv", "list", "ucf101", "hmdb51")


class DatasetError(HarError):
    """A dataset description that cannot be used (one line, says what to fix)."""


@dataclass(frozen=True)
class Sample:
    """One training or evaluation video (or a segment of one)."""

    path: str
    label: int
    start_s: float | None = None
    end_s: float | None = None

    @property
    def name(self) -> str:
        if self.start_s is None and self.end_s is None:
            return self.path
        return f"{self.path}[{_fmt(self.start_s)}-{_fmt(self.end_s)}]"


@dataclass
class Dataset:
    samples: list[Sample]
    labels: tuple[str, ...]
    source: str  # what the user named
    layout: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> list[int]:
        out = [0] * len(self.labels)
        for s in self.samples:
            out[s.label] += 1
        return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def _natural(names: Sequence[str]) -> list[str]:
    """Sorted class names; all-numeric names sort by value ("2" before "10")."""
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _is_video(p: Path) -> bool:
    """The files ``har predict`` would find in a folder (same extensions)."""
    from ..sources import VIDEO_EXTENSIONS

    return p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")


def detect_layout(spec: str) -> str:
    p = Path(spec)
    if p.is_dir():
        if _find_splits(p, "ucf101") is not None and (p / "ApplyEyeMakeup").is_dir():
            return "ucf101"
        return "folder"
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        return "list"
    if not p.exists():
        raise DatasetError(f"{display_path(spec)}: no such file or folder; give a folder "
                           "with one subfolder per class, a CSV (path,label) or a split file")
    raise DatasetError(f"{display_path(spec)}: not a dataset; give a folder with one "
                       "subfolder per class, a CSV file (path,label[,start_s,end_s]) or a "
                       "split list (.txt)")


def load_dataset(spec: str | os.PathLike, *, layout: str = "auto", split: int = 1,
                 subset: str = "train", labels: Sequence[str] | None = None,
                 root: str | os.PathLike | None = None,
                 splits_dir: str | os.PathLike | None = None) -> Dataset:
    """Read the dataset named by ``spec`` (see the module docstring).

    ``subset``: ``train`` or ``test`` for the official UCF101/HMDB51 splits.
    ``labels``: the class order to use (a validation set takes the training set's);
    a class outside it is an error. ``root``: the video folder that a list file's
    paths are relative to (default: the list's own folder).
    """
    spec = os.fspath(spec)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown --layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(spec)
    if layout == "folder":
        ds = _from_folder(spec, labels)
    elif layout == "csv":
        ds = _from_csv(spec, labels)
    elif layout == "list":
        ds = _from_list(spec, labels, root)
    else:
        ds = _from_official(spec, layout, split, subset, labels, splits_dir)
    if not ds.samples:
        raise DatasetError(f"{display_path(spec)}: the dataset has no videos")
    return ds


# -- layouts ----------------------------------------------------------------------------
def _class_index(names: Sequence[str], labels: Sequence[str] | None, where: str
                 ) -> tuple[tuple[str, ...], dict[str, int]]:
    if labels is None:
        labels = tuple(_natural(sorted(set(names))))
    labels = tuple(labels)
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DatasetError(f"{where}: class {unknown[0]!r} is not one of the training "
                           f"classes ({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''})")
    return labels, index


# Folder names that split a dataset rather than name a class.
_SPLIT_NAMES = {"train", "training", "test", "testing", "val", "valid", "validation",
                "eval", "dev"}


def _from_folder(spec: str, labels: Sequence[str] | None) -> Dataset:
    root = Path(spec)
    if not root.is_dir():
        raise DatasetError(f"{display_path(spec)}: not a folder")
    try:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"{display_path(spec)}: cannot list the folder "
                           f"({exc.strerror or exc}); check its permissions") from None
    per_class: dict[str, list[str]] = {}
    for name in classes:
        vids = sorted(str(p) for p in (root / name).rglob("*") if _is_video(p) and p.is_file())
        if vids:
            per_class[name] = vids
    if not per_class:
        loose = [p for p in root.iterdir() if _is_video(p)]
        hint = (" (it holds videos directly: put each class's videos in a subfolder named "
                "after the class)" if loose else "")
        raise DatasetError(f"{display_path(spec)}: no class subfolders with videos{hint}")
    notes = [f"{display_path(str(root / c))}: no videos, class skipped"
             for c in classes if c not in per_class and labels is None]
    splits = [c for c in per_class if c.lower() in _SPLIT_NAMES]
    if labels is None and len(splits) >= 2:
        train = next((c for c in splits if c.lower().startswith("train")), splits[0])
        other = next(c for c in splits if c != train)
        notes.append(f"{display_path(spec)}: its subfolders {', '.join(splits)} look like a "
                     "train/test split, but they are taken as the classes here; to train "
                     f"on the classes inside them, give {display_path(str(root / train))} "
                     f"as DATA and --val {display_path(str(root / other))}")
    labels_, index = _class_index(list(per_class), labels, display_path(spec))
    samples = [Sample(v, index[c]) for c in per_class for v in per_class[c]]
    return Dataset(samples, labels_, spec, "folder", notes)


def _float_or_none(text: str, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: {text!r} is not a time in seconds") from None
    if value < 0 or value != value:
        raise DatasetError(f"{where}: time {text!r} must be 0 or more")
    return value


def _from_csv(spec: str, labels: Sequence[str] | None) -> Dataset:
    path = Path(spec)
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise DatasetError(f"{display_path(spec)}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{display_path(spec)}: not a readable CSV file ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    entries: list[tuple[str, str, float | None, float | None]] = []
    for n, row in enumerate(rows, start=1):
        where = f"{display_path(spec)}, row {n}"
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DatasetError(f"{where}: expected path,label[,start_s,end_s]")
        start = _float_or_none(row[2], where) if len(row) > 2 else None
        end = _float_or_none(row[3], where) if len(row) > 3 else None
        if start is not None and end is not None and end <= start:
            raise DatasetError(f"{where}: end_s {end:g} is not after start_s {start:g}")
        video = row[0].strip()
        full = video if os.path.isabs(video) else str(base / video)
        entries.append((full, row[1].strip(), start, end))
    missing = [e[0] for e in entries if not os.path.isfile(e[0])]
    if missing:
        raise DatasetError(f"{display_path(spec)}: {len(missing)} listed video(s) not found "
                           f"(first: {display_path(missing[0])}); paths are relative to the "
                           "CSV's folder")
    labels_, index = _class_index([e[1] for e in entries], labels, display_path(spec))
    samples = [Sample(p, index[c], s, e) for p, c, s, e in entries]
    return Dataset(samples, labels_, spec, "csv")


def _from_list(spec: str, labels: Sequence[str] | None, root) -> Dataset:
    path = Path(spec)
    base = Path(root) if root is not None else path.parent
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise DatasetError(f"{display_path(spec)}: cannot read ({exc.strerror or exc})") from None
    entries = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rel = line.split()[0]
        parent = Path(rel).parent.name
        if not parent:
            raise DatasetError(f"{display_path(spec)}: {rel!r} has no class folder; list "
                               "paths as <class>/<video>")
        entries.append((str(base / rel), parent))
    missing = [e[0] for e in entries if not os.path.isfile(e[0])]
    if missing:
        raise DatasetError(f"{display_path(spec)}: {len(missing)} listed video(s) not found "
                           f"(first: {display_path(missing[0])}); paths are relative to "
                           f"{display_path(str(base))}")
    labels_, index = _class_index([c for _, c in entries], labels, display_path(spec))
    return Dataset([Sample(p, index[c]) for p, c in entries], labels_, spec, "list")


def _find_splits(root: Path, layout: str, splits_dir=None) -> Path | None:
    names = {"ucf101": ("ucfTrainTestlist",),
             "hmdb51": ("testTrainMulti_7030_splits", "splits")}[layout]
    probe = "classInd.txt" if layout == "ucf101" else None
    candidates = [Path(splits_dir)] if splits_dir else \
        [root] + [d / n for d in (root, root.parent) for n in names]
    for c in candidates:
        if probe and (c / probe).is_file():
            return c
        if not probe and c.is_dir() and any(c.glob("*_test_split*.txt")):
            return c
    return None


def _from_official(spec: str, layout: str, split: int, subset: str,
                   labels: Sequence[str] | None, splits_dir) -> Dataset:
    root = Path(spec)
    if not root.is_dir():
        raise DatasetError(f"{display_path(spec)}: --layout {layout} needs the video folder")
    if split not in (1, 2, 3):
        raise DatasetError(f"--split {split}: {layout} has splits 1, 2 and 3")
    if subset not in ("train", "test"):
        raise ValueError("subset must be 'train' or 'test'")
    where = _find_splits(root, layout, splits_dir)
    if where is None:
        official = "ucfTrainTestlist/ (classInd.txt, trainlist01.txt, ...)" \
            if layout == "ucf101" else "testTrainMulti_7030_splits/ (<class>_test_split1.txt, ...)"
        raise DatasetError(f"{display_path(spec)}: the official {layout} split files were not "
                           f"found; put {official} in or beside the video folder, or "
                           "name it with --splits-dir")
    if layout == "ucf101":
        classes = []
        for line in (where / "classInd.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                classes.append(parts[1])
        listing = where / f"{subset}list0{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"{display_path(str(listing))}: missing split file")
        rels = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        entries = [(str(root / r), Path(r).parent.name) for r in rels]
    else:
        want = "1" if subset == "train" else "2"
        entries = []
        files = sorted(where.glob(f"*_test_split{split}.txt"))
        classes = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
        for f, cls in zip(files, classes):
            for ln in f.read_text().splitlines():
                parts = ln.split()
                if len(parts) == 2 and parts[1] == want:
                    entries.append((str(root / cls / parts[0]), cls))
    missing = [e[0] for e in entries if not os.path.isfile(e[0])]
    if missing:
        raise DatasetError(f"{display_path(spec)}: {len(missing)} video(s) of {layout} split "
                           f"{split} ({subset}) not found (first: {display_path(missing[0])})")
    labels_, index = _class_index([c for _, c in entries], labels or classes, display_path(spec))
    return Dataset([Sample(p, index[c]) for p, c in entries], labels_, spec, layout)
