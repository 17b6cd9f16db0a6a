"""PyTorch eager (CPU fp32/bf16, CUDA fp16/bf16/fp32) with BN folded into the convs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import HarError
from .base import RuntimeBase


class TorchBackend(RuntimeBase):
    """PyTorch eager with BN folded into the convolutions. On CUDA: fp16 weights and
    activations by default (or bf16/fp32), channels_last_3d and cudnn autotuning; on
    the CPU: fp32 (or bf16 autocast if asked)."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", *, batch_size: int | None = None,
                 precision: str = "auto") -> None:
        self.device = device
        cuda = device.startswith("cuda")
        if precision == "auto":
            precision = "fp16" if cuda else "fp32"
        if precision == "fp16" and not cuda:
            raise HarError("fp16 on the CPU is not supported by PyTorch kernels; use bf16 or fp32")
        if precision == "int8":
            raise HarError("--precision int8 runs on --backend openvino only")
        self.precision = precision
        self.batch_size = batch_size or (64 if cuda else 4)
        self.set_info(getattr(model, "har_info", None))
        model = fuse_conv_bn(model).to(device).eval()
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self._cast_model = cuda and self._dtype is not None
        if cuda:
            torch.backends.cudnn.benchmark = True
            model = model.to(memory_format=torch.channels_last_3d)
            if self._cast_model:
                model = model.to(self._dtype)
        self.model = model
        self._split = hasattr(model, "forward_features") and hasattr(model, "forward_head")

    def _run(self, x):
        if self._split:
            f = self.model.forward_features(x)
            return self.model.forward_head(f), f
        return self.model(x), None

    @torch.inference_mode()
    def infer(self, batch) -> tuple[np.ndarray, np.ndarray | None]:
        x = torch.as_tensor(batch).to(self.device, non_blocking=True)
        if self._cast_model:
            x = x.to(self._dtype).contiguous(memory_format=torch.channels_last_3d)
            out, f = self._run(x)
        elif self._dtype is not None:  # CPU bf16: autocast keeps accumulations in fp32
            with torch.autocast(device_type="cpu", dtype=self._dtype):
                out, f = self._run(x)
        else:
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last_3d)
            out, f = self._run(x)
        return (out.float().cpu().numpy(),
                None if f is None else f.float().cpu().numpy())


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm3d that directly follows a Conv3d folded
    into that convolution (inference only: BN then is an affine map). Saves a full
    pass over every activation; the logits agree to float rounding.

    Folding relies on the model's attribute pairs ``convN``/``bnN`` (the Hara family)
    and ``Sequential(Conv3d, BatchNorm3d)`` (type-B shortcuts, torchvision stems).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            items = list(parent._modules.items())
            for (ka, a), (kb, b) in zip(items, items[1:]):
                if isinstance(a, nn.Conv3d) and isinstance(b, nn.BatchNorm3d):
                    parent._modules[ka] = fuse_conv_bn_eval(a, b)
                    parent._modules[kb] = nn.Identity()
        for name, conv in list(parent._modules.items()):
            if not (isinstance(conv, nn.Conv3d) and name.startswith("conv")):
                continue
            bn_name = "bn" + name[len("conv"):]
            bn = parent._modules.get(bn_name)
            if isinstance(bn, nn.BatchNorm3d) and conv.out_channels == bn.num_features:
                parent._modules[name] = fuse_conv_bn_eval(conv, bn)
                parent._modules[bn_name] = nn.Identity()
    return model
