"""Small layers that several networks share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as torch_module


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
    relu_first: bool = True,
    bn: dict | None = None,
) -> nn.Sequential:
    """ReLU -> conv -> BN, the unit TF's NASNet uses to adapt channel counts."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (k[0] // 2, k[1] // 2)
    layers: list[nn.Module] = [nn.ReLU()] if relu_first else []
    layers += [
        nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_ch, **(bn or {})),
    ]
    return ConvBNSequential(*layers)


class FactorizedReduce(nn.Module):
    """Halve the spatial size without losing every other pixel.

    Two strided 1x1 paths, the second shifted by one pixel, each producing half of the output
    channels; a strided 1x1 conv alone would only ever see the even-indexed pixels.

    The maths is TF slim's `factorized_reduction` (nasnet_utils.py): path 1 reads pixels (2i, 2j),
    path 2 pixels (2i + 1, 2j + 1), zero where that falls off an odd-sized map. It is computed
    without the reference's padded copy of the whole map and its 1x1 average pools: path 1 is a
    stride-2 conv, path 2 convolves the odd pixels' quarter-sized slice, padded only when the map
    is odd-sized (on a CPU the full-size pad cost as much as both convs).
    """

    def __init__(self, in_ch: int, out_ch: int, relu_first: bool = True, bn: dict | None = None):
        super().__init__()
        if out_ch % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {out_ch}")
        self.relu = nn.ReLU() if relu_first else nn.Identity()
        self.path1 = nn.Conv2d(in_ch, out_ch // 2, 1, stride=2, bias=False)
        self.path2 = nn.Conv2d(in_ch, out_ch // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, **(bn or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.path1(x)
        odd = x[:, :, 1::2, 1::2]
        short_h, short_w = a.shape[-2] - odd.shape[-2], a.shape[-1] - odd.shape[-1]
        if short_h or short_w:
            odd = F.pad(odd, (0, short_w, 0, short_h))
        return self.bn(torch.cat([a, self.path2(odd)], dim=1))


class DropPath(nn.Module):
    """Drops a whole path per sample (inverted scaling), at a rate the owner schedules.

    `rate` is a plain attribute so that a training loop can move it (ScheduledDropPath) without
    rebuilding the model; at rate 0 or in eval mode the module is the identity.
    """

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def plain_cpu_map(x: torch.Tensor) -> bool:
    """A plain 4-D CPU tensor outside any tracer or compiler: what the CPU-only fast paths (here,
    in MBConv's squeeze-and-excitation and in `nasforge.deploy`) may take."""
    return (
        type(x) is torch.Tensor
        and x.device.type == "cpu"
        and x.dim() == 4
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
    )


def _cpu_inference_call(x: torch.Tensor) -> bool:
    """A plain CPU call that records no autograd graph."""
    return not torch.is_grad_enabled() and plain_cpu_map(x)


def inference_layout(x: torch.Tensor, training: bool) -> torch.Tensor:
    """`x` as channels_last when a network gets it in another layout for CPU inference.

    oneDNN's CPU convolutions compute channels-last; handed NCHW maps, every convolution converts
    its input and output, which costs EfficientNet-B0 eager inference about 40 % on this project's
    2-core CPU. A network that calls this on its input runs channels_last throughout for one
    conversion; its logits are the same up to float rounding. Training, autograd, other devices
    and tracers get `x` unchanged."""
    if not torch.jit.is_scripting():
        if not training and _cpu_inference_call(x):
            return x.contiguous(memory_format=torch.channels_last)
    return x


class ConvBNSequential(nn.Sequential):
    """A Sequential whose CPU inference normalises each conv's fresh output in place.

    A BatchNorm2d right after a Conv2d reads a map nothing else reads (when no hook is registered
    on either, or globally), so in inference (eval mode, no autograd graph) it can write into it:
    on a CPU these layers are memory-bound, and writing into the lines just read saves the
    write-allocate traffic and the fresh pages of a new map; a ReLU or SiLU after them runs in place
    too. A channels_last map takes ``x * a + b``
    (``a = weight / sqrt(running_var + eps)``, ``b = bias - running_mean * a``: the affine map of
    PyTorch's eval kernel, equal to it up to float rounding) as one addcmul along the contiguous
    channel axis, which is also faster than that kernel; any other layout runs PyTorch's own kernel
    writing into its input (the same result). EfficientNet-B0 and B3 eager channels_last inference
    is about 1.15x faster for it on this project's CPU. Everything else is `nn.Sequential`'s.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if not self.training and _cpu_inference_call(x) and not global_hooks_registered():
                return self._inference(x)
        for module in self:
            x = module(x)
        return x

    def _inference(self, x: torch.Tensor) -> torch.Tensor:
        fresh = False  # x is a map only this Sequential holds: made here by a hook-free conv, BN or activation
        for module in self:
            if fresh and _in_place_bn(module, x):
                y = _batch_norm_in_place(module, x)  # type: ignore[arg-type]  # _in_place_bn checked the type
            elif fresh and type(module) in _IN_PLACE_ACTIVATIONS and not hooked(module):
                y = _IN_PLACE_ACTIVATIONS[type(module)](x)
            else:
                y = module(x)
            # an in-place module handed the caller's map returns that map: it stays the caller's
            fresh = type(module) in _FRESH_OUTPUTS and not hooked(module) and (fresh or y is not x)
            x = y
        return x


#: Activations a `ConvBNSequential` runs in place on a map it owns, in inference (built out of place
#: where autograd would have to copy their input to train them).
_IN_PLACE_ACTIVATIONS = {nn.ReLU: torch.relu_, nn.SiLU: lambda x: F.silu(x, inplace=True)}
#: Modules whose output is a new map (or, for the BN and activations here, the fresh map they got).
_FRESH_OUTPUTS = (nn.Conv2d, nn.BatchNorm2d, *_IN_PLACE_ACTIVATIONS)


def global_hooks_registered() -> bool:
    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


def hooked(module: nn.Module) -> bool:
    """Whether `module` has a forward (pre-)hook: a fast path that skips its call must not run."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _in_place_bn(module: nn.Module, x: torch.Tensor) -> bool:
    """An eval BatchNorm2d of PyTorch's own forward, normalising with running statistics of x's dtype."""
    return (
        type(module) is nn.BatchNorm2d
        and not module.training
        and not hooked(module)
        and module.running_mean is not None
        and module.running_var is not None
        and x.dtype == module.running_var.dtype
    )


def _batch_norm_in_place(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    assert bn.running_mean is not None and bn.running_var is not None  # _in_place_bn checked
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        scale = 1 / torch.sqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale if bn.bias is None else bn.bias - bn.running_mean * scale
        return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1), out=x)
    stats = (bn.running_mean, bn.running_var)
    unused = {"save_mean": x.new_empty(0), "save_invstd": x.new_empty(0)}  # training's outputs
    torch.ops.aten.native_batch_norm.out(x, bn.weight, bn.bias, *stats, False, 0.0, bn.eps, out=x, **unused)
    return x
