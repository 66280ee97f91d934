"""The NAS-Bench-201 network (Dong & Yang, ICLR 2020; the benchmark's `TinyNetwork`): a stem, three
stages of one searched cell repeated, residual reduction blocks between stages, a classifier."""

from __future__ import annotations

import torch
from torch import nn

from nasforge.arch.nb201 import OPS, NB201Cell
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.nn.layers import ConvBNSequential, inference_layout


def base_costs(
    num_classes: int, channels: int, cells_per_stage: int, in_channels: int, resolution: int
) -> tuple[int, int]:
    """Parameters and MACs of everything but the cells' convolutions (convs and the linear layer
    count MACs; BN, pooling and additions do not, as in `nasforge.profile.count_macs`)."""
    c, size = channels, resolution
    params = in_channels * c * 9 + 2 * c  # stem conv + BN
    macs = in_channels * c * 9 * size * size
    for _ in range(2):  # the residual reduction blocks
        out, size = 2 * c, (size + 1) // 2
        params += 9 * c * out + 2 * out + 9 * out * out + 2 * out + c * out
        macs += (9 * c * out + 9 * out * out + c * out) * size * size
        c = out
    params += 2 * c + c * num_classes + num_classes  # last BN + classifier
    macs += c * num_classes
    return params, macs


# -- the network ---------------------------------------------------------------------------------
class ReLUConvBN(ConvBNSequential):
    """ReLU -> kxk conv (no bias) -> BN, the benchmark's ``nor_conv`` unit."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.ReLU(), nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch)
        )


def make_op(name: str, channels: int) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ArchitectureError("op", f"no module for op {name!r}", OPS[1:])


class _Edge(nn.Module):
    """One non-``none`` edge: its op and where it reads from and writes to."""

    def __init__(self, op: nn.Module, src: int, dst: int):
        super().__init__()
        self.op = op
        self.src = src
        self.dst = dst

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class NB201CellModule(nn.Module):
    """One cell: node j = sum of its incoming edges' ops (``none`` edges are left out; a node
    without inputs is zero)."""

    def __init__(self, arch: NB201Cell, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(_Edge(make_op(op, channels), i, j) for (i, j), op in arch.edges() if op != "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        for j in range(1, 4):  # a literal, for TorchScript
            acc = torch.zeros_like(x)
            for edge in self.edges:
                if edge.dst == j:
                    acc = acc + edge(nodes[edge.src])  # type: ignore[index]  # ModuleList items are typed Module
            nodes.append(acc)
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's stride-2 basic residual block between stages: two ReLU-Conv3x3-BN units
    (the first strided) plus a shortcut of 2x2 average pooling and a 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv_a = ReLUConvBN(in_ch, out_ch, 3, stride=2)
        self.conv_b = ReLUConvBN(out_ch, out_ch, 3)
        # ceil_mode keeps the shortcut the same size as conv_a's output for odd sizes too.
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True), nn.Conv2d(in_ch, out_ch, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem (3x3 conv + BN), three stages of `cells_per_stage` cells at `channels`, 2x and 4x
    channels joined by residual reduction blocks, then BN-ReLU, global average pool, linear."""

    def __init__(
        self, arch: NB201Cell, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3
    ):
        super().__init__()
        for field, value in (
            ("num_classes", num_classes),
            ("channels", channels),
            ("cells_per_stage", cells_per_stage),
            ("in_channels", in_channels),
        ):
            least = 0 if field == "cells_per_stage" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"network.{field}", f"must be an integer >= {least}, got {value!r}")
        self.arch = arch
        self.stem = ConvBNSequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers += [NB201CellModule(arch, c) for _ in range(cells_per_stage)]
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(inference_layout(x, self.training))))
        return self.classifier(torch.flatten(self.pool(x), 1))


__all__ = ["NB201CellModule", "base_costs", "NB201Network", "ResidualReduction", "ReLUConvBN", "make_op"]
