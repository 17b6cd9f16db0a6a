"""Helpers for the ONNX import tests: export a model the way users' files were made,
then make the file as unhelpful as real ones (numbered names, Constant/Identity
nodes, MatMul+Add instead of Gemm)."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from onnx import helper, numpy_helper


def export(model: torch.nn.Module, x: torch.Tensor, path: Path, *, fold_bn: bool) -> Path:
    """Legacy (TorchScript) export in eval mode. ``do_constant_folding=True`` makes the
    exporter fuse each Conv+BatchNormalization into one Conv with a bias; ``False``
    keeps the BatchNormalization nodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False,
                          do_constant_folding=fold_bn,
                          training=torch.onnx.TrainingMode.EVAL,
                          input_names=["input"], output_names=["logits"])
    return path


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def anonymize(path: Path) -> Path:
    """Rename every initializer and intermediate value to a number, in reverse order
    of appearance, so no name says where a tensor belongs."""
    m = onnx.load(str(path))
    g = m.graph
    keep = {i.name for i in g.input} | {o.name for o in g.output}
    names = [t.name for t in g.initializer]
    for n in g.node:
        names += [o for o in n.output if o not in keep]
    mapping = {old: str(900000 - i) for i, old in enumerate(names)}
    for t in g.initializer:
        t.name = mapping[t.name]
    for n in g.node:
        n.name = ""
        n.input[:] = [mapping.get(i, i) for i in n.input]
        n.output[:] = [mapping.get(o, o) for o in n.output]
    vi = [v for v in g.value_info]
    del g.value_info[:]
    for v in vi:
        if v.name in mapping:
            v.name = mapping[v.name]
        g.value_info.append(v)
    onnx.save(m, str(path))
    return path


def constants_and_identities(path: Path) -> Path:
    """Move every other initializer into a Constant node and route every Conv weight
    through an Identity node (as some exporters and optimisers leave them)."""
    m = onnx.load(str(path))
    g = m.graph
    inits = list(g.initializer)
    del g.initializer[:]
    new_nodes = []
    for i, t in enumerate(inits):
        if i % 2:
            new_nodes.append(helper.make_node("Constant", [], [t.name], value=t))
        else:
            g.initializer.append(t)
    for k, n in enumerate(list(g.node)):
        if n.op_type == "Conv":
            w = n.input[1]
            alias = f"{w}_ident{k}"
            new_nodes.append(helper.make_node("Identity", [w], [alias]))
            n.input[1] = alias
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    onnx.save(m, str(path))
    return path


def gemm_to_matmul_add(path: Path) -> Path:
    """Replace ``Gemm(x, W, b, transB=1)`` with ``Add(MatMul(x, W^T), b)``."""
    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    out = []
    for n in g.node:
        if n.op_type != "Gemm":
            out.append(n)
            continue
        trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
        w = numpy_helper.to_array(inits[n.input[1]])
        wt = w.T.copy() if trans_b else w
        name = n.input[1] + "_t"
        g.initializer.append(numpy_helper.from_array(wt, name))
        mid = n.output[0] + "_mm"
        out.append(helper.make_node("MatMul", [n.input[0], name], [mid]))
        out.append(helper.make_node("Add", [mid, n.input[2]], [n.output[0]]))
    del g.node[:]
    g.node.extend(out)
    onnx.save(m, str(path))
    return path


def opencv_shortcut(x, planes, stride):
    """The type-A shortcut as OpenCV's action-recognition sample patches it before
    exporting resnet-34_kinetics.onnx: subsample, then zero-pad channels with F.pad."""
    import torch.nn.functional as F

    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    return F.pad(out, (0, 0, 0, 0, 0, 0, 0, int(planes - out.size(1)), 0, 0), "constant", 0)


def opencv_style(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every parameter-free shortcut of an original-style model for OpenCV's."""
    from functools import partial

    for m in model.modules():
        ds = getattr(m, "downsample", None)
        if isinstance(ds, partial):
            m.downsample = partial(opencv_shortcut, **ds.keywords)
    return model


def export_legacy_opencv(model: torch.nn.Module, x: torch.Tensor, path: Path,
                         opset: int = 9) -> Path:
    """Export the way a 2018-2019 ``torch.onnx.export(model, inputs, name)`` did: an
    old opset, BN nodes kept, initializers also listed as graph inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=opset,
                          do_constant_folding=False, keep_initializers_as_inputs=True,
                          training=torch.onnx.TrainingMode.EVAL,
                          input_names=["input"], output_names=["logits"])
    return path


def fp16_conv_weights(path: Path) -> Path:
    """Store every Conv weight as float16 and Cast it back to float in the graph."""
    import numpy as np

    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    out = []
    for k, n in enumerate(g.node):
        if n.op_type == "Conv" and n.input[1] in inits:
            t = inits[n.input[1]]
            half = numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16),
                                           t.name + "_fp16")
            g.initializer.append(half)
            cast_out = f"{t.name}_cast{k}"
            out.append(helper.make_node("Cast", [half.name], [cast_out],
                                        to=onnx.TensorProto.FLOAT))
            n.input[1] = cast_out
        out.append(n)
    del g.node[:]
    g.node.extend(out)
    onnx.save(m, str(path))
    return path
