"""3D DenseNet-BC of Hara et al. (CVPR 2018): the builder and the registry entries
``densenet121-k400`` and ``densenet201-k400``.

The network is in :mod:`har.models.nets.densenet3d` (reachable from here, imported
with PyTorch on first use).
"""

from __future__ import annotations

from functools import partial

from .hara_common import HARA_LICENSE, HARA_TABLE3, hara_drive_file
from .registry import ModelEntry, lazy_networks, network, register_model

__getattr__ = lazy_networks("densenet3d")


def densenet3d(depth: int = 121, num_classes: int = 400):
    """3D DenseNet-BC 121, 169, 201 or 264."""
    return network("densenet3d", "densenet3d")(depth, num_classes=num_classes)


register_model(ModelEntry(
    name="densenet121-k400", builder=partial(densenet3d, 121), arch="densenet-121",
    weights=(hara_drive_file("densenet-121-kinetics.pth"),), accuracy=HARA_TABLE3,
    description="3D DenseNet-121, Hara et al., 16x112x112 clips", license=HARA_LICENSE))
register_model(ModelEntry(
    name="densenet201-k400", builder=partial(densenet3d, 201), arch="densenet-201",
    weights=(hara_drive_file("densenet-201-kinetics.pth"),), accuracy=HARA_TABLE3,
    description="3D DenseNet-201, Hara et al., 16x112x112 clips", license=HARA_LICENSE))
