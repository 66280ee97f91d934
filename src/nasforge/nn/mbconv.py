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

import torch
from torch import nn

from nasforge.nn.layers import ConvBNSequential, DropPath


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

    The activation runs in place where it can: it owns the BN's fresh output, and on a CPU a new
    activation map costs fresh pages as well as the pass over it (timm builds its EfficientNet
    activations in place too). BN's backward needs its input, not its output, so training is
    unchanged."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, **(bn or {})),
    ]
    if act is not None:
        layers.append(inplace(act()))
    return ConvBNSequential(*layers)


def inplace(act: nn.Module) -> nn.Module:
    """`act` switched to run in place, for activations that have the option (ReLU, SiLU, ...)."""
    if isinstance(getattr(act, "inplace", None), bool):
        act.inplace = True  # type: ignore[assignment]  # Module.__setattr__'s stub takes tensors and modules
    return act


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 conv (reduce) -> SiLU -> 1x1 conv (expand) -> sigmoid gate.

    `inplace=True` writes the gated map into the input when no gradient is recorded: for an
    input nothing else reads (MBConv's depthwise output), it saves a new activation map.
    """

    def __init__(self, channels: int, reduced: int, inplace: bool = False):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Sigmoid()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        if self.inplace and not (x.requires_grad or s.requires_grad):
            return x.mul_(s)
        return x * s


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
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_skip:
            out = self.drop_path(out)
            out = out + x if out.requires_grad or x.requires_grad else out.add_(x)
        return out

    def extra_repr(self) -> str:
        return (
            f"in={self.in_ch}, out={self.out_ch}, k={self.kernel}, s={self.stride}, "
            f"e={self.expand_ratio}, se={self.se_ratio}, skip={self.use_skip}"
        )
