"""A learned long-range head: the whole video's sequence of clip features -> its classes.

The 3D convolutions see 16 frames. The paper's video score, the mean of the clips'
probabilities, is blind to order: "A then B" and "B then A" made of the same clips
get the same score. :class:`TemporalHead` reads the sequence of clip embeddings
(``forward_features``, one ``D``-vector per clip) with dilated temporal convolutions
(receptive field of 15 clips with the default three layers), then pools over time by
mean and max. It is small (about 0.3 M parameters for D = 512), trained with the
backbone frozen (``har train --head temporal``), saved in the checkpoint under
``video_head`` and used by ``har predict`` in place of the mean of clip scores.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEAD_FORMAT = "har-temporal-head/1"


class TemporalHead(nn.Module):
    """``(B, L, D)`` clip features (and a ``(B, L)`` mask of real clips) -> ``(B, C)``."""

    def __init__(self, dim: int, num_classes: int, *, hidden: int = 128,
                 dilations: tuple[int, ...] = (1, 2, 4), dropout: float = 0.2) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "hidden": hidden,
                       "dilations": list(dilations), "dropout": dropout}
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size=3, padding=d, dilation=d) for d in dilations)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, num_classes)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if feats.ndim == 2:
            feats = feats.unsqueeze(0)
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        m = mask.unsqueeze(1).to(feats.dtype)  # (B, 1, L)
        x = F.gelu(self.proj(self.norm(feats))).transpose(1, 2) * m  # (B, H, L)
        for conv in self.convs:
            x = (x + F.gelu(conv(self.drop(x)))) * m  # padding never leaks into real clips
        count = m.sum(-1).clamp(min=1)
        mean = x.sum(-1) / count
        peak = x.masked_fill(m == 0, float("-inf")).amax(-1)
        return self.out(torch.cat([mean, peak], dim=1))

    # -- saving ------------------------------------------------------------------------
    def to_checkpoint(self) -> dict[str, Any]:
        """What goes under ``video_head`` in a checkpoint (tensors and plain data)."""
        return {"format": HEAD_FORMAT, "type": "temporal", "config": dict(self.config),
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> "TemporalHead":
        if data.get("format") != HEAD_FORMAT or data.get("type") != "temporal":
            raise ValueError(f"not a {HEAD_FORMAT} head")
        cfg = dict(data["config"])
        head = cls(int(cfg["dim"]), int(cfg["num_classes"]), hidden=int(cfg["hidden"]),
                   dilations=tuple(int(d) for d in cfg["dilations"]),
                   dropout=float(cfg.get("dropout", 0.0)))
        head.load_state_dict(dict(data["state_dict"]), strict=True)
        return head.eval()

    @torch.inference_mode()
    def video_probs(self, feats: np.ndarray) -> np.ndarray:
        """``(L, D)`` features of one video's clips, in time order -> ``(C,)`` probabilities."""
        x = torch.as_tensor(np.asarray(feats, dtype=np.float32)).unsqueeze(0)
        return F.softmax(self.eval()(x).float(), dim=-1)[0].numpy()


def pad_sequences(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length ``(L_i, D)`` arrays -> ``(B, L, D)`` zero-padded and a ``(B, L)`` mask."""
    n = max(len(s) for s in seqs)
    d = seqs[0].shape[1]
    out = torch.zeros(len(seqs), n, d)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s)
        mask[i, :len(s)] = True
    return out, mask
