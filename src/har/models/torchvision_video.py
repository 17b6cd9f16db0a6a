"""torchvision's Kinetics-400 video ResNets (r3d_18, mc3_18, r2plus1d_18): their
preset, builders and registry entries ``tv-r3d18-k400``, ``tv-mc3-18-k400`` and
``tv-r2plus1d18-k400``.

The networks are in :mod:`har.models.nets.torchvision_video` (plain PyTorch, no
torchvision needed; reachable from here, imported on first use).
"""

from __future__ import annotations

from ..transforms import Preset
from .registry import ModelEntry, WeightsFile, lazy_networks, network, register_model

__getattr__ = lazy_networks("torchvision_video")

# torchvision's preprocessing for its video models: frames resized to 128x171 (h, w),
# centre crop 112, scaled to [0, 1], normalised with the Kinetics mean/std.
TORCHVISION_KINETICS = Preset(name="torchvision-kinetics", clip_len=16, resize=(128, 171),
                              crop=112, scale=1 / 255,
                              mean=(0.43216, 0.394666, 0.37645),
                              std=(0.22803, 0.22145, 0.216989))


def r3d_18(num_classes: int = 400):
    return network("torchvision_video", "r3d_18")(num_classes=num_classes)


def mc3_18(num_classes: int = 400):
    """Mixed convolutions: 3D in the first stage, spatial-only (1x3x3) after."""
    return network("torchvision_video", "mc3_18")(num_classes=num_classes)


def r2plus1d_18(num_classes: int = 400):
    return network("torchvision_video", "r2plus1d_18")(num_classes=num_classes)


_LICENSE = "BSD-3-Clause (torchvision code); weights trained on Kinetics-400 (research use)"
_ACC = "torchvision docs, KINETICS400_V1 weights, video-level (5 clips of 16 frames)"


def _torchvision(name: str, builder, filename: str, top1: float, top5: float,
                 description: str, docs: str = "") -> ModelEntry:
    """torchvision names each file with the first 8 hex digits of its sha256 and checks
    only those: so do we (sha256_prefix)."""
    return ModelEntry(
        name=name, builder=builder, arch=filename.split("-")[0], preset=TORCHVISION_KINETICS,
        weights=(WeightsFile(filename=filename, format="torchvision",
                             urls=(f"https://download.pytorch.org/models/{filename}",),
                             sha256_prefix=filename.rsplit("-", 1)[1].split(".")[0],
                             digest_source="the file name torchvision publishes: its first "
                                           "8 hex digits of the sha256 (torchvision checks "
                                           "just those)",
                             note="torchvision.models.video"),),
        accuracy=f"{top1}% top-1, {top5}% top-5, Kinetics-400 val ({_ACC}){docs}",
        top1=top1, top5=top5, description=description, license=_LICENSE)


register_model(_torchvision(
    "tv-r3d18-k400", r3d_18, "r3d_18-b3b3357e.pth", 63.2, 83.479,
    "R3D-18, Tran et al. 2018 (torchvision r3d_18), 16x112x112 clips"))
register_model(_torchvision(
    "tv-mc3-18-k400", mc3_18, "mc3_18-a90a0ba3.pth", 63.96, 84.13,
    "MC3-18, Tran et al. 2018 (torchvision mc3_18), 16x112x112 clips"))
register_model(_torchvision(
    "tv-r2plus1d18-k400", r2plus1d_18, "r2plus1d_18-91a641e6.pth", 57.5, 78.81,
    "R(2+1)D-18, Tran et al. 2018 (torchvision r2plus1d_18), 16x112x112 clips",
    " (as the torchvision 0.13 docs state it)"))
