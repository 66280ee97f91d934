"""Published cells as data, in nasforge's indexing (0 = h_{i-1}, 1 = h_i, 2+j = block j).

- NASNet-A: TensorFlow slim's `NasNetANormalCell` / `NasNetAReductionCell`, with the two input
  indices swapped to this convention and `used_hiddenstates` turned into an explicit concat list.
- AmoebaNet-A: as DARTS's `genotypes.py` records it (its concat lists equal the default rule).
- DARTS V1/V2: 4-block cells, so they live in a `NASNetSpace(num_blocks=4)`; DARTS's reduction
  `skip_connect` becomes nasforge's strided identity (ReLU-1x1 conv-BN rather than a factorized
  reduce), which changes a few thousand parameters, not the function class.
- ENAS is not included: its published cell could not be checked against a reference here.
"""

from __future__ import annotations

from collections.abc import Sequence

from nasforge.arch.nasnet import Block, Cell, NASNetArchitecture
from nasforge.errors import ArchitectureError

#: DARTS genotype op names -> nasforge op names.
DARTS_OP_NAMES = {
    "skip_connect": "identity",
    "sep_conv_3x3": "sep_conv_3x3",
    "sep_conv_5x5": "sep_conv_5x5",
    "sep_conv_7x7": "sep_conv_7x7",
    "dil_conv_3x3": "dil_conv_3x3",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
    "conv_7x1_1x7": "conv_1x7_7x1",
}


def cell_from_pairs(pairs: Sequence[tuple[str, int]], concat: Sequence[int] | None = None) -> Cell:
    """A cell from DARTS-style (op, input) pairs, two per block, always added.

    DARTS numbers states exactly as nasforge does, so only op names are translated. The concat
    list is kept only where it differs from the default rule, so keys stay comparable.
    """
    if len(pairs) % 2:
        raise ArchitectureError("genotype", "needs two (op, input) pairs per block")
    blocks = []
    for j in range(0, len(pairs), 2):
        (op_a, in_a), (op_b, in_b) = pairs[j], pairs[j + 1]
        for op in (op_a, op_b):
            if op not in DARTS_OP_NAMES:
                raise ArchitectureError("genotype", f"op {op!r} has no nasforge equivalent", DARTS_OP_NAMES)
        blocks.append(Block(in_a, DARTS_OP_NAMES[op_a], in_b, DARTS_OP_NAMES[op_b], "add"))
    cell = Cell(tuple(blocks))
    if concat is not None and tuple(concat) != cell.output_states():
        cell = Cell(cell.blocks, tuple(concat))
    return cell


NASNET_A = NASNetArchitecture(
    normal=Cell(
        (
            Block(1, "sep_conv_5x5", 0, "sep_conv_3x3"),
            Block(0, "sep_conv_5x5", 0, "sep_conv_3x3"),
            Block(1, "avg_pool_3x3", 0, "identity"),
            Block(0, "avg_pool_3x3", 0, "avg_pool_3x3"),
            Block(1, "sep_conv_3x3", 1, "identity"),
        ),
        concat=(0, 2, 3, 4, 5, 6),
    ),
    reduction=Cell(
        (
            Block(1, "sep_conv_5x5", 0, "sep_conv_7x7"),
            Block(1, "max_pool_3x3", 0, "sep_conv_7x7"),
            Block(1, "avg_pool_3x3", 0, "sep_conv_5x5"),
            Block(3, "identity", 2, "avg_pool_3x3"),
            Block(2, "sep_conv_3x3", 1, "max_pool_3x3"),
        ),
        concat=(3, 4, 5, 6),
    ),
)

AMOEBANET_A = NASNetArchitecture(
    normal=cell_from_pairs(
        [
            ("avg_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0),
            ("avg_pool_3x3", 3),
            ("sep_conv_3x3", 1),
            ("skip_connect", 1),
            ("skip_connect", 0),
            ("avg_pool_3x3", 1),
        ],
        [4, 5, 6],
    ),
    reduction=cell_from_pairs(
        [
            ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1),
            ("max_pool_3x3", 0),
            ("sep_conv_7x7", 2),
            ("sep_conv_7x7", 0),
            ("avg_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("conv_7x1_1x7", 0),
            ("sep_conv_3x3", 5),
        ],
        [3, 4, 6],
    ),
)

DARTS_V1 = NASNetArchitecture(
    normal=cell_from_pairs(
        [
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ],
        [2, 3, 4, 5],
    ),
    reduction=cell_from_pairs(
        [
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ],
        [2, 3, 4, 5],
    ),
)

DARTS_V2 = NASNetArchitecture(
    normal=cell_from_pairs(
        [
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ],
        [2, 3, 4, 5],
    ),
    reduction=cell_from_pairs(
        [
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ],
        [2, 3, 4, 5],
    ),
)

#: name -> architecture (DARTS's cells have 4 blocks, the others 5: `NASNetSpace(num_blocks=...)`)
PUBLISHED: dict[str, NASNetArchitecture] = {
    "nasnet_a": NASNET_A,
    "amoebanet_a": AMOEBANET_A,
    "darts_v1": DARTS_V1,
    "darts_v2": DARTS_V2,
}
