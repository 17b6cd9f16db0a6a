"""Evaluation metrics: clip/video classification and ActivityNet temporal detection.

Pure numpy (no torch), so evaluating a results file needs no model runtime.

* :func:`classification_metrics` gives top-1, top-k, mean class accuracy, per-class
  counts and the confusion matrix of a set of score vectors, as a JSON-able dict;
  :func:`write_confusion_csv` saves the matrix.
* :func:`activitynet_map` is the ActivityNet v1.3 detection metric (mean average
  precision over temporal-IoU thresholds 0.5:0.05:0.95), following the definition of
  the official evaluation code; :func:`load_activitynet_ground_truth` reads the
  database file and :func:`activitynet_document` wraps detections as a submission.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from har.fsutil import atomic_open

__all__ = [
    "classification_metrics",
    "write_confusion_csv",
    "load_activitynet_ground_truth",
    "segment_iou",
    "activitynet_map",
    "activitynet_detection",
    "activitynet_document",
    "video_id_for",
    "ACTIVITYNET_THRESHOLDS",
]

# The tIoU thresholds of the ActivityNet v1.3 detection task.
ACTIVITYNET_THRESHOLDS = np.linspace(0.5, 0.95, 10)


# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------

def classification_metrics(y_true: Sequence[int] | np.ndarray, scores: Sequence | np.ndarray,
                           labels: Sequence[str], k: int = 5) -> dict[str, Any]:
    """Accuracy figures of ``scores`` against the true classes ``y_true``.

    ``y_true`` holds N class indices, ``scores`` is an (N, C) array (any monotone score:
    logits or probabilities) and ``labels`` the C class names. The prediction of a row
    is its argmax, ties going to the lower class index; a row is top-k correct when its
    true class is among the ``min(k, C)`` highest scores (ties ranked the same way).

    Returns a JSON-able dict; every rate is a fraction in [0, 1], or None when there is
    nothing to divide by::

        {"count": N, "top1": ..., "top5": ...,          # "top5" is top-min(k, C)
         "mean_class_accuracy": ...,                     # over classes with support > 0
         "per_class": [{"label", "support", "correct", "accuracy"}, ...],
         "confusion": [[...], ...]}                      # C x C, rows true, cols predicted

    Raises ValueError when the shapes disagree or a class index is out of range.
    """
    names = [str(name) for name in labels]
    n_classes = len(names)
    if n_classes == 0:
        raise ValueError("classification_metrics: labels is empty (need at least one class)")
    if k < 1:
        raise ValueError(f"classification_metrics: k must be >= 1, got {k}")

    truth = np.asarray(y_true)
    if truth.size == 0:
        truth = truth.reshape(0)
    if truth.ndim != 1:
        raise ValueError(f"classification_metrics: y_true must be 1-D (N,), got shape {truth.shape}")
    n = truth.shape[0]
    if truth.dtype.kind not in "iub":
        if truth.dtype.kind == "f" and np.all(np.isfinite(truth)) and np.all(truth == np.round(truth)):
            truth = truth.astype(np.int64)
        else:
            raise ValueError(f"classification_metrics: y_true must hold integer class indices, "
                             f"got dtype {truth.dtype}")
    truth = truth.astype(np.int64, copy=False)

    score = np.asarray(scores, dtype=np.float64)
    if score.size == 0 and n == 0:
        score = score.reshape(0, n_classes)
    if score.ndim != 2:
        raise ValueError(f"classification_metrics: scores must be 2-D (N, C), got shape {score.shape}")
    if score.shape != (n, n_classes):
        raise ValueError(f"classification_metrics: scores has shape {score.shape}, expected "
                         f"({n}, {n_classes}) from {n} y_true values and {n_classes} labels")
    if np.isnan(score).any():
        raise ValueError("classification_metrics: scores contain NaN")
    if n and (truth.min() < 0 or truth.max() >= n_classes):
        bad = int(truth[(truth < 0) | (truth >= n_classes)][0])
        raise ValueError(f"classification_metrics: class index {bad} in y_true is outside "
                         f"0..{n_classes - 1}")

    top_k = min(k, n_classes)
    # A stable sort of the negated scores ranks equal scores by class index, so the
    # first column is exactly np.argmax (lowest index on ties).
    ranking = np.argsort(-score, axis=1, kind="stable")[:, :top_k]
    predicted = ranking[:, 0] if n else np.zeros(0, dtype=np.int64)
    hit1 = predicted == truth
    hitk = (ranking == truth[:, None]).any(axis=1)

    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    support = confusion.sum(axis=1)
    correct = np.diag(confusion)

    per_class = []
    for c, name in enumerate(names):
        s = int(support[c])
        per_class.append({"label": name, "support": s, "correct": int(correct[c]),
                          "accuracy": float(correct[c] / s) if s else None})
    present = support > 0
    return {
        "count": int(n),
        "top1": float(hit1.mean()) if n else None,
        "top5": float(hitk.mean()) if n else None,
        "mean_class_accuracy": float(np.mean(correct[present] / support[present])) if present.any() else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def write_confusion_csv(path: str | os.PathLike, confusion: Sequence[Sequence[int]] | np.ndarray,
                        labels: Sequence[str]) -> None:
    """Write a C x C confusion matrix (rows true class, columns predicted class) as CSV.

    The header is ``true\\predicted,<label>...`` and each row starts with its true
    class's name. The file is replaced atomically.
    """
    matrix = np.asarray(confusion)
    names = [str(name) for name in labels]
    if matrix.size == 0 and not names:
        matrix = matrix.reshape(0, 0)
    if matrix.ndim != 2 or matrix.shape != (len(names), len(names)):
        raise ValueError(f"write_confusion_csv: confusion has shape {matrix.shape}, expected "
                         f"({len(names)}, {len(names)}) for {len(names)} labels")
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true\\predicted", *names])
        for name, row in zip(names, matrix.tolist()):
            writer.writerow([name, *row])


# --------------------------------------------------------------------------------------
# ActivityNet v1.3 temporal detection
# --------------------------------------------------------------------------------------

GroundTruth = dict[str, list[tuple[str, float, float]]]


def _segment(value: Any, where: str) -> tuple[float, float]:
    """``[start, end]`` in seconds, checked."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}: 'segment' must be [start, end], got {value!r}")
    try:
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'segment' must hold two numbers, got {value!r}") from None
    if not (np.isfinite(start) and np.isfinite(end)):
        raise ValueError(f"{where}: 'segment' must be finite, got {value!r}")
    if end < start:
        raise ValueError(f"{where}: 'segment' ends before it starts: {value!r}")
    return start, end


def load_activitynet_ground_truth(path_or_dict: str | os.PathLike | Mapping[str, Any],
                                  subset: str | None = None) -> tuple[GroundTruth, list[str]]:
    """Read an ActivityNet database file (e.g. ``activity_net.v1-3.min.json``).

    ``path_or_dict`` is the file's path or its parsed JSON, of the form
    ``{"database": {video_id: {"subset": ..., "annotations": [{"segment": [s, e],
    "label": ...}, ...]}, ...}}``. ``subset`` (e.g. ``"validation"``) keeps only the
    videos whose ``"subset"`` matches; None keeps all.

    Returns ``(gt, labels)``: ``gt`` maps each kept video id to its ``(label, start_s,
    end_s)`` instances (a video without annotations maps to an empty list) and
    ``labels`` is the sorted list of classes that occur. Raises ValueError, with a
    one-line message, on a file that is not of this form.
    """
    if isinstance(path_or_dict, Mapping):
        data = path_or_dict
        source = "ActivityNet ground truth"
    else:
        source = f"ActivityNet ground truth {os.fspath(path_or_dict)}"
        try:
            with open(path_or_dict, encoding="utf-8") as fh:
                data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{source}: not UTF-8 text") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("database"), Mapping):
        raise ValueError(f"{source}: expected an object with a 'database' object of videos")

    gt: GroundTruth = {}
    labels: set[str] = set()
    for video_id, video in data["database"].items():
        where = f"{source}: video {video_id!r}"
        if not isinstance(video, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(video).__name__}")
        if subset is not None and video.get("subset") != subset:
            continue
        annotations = video.get("annotations", [])
        if not isinstance(annotations, list):
            raise ValueError(f"{where}: 'annotations' must be a list")
        instances = []
        for i, ann in enumerate(annotations):
            if not isinstance(ann, Mapping) or "segment" not in ann or "label" not in ann:
                raise ValueError(f"{where}: annotation {i} needs 'segment' and 'label'")
            if not isinstance(ann["label"], str):
                raise ValueError(f"{where}: annotation {i} 'label' must be a string")
            start, end = _segment(ann["segment"], f"{where} annotation {i}")
            instances.append((ann["label"], start, end))
            labels.add(ann["label"])
        gt[str(video_id)] = instances
    return gt, sorted(labels)


def segment_iou(seg: Sequence[float], segs: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Temporal intersection over union of one ``[start, end]`` with each row of ``segs``
    (an (M, 2) array). A pair whose union has zero length scores 0."""
    start, end = float(seg[0]), float(seg[1])
    others = np.asarray(segs, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(end, others[:, 1]) - np.maximum(start, others[:, 0]), 0.0, None)
    union = (others[:, 1] - others[:, 0]) + (end - start) - inter
    iou = np.zeros(len(others), dtype=np.float64)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-style AP: precision made non-increasing from the right, summed over the
    steps where recall changes."""
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def _class_ap(truth: dict[str, np.ndarray], detections: list[tuple[str, float, float, float]],
              thresholds: np.ndarray) -> np.ndarray:
    """AP at each threshold of one class.

    ``truth`` maps a video id to that class's (G, 2) ground-truth segments, and
    ``detections`` holds ``(video_id, score, start, end)`` for the class.
    """
    n_pos = sum(len(segs) for segs in truth.values())
    if n_pos == 0 or not detections:
        return np.zeros(len(thresholds))
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])  # stable
    tp = np.zeros((len(thresholds), len(order)))
    taken = {video: np.zeros((len(thresholds), len(segs)), dtype=bool) for video, segs in truth.items()}
    for j, i in enumerate(order):
        video, _, start, end = detections[i]
        segs = truth.get(video)
        if segs is None or len(segs) == 0:
            continue  # nothing of this class in that video: a false positive everywhere
        iou = segment_iou((start, end), segs)
        best_first = np.argsort(-iou, kind="stable")
        for t, threshold in enumerate(thresholds):
            for g in best_first:
                if iou[g] < threshold:
                    break
                if not taken[video][t, g]:
                    taken[video][t, g] = True
                    tp[t, j] = 1.0
                    break
    ap = np.zeros(len(thresholds))
    cum_tp = np.cumsum(tp, axis=1)
    ranks = np.arange(1, len(order) + 1)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(cum_tp[t] / ranks, cum_tp[t] / n_pos)
    return ap


def activitynet_map(gt: GroundTruth, predictions: Mapping[str, Sequence[Mapping[str, Any]]],
                    thresholds: Sequence[float] | np.ndarray = ACTIVITYNET_THRESHOLDS) -> dict[str, Any]:
    """ActivityNet detection mAP of ``predictions`` against ``gt``.

    ``gt`` is as returned by :func:`load_activitynet_ground_truth`; ``predictions`` is
    the ``"results"`` part of a submission: ``{video_id: [{"label", "score",
    "segment": [s, e]}, ...]}``. Predictions for videos absent from ``gt`` are ignored.

    For each class that has ground truth, its detections are ranked by score (highest
    first, ties in input order); at each tIoU threshold a detection is a true positive
    when it takes the not-yet-matched ground-truth instance of its video and class with
    the highest tIoU >= the threshold, and a false positive otherwise (so a second
    detection of the same instance is a false positive). AP is the area under the
    precision-recall curve with precision made non-increasing; a class without
    detections has AP 0. mAP at a threshold is the mean AP over those classes.

    Returns ``{"thresholds": [...], "map": [mAP per threshold], "average_map": mean of
    "map", "per_class_ap": {label: [AP per threshold]}}``. With no ground-truth
    instances at all, the mAPs are 0.
    """
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size == 0:
        raise ValueError("activitynet_map: thresholds is empty")

    truth: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for video, instances in gt.items():
        for label, start, end in instances:
            truth.setdefault(label, {}).setdefault(video, []).append((start, end))
    truth_arrays = {label: {video: np.asarray(segs, dtype=np.float64).reshape(-1, 2)
                            for video, segs in videos.items()}
                    for label, videos in truth.items()}

    if not isinstance(predictions, Mapping):
        raise ValueError("activitynet_map: predictions must map video ids to lists of detections")
    detections: dict[str, list[tuple[str, float, float, float]]] = {label: [] for label in truth}
    for video, items in predictions.items():
        if video not in gt:
            continue
        if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
            raise ValueError(f"activitynet_map: predictions for video {video!r} must be a list")
        for i, item in enumerate(items):
            where = f"activitynet_map: video {video!r} prediction {i}"
            if not isinstance(item, Mapping) or not {"label", "score", "segment"} <= item.keys():
                raise ValueError(f"{where} needs 'label', 'score' and 'segment'")
            try:
                score = float(item["score"])
            except (TypeError, ValueError):
                raise ValueError(f"{where}: 'score' must be a number, got {item['score']!r}") from None
            if np.isnan(score):
                raise ValueError(f"{where}: 'score' is NaN")
            start, end = _segment(item["segment"], where)
            if item["label"] in detections:
                detections[item["label"]].append((video, score, start, end))

    labels = sorted(truth)
    per_class = {label: _class_ap(truth_arrays[label], detections[label], thr) for label in labels}
    maps = np.mean([per_class[label] for label in labels], axis=0) if labels else np.zeros(len(thr))
    return {
        "thresholds": [float(t) for t in thr],
        "map": [float(m) for m in maps],
        "average_map": float(np.mean(maps)),
        "per_class_ap": {label: [float(a) for a in ap] for label, ap in per_class.items()},
    }


def activitynet_detection(label: str, score: float, start_s: float, end_s: float
                          ) -> dict[str, Any]:
    """One detection of an ActivityNet submission, as every har output writes it (from
    results, ``har predict --activitynet``, or from an archive, ``har export-index``):
    the segment's label, its mean clip probability as ``score`` (6 decimals) and
    ``segment`` [start, end] in seconds (3 decimals)."""
    return {"label": label, "score": round(float(score), 6),
            "segment": [round(float(start_s), 3), round(float(end_s), 3)]}


def activitynet_document(results: Mapping[str, list[dict[str, Any]]],
                         external_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An ActivityNet v1.3 submission wrapping ``results`` (``{video_id: [{"label",
    "score", "segment"}, ...]}``). ``external_data`` (``{"used": bool, "details":
    str}``) says whether the model saw data other than the challenge's; the default
    is the zoo's case, a 3D ResNet pretrained on Kinetics-400. A model trained from
    scratch on the user's data passes ``{"used": False, ...}``."""
    if external_data is None:
        external_data = {"used": True, "details": "har: 3D ResNet pretrained on Kinetics-400"}
    return {
        "version": "VERSION 1.3",
        "results": dict(results),
        "external_data": dict(external_data),
    }


def video_id_for(path: str | os.PathLike) -> str:
    """The ActivityNet video id of a downloaded file: its name without extension and
    without the ``v_`` prefix the downloader adds (``v_abc123.mp4`` -> ``abc123``)."""
    stem = Path(os.fspath(path)).stem
    return stem[2:] if stem.startswith("v_") and len(stem) > 2 else stem
