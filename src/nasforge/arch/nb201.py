"""NAS-Bench-201 cells as values (Dong & Yang, ICLR 2020): six edge ops and the benchmark's string.

A cell is a DAG over 4 nodes: node 0 is the cell input, node 3 its output, and each of the six
edges i -> j (i < j) carries one of five ops, written in the benchmark's string form::

    |op(0->1)~0|+|op(0->2)~0|op(1->2)~1|+|op(0->3)~0|op(1->3)~1|op(2->3)~2|
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ArchitectureError

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


__all__ = ["EDGES", "EDGE_NAMES", "NUM_NODES", "NB201Cell", "OPS", "parse_arch_str"]
