"""The 3D ResNets of Hara, Kataoka and Satoh (CVPR 2018): the builder and the registry
entries ``r3d10-k400`` ... ``r3d200-k400``.

The network (``ResNet3D``, ``BasicBlock``, ``Bottleneck``, ...) is in
:mod:`har.models.nets.resnet3d`; its names are also reachable from here, imported
with PyTorch on first use. This module itself needs no PyTorch, so reading the
registry (an OpenVINO run) never imports it.
"""

from __future__ import annotations

from functools import partial

from .hara_common import HARA_LICENSE, hara_drive_file
from .registry import ModelEntry, WeightsFile, lazy_networks, network, register_model

__getattr__ = lazy_networks("resnet3d")


def resnet3d(depth: int, num_classes: int = 400, shortcut_type: str | None = None,
             **kwargs):
    """A 3D ResNet of the given depth; shortcut defaults to the published one (A for
    ResNet-10/18/34, B for the bottleneck depths)."""
    return network("resnet3d", "resnet3d")(depth, num_classes=num_classes,
                                           shortcut_type=shortcut_type, **kwargs)


def _hara(depth: int, top1: float | None, *files: WeightsFile) -> dict:
    """The fields every Hara 3D ResNet entry shares. ``top1``: video-level top-1 on the
    Kinetics-400 validation set, Hara et al., CVPR 2018, Table 3 (None: not reported)."""
    return dict(
        builder=partial(resnet3d, depth), arch=f"resnet-{depth}",
        weights=files + (hara_drive_file(f"resnet-{depth}-kinetics.pth"),),
        top1=top1,
        accuracy=(f"{top1}% top-1 video-level, Kinetics-400 val (Hara et al., CVPR 2018, Table 3)"
                  if top1 else "not reported in the paper"),
        description=f"3D ResNet-{depth}, Hara et al., shortcut "
                    f"{'A' if depth <= 34 else 'B'}, 16x112x112 clips",
        license=HARA_LICENSE)


# OpenCV's action-recognition sample uses this ONNX export of resnet-34-kinetics.pth.
# The one digest published for it is the sha1 in OpenCV's test-data list; no public
# source gives its sha256 or size, so neither is pinned.
OPENCV_R34_ONNX = WeightsFile(
    filename="resnet-34_kinetics.onnx", format="onnx",
    urls=("https://www.dropbox.com/s/065l4vr8bptzohb/resnet-34_kinetics.onnx?dl=1",),
    sha1="88897629e4abb0fddef939f0c2d668a4edeb0788",
    digest_source="OpenCV's test-data list, opencv/opencv_extra "
                  "testdata/dnn/download_models.py, entry 'ResNet-34_kinetics (ONNX)'",
    note="the ONNX export OpenCV's action-recognition sample uses",
)

register_model(ModelEntry(name="r3d10-k400", **_hara(10, None)))
register_model(ModelEntry(name="r3d18-k400", **_hara(18, 54.2)))
register_model(ModelEntry(name="r3d34-k400", **_hara(34, 60.1, OPENCV_R34_ONNX)))
register_model(ModelEntry(name="r3d50-k400", **_hara(50, 61.3)))
register_model(ModelEntry(name="r3d101-k400", **_hara(101, 62.8)))
register_model(ModelEntry(name="r3d152-k400", **_hara(152, 63.0)))
register_model(ModelEntry(name="r3d200-k400", **_hara(200, 63.1)))
