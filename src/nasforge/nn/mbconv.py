"""Mobile inverted bottleneck (MBConv) blocks and the EfficientNet rounding rules.

The block follows the EfficientNet reference implementations (tensorflow/tpu
efficientnet_model.py, timm's efficientnet_blocks.py): an optional 1x1
expansion, a kxk depthwise conv (the only strided conv), squeeze-and-excitation whose bottleneck
is a fraction of the block's *input* channels, and a linear 1x1 projection. BatchNorm follows every
conv, SiLU every conv except the projection. The identity skip, with stochastic depth on the
residual branch, is used when the block keeps both the size and the width of its input.

`round_filters` and `round_repeats` live here, at the bottom of the package, so that the model
builder, the MBConv search space and the scaling engine can all share them without importing one
another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from nasforge.nn.layers import ConvBNSequential, DropPath, global_hooks_registered, hooked, plain_cpu_map


def round_filters(
    channels: float, width_mult: float | None = 1.0, divisor: int = 8, min_value: int | None = None
) -> int:
    """Scale a channel count by `width_mult` and round it as the TPU reference does.

    1. multiply by the width multiplier;
    2. round to the nearest multiple of `divisor` (add half the divisor, floor to a multiple);
    3. take at least `min_value` (default: the divisor);
    4. if that fell more than 10% below the scaled value, add one divisor.

    A falsy `width_mult` (None or 0) returns the count unchanged, as the reference does.
    """
    if not width_mult:
        return int(channels)
    scaled = channels * width_mult
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float | None = 1.0) -> int:
    """ceil(depth_mult x repeats), the TPU and torchvision rule.

    A tolerance of 1e-9 removes floating-point artefacts only (1.1 x 10 is 11.000000000000002 in
    binary floating point and would otherwise become 12); none of the published B0-B8/L2
    stage products is that close to an integer, so their repeats are the reference's.
    """
    if not depth_mult:
        return int(repeats)
    return int(math.ceil(depth_mult * repeats - 1e-9))


def conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: Callable[[], nn.Module] | None = nn.SiLU,
    bn: dict | None = None,
) -> nn.Sequential:
    """Conv ('same' padding, no bias) -> BN -> `act()`; `act=None` leaves the activation out.

    A ReLU runs in place: it owns the BN's fresh output, its gradient reads only its output, and on
    a CPU a new map costs fresh pages as well as the pass over it. Any other activation (SiLU) is
    built out of place, because in place autograd would first copy its input for the backward pass
    (a pass more per training step than out of place, which timm's in-place SiLU pays); in CPU
    inference `ConvBNSequential` runs it in place all the same."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, **(bn or {})),
    ]
    if act is not None:
        module = act()
        if type(module) is nn.ReLU:
            module.inplace = True
        layers.append(module)
    return ConvBNSequential(*layers)


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 conv (reduce) -> SiLU -> 1x1 conv (expand) -> sigmoid gate.

    `inplace=True` writes the gated map into the input when no gradient is recorded: for an
    input nothing else reads (MBConv's depthwise output), it saves a new activation map.

    When a CPU training step records the graph, the block runs as one autograd function
    (`_SqueezeExciteFunction`) whose backward writes the input's gradient in one pass: PyTorch's
    own graph writes the product's gradient, then the pooling's gradient spread over the map, then
    their sum, three full-size maps where one does. EfficientNet-B0's channels_last training step
    is about 5 % faster for it on this project's CPU; the gradients are the same to float rounding.
    """

    def __init__(self, channels: int, reduced: int, inplace: bool = False):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if self.can_run_as_one_function(x):
                return self.one_function(x, silu_first=False)
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        if self.inplace and not (x.requires_grad or s.requires_grad):
            return x.mul_(s)
        return x * s

    def one_function(self, x: torch.Tensor, silu_first: bool) -> torch.Tensor:
        """The block as `_SqueezeExciteFunction`; `silu_first` takes `x` before the SiLU that precedes
        the block (MBConv's depthwise activation) and applies it inside."""
        weights = (self.reduce.weight, self.reduce.bias, self.expand.weight, self.expand.bias)
        return _SqueezeExciteFunction.apply(x, *weights, silu_first)

    def can_run_as_one_function(self, x: torch.Tensor) -> bool:
        """A CPU float32 call recording a graph through PyTorch's own modules, outside any tracer."""
        parts = (self.reduce, self.act, self.expand, self.gate)
        return (
            torch.is_grad_enabled()
            and plain_cpu_map(x)
            and x.dtype == torch.float32
            and self.reduce.bias is not None
            and self.expand.bias is not None
            and all(p.dtype == torch.float32 for p in self.parameters())
            and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
            and (type(self.reduce), type(self.act), type(self.expand), type(self.gate))
            == (nn.Conv2d, nn.SiLU, nn.Conv2d, nn.Sigmoid)
            and not any(hooked(m) for m in (self, *parts))
        )


class _SqueezeExciteFunction(torch.autograd.Function):
    """``a * sigmoid(W_e silu(W_r mean(a) + b_r) + b_e)`` with a backward that touches the map twice;
    ``a = x``, or ``a = silu(x)`` with `silu_first`.

    The gate is a function of the pooled map, so d out / d a is the product's ``g * gate`` plus the
    pooling's ``d mean / HW`` spread over every pixel: one addcmul writes both. The other full-size
    pass is the gate's own gradient, ``sum over pixels of g * a``; the rest works on (N, C) matrices.
    With `silu_first` only `x` is kept for the backward pass, which recomputes ``silu(x)``: the
    activated map, one of the largest a training step keeps, is never stored.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w_r: torch.Tensor,
        b_r: torch.Tensor,
        w_e: torch.Tensor,
        b_e: torch.Tensor,
        silu_first: bool,
    ) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            a = F.silu(x) if silu_first else x
            pooled = a.mean((2, 3))
            hidden = torch.addmm(b_r, pooled, w_r.flatten(1).t())
            gate = torch.sigmoid(torch.addmm(b_e, F.silu(hidden), w_e.flatten(1).t()))
        ctx.silu_first = silu_first
        ctx.save_for_backward(x, pooled, hidden, gate, w_r, w_e)
        return a.mul_(gate[:, :, None, None]) if silu_first else a * gate[:, :, None, None]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, pooled, hidden, gate, w_r, w_e = ctx.saved_tensors
        a = F.silu(x) if ctx.silu_first else x
        d_gate = (grad * a).sum((2, 3))
        d_logit = d_gate * gate * (1 - gate)
        act = F.silu(hidden)
        sig = torch.sigmoid(hidden)
        d_hidden = (d_logit @ w_e.flatten(1)) * sig * (1 + hidden * (1 - sig))
        d_pooled = d_hidden @ w_r.flatten(1)
        spread = (d_pooled / (x.shape[2] * x.shape[3]))[:, :, None, None]
        d_a = torch.addcmul(spread, grad, gate[:, :, None, None])
        d_x = torch.ops.aten.silu_backward(d_a, x) if ctx.silu_first else d_a
        d_w_r = (d_hidden.t() @ pooled).view_as(w_r)
        d_w_e = (d_logit.t() @ act).view_as(w_e)
        return d_x, d_w_r, d_hidden.sum(0), d_w_e, d_logit.sum(0), None


class MBConv(nn.Module):
    """One mobile inverted bottleneck block.

    Args:
        in_ch, out_ch: input and output channels.
        kernel: depthwise kernel size (odd); padding is symmetric, kernel // 2.
        stride: depthwise stride.
        expand_ratio: hidden width = in_ch x expand_ratio; 1 skips the expansion conv.
        se_ratio: SE bottleneck = max(1, int(in_ch x se_ratio)); 0 means no SE.
        drop_path_rate: stochastic depth rate of the residual branch (only with the skip).
        bn: BatchNorm keyword arguments (eps, momentum).
        act: the activation after the expansion and depthwise convs (SiLU in EfficientNet, ReLU in
            MobileNetV2 and NAS-Bench-Macro).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        expand_ratio: float = 6,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
        bn: dict | None = None,
        act: Callable[[], nn.Module] = nn.SiLU,
    ):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"MBConv kernel must be a positive odd number, got {kernel}")
        if stride < 1:
            raise ValueError(f"MBConv stride must be >= 1, got {stride}")
        if expand_ratio < 1:
            raise ValueError(f"MBConv expand_ratio must be >= 1, got {expand_ratio}")
        if se_ratio < 0:
            raise ValueError(f"MBConv se_ratio must be >= 0, got {se_ratio}")
        self.in_ch, self.out_ch, self.kernel, self.stride = in_ch, out_ch, kernel, stride
        self.expand_ratio, self.se_ratio = expand_ratio, se_ratio
        hidden = int(round(in_ch * expand_ratio))
        self.hidden = hidden
        self.expand = conv_bn_act(in_ch, hidden, 1, act=act, bn=bn) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn_act(hidden, hidden, kernel, stride=stride, groups=hidden, act=act, bn=bn)
        reduced = max(1, int(in_ch * se_ratio))
        self.se = SqueezeExcite(hidden, reduced, inplace=True) if se_ratio > 0 else nn.Identity()
        self.project = conv_bn_act(hidden, out_ch, 1, act=None, bn=bn)
        self.use_skip = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path_rate) if self.use_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the SE product and the skip sum go into the block's own fresh tensors when no gradient
        # is recorded (inference): on a CPU a new activation map costs fresh pages as well as the
        # pass over it
        out = self.project(self._depthwise_se(self.expand(x)))
        if self.use_skip:
            out = self.drop_path(out)
            out = out + x if out.requires_grad or x.requires_grad else out.add_(x)
        return out

    def _depthwise_se(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if self._silu_into_se(x):
                conv, bn, _ = self.depthwise
                return cast(SqueezeExcite, self.se).one_function(bn(conv(x)), silu_first=True)
        return self.se(self.depthwise(x))

    def _silu_into_se(self, x: torch.Tensor) -> bool:
        """Whether the depthwise SiLU can run inside the squeeze-and-excitation function: its map
        is then not kept for the backward pass (a CPU training step; nothing hooked that it skips)."""
        dw = self.depthwise
        return (
            isinstance(self.se, SqueezeExcite)
            and self.se.can_run_as_one_function(x)
            and len(dw) == 3
            and type(dw[0]) is nn.Conv2d
            and isinstance(dw[1], nn.BatchNorm2d)
            and type(dw[2]) is nn.SiLU
            and not any(hooked(m) for m in (dw, dw[2]))
            and not global_hooks_registered()
        )

    def extra_repr(self) -> str:
        return (
            f"in={self.in_ch}, out={self.out_ch}, k={self.kernel}, s={self.stride}, "
            f"e={self.expand_ratio}, se={self.se_ratio}, skip={self.use_skip}"
        )
