"""The layer-wise space of Zoph & Le (2017): decisions, values, keys, mutation and networks."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.layerwise import Layer, LayerwiseArchitecture
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces import SPACES
from nasforge.spaces.layerwise import LayerwiseSpace

SPACE = LayerwiseSpace()
STRIDED = LayerwiseSpace(depth=4, strides=(1, 2, 3))


def choices(space):
    return st.tuples(*(st.integers(0, d.num_options - 1) for d in space.decisions)).map(list)


@pytest.mark.parametrize("depth", [1, 2, 6, 10])
def test_decision_count_depends_on_depth(depth):
    space = LayerwiseSpace(depth=depth)
    assert len(space.decisions) == 3 * depth + depth * (depth - 1) // 2
    assert len(LayerwiseSpace(depth=depth, strides=(1, 2)).decisions) == 4 * depth + depth * (depth - 1) // 2
    names = [d.name for d in space.decisions]
    assert names[:3] == ["layers[0].height", "layers[0].width", "layers[0].filters"]
    if depth > 2:
        i = names.index("layers[2].filters")
        assert names[i + 1:i + 3] == ["layers[2].skip[0]", "layers[2].skip[1]"]


def test_paper_values_and_registration():
    d = SPACE.decisions
    assert d[0].labels == ("1", "3", "5", "7") and d[1].labels == ("1", "3", "5", "7")
    assert d[2].labels == ("24", "36", "48", "64")
    assert isinstance(SPACES["layerwise"](), LayerwiseSpace) and SPACES["layerwise"](depth=3).depth == 3
    with pytest.raises(ConfigError, match="^depth"):
        LayerwiseSpace(depth=0)
    with pytest.raises(ConfigError, match="^filters: repeated"):
        LayerwiseSpace(filters=(24, 24))


@pytest.mark.parametrize("space", [SPACE, STRIDED], ids=["plain", "strided"])
@given(data=st.data())
def test_round_trips(space, data):
    cs = data.draw(choices(space))
    arch = space.decode(cs)
    assert list(space.encode(arch)) == cs
    again = space.loads(space.dumps(arch))
    assert again == arch and hash(again) == hash(arch) and space.key(again) == space.key(arch)
    assert space.to_json(arch)["space"] == "layerwise"


def test_input_order_does_not_matter():
    a = Layer(3, 3, 24)
    arch = LayerwiseArchitecture((a, a, a, Layer(3, 5, 36, inputs=(2, 0))))
    same = LayerwiseArchitecture((a, a, a, Layer(3, 5, 36, inputs=[0, 2])))
    space = LayerwiseSpace(depth=4)
    assert arch == same and space.key(arch) == space.key(same)
    assert space.to_json(arch)["layers"][3]["inputs"] == [0, 2]
    other = LayerwiseArchitecture((a, a, a, Layer(3, 5, 36, inputs=(1, 2))))
    assert space.key(other) != space.key(arch)


def test_errors_name_the_field():
    space = LayerwiseSpace(depth=2)
    good = {"height": 3, "width": 3, "filters": 24}
    cases = [
        ({"layers": [good, {**good, "filters": 25}]}, "layers[1].filters", "24, 36, 48, 64"),
        ({"layers": [good, {**good, "height": 2}]}, "layers[1].height", "1, 3, 5, 7"),
        ({"layers": [{**good, "inputs": [0]}, good]}, "layers[0].inputs", "reads the image"),
        ({"layers": [good, {**good, "inputs": [1]}]}, "layers[1].inputs", "earlier layers"),
        ({"layers": [good, {**good, "inputs": [0, 0]}]}, "layers[1].inputs", "repeated"),
        ({"layers": [good, {**good, "kernel": 3}]}, "layers[1].kernel", "unknown field"),
        ({"layers": [good, {"height": 3, "width": 3}]}, "layers[1].filters", "missing"),
        ({"layers": [good]}, "layers", "expected 2 layers"),
        ({"layers": [good, {**good, "stride": 2}]}, "layers[1].stride", "invalid value"),
    ]
    for data, field, text in cases:
        with pytest.raises(ArchitectureError) as info:
            space.from_json(data)
        assert info.value.field == field and text in str(info.value), (data, str(info.value))
    with pytest.raises(ArchitectureError, match="^space"):
        space.from_json({"space": "nb201", "layers": [good, good]})


def test_json_of_any_depth_can_be_read():
    arch = LayerwiseSpace(depth=8, strides=(1, 2, 3)).sample(np.random.default_rng(3))
    data = LayerwiseSpace(depth=8, strides=(1, 2, 3)).to_json(arch)
    assert LayerwiseSpace.for_json(data).from_json(data) == arch


@given(choices(SPACE), st.integers(0, 2 ** 32 - 1))
def test_mutation_changes_one_decision(cs, seed):
    arch = SPACE.decode(cs)
    child = SPACE.mutate(arch, np.random.default_rng(seed))
    assert sum(a != b for a, b in zip(SPACE.encode(arch), SPACE.encode(child))) == 1


def test_wiring_follows_the_paper():
    L = Layer
    arch = LayerwiseArchitecture((L(1, 7, 24), L(3, 3, 36, inputs=(0,)), L(5, 1, 48), L(7, 5, 64, inputs=(0, 2))))
    # layer 2 reads the image (no inputs); the classifier reads the unconsumed layers 1 and 3
    assert arch.output_layers() == (1, 3)
    model = LayerwiseSpace(depth=4).build(arch, num_classes=5, in_channels=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.in_channels for c in convs] == [1, 24, 1, 24 + 48]
    assert [c.kernel_size for c in convs] == [(1, 7), (3, 3), (5, 1), (7, 5)]
    assert model.classifier.in_features == 36 + 64
    out = model(torch.randn(2, 1, 9, 9))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sampled_networks_train_with_strides_and_padding():
    rng = np.random.default_rng(0)
    for space in (SPACE, STRIDED):
        for _ in range(3):
            arch = space.sample(rng)
            model = space.build(arch, num_classes=3)
            out = model(torch.randn(2, 3, 11, 11))
            assert out.shape == (2, 3) and torch.isfinite(out).all()
            out.mean().backward()
    # maps of different sizes are zero-padded to the largest before concatenation
    arch = LayerwiseArchitecture((Layer(3, 3, 24, 1), Layer(3, 3, 24, 3, (0,)), Layer(1, 1, 24, 1, (0, 1))))
    model = LayerwiseSpace(depth=3, strides=(1, 3)).build(arch)
    assert model(torch.randn(1, 3, 10, 10)).shape == (1, 10)
    with pytest.raises(ConfigError, match="network.channels"):
        SPACE.build(SPACE.sample(rng), channels=3)
