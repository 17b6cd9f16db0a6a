"""What a loaded model is: its provenance, carried with it and into exported files.

``ModelInfo`` travels as ``model.har_info`` on a loaded PyTorch module, as the
``har`` entry of a fine-tuned checkpoint (see docs/weights.md) and, flattened to
strings, as the metadata of exported ONNX / OpenVINO files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..transforms import Preset

# Keys of the string metadata written into exported files (ONNX metadata_props,
# OpenVINO rt_info under "har").
META_KEYS = ("har_format", "model", "arch", "labels", "preset", "weights_sha256",
             "har_version", "feature_dim", "outputs", "video_head")
META_FORMAT = "har-model/1"


@dataclass(frozen=True)
class ModelInfo:
    """Provenance of a model: registry entry, labels, preprocessing, weights digest."""

    model: str  # registry name, e.g. "r3d34-k400"
    arch: str  # the checkpoints' 'arch' string, e.g. "resnet-34"
    labels: tuple[str, ...] = field(repr=False)
    preset: Preset
    weights_sha256: str | None = None  # digest of the file the weights were read from
    weights_path: str | None = None
    feature_dim: int | None = None  # D of forward_features' (N, D)
    # A learned video-level head (har.models.temporal.TemporalHead.to_checkpoint()):
    # it travels with the model into checkpoints and exported files.
    video_head: dict | None = field(default=None, repr=False, compare=False)

    def temporal_head(self):
        """The video head as a module, or None."""
        if self.video_head is None:
            return None
        from .temporal import TemporalHead

        return TemporalHead.from_checkpoint(self.video_head)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_metadata(self, har_version: str | None = None) -> dict[str, str]:
        """Flat string metadata for an exported file."""
        if har_version is None:
            from .. import __version__ as har_version
        return {
            "har_format": META_FORMAT, "model": self.model, "arch": self.arch,
            "labels": json.dumps(list(self.labels)),
            "preset": json.dumps(preset_to_dict(self.preset)),
            "weights_sha256": self.weights_sha256 or "",
            "har_version": har_version,
            "feature_dim": str(self.feature_dim or ""),
            "outputs": "logits,features",
            **({"video_head": _encode_head(self.video_head)} if self.video_head else {}),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> "ModelInfo | None":
        """The inverse of :meth:`to_metadata`; None when ``meta`` is not har's."""
        if meta.get("har_format") != META_FORMAT:
            return None
        fd = meta.get("feature_dim") or ""
        return cls(model=meta.get("model", ""), arch=meta.get("arch", ""),
                   labels=tuple(json.loads(meta["labels"])),
                   preset=preset_from_dict(json.loads(meta["preset"])),
                   weights_sha256=meta.get("weights_sha256") or None,
                   feature_dim=int(fd) if fd.isdigit() else None,
                   video_head=_decode_head(meta["video_head"]) if meta.get("video_head")
                   else None)


def _encode_head(head: dict) -> str:
    """A head's checkpoint dict as text for file metadata (torch.save, base64)."""
    import base64
    import io

    import torch

    buf = io.BytesIO()
    torch.save(head, buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _decode_head(text: str) -> dict:
    import base64
    import io

    import torch

    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True)


def preset_to_dict(p: Preset) -> dict[str, Any]:
    return {"name": p.name, "clip_len": p.clip_len,
            "resize": list(p.resize) if isinstance(p.resize, tuple) else p.resize,
            "crop": p.crop, "scale": p.scale, "mean": list(p.mean), "std": list(p.std),
            **({"fps": p.fps} if p.fps else {})}


def preset_from_dict(d: Mapping[str, Any]) -> Preset:
    resize = d.get("resize", 112)
    return Preset(name=str(d.get("name", "custom")), clip_len=int(d.get("clip_len", 16)),
                  resize=tuple(int(v) for v in resize) if isinstance(resize, (list, tuple))
                  else int(resize),
                  crop=int(d.get("crop", 112)), scale=float(d.get("scale", 1.0)),
                  mean=tuple(float(v) for v in d["mean"]) if "mean" in d else
                  (114.7748, 107.7354, 99.4750),
                  std=tuple(float(v) for v in d["std"]) if "std" in d else (1.0, 1.0, 1.0),
                  fps=float(d["fps"]) if d.get("fps") else None)
