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
