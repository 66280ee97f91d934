"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from nasforge.arch.nb201 import EDGE_NAMES, EDGES, NUM_NODES, OPS, NB201Cell
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.models.nb201 import NB201Network, base_costs
from nasforge.spaces.base import SPACES, Decision, SearchSpace, unwrap_json


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
        base_params, base_macs = base_costs(num_classes, channels, cells_per_stage, in_channels, resolution)
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


__all__ = ["NB201Space"]
