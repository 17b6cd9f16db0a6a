"""Reading published weights files into a model, strictly.

The authors' ``.pth`` files are ``{'arch': 'resnet-34', 'state_dict': {...}}``
(sometimes with 'epoch' and 'optimizer'), saved from ``DataParallel`` so keys carry
a ``module.`` prefix (once, twice, or not at all), with no ``num_batches_tracked``.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import WeightsError


def _torch_load(path: Path) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive; files from before PyTorch 1.6 are a pickle
    # (protocol 2+ starts with 0x80). Anything else is not a checkpoint at all.
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise WeightsError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor "
                           "a pickle); the file may be corrupt, truncated or another format")
    try:
        # weights_only: never execute code from a weights file.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: refused to load: the file holds Python objects beyond tensors and "
            f"plain containers ({str(exc).splitlines()[0][:160]}); re-save its state_dict "
            "with torch.save(model.state_dict(), ...) from trusted code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        first = first.split(". ")[0].rstrip(".")  # PyTorch adds paragraphs of advice
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint "
                           f"({first}); the file may be truncated "
                           "or in another format") from None


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Remove any number of leading ``module.`` prefixes (DataParallel, nested)."""
    return OrderedDict((re.sub(r"^(module\.)+", "", k), v) for k, v in state.items())


@dataclass
class Checkpoint:
    """A ``.pth`` file read: the state dict and what the file says about itself.

    The layout (docs/weights.md, "Checkpoint layout"): ``{'arch': str, 'state_dict':
    {...}}`` as the authors published, optionally with ``'labels'`` (list of class
    names, in output order), ``'preset'`` (preprocessing, see
    :func:`har.models.info.preset_to_dict`) and ``'har'`` (``{'model': registry name,
    'version': har version, ...}``) as written by fine-tuning.
    """

    state: "OrderedDict[str, torch.Tensor]"
    arch: str | None = None
    labels: tuple[str, ...] | None = None
    preset: dict | None = None
    har: dict = field(default_factory=dict)
    video_head: dict | None = None  # a learned video-level head (har.models.temporal)


# The only globals a flax checkpoint pickled with NumPy needs (both spellings of
# NumPy's core module: numpy.core before NumPy 2, numpy._core after).
_NUMPY_GLOBALS = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnly(pickle.Unpickler):
    """Unpickles dicts, lists and NumPy arrays, and refuses every other global: a
    weights file never runs code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        import numpy

        if name == "ndarray":
            return numpy.ndarray
        if name == "dtype":
            return numpy.dtype
        from numpy.lib import format as _  # noqa: F401  (numpy is importable)

        core = getattr(numpy, "_core", None) or numpy.core
        return getattr(core.multiarray, name)

    def persistent_load(self, pid):  # torch's legacy pickles: not ours
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_numpy_pickle(path: str | Path):
    """A pickle of dicts of NumPy arrays (flax ``variables``), read without running
    code; raises :class:`WeightsError` for anything else."""
    import numpy as np

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnly(fh).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused to load: {str(exc)[:160]}; a flax checkpoint "
                           "holds only dicts of NumPy arrays") from None
    except (EOFError, OSError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise WeightsError(f"{path}: not a readable checkpoint ({type(exc).__name__}); "
                           "the file may be truncated") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                check(v, f"{where}/{k}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiu"):
            raise WeightsError(f"{path}: {where or '/'} is not a numeric array; "
                               "not a flax checkpoint")

    check(obj, "")
    return obj


def _is_numpy_pickle(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head[:1] == b"\x80" and path.suffix.lower() == ".ckpt"


def read_checkpoint(path: str | Path, expected_arch: str | None = None) -> Checkpoint:
    """A ``.pth``/``.pt`` file -> :class:`Checkpoint` (prefixes stripped); a flax
    ``.ckpt`` (I3D's published variables) -> its state dict in this package's layout."""
    path = Path(path)
    if _is_numpy_pickle(path):
        return _read_flax(path, expected_arch)
    obj = _torch_load(path)
    arch = labels = preset = video_head = None
    har: dict = {}
    if isinstance(obj, Mapping) and "state_dict" in obj:
        arch = obj.get("arch")
        if expected_arch and isinstance(arch, str) and arch != expected_arch:
            raise WeightsError(f"{path}: checkpoint is for arch {arch!r}, but the model is "
                               f"{expected_arch!r}; pick the matching --model")
        raw_labels = obj.get("labels")
        if raw_labels is not None:
            if not (isinstance(raw_labels, (list, tuple))
                    and all(isinstance(x, str) for x in raw_labels)):
                raise WeightsError(f"{path}: 'labels' must be a list of class names")
            labels = tuple(raw_labels)
        if isinstance(obj.get("preset"), Mapping):
            preset = dict(obj["preset"])
        if isinstance(obj.get("har"), Mapping):
            har = dict(obj["har"])
        if isinstance(obj.get("video_head"), Mapping):
            video_head = dict(obj["video_head"])
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return Checkpoint(strip_prefixes(obj), arch if isinstance(arch, str) else None,
                      labels, preset, har, video_head)


def read_state_dict(path: str | Path, expected_arch: str | None = None
                    ) -> "OrderedDict[str, torch.Tensor]":
    """A ``.pth``/``.pt`` file -> a clean state dict (prefixes stripped)."""
    return read_checkpoint(path, expected_arch).state


def head_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """Number of classes of the classifier in ``state`` (``fc`` or ``classifier``)."""
    for key in ("fc.bias", "classifier.bias", "fc.weight", "classifier.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor],
                           source: str) -> None:
    """Load strictly, with a message that says what does not fit and where."""
    own = model.state_dict()
    # The 2017-2018 checkpoints predate num_batches_tracked: it is a counter with no
    # effect in eval mode, so its absence is not an error.
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v.clone()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    fc = [m for m in mismatched if m[0] in ("fc.weight", "fc.bias", "classifier.weight",
                                            "classifier.bias")]
    if fc and len(mismatched) == len(fc):
        k, got, want = fc[0]
        raise WeightsError(f"{source}: the classifier has {got[0]} classes but the model "
                           f"expects {want[0]}; these weights belong to another label set "
                           "(pass num_classes=/labels=, or save 'labels' in the checkpoint: "
                           "docs/weights.md)")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        k, got, want = mismatched[0]
        problems.append(f"{len(mismatched)} shape mismatch(es) (e.g. {k}: file {got}, model {want})")
    if problems:
        raise WeightsError(f"{source}: weights do not fit the architecture: "
                           + "; ".join(problems) + "; check that --model matches the file")
    model.load_state_dict(state, strict=True)


def load_weights_into(model: nn.Module, path: str | Path, entry=None,
                      checkpoint: Checkpoint | None = None) -> None:
    """Read ``path`` in whichever published format it is and load it into ``model``.

    ``checkpoint``: the file already read by :func:`read_checkpoint` (not read twice).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from .onnx_import import read_onnx_state_dict

        state = read_onnx_state_dict(path, model)
    else:
        if checkpoint is None:
            checkpoint = read_checkpoint(path, expected_arch=getattr(entry, "arch", None))
        state = checkpoint.state
        adapt = getattr(model, "adapt_state_dict", None)
        if adapt is not None:  # e.g. DenseNet's published 'norm.1' key names
            state = adapt(state)
    load_state_dict_strict(model, state, str(path))


def _read_flax(path: Path, expected_arch: str | None) -> Checkpoint:
    from .i3d import ARCH, state_dict_from_flax

    if expected_arch not in (None, ARCH):
        raise WeightsError(f"{path}: a flax checkpoint (I3D's published format) cannot be "
                           f"loaded into {expected_arch!r}; use --model i3d-k400")
    variables = read_numpy_pickle(path)
    if not (isinstance(variables, dict) and "params" in variables
            and "batch_stats" in variables):
        raise WeightsError(f"{path}: a pickle without flax 'params' and 'batch_stats'; "
                           "not an I3D checkpoint")
    try:
        state = state_dict_from_flax(variables)
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: does not fit the I3D network ({str(exc)[:120]}); "
                           "check that it is DeepMind's Kinetics-400 I3D") from None
    return Checkpoint(OrderedDict(state), ARCH)
