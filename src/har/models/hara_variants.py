"""The other Kinetics-400 architectures of Hara et al. (CVPR 2018): Wide ResNet-50,
ResNeXt-101 and pre-activation ResNet-200, their builders and registry entries.

The networks are in :mod:`har.models.nets.hara_variants` (reachable from here,
imported with PyTorch on first use).
"""

from __future__ import annotations

from functools import partial

from .hara_common import HARA_LICENSE, HARA_TABLE3, hara_drive_file
from .registry import ModelEntry, lazy_networks, network, register_model

__getattr__ = lazy_networks("hara_variants")


def wide_resnet50(num_classes: int = 400, k: int = 2):
    """Wide ResNet-50: stage widths 64k..512k, bottleneck expansion 2 (fc sees 1024k)."""
    return network("hara_variants", "wide_resnet50")(num_classes=num_classes, k=k)


def resnext101(num_classes: int = 400):
    """ResNeXt-101, cardinality 32: stage planes 128..1024, expansion 2 (fc sees 2048)."""
    return network("hara_variants", "resnext101")(num_classes=num_classes)


def preact_resnet(depth: int = 200, num_classes: int = 400):
    """Pre-activation 3D ResNet (50, 101, 152 or 200)."""
    return network("hara_variants", "preact_resnet")(depth, num_classes=num_classes)


register_model(ModelEntry(
    name="wrn50-k400", builder=partial(wide_resnet50, k=2), arch="wideresnet-50",
    weights=(hara_drive_file("wideresnet-50-kinetics.pth"),), accuracy=HARA_TABLE3,
    description="3D Wide ResNet-50 (k=2), Hara et al., shortcut B, 16x112x112 clips",
    license=HARA_LICENSE))
register_model(ModelEntry(
    name="resnext101-k400", builder=resnext101, arch="resnext-101",
    weights=(hara_drive_file("resnext-101-kinetics.pth"),), accuracy=HARA_TABLE3,
    description="3D ResNeXt-101 (cardinality 32), Hara et al., shortcut B, 16x112x112 clips",
    license=HARA_LICENSE))
register_model(ModelEntry(
    name="preact200-k400", builder=partial(preact_resnet, 200), arch="preresnet-200",
    weights=(hara_drive_file("preresnet-200-kinetics.pth"),), accuracy=HARA_TABLE3,
    description="3D pre-activation ResNet-200, Hara et al., shortcut B, 16x112x112 clips",
    license=HARA_LICENSE))
