"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020) and the benchmark's network.

A cell is a DAG over 4 nodes: node 0 is the cell input, node 3 its output, and each of the six
edges i -> j (i < j) carries one of five ops. Node j is the sum of its incoming edges. That gives
5^6 = 15,625 cells, each written in the benchmark's string form::

    |op(0->1)~0|+|op(0->2)~0|op(1->2)~1|+|op(0->3)~0|op(1->3)~1|op(2->3)~2|

The decision sequence is the six edges in that order (the same order as the table's ``op_*``
columns), each a choice among the five ops.

Canonical key. Two cells get the same key when the expression they compute for node 3 is the same
after these rewrites, all of which keep the function (given the benchmark's convention that an op
applied to an all-zero node gives zero):

* a ``none`` edge contributes nothing, and a node with no non-zero input is zero, so any path
  through a zero node disappears; edges whose results never reach node 3 are not in the
  expression at all;
* ``skip_connect`` passes its source's terms through unchanged;
* sums are flattened and sorted (addition is associative and commutative);
* ``avg_pool_3x3`` (count_include_pad=False) is linear, so it distributes over a sum.

This is a little coarser than the benchmark's own ``unique_str`` (6,466 classes), which neither
flattens sums reached through a skip nor distributes pooling; `canonical_form` gives the
expression in readable form. See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces.base import SPACES, Decision, SearchSpace, unwrap_json

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the six edges (source, target) in string order.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
EDGE_NAMES: tuple[str, ...] = tuple(f"op_{i}to{j}" for i, j in EDGES)
NUM_NODES = 4


@dataclass(frozen=True)
class NB201Cell:
    """The six edge ops of a NAS-Bench-201 cell, named like the table's columns."""

    op_0to1: str
    op_0to2: str
    op_1to2: str
    op_0to3: str
    op_1to3: str
    op_2to3: str

    @property
    def ops(self) -> tuple[str, ...]:
        return (self.op_0to1, self.op_0to2, self.op_1to2, self.op_0to3, self.op_1to3, self.op_2to3)

    def edges(self) -> Iterator[tuple[tuple[int, int], str]]:
        return zip(EDGES, self.ops)

    def to_str(self) -> str:
        """The benchmark's architecture string."""
        ops = self.ops
        parts = []
        for j in range(1, NUM_NODES):
            parts.append("|" + "|".join(f"{ops[k]}~{i}" for k, (i, t) in enumerate(EDGES) if t == j) + "|")
        return "+".join(parts)

    @classmethod
    def from_str(cls, text: str) -> NB201Cell:
        return cls(*parse_arch_str(text))

    @classmethod
    def from_ops(cls, ops: Sequence[str]) -> NB201Cell:
        if len(ops) != len(EDGES):
            raise ArchitectureError("arch", f"expected {len(EDGES)} ops (one per edge), got {len(ops)}")
        return cls(*ops)

    def __str__(self) -> str:
        return self.to_str()


def parse_arch_str(text: Any) -> tuple[str, ...]:
    """The six ops of a benchmark string, in edge order; errors name the node and edge."""
    if not isinstance(text, str):
        raise ArchitectureError(
            "arch", f"expected the benchmark string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', got {text!r}"
        )
    nodes = text.strip().split("+")
    if len(nodes) != NUM_NODES - 1:
        raise ArchitectureError("arch", f"expected 3 node groups separated by '+', got {len(nodes)} in {text!r}")
    ops: dict[tuple[int, int], str] = {}
    for j, group in enumerate(nodes, start=1):
        g = group.strip()
        if not (g.startswith("|") and g.endswith("|")) or len(g) < 2:
            raise ArchitectureError(f"arch node {j}", f"expected '|op~src|...|', got {g!r}")
        items = g[1:-1].split("|")
        if len(items) != j:
            raise ArchitectureError(f"arch node {j}", f"expected {j} incoming edge(s), got {len(items)} in {g!r}")
        for i, item in enumerate(items):
            op, sep, src = item.partition("~")
            if not sep or src.strip() != str(i):
                raise ArchitectureError(f"arch edge {i}->{j}", f"expected 'op~{i}', got {item!r}")
            ops[(i, j)] = op.strip()
    return tuple(ops[e] for e in EDGES)


@SPACES.register("nb201")
class NB201Space(SearchSpace[NB201Cell]):
    """NAS-Bench-201's cells: six edge decisions over `ops` (default: the benchmark's five)."""

    name = "nb201"
    default_evaluator = "nb201"  # the NAS-Bench-201 table; a dataset given trains children instead
    #: the benchmark's "arch_str" column, else one column per edge
    table_columns = ("arch_str", "arch", "architecture", EDGE_NAMES)

    def __init__(self, ops: Sequence[str] = OPS):
        ops = tuple(ops)
        if not ops:
            raise ArchitectureError("ops", "a space needs at least one op", OPS)
        for op in ops:
            if op not in OPS:
                raise ArchitectureError("ops", f"unknown op {op!r}", OPS)
        if len(set(ops)) != len(ops):
            raise ArchitectureError("ops", f"repeated op in {list(ops)}")
        self.ops = ops
        self._decisions = tuple(Decision(n, len(ops), ops) for n in EDGE_NAMES)

    def __repr__(self) -> str:
        return f"NB201Space(ops={list(self.ops)})"

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def encode(self, arch: NB201Cell) -> tuple[int, ...]:
        self.validate(arch)
        return tuple(self.ops.index(op) for op in arch.ops)

    def decode(self, choices: Sequence[int]) -> NB201Cell:
        c = self.check_choices(choices)
        return NB201Cell(*(self.ops[i] for i in c))

    def validate(self, arch: NB201Cell) -> NB201Cell:
        if not isinstance(arch, NB201Cell):
            raise ArchitectureError("architecture", f"expected an NB201Cell, got {type(arch).__name__}")
        for (i, j), name, op in zip(EDGES, EDGE_NAMES, arch.ops):
            if op not in self.ops:
                raise ArchitectureError(f"edge {i}->{j} ({name})", f"unknown op {op!r}", self.ops)
        return arch

    def to_json(self, arch: NB201Cell) -> dict[str, Any]:
        return {"space": self.name, "arch": self.validate(arch).to_str()}

    def from_json(self, data: Any) -> NB201Cell:
        """{"space": "nb201", "arch": "|op~0|+..."}, the bare string, or a list of six ops."""
        data = unwrap_json(data, self.name, "the benchmark string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        if isinstance(data, (list, tuple)):
            if not all(isinstance(op, str) for op in data):
                raise ArchitectureError("arch", f"expected a list of op names, got {data!r}", self.ops)
            return self.validate(NB201Cell.from_ops(data))
        return self.validate(NB201Cell.from_str(data))

    # -- identity ----------------------------------------------------------------------------
    def canonical_form(self, arch: NB201Cell) -> str:
        """Node 3's expression after the rewrites in the module docstring ("0" if all-zero)."""
        self.validate(arch)
        return _canonical_form(tuple(arch.ops))

    def key(self, arch: NB201Cell) -> str:
        digest = hashlib.sha256(self.canonical_form(arch).encode()).hexdigest()
        return f"nb201-{digest[:24]}"

    def mutate(self, arch: NB201Cell, rng: np.random.Generator) -> NB201Cell:
        """NAS-Bench-201's REA mutation: one edge gets a different op."""
        self.validate(arch)
        if len(self.ops) < 2:
            return arch
        k = int(rng.integers(len(EDGES)))
        current = arch.ops[k]
        options = [o for o in self.ops if o != current]
        return replace(arch, **{EDGE_NAMES[k]: options[int(rng.integers(len(options)))]})

    # -- networks ----------------------------------------------------------------------------
    def build(
        self,
        arch: NB201Cell,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        resolution: int | None = None,
        **unused: Any,
    ) -> NB201Network:
        """The benchmark's network: see `NB201Network`. `resolution` is accepted and unused (the
        network pools globally)."""
        if unused:
            raise ConfigError(
                f"network.{sorted(unused)[0]}",
                "unknown option for an nb201 network",
                ["num_classes", "channels", "cells_per_stage", "in_channels", "resolution"],
            )
        return NB201Network(self.validate(arch), num_classes, channels, cells_per_stage, in_channels)

    def costs(
        self,
        arch: NB201Cell,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        resolution: int = 32,
    ) -> dict[str, int]:
        """Parameters and MACs of `build(arch, ...)` at `resolution`, without building it.

        Counted in closed form (the tests check it against `nasforge.profile` on built networks):
        MACs of convs and the linear layer, parameters including BN's scale and shift.
        """
        self.validate(arch)
        base_params, base_macs = _base_costs(num_classes, channels, cells_per_stage, in_channels, resolution)
        params, macs = base_params, base_macs
        size = resolution
        for stage in range(3):
            c = channels * 2**stage
            for op in arch.ops:
                k = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}.get(op)
                if k:
                    params += cells_per_stage * (k * k * c * c + 2 * c)
                    macs += cells_per_stage * k * k * c * c * size * size
            size = (size + 1) // 2
        return {"params": params, "macs": macs}


@functools.cache  # at most 5^6 cells
def _canonical_form(ops: tuple[str, ...]) -> str:
    nodes: list[list[str]] = [["x"]]
    for j in range(1, NUM_NODES):
        terms: list[str] = []
        for (i, t), op in zip(EDGES, ops):
            if t != j or op == "none" or not nodes[i]:
                continue
            src = nodes[i]
            if op == "skip_connect":
                terms += src
            elif op == "avg_pool_3x3":
                terms += [f"avg_pool_3x3({s})" for s in src]
            else:
                terms.append(f"{op}({'+'.join(src)})")
        nodes.append(sorted(terms))
    return "+".join(nodes[-1]) or "0"


def _base_costs(
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
class ReLUConvBN(nn.Sequential):
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
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
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
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


__all__ = [
    "EDGES",
    "EDGE_NAMES",
    "NB201Cell",
    "NB201CellModule",
    "NB201Network",
    "NB201Space",
    "OPS",
    "ResidualReduction",
    "parse_arch_str",
]
