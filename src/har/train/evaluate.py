"""``har eval``: how well a model does on labelled videos, through the real pipeline.

Every video goes through :class:`har.recognizer.Recognizer` exactly as ``har predict``
runs it (decoding, clips, runtime, video scores: the mean of the clips, or the
model's temporal head), so the numbers are those a user gets. Reported:

- clip top-1 and top-5 (every clip labelled with its video's class);
- video top-1 and top-5 (top-5 is null, printed n/a, for a model of 5 classes or
  fewer: every answer would be in its top 5), mean class accuracy, a per-class table, the confusion
  matrix (rows: true class, columns: predicted);
- with ActivityNet v1.3 ground truth, the predicted segments' mAP at temporal IoU
  0.5:0.05:0.95 (:func:`har.metrics.activitynet_map`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import HarError
from ..fsutil import display_path
from .data import Dataset, Sample
from .frames import SegmentSource

SCHEMA = "har.eval/1"


def open_sample(sample: Sample):
    """A sample as something :meth:`Recognizer.stream` reads: its path, or a segment."""
    if sample.start_s is None and sample.end_s is None:
        return sample.path
    from ..sources import open_video

    return SegmentSource(open_video(sample.path), sample.start_s, sample.end_s, sample.name)


def model_title(rec) -> str:
    """How to name the model in a title: its registry name when it has the registry's
    labels (``r3d34-k400``); for a model with its own classes (trained by ``har
    train``), the architecture without the ``-k400`` and its number of classes
    (``r3d10, 2 classes``): such a model does not predict Kinetics-400."""
    import re

    from ..models.zoo import get_entry

    name = rec.model_name
    try:
        own = tuple(rec.labels) != tuple(get_entry(name).class_names)
    except Exception:  # noqa: BLE001 - a name outside the registry is shown as it is
        own = True
    if not own:
        return name
    return f"{re.sub(r'-k400$', '', name)}, {len(rec.labels)} classes"


def _topk_or_none(value, n_classes: int, k: int = 5):
    """Top-k accuracy, or None when the model has k classes or fewer (always 100%)."""
    return None if n_classes <= k else value


@dataclass
class EvalRun:
    report: dict
    confusion: np.ndarray
    labels: tuple[str, ...]


def evaluate(rec, dataset: Dataset, *, progress: Callable[[str], None] | None = None
             ) -> EvalRun:
    """Score every sample of ``dataset`` with ``rec``; the metrics as a JSON-able dict.

    The dataset's classes are matched to the model's labels by name; a video that
    fails is reported under ``failed`` and left out of the metrics."""
    from ..metrics import classification_metrics

    model_labels = tuple(rec.labels)
    index = {name: i for i, name in enumerate(model_labels)}
    unknown = [c for c in dataset.labels if c not in index]
    if unknown:
        raise HarError(f"{display_path(dataset.source)}: class {unknown[0]!r} is not one of "
                       f"the model's {len(model_labels)} labels; evaluate with the model "
                       "trained on these classes (--weights DIR/model.pth)")
    to_model = [index[c] for c in dataset.labels]
    clip_scores, clip_true, video_scores, video_true = [], [], [], []
    videos, failed = [], []
    for sample in dataset.samples:
        if progress is not None:
            progress(sample.name)
        try:
            src = open_sample(sample)
        except HarError as exc:
            failed.append({"path": display_path(sample.name), "error": str(exc)})
            continue
        result = rec.predict(src)
        if result.error or result.probs is None:
            failed.append({"path": display_path(sample.name),
                           "error": result.error or "no clips"})
            continue
        truth = to_model[sample.label]
        for c in result.clips:
            if c.probs is not None:
                clip_scores.append(c.probs)
                clip_true.append(truth)
        video_scores.append(result.probs)
        video_true.append(truth)
        top = int(np.argmax(result.probs))
        videos.append({"path": display_path(sample.name), "label": model_labels[truth],
                       "predicted": model_labels[top], "score": round(float(result.probs[top]), 6),
                       "correct": top == truth, "clips": len(result.clips)})
    if not video_scores:
        raise HarError(f"{display_path(dataset.source)}: no video could be evaluated "
                       f"({failed[0]['error'] if failed else 'empty'})")
    clip_m = classification_metrics(clip_true, np.stack(clip_scores), model_labels)
    video_m = classification_metrics(video_true, np.stack(video_scores), model_labels)
    # Report the dataset's classes only (a Kinetics model has 400 labels).
    present = sorted(set(to_model))
    per_class = [video_m["per_class"][i] for i in present]
    conf = np.asarray(video_m["confusion"])
    report = {
        "schema": SCHEMA, "model": rec.model_name, "data": display_path(dataset.source),
        "video_score": "temporal head" if getattr(rec, "video_head", None) is not None
        else f"{rec.aggregate} of clip probabilities",
        "videos": len(video_true), "clips": len(clip_true), "failed": failed,
        "clip": {"top1": clip_m["top1"],
                 "top5": _topk_or_none(clip_m["top5"], len(model_labels))},
        "video": {"top1": video_m["top1"],
                  "top5": _topk_or_none(video_m["top5"], len(model_labels)),
                  "mean_class_accuracy": video_m["mean_class_accuracy"]},
        "per_class": per_class,
        "confusion_labels": [model_labels[i] for i in present],
        "confusion": conf[np.ix_(present, present)].tolist()
        if len(present) < len(model_labels) else conf.tolist(),
        "predictions": videos,
    }
    # Predictions outside the dataset's classes are counted in the full matrix; the
    # reported one keeps the dataset's rows and columns, plus an "other" column.
    if len(present) < len(model_labels):
        other = conf[present].sum(1) - conf[np.ix_(present, present)].sum(1)
        if other.any():
            report["confusion_labels_predicted_other"] = other.tolist()
    return EvalRun(report, np.asarray(report["confusion"]), tuple(report["confusion_labels"]))
