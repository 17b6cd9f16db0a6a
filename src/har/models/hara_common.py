"""What the registry entries of Hara et al.'s models share (``resnet3d``,
``hara_variants``, ``densenet3d``): the licence and where their checkpoints are
published. No PyTorch."""

from __future__ import annotations

from .registry import WeightsFile

HARA_LICENSE = "MIT (code); weights trained on Kinetics-400 (YouTube videos, research use)"
# The paper's Table 3 numbers for the other architectures are not restated here (not
# verified for this registry); their entries point to the table instead.
HARA_TABLE3 = "see Hara et al., CVPR 2018, Table 3 (Kinetics-400 val, video-level)"


def hara_drive_file(filename: str) -> WeightsFile:
    """A checkpoint the authors publish on their Google Drive only (no pinned digest)."""
    return WeightsFile(filename=filename, format="pth",
                       note=("the authors' Google Drive folder linked from the README of "
                             f"kenshohara/3D-ResNets-PyTorch (file {filename})"))
