"""NASNet cells as values (Zoph et al., CVPR 2018): blocks of two (input, op) halves and a combiner.

Indexing follows DARTS's convention: in a cell, state 0 is h_{i-1} (the output of the cell before
the previous one), state 1 is h_i (the previous cell's output), and block j appends state 2 + j.
TensorFlow's reference numbers the two inputs the other way round; the published cells in
`nasforge.arch.nasnet_cells` are converted.
"""

from __future__ import annotations

from dataclasses import dataclass

COMBINERS: tuple[str, ...] = ("add", "concat")
NUM_INPUTS = 2


@dataclass(frozen=True)
class Block:
    """Two (input, op) halves and how their results are combined."""

    input_a: int
    op_a: str
    input_b: int
    op_b: str
    combine: str = "add"

    def halves(self) -> tuple[tuple[int, str], tuple[int, str]]:
        return (self.input_a, self.op_a), (self.input_b, self.op_b)


@dataclass(frozen=True)
class Cell:
    """B blocks plus the states concatenated into the output.

    `concat=None` means the paper's rule: every block output that no later block consumes.
    Published cells that deviate from it (NASNet-A concatenates h_{i-1} in its normal cell and a
    consumed block in its reduction cell) give the list explicitly.
    """

    blocks: tuple[Block, ...]
    concat: tuple[int, ...] | None = None

    def output_states(self) -> tuple[int, ...]:
        if self.concat is not None:
            return self.concat
        used = {i for b in self.blocks for i in (b.input_a, b.input_b)}
        return tuple(s for s in range(NUM_INPUTS, NUM_INPUTS + len(self.blocks)) if s not in used)


@dataclass(frozen=True)
class NASNetArchitecture:
    """A (normal cell, reduction cell) pair: the genotype NASNet's controller emits."""

    normal: Cell
    reduction: Cell

    def cells(self) -> tuple[tuple[str, Cell], tuple[str, Cell]]:
        return ("normal", self.normal), ("reduction", self.reduction)


__all__ = ["COMBINERS", "NUM_INPUTS", "Block", "Cell", "NASNetArchitecture"]
