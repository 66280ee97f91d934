"""The 13 operations of the NASNet search space, as TensorFlow's reference NASNet builds them.

Every op maps `in_ch` channels to `out_ch` channels. Where an op by itself would not change the
channel count (pooling, identity), a 1x1 conv + BN is appended when the counts differ, as the
reference does; identity also becomes ReLU -> strided 1x1 conv -> BN when it has to reduce.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nasforge.nn.layers import ConvBNSequential, conv_bn

OP_NAMES: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)


class SepConv(nn.Module):
    """ReLU -> depthwise kxk -> pointwise -> BN; `dilation` gives the dilated variant.

    `inplace` lets the ReLU overwrite its input: only for an input nothing else reads (the second
    of a stacked pair, whose input is the first's fresh BN output)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        dilation: int = 1,
        bn: dict | None = None,
        inplace: bool = False,
    ):
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.op = ConvBNSequential(
            nn.ReLU(inplace=inplace),
            nn.Conv2d(in_ch, in_ch, kernel, stride=stride, padding=pad, dilation=dilation, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, **(bn or {})),
        )

    def forward(self, x):
        return self.op(x)


class StackedSepConv(nn.Sequential):
    """The reference's `separable_kxk_2`: two SepConvs, only the first strided."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bn: dict | None = None):
        super().__init__(
            SepConv(in_ch, out_ch, kernel, stride, bn=bn), SepConv(out_ch, out_ch, kernel, 1, bn=bn, inplace=True)
        )


class Pool(nn.Module):
    """SAME-padded pooling (average excludes the padding), then a 1x1 conv if channels change."""

    def __init__(self, kind: str, in_ch: int, out_ch: int, kernel: int, stride: int, bn: dict | None = None):
        super().__init__()
        pad = kernel // 2
        self.pool: nn.AvgPool2d | nn.MaxPool2d
        if kind == "avg":
            self.pool = nn.AvgPool2d(kernel, stride=stride, padding=pad, count_include_pad=False)
        else:
            self.pool = nn.MaxPool2d(kernel, stride=stride, padding=pad)
        self.proj = conv_bn(in_ch, out_ch, 1, relu_first=False, bn=bn) if in_ch != out_ch else nn.Identity()

    def forward(self, x):
        return self.proj(self.pool(x))


class SpatialConv(ConvBNSequential):
    """ReLU -> 1xk conv -> kx1 conv -> BN: a kxk receptive field for 2k instead of k^2 weights."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bn: dict | None = None):
        pad = kernel // 2
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(in_ch, out_ch, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(out_ch, out_ch, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(out_ch, **(bn or {})),
        )


def identity(in_ch: int, out_ch: int, stride: int, bn: dict | None = None) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return conv_bn(in_ch, out_ch, 1, stride=stride, bn=bn)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "identity": identity,
    "conv_1x3_3x1": lambda i, o, s, bn=None: SpatialConv(i, o, 3, s, bn=bn),
    "conv_1x7_7x1": lambda i, o, s, bn=None: SpatialConv(i, o, 7, s, bn=bn),
    "dil_conv_3x3": lambda i, o, s, bn=None: SepConv(i, o, 3, s, dilation=2, bn=bn),
    "avg_pool_3x3": lambda i, o, s, bn=None: Pool("avg", i, o, 3, s, bn=bn),
    "max_pool_3x3": lambda i, o, s, bn=None: Pool("max", i, o, 3, s, bn=bn),
    "max_pool_5x5": lambda i, o, s, bn=None: Pool("max", i, o, 5, s, bn=bn),
    "max_pool_7x7": lambda i, o, s, bn=None: Pool("max", i, o, 7, s, bn=bn),
    "conv_1x1": lambda i, o, s, bn=None: conv_bn(i, o, 1, stride=s, bn=bn),
    "conv_3x3": lambda i, o, s, bn=None: conv_bn(i, o, 3, stride=s, bn=bn),
    "sep_conv_3x3": lambda i, o, s, bn=None: StackedSepConv(i, o, 3, s, bn=bn),
    "sep_conv_5x5": lambda i, o, s, bn=None: StackedSepConv(i, o, 5, s, bn=bn),
    "sep_conv_7x7": lambda i, o, s, bn=None: StackedSepConv(i, o, 7, s, bn=bn),
}
assert tuple(_BUILDERS) == OP_NAMES


def build_op(name: str, in_ch: int, out_ch: int, stride: int, bn: dict | None = None) -> nn.Module:
    """Build op `name`; names are checked by the space before a network is ever built."""
    return _BUILDERS[name](in_ch, out_ch, stride, bn=bn)
