"""Read an ONNX export of a model into the matching PyTorch module's state dict.

Exported initializer names are arbitrary (often plain numbers), so nothing here
trusts them. Instead both sides are reduced to a sequence of *units* in execution
order, and units are paired by position and shape:

* ONNX side: the graph is walked in topological order. A ``Conv`` whose output
  feeds only a ``BatchNormalization`` forms a unit with it; a ``Conv`` with a bias
  and no such BN is an exporter-folded conv+BN; other BNs stand alone; ``Gemm``
  (or ``MatMul`` followed by ``Add``) is a linear unit. ``Identity`` nodes are looked
  through, and parameters may come from initializers or ``Constant`` nodes.
* Model side: one forward pass on a small dummy input with hooks records the order
  in which ``Conv3d``/``BatchNorm*``/``Linear`` modules run, and which BN consumes a
  conv's output directly (same tensor, not modified in place in between).

Two units pair when their kinds and shapes agree. Independent branches (a residual
block's shortcut and its main path) may be emitted in either order, so a unit may
pair with one a few places ahead; anything else is refused with a message that says
where the two diverged.

Folded BN: an exporter that fused ``y = BN(conv(x, W))`` into ``conv(x, W') + b'``
leaves no BN statistics. The model's BN is then set to an exact identity plus
shift: weight 1, running_mean 0, running_var ``1 - eps`` (so ``sqrt(var + eps)``
is 1) and bias ``b'``; the conv takes ``W'``. The outputs equal the export's.

The converted state dict is cached (``<cache>/converted``) keyed by the ONNX file's
path, size and mtime and by the model's parameter layout, so the second load skips
the graph walk.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError

_WINDOW = 8  # how far ahead (in units) an independent branch may have been emitted
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _import_onnx():
    try:
        import onnx  # noqa: F401
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        from ..defaults import pip_hint

        raise WeightsError("reading .onnx weights needs the 'onnx' package: "
                           f"pip install onnx  (or {pip_hint('onnx')})") from None
    return onnx


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape) if len(shape) else "scalar"


# -- ONNX side -------------------------------------------------------------------
@dataclass
class _OnnxUnit:
    kind: str  # "conv", "bn", "linear"
    node_index: int  # index of the (first) node in the topologically sorted graph
    op: str
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    eps: float = 1e-5
    folded: bool = False  # conv carries an exporter-folded BN (a bias)
    has_bn: bool = False
    nodes: tuple[int, ...] = ()  # every node index belonging to the unit
    pred: frozenset = frozenset()  # units whose outputs reach its input

    def signature(self) -> tuple:
        if self.kind == "conv":
            return ("conv", tuple(self.tensors["weight"].shape), self.has_bn)
        if self.kind == "bn":
            return ("bn", self.tensors["scale"].shape[0])
        return ("linear", tuple(self.tensors["weight"].shape))

    def describe(self) -> str:
        if self.kind == "conv":
            extra = (" and a BatchNormalization" if self.has_bn and not self.folded
                     else " and a bias (BN folded in)" if self.folded else "")
            return (f"ONNX node {self.node_index} ({self.op}) has weight "
                    f"{_shape(self.tensors['weight'].shape)}{extra}")
        if self.kind == "bn":
            return (f"ONNX node {self.node_index} ({self.op}) normalises "
                    f"{self.tensors['scale'].shape[0]} channels")
        return (f"ONNX node {self.node_index} ({self.op}) is a linear layer "
                f"{self.tensors['weight'].shape[1]} -> {self.tensors['weight'].shape[0]}")


def _toposort(graph) -> list:
    """Nodes in an order where every input is produced before use (stable)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    order, pending = [], nodes
    while pending:
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                order.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a dangling input: keep file order
            order.extend(rest)
            break
        pending = rest
    return order


def _onnx_units(path: Path) -> list[_OnnxUnit]:
    onnx = _import_onnx()
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... on bad files
        raise WeightsError(f"{path}: not a readable ONNX file ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); the "
                           "download may be truncated: delete it and fetch it again") from None
    graph = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias: dict[str, str] = {}

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    nodes = _toposort(graph)
    consumers: dict[str, list[int]] = {}
    for idx, n in enumerate(nodes):
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_float", "value_int"):
                    consts[n.output[0]] = np.array(a.f if a.name == "value_float" else a.i)
                elif a.name in ("value_floats", "value_ints"):
                    consts[n.output[0]] = np.array(list(a.floats) or list(a.ints))
        elif n.op_type == "Identity":
            alias[n.output[0]] = n.input[0]
        elif n.op_type == "Cast" and resolve(n.input[0]) in consts:
            # e.g. fp16-stored weights cast to float32 in the graph
            consts[n.output[0]] = np.asarray(consts[resolve(n.input[0])], dtype=np.float32)
    for idx, n in enumerate(nodes):
        if n.op_type in ("Identity", "Constant"):
            continue
        for i in n.input:
            consumers.setdefault(resolve(i), []).append(idx)

    def param(node, pos: int, what: str) -> np.ndarray | None:
        if pos >= len(node.input) or node.input[pos] == "":
            return None
        name = resolve(node.input[pos])
        if name not in consts:
            raise WeightsError(f"{path}: ONNX node {nodes.index(node)} ({node.op_type}) takes its "
                               f"{what} from a computed value, not a stored tensor; "
                               "this export is not supported")
        return np.asarray(consts[name], dtype=np.float32)

    def attr(node, name: str, default: Any) -> Any:
        for a in node.attribute:
            if a.name == name:
                return a.f if a.type == a.FLOAT else a.i if a.type == a.INT else default
        return default

    units: list[_OnnxUnit] = []
    taken_bn: set[int] = set()
    for idx, n in enumerate(nodes):
        op = n.op_type
        if op in ("Conv", "ConvTranspose"):
            if op != "Conv":
                raise WeightsError(f"{path}: ONNX node {idx} is a {op}; these models have none")
            unit = _OnnxUnit("conv", idx, op, {"weight": param(n, 1, "weight")}, nodes=(idx,))
            bias = param(n, 2, "bias")
            users = consumers.get(resolve(n.output[0]), [])
            if len(users) == 1 and nodes[users[0]].op_type == "BatchNormalization":
                bn = nodes[users[0]]
                unit.has_bn = True
                unit.tensors.update(_bn_tensors(bn, param))
                unit.eps = float(attr(bn, "epsilon", 1e-5))
                if bias is not None:  # conv bias before a BN: shift the BN's mean instead
                    unit.tensors["mean"] = unit.tensors["mean"] - bias
                taken_bn.add(users[0])
                unit.nodes = (idx, users[0])
            elif bias is not None:
                unit.has_bn = unit.folded = True
                unit.tensors["bias"] = bias
            units.append(unit)
        elif op == "BatchNormalization":
            if idx in taken_bn:
                continue
            unit = _OnnxUnit("bn", idx, op, _bn_tensors(n, param), nodes=(idx,))
            unit.eps = float(attr(n, "epsilon", 1e-5))
            units.append(unit)
        elif op == "Gemm":
            w = param(n, 1, "weight")
            if attr(n, "transA", 0):
                raise WeightsError(f"{path}: ONNX node {idx} (Gemm) transposes its input; "
                                   "this export is not supported")
            if not attr(n, "transB", 0):
                w = w.T
            w = w * float(attr(n, "alpha", 1.0))
            b = param(n, 2, "bias")
            b = (np.zeros(w.shape[0], np.float32) if b is None
                 else np.broadcast_to(b * float(attr(n, "beta", 1.0)), (w.shape[0],)).copy())
            units.append(_OnnxUnit("linear", idx, op, {"weight": np.ascontiguousarray(w),
                                                       "bias": b}, nodes=(idx,)))
        elif op == "MatMul":
            name = resolve(n.input[1])
            if name not in consts:
                continue  # an activation x activation product: not a layer
            w = np.asarray(consts[name], dtype=np.float32).T
            b = np.zeros(w.shape[0], np.float32)
            members = (idx,)
            users = consumers.get(resolve(n.output[0]), [])
            if len(users) == 1 and nodes[users[0]].op_type == "Add":
                add = nodes[users[0]]
                other = [resolve(i) for i in add.input if resolve(i) != resolve(n.output[0])]
                if other and other[0] in consts:
                    b = np.broadcast_to(np.asarray(consts[other[0]], np.float32),
                                        (w.shape[0],)).copy()
                    members = (idx, users[0])
            units.append(_OnnxUnit("linear", idx, op, {"weight": np.ascontiguousarray(w),
                                                       "bias": b}, nodes=members))

    # Dataflow: tag every value with the units whose outputs reach it through
    # parameter-free ops (ReLU, pooling, Add, Concat, reshapes ...).
    owner = {i: u for u in units for i in u.nodes}
    tags: dict[str, frozenset] = {}
    for idx, n in enumerate(nodes):
        if n.op_type in ("Identity", "Constant"):
            continue
        unit = owner.get(idx)
        if unit is not None and idx == unit.nodes[0]:
            unit.pred = tags.get(resolve(n.input[0]), frozenset())
        if unit is not None:
            out_tag = frozenset([id(unit)])
        else:
            out_tag = frozenset().union(*(tags.get(resolve(i), frozenset()) for i in n.input))
        for o in n.output:
            tags[o] = out_tag
    return units


def _bn_tensors(node, param) -> dict[str, np.ndarray]:
    return {"scale": param(node, 1, "scale"), "shift": param(node, 2, "bias"),
            "mean": param(node, 3, "running mean"), "var": param(node, 4, "running variance")}


# -- model side ------------------------------------------------------------------
@dataclass
class _ModelUnit:
    kind: str
    names: list[str]  # module names: [conv] or [conv, bn] or [bn] or [linear]
    modules: list[nn.Module]
    pred: frozenset = frozenset()

    def signature(self) -> tuple:
        m = self.modules[0]
        if self.kind == "conv":
            return ("conv", tuple(m.weight.shape), len(self.modules) == 2)
        if self.kind == "bn":
            return ("bn", m.num_features)
        return ("linear", tuple(m.weight.shape))

    def describe(self) -> str:
        m = self.modules[0]
        if self.kind == "conv":
            bn = f" followed by {self.names[1]}" if len(self.names) == 2 else " (no BN after it)"
            return f"{self.names[0]} expects weight {_shape(m.weight.shape)}{bn}"
        if self.kind == "bn":
            return f"{self.names[0]} expects a BatchNormalization of {m.num_features} channels"
        return f"{self.names[0]} expects a linear layer {m.in_features} -> {m.out_features}"


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


class _Tagger(torch.overrides.TorchFunctionMode):
    """Tags every tensor with the units whose outputs reach it (the dataflow)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[int, frozenset] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique while tracing

    def tag(self, t: torch.Tensor) -> frozenset:
        return self.tags.get(id(t), frozenset())

    def set(self, t: torch.Tensor, tag: frozenset) -> None:
        self.tags[id(t)] = tag
        self.keep.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tag = frozenset().union(*(self.tag(t) for t in _tensors((args, kwargs))))
        for t in _tensors(out):
            self.set(t, tag)
        return out


def _model_units(model: nn.Module) -> list[_ModelUnit]:
    """Parametric units of ``model`` in execution order, with their dataflow."""
    names = {m: n for n, m in model.named_modules()}
    units: list[_ModelUnit] = []
    by_module: dict[int, _ModelUnit] = {}
    last_conv: dict[int, tuple[_ModelUnit, int]] = {}  # output id -> (unit, version)
    tagger = _Tagger()
    handles = []

    def hook(mod, inputs, output):
        x = inputs[0]
        if id(mod) in by_module:  # a module run twice: the graph repeats it, we do not
            unit = by_module[id(mod)]
        elif isinstance(mod, _BN_TYPES) and id(x) in last_conv \
                and last_conv[id(x)][1] == x._version \
                and len(last_conv[id(x)][0].modules) == 1:
            unit = last_conv[id(x)][0]  # BN straight on a conv's output
            unit.names.append(names[mod])
            unit.modules.append(mod)
            by_module[id(mod)] = unit
        else:
            kind = "bn" if isinstance(mod, _BN_TYPES) else \
                "linear" if isinstance(mod, nn.Linear) else "conv"
            unit = _ModelUnit(kind, [names[mod]], [mod], pred=tagger.tag(x))
            units.append(unit)
            by_module[id(mod)] = unit
            if kind == "conv":
                last_conv[id(output)] = (unit, output._version)
        tagger.set(output, frozenset([id(unit)]))

    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear) + _BN_TYPES):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), tagger:
            # 16x32x32 passes every stride and pooling of these families once.
            model(torch.zeros(1, 3, 16, 32, 32))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return units


# -- pairing -----------------------------------------------------------------------
def _convert(path: Path, model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    onnx_units = _onnx_units(path)
    model_units = _model_units(model)
    matched: list[bool] = [False] * len(onnx_units)
    pairs: list[tuple[_ModelUnit, _OnnxUnit]] = []
    to_onnx: dict[int, int] = {}
    for mu in model_units:
        first = next((j for j, m in enumerate(matched) if not m), None)
        if first is None:
            raise WeightsError(f"{path}: the ONNX graph ends after {len(onnx_units)} layers, but "
                               f"the model continues with {mu.names[0]}; check that --model "
                               "matches the file")
        sig = mu.signature()
        want_pred = frozenset(to_onnx.get(p) for p in mu.pred)
        hit = next((j for j in range(first, min(first + _WINDOW, len(onnx_units)))
                    if not matched[j] and onnx_units[j].signature() == sig
                    and onnx_units[j].pred == want_pred), None)
        if hit is None:
            same = any(not matched[j] and onnx_units[j].signature() == sig
                       for j in range(first, min(first + _WINDOW, len(onnx_units))))
            wiring = " (a layer of that shape is there, but fed from elsewhere)" if same else ""
            raise WeightsError(f"{path}: the ONNX graph does not match the model: "
                               f"{onnx_units[first].describe()} but {mu.describe()}{wiring}; "
                               "check that --model matches the file")
        matched[hit] = True
        to_onnx[id(mu)] = id(onnx_units[hit])
        pairs.append((mu, onnx_units[hit]))
    left = [u for u, m in zip(onnx_units, matched) if not m]
    if left:
        raise WeightsError(f"{path}: the ONNX graph has {len(left)} more layer(s) than the model "
                           f"(first: {left[0].describe()}); check that --model matches the file")

    state: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    t = torch.from_numpy
    for mu, ou in pairs:
        if mu.kind == "linear":
            state[mu.names[0] + ".weight"] = t(ou.tensors["weight"].copy())
            state[mu.names[0] + ".bias"] = t(ou.tensors["bias"].copy())
            continue
        if mu.kind == "conv":
            conv = mu.modules[0]
            state[mu.names[0] + ".weight"] = t(ou.tensors["weight"].copy())
            if conv.bias is not None:
                state[mu.names[0] + ".bias"] = torch.zeros(conv.out_channels)
            if len(mu.names) == 1:
                continue
            bn_name, bn = mu.names[1], mu.modules[1]
        else:
            bn_name, bn = mu.names[0], mu.modules[0]
        n = bn.num_features
        if ou.folded:
            state[bn_name + ".weight"] = torch.ones(n)
            state[bn_name + ".bias"] = t(ou.tensors["bias"].copy())
            state[bn_name + ".running_mean"] = torch.zeros(n)
            state[bn_name + ".running_var"] = torch.full((n,), 1.0 - bn.eps)
        else:
            state[bn_name + ".weight"] = t(ou.tensors["scale"].copy())
            state[bn_name + ".bias"] = t(ou.tensors["shift"].copy())
            state[bn_name + ".running_mean"] = t(ou.tensors["mean"].copy())
            # The export's epsilon may differ from the module's: keep var + eps the same.
            state[bn_name + ".running_var"] = t(ou.tensors["var"] + np.float32(ou.eps - bn.eps))
        if bn.track_running_stats:
            state[bn_name + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def _layout_key(model: nn.Module) -> str:
    h = hashlib.sha256(type(model).__name__.encode())
    for k, v in model.state_dict().items():
        h.update(f"{k}:{tuple(v.shape)};".encode())
    return h.hexdigest()[:16]


def _cache_path(path: Path, model: nn.Module) -> Path:
    from ..weights import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return cache_dir() / "converted" / f"{path.stem}-{key[:16]}-{_layout_key(model)}.pt"


def read_onnx_state_dict(path: str | os.PathLike, model: nn.Module, *,
                         use_cache: bool = True) -> "OrderedDict[str, torch.Tensor]":
    """The state dict for ``model`` held by the ONNX export at ``path``.

    Raises :class:`~har.errors.WeightsError` naming the first point where the graph
    and the model diverge. The result is cached under ``<cache>/converted``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such ONNX file")
    cached = _cache_path(path, model) if use_cache else None
    if cached is not None and cached.is_file():
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True)
            if isinstance(state, dict):
                return OrderedDict(state)
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    state = _convert(path, model)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
            torch.save(state, tmp)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only cache only costs speed
    return state
