"""From clip logits to clip and video scores (pure functions on arrays)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .results import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits, computed in float64 for stability."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def video_scores(clip_probs: np.ndarray) -> np.ndarray:
    """The paper's video-level protocol: the mean of the clips' probabilities."""
    clip_probs = np.asarray(clip_probs)
    if clip_probs.ndim != 2 or clip_probs.shape[0] == 0:
        raise ValueError("need (num_clips, num_classes) probabilities with at least one clip")
    return clip_probs.mean(axis=0)


def topk(probs: np.ndarray, labels: Sequence[str], k: int = 5) -> list[Prediction]:
    """Highest ``k`` scores, best first (ties broken by class index)."""
    k = max(1, min(k, len(probs)))
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [Prediction(labels[i], float(probs[i])) for i in order]


# -- long-range evidence: other ways to pool clip scores into a video score ------
AGGREGATES = ("mean", "max", "topk-mean")


def max_scores(clip_probs: np.ndarray) -> np.ndarray:
    """Per class, the highest probability any clip gave it.

    Suits long videos in which an action happens only once: the mean over all clips
    dilutes a short action, the max does not (but one confident wrong clip wins).
    """
    clip_probs = _check(clip_probs)
    return clip_probs.max(axis=0)


def topk_mean_scores(clip_probs: np.ndarray, k: int = 3) -> np.ndarray:
    """Per class, the mean of its ``k`` highest clip probabilities.

    Between mean and max: one stray clip cannot decide alone, and an action that
    fills only ``k`` clips of a long video is not diluted. ``k`` larger than the
    number of clips means all clips (the plain mean).
    """
    clip_probs = _check(clip_probs)
    if k < 1:
        raise ValueError("k must be at least 1")
    k = min(k, clip_probs.shape[0])
    # Partition puts the k largest of each column in the last k rows (any order).
    top = np.partition(clip_probs, clip_probs.shape[0] - k, axis=0)[-k:]
    return top.mean(axis=0)


def aggregate_scores(clip_probs: np.ndarray, method: str = "mean", k: int = 3) -> np.ndarray:
    """Video scores by ``method``: ``mean`` (the paper's protocol), ``max`` or
    ``topk-mean`` (mean of the ``k`` best clips per class)."""
    if method == "mean":
        return video_scores(clip_probs)
    if method == "max":
        return max_scores(clip_probs)
    if method == "topk-mean":
        return topk_mean_scores(clip_probs, k)
    raise ValueError(f"unknown aggregate {method!r}; use one of {', '.join(AGGREGATES)}")


def evidence_clips(clip_probs: np.ndarray, class_index: int, k: int = 3) -> list[int]:
    """Row numbers of the (at most ``k``) clips with the highest probability for
    ``class_index``, best first; ties go to the earlier clip.

    These are the clips that carried the decision: with ``max`` the first one alone
    sets the score, with ``topk-mean`` (same ``k``) exactly these set it, and with
    ``mean`` they are the strongest contributors.
    """
    clip_probs = _check(clip_probs)
    column = clip_probs[:, class_index]
    order = np.argsort(-column, kind="stable")[:max(1, k)]
    return [int(i) for i in order]


def _check(clip_probs: np.ndarray) -> np.ndarray:
    clip_probs = np.asarray(clip_probs)
    if clip_probs.ndim != 2 or clip_probs.shape[0] == 0:
        raise ValueError("need (num_clips, num_classes) probabilities with at least one clip")
    return clip_probs
