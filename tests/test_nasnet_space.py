import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.nasnet import Block, Cell, NASNetArchitecture
from nasforge.arch.nasnet_cells import AMOEBANET_A, NASNET_A, PUBLISHED
from nasforge.errors import ArchitectureError
from nasforge.nn.ops import OP_NAMES
from nasforge.spaces import NASNetSpace, space_for_json

SPACE = NASNetSpace()


@st.composite
def choices(draw, space=SPACE):
    return [draw(st.integers(0, d.num_options - 1)) for d in space.decisions]


def test_decision_sequence_matches_the_paper():
    d = SPACE.decisions
    assert len(d) == 50  # 2 cells x 5 blocks x 5 decisions
    assert len(OP_NAMES) == 13
    # block j of a cell chooses its inputs among the two cell inputs and j earlier blocks
    for cell_offset in (0, 25):
        for j in range(5):
            a, b, op_a, op_b, comb = d[cell_offset + 5 * j: cell_offset + 5 * j + 5]
            assert a.num_options == b.num_options == 2 + j
            assert op_a.num_options == op_b.num_options == 13
            assert comb.num_options == 2
    assert d[0].name == "normal.blocks[0].input_a" and d[25].name.startswith("reduction.")


@given(choices())
def test_encode_decode_round_trip(cs):
    arch = SPACE.decode(cs)
    assert list(SPACE.encode(arch)) == cs


@given(choices())
def test_json_round_trip_is_identity(cs):
    arch = SPACE.decode(cs)
    text = SPACE.dumps(arch)
    again = SPACE.loads(text)
    assert again == arch
    assert hash(again) == hash(arch)
    assert SPACE.key(again) == SPACE.key(arch)
    assert json.loads(text)["space"] == "nasnet"


def _swap_halves(arch: NASNetArchitecture, cell_name: str, j: int) -> NASNetArchitecture:
    cell = getattr(arch, cell_name)
    b = cell.blocks[j]
    swapped = Block(b.input_b, b.op_b, b.input_a, b.op_a, b.combine)
    blocks = cell.blocks[:j] + (swapped,) + cell.blocks[j + 1:]
    cells = {"normal": arch.normal, "reduction": arch.reduction, cell_name: Cell(blocks, cell.concat)}
    return NASNetArchitecture(**cells)


@given(choices(), st.sampled_from(["normal", "reduction"]), st.integers(0, 4))
def test_key_ignores_swapped_halves(cs, cell_name, j):
    arch = SPACE.decode(cs)
    assert SPACE.key(_swap_halves(arch, cell_name, j)) == SPACE.key(arch)


def test_key_ignores_the_order_of_independent_blocks():
    cell = NASNET_A.normal
    # blocks 0 and 1 of NASNet-A read only the cell inputs; exchange them (states 2 <-> 3)
    blocks = (cell.blocks[1], cell.blocks[0]) + cell.blocks[2:]
    concat = tuple({2: 3, 3: 2}.get(s, s) for s in cell.concat)
    reordered = NASNetArchitecture(Cell(blocks, concat), NASNET_A.reduction)
    assert reordered != NASNET_A
    assert SPACE.key(reordered) == SPACE.key(NASNET_A)


def test_key_changes_with_an_op():
    changed = NASNetArchitecture(
        Cell((Block(1, "sep_conv_7x7", 0, "sep_conv_3x3"),) + NASNET_A.normal.blocks[1:], NASNET_A.normal.concat),
        NASNET_A.reduction)
    assert SPACE.key(changed) != SPACE.key(NASNET_A)
    rewired = _swap_halves(NASNET_A, "reduction", 4)
    rewired = NASNetArchitecture(rewired.normal, Cell(
        rewired.reduction.blocks[:4] + (Block(1, "sep_conv_3x3", 1, "max_pool_3x3"),), rewired.reduction.concat))
    assert SPACE.key(rewired) != SPACE.key(NASNET_A)


@given(choices(), st.integers(0, 2**32 - 1))
def test_mutation_changes_at_most_one_decision(cs, seed):
    arch = SPACE.decode(cs)
    child = SPACE.mutate(arch, np.random.default_rng(seed))
    SPACE.validate(child)
    diff = [i for i, (p, q) in enumerate(zip(SPACE.encode(arch), SPACE.encode(child))) if p != q]
    assert len(diff) <= 1
    if diff:  # a hidden-state or op mutation, never the combiner
        name = SPACE.decisions[diff[0]].name
        assert name.endswith(("input_a", "input_b", "op_a", "op_b"))


def test_mutation_is_identity_about_five_percent_of_the_time():
    rng = np.random.default_rng(0)
    same = sum(SPACE.mutate(AMOEBANET_A, rng) == AMOEBANET_A for _ in range(4000))
    assert 0.03 < same / 4000 < 0.07


def test_sample_is_deterministic_under_a_seed():
    a = [SPACE.sample(np.random.default_rng(7)) for _ in range(3)]
    b = [SPACE.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_nasnet_a_as_in_the_tensorflow_reference():
    # TF numbers h_i as 0 and h_{i-1} as 1; nasforge the other way round.
    tf_ops = ["sep_conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3",
              "identity", "avg_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "identity"]
    tf_inputs = [0, 1, 1, 1, 0, 1, 1, 1, 0, 0]
    halves = [h for b in NASNET_A.normal.blocks for h in b.halves()]
    assert [op for _, op in halves] == tf_ops
    assert [1 - i for i, _ in halves] == tf_inputs
    assert NASNET_A.normal.output_states() == (0, 2, 3, 4, 5, 6)
    tf_inputs_red = [0, 1, 0, 1, 0, 1, 3, 2, 2, 0]
    halves = [h for b in NASNET_A.reduction.blocks for h in b.halves()]
    assert [i if i > 1 else 1 - i for i, _ in halves] == tf_inputs_red
    assert NASNET_A.reduction.output_states() == (3, 4, 5, 6)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_cells_are_valid_and_round_trip(name):
    arch = PUBLISHED[name]
    space = NASNetSpace(num_blocks=len(arch.normal.blocks))
    space.validate(arch)
    data = json.loads(space.dumps(arch))
    assert space_for_json(data).from_json(data) == arch


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["normal"]["blocks"][2].update(inputs=[5, 0]), "normal.blocks[2].input_a"),
        (lambda d: d["reduction"]["blocks"][0].update(ops=["sep_conv_3x3", "conv_9x9"]), "reduction.blocks[0].op_b"),
        (lambda d: d["normal"]["blocks"][1].update(combine="mul"), "normal.blocks[1].combine"),
        (lambda d: d["normal"]["blocks"].pop(), "normal.blocks"),
        (lambda d: d["reduction"].update(concat=[9]), "reduction.concat"),
        (lambda d: d.pop("reduction"), "reduction"),
    ],
)
def test_validation_names_the_field_and_allowed_values(mutate, field):
    data = json.loads(SPACE.dumps(NASNET_A))
    mutate(data)
    with pytest.raises(ArchitectureError) as err:
        SPACE.from_json(data)
    assert str(err.value).startswith(field + ":")
    assert "\n" not in str(err.value)


def test_unknown_op_error_lists_the_ops():
    data = json.loads(SPACE.dumps(NASNET_A))
    data["normal"]["blocks"][0]["ops"][0] = "sep_conv_9x9"
    with pytest.raises(ArchitectureError, match="allowed: identity, conv_1x3_3x1"):
        SPACE.from_json(data)


def test_malformed_json_text():
    with pytest.raises(ArchitectureError, match="^json: not valid JSON"):
        SPACE.loads("{not json")


def test_decode_rejects_bad_sequences():
    with pytest.raises(ArchitectureError, match="expected 50 decisions"):
        SPACE.decode([0] * 49)
    with pytest.raises(ArchitectureError, match=r"normal.blocks\[0\].input_a: option 2 out of range"):
        SPACE.decode([2] + [0] * 49)


def test_smaller_spaces():
    amoeba = NASNetSpace(ops=["identity", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
                              "max_pool_3x3", "dil_conv_3x3", "conv_1x7_7x1"], combiners=["add"])
    assert len(amoeba.decisions) == 50 and amoeba.decisions[4].num_options == 1
    assert NASNetSpace(num_blocks=4).size() < SPACE.size()
    with pytest.raises(ArchitectureError, match="ops: unknown op"):
        NASNetSpace(ops=["conv_2x2"])
