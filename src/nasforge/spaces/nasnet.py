"""The NASNet cell search space (Zoph et al., CVPR 2018): decisions, validation, canonical key and
mutation over the cell values of `nasforge.arch.nasnet`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np

from nasforge.arch.nasnet import COMBINERS, NUM_INPUTS, Block, Cell, NASNetArchitecture
from nasforge.errors import ArchitectureError
from nasforge.models.nasnet import NASNet
from nasforge.nn.ops import OP_NAMES
from nasforge.spaces.base import SPACES, Decision, SearchSpace


@SPACES.register("nasnet")
class NASNetSpace(SearchSpace[NASNetArchitecture]):
    """Cells of `num_blocks` blocks over `ops` and `combiners`.

    Decision order per block follows the paper: input a, input b, op a, op b, combiner; the
    normal cell's 5B steps come before the reduction cell's.
    """

    name = "nasnet"
    proxy_network = MappingProxyType({"num_cells": 1, "num_filters": 8, "stem": "cifar"})
    scaling_family = "nasnet"
    drawing = "cells"

    def __init__(
        self,
        num_blocks: int = 5,
        ops: Sequence[str] = OP_NAMES,
        combiners: Sequence[str] = COMBINERS,
        identity_prob: float = 0.05,
    ):
        if num_blocks < 1:
            raise ArchitectureError("num_blocks", f"must be >= 1, got {num_blocks}")
        for op in ops:
            if op not in OP_NAMES:
                raise ArchitectureError("ops", f"unknown op {op!r}", OP_NAMES)
        for c in combiners:
            if c not in COMBINERS:
                raise ArchitectureError("combiners", f"unknown combiner {c!r}", COMBINERS)
        if not ops or not combiners:
            raise ArchitectureError("ops", "a space needs at least one op and one combiner")
        self.num_blocks = num_blocks
        self.ops = tuple(ops)
        self.combiners = tuple(combiners)
        self.identity_prob = identity_prob
        self._decisions = self._make_decisions()

    @classmethod
    def for_json(cls, data: Any) -> NASNetSpace:
        """A space with as many blocks per cell as the JSON's normal cell (DARTS cells have 4)."""
        normal = data.get("normal") if isinstance(data, dict) else None
        blocks = normal.get("blocks") if isinstance(normal, dict) else None
        return cls(num_blocks=len(blocks)) if isinstance(blocks, list) and blocks else cls()

    def __repr__(self) -> str:
        return f"NASNetSpace(num_blocks={self.num_blocks}, ops={len(self.ops)}, combiners={self.combiners})"

    # -- decision sequence -------------------------------------------------------------------
    def _make_decisions(self) -> tuple[Decision, ...]:
        steps = []
        for cell in ("normal", "reduction"):
            for j in range(self.num_blocks):
                inputs = tuple(str(i) for i in range(NUM_INPUTS + j))
                prefix = f"{cell}.blocks[{j}]"
                steps += [
                    Decision(f"{prefix}.input_a", len(inputs), inputs),
                    Decision(f"{prefix}.input_b", len(inputs), inputs),
                    Decision(f"{prefix}.op_a", len(self.ops), self.ops),
                    Decision(f"{prefix}.op_b", len(self.ops), self.ops),
                    Decision(f"{prefix}.combine", len(self.combiners), self.combiners),
                ]
        return tuple(steps)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def encode(self, arch: NASNetArchitecture) -> tuple[int, ...]:
        """Decision indices; an explicit `concat` is not part of the sequence and is dropped."""
        self.validate(arch)
        out: list[int] = []
        for _, cell in arch.cells():
            for b in cell.blocks:
                out += [
                    b.input_a,
                    b.input_b,
                    self.ops.index(b.op_a),
                    self.ops.index(b.op_b),
                    self.combiners.index(b.combine),
                ]
        return tuple(out)

    def decode(self, choices: Sequence[int]) -> NASNetArchitecture:
        c = self.check_choices(choices)
        per_cell = 5 * self.num_blocks
        cells = []
        for start in (0, per_cell):
            blocks = []
            for j in range(self.num_blocks):
                ia, ib, oa, ob, cb = c[start + 5 * j : start + 5 * j + 5]
                blocks.append(Block(ia, self.ops[oa], ib, self.ops[ob], self.combiners[cb]))
            cells.append(Cell(tuple(blocks)))
        return NASNetArchitecture(cells[0], cells[1])

    # -- validation and JSON -----------------------------------------------------------------
    def validate(self, arch: NASNetArchitecture) -> NASNetArchitecture:
        if not isinstance(arch, NASNetArchitecture):
            raise ArchitectureError("architecture", f"expected a NASNetArchitecture, got {type(arch).__name__}")
        for cell_name, cell in arch.cells():
            if len(cell.blocks) != self.num_blocks:
                raise ArchitectureError(
                    f"{cell_name}.blocks", f"expected {self.num_blocks} blocks, got {len(cell.blocks)}"
                )
            for j, b in enumerate(cell.blocks):
                where = f"{cell_name}.blocks[{j}]"
                allowed_inputs = list(range(NUM_INPUTS + j))
                for part, value in (("input_a", b.input_a), ("input_b", b.input_b)):
                    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed_inputs:
                        raise ArchitectureError(f"{where}.{part}", f"invalid input {value!r}", allowed_inputs)
                for part, op in (("op_a", b.op_a), ("op_b", b.op_b)):
                    if op not in self.ops:
                        raise ArchitectureError(f"{where}.{part}", f"unknown op {op!r}", self.ops)
                if b.combine not in self.combiners:
                    raise ArchitectureError(f"{where}.combine", f"unknown combiner {b.combine!r}", self.combiners)
            if cell.concat is not None:
                states = list(range(NUM_INPUTS + self.num_blocks))
                if not cell.concat:
                    raise ArchitectureError(f"{cell_name}.concat", "must name at least one state", states)
                for s in cell.concat:
                    if isinstance(s, bool) or not isinstance(s, int) or s not in states:
                        raise ArchitectureError(f"{cell_name}.concat", f"invalid state {s!r}", states)
                if len(set(cell.concat)) != len(cell.concat):
                    raise ArchitectureError(f"{cell_name}.concat", f"repeated state in {list(cell.concat)}")
            if not cell.output_states():
                raise ArchitectureError(f"{cell_name}.concat", "the cell has no output state")
        return arch

    def to_json(self, arch: NASNetArchitecture) -> dict[str, Any]:
        out: dict[str, Any] = {"space": "nasnet"}
        for name, cell in arch.cells():
            c: dict[str, Any] = {
                "blocks": [
                    {"inputs": [b.input_a, b.input_b], "ops": [b.op_a, b.op_b], "combine": b.combine}
                    for b in cell.blocks
                ]
            }
            if cell.concat is not None:
                c["concat"] = list(cell.concat)
            out[name] = c
        return out

    def from_json(self, data: Any) -> NASNetArchitecture:
        if not isinstance(data, dict):
            raise ArchitectureError("architecture", "expected a JSON object with 'normal' and 'reduction'")
        if data.get("space", "nasnet") != "nasnet":
            raise ArchitectureError("space", f"expected 'nasnet', got {data.get('space')!r}", ["nasnet"])
        cells = [_cell_from_json(data.get(name), name) for name in ("normal", "reduction")]
        return self.validate(NASNetArchitecture(*cells))

    # -- identity --------------------------------------------------------------------------------
    def key(self, arch: NASNetArchitecture) -> str:
        """Hash of each cell's output expressions, so half swaps and block order do not matter."""
        canon = {name: _cell_expression(cell) for name, cell in arch.cells()}
        digest = hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()
        return f"nasnet-{digest[:24]}"

    # -- evolution ---------------------------------------------------------------------------------
    def mutate(self, arch: NASNetArchitecture, rng: np.random.Generator) -> NASNetArchitecture:
        """Regularized evolution's mutation: identity (p=identity_prob), else a hidden-state or op
        mutation with equal probability on one half of one block of one cell.

        The mutated cell falls back to the default concat rule, since an explicit list described
        the old wiring.
        """
        self.validate(arch)
        if rng.random() < self.identity_prob:
            return arch
        cell_name = ("normal", "reduction")[int(rng.integers(2))]
        cell: Cell = getattr(arch, cell_name)
        j = int(rng.integers(self.num_blocks))
        half = int(rng.integers(2))
        block = cell.blocks[j]
        kinds = ["hidden", "op"] if len(self.ops) > 1 else ["hidden"]
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "hidden":
            current = block.input_a if half == 0 else block.input_b
            options = [s for s in range(NUM_INPUTS + j) if s != current]
            new = options[int(rng.integers(len(options)))]
            block = replace(block, input_a=new) if half == 0 else replace(block, input_b=new)
        else:
            current_op = block.op_a if half == 0 else block.op_b
            op_options = [o for o in self.ops if o != current_op]
            new_op = op_options[int(rng.integers(len(op_options)))]
            block = replace(block, op_a=new_op) if half == 0 else replace(block, op_b=new_op)
        blocks = cell.blocks[:j] + (block,) + cell.blocks[j + 1 :]
        return replace(arch, **{cell_name: Cell(blocks)})

    # -- networks ------------------------------------------------------------------------------------
    def build(self, arch: NASNetArchitecture, **network_config: Any) -> NASNet:
        """A NASNet network from the pair of cells; see `nasforge.models.nasnet.NASNet`."""
        return NASNet(self.validate(arch), **network_config)


def _cell_from_json(data: Any, name: str) -> Cell:
    if not isinstance(data, dict) or "blocks" not in data:
        raise ArchitectureError(name, "expected an object with a 'blocks' list")
    raw_blocks = data["blocks"]
    if not isinstance(raw_blocks, list):
        raise ArchitectureError(f"{name}.blocks", "expected a list of blocks")
    blocks = []
    for j, raw in enumerate(raw_blocks):
        where = f"{name}.blocks[{j}]"
        if isinstance(raw, dict):
            inputs, ops, combine = raw.get("inputs"), raw.get("ops"), raw.get("combine", "add")
        elif isinstance(raw, list) and len(raw) in (4, 5):
            inputs, ops = [raw[0], raw[2]], [raw[1], raw[3]]
            combine = raw[4] if len(raw) == 5 else "add"
        else:
            raise ArchitectureError(
                where,
                "expected {'inputs': [a, b], 'ops': [op_a, op_b], 'combine': ...}"
                " or [input_a, op_a, input_b, op_b, combine]",
            )
        if not isinstance(inputs, list) or len(inputs) != 2:
            raise ArchitectureError(f"{where}.inputs", "expected a list of two state indices")
        if not isinstance(ops, list) or len(ops) != 2:
            raise ArchitectureError(f"{where}.ops", "expected a list of two op names", OP_NAMES)
        blocks.append(Block(inputs[0], ops[0], inputs[1], ops[1], combine))
    concat = data.get("concat")
    if concat is not None:
        if not isinstance(concat, list):
            raise ArchitectureError(f"{name}.concat", "expected a list of state indices")
        concat = tuple(concat)
    return Cell(tuple(blocks), concat)


def _cell_expression(cell: Cell) -> list[str]:
    """Each output state as a nested expression with commutative halves sorted."""
    memo: dict[int, str] = {}

    def expr(state: int) -> str:
        if state < NUM_INPUTS:
            return f"in{state}"
        if state not in memo:
            b = cell.blocks[state - NUM_INPUTS]
            halves = sorted(f"{op}({expr(i)})" for i, op in b.halves())
            memo[state] = f"{b.combine}[{','.join(halves)}]"
        return memo[state]

    return sorted(expr(s) for s in cell.output_states())
