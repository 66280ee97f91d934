"""The MnasNet-style MBConv space: decisions, B0 membership, JSON, keys, mutation and networks."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.mbconv import B0_ARCH, MBConvArchitecture, MBConvStage, with_stage
from nasforge.cli import main
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.profile import count_params
from nasforge.spaces import SPACES, space_for_json
from nasforge.spaces.mbconv import MBConvSpace

SPACE = MBConvSpace()
choices_strategy = st.tuples(*[st.integers(0, d.num_options - 1) for d in SPACE.decisions])


def test_decisions():
    names = [d.name for d in SPACE.decisions]
    assert len(names) == 35
    assert names[:5] == ["stages[0].kernel", "stages[0].expansion", "stages[0].se_ratio", "stages[0].repeats",
                         "stages[0].channels"]
    assert [d.num_options for d in SPACE.decisions[:5]] == [2, 3, 2, 3, 3]
    assert SPACE.size() == 108 ** 7
    assert SPACES["mbconv"] is MBConvSpace


def test_b0_is_a_member_with_b0_params():
    neutral = (0, 0, 1, 1, 1)  # kernel 3, expansion 1, SE 0.25, +0 repeats, x1.0 width
    enc = SPACE.encode(B0_ARCH)
    assert enc[:5] == neutral and all(enc[5 * i + 3: 5 * i + 5] == (1, 1) for i in range(7))
    assert SPACE.decode(enc) == B0_ARCH
    with torch.device("meta"):
        model = SPACE.build(B0_ARCH, num_classes=1000)
    assert count_params(model) == 5_288_548
    assert model.resolution == 224


def test_width_and_repeat_options():
    # 16 x 0.75 = 12 rounds up to 16: ratios 0.75 and 1.0 give the same stage 0
    assert SPACE._width_options[0] == (16, 16, 24)
    assert SPACE._width_options[3] == (64, 80, 104)
    assert SPACE._repeat_options[0] == (1, 1, 2) and SPACE._repeat_options[5] == (3, 4, 5)
    low = list(SPACE.encode(B0_ARCH))
    low[4] = 0  # stage 0 width x0.75
    low[3] = 0  # stage 0 repeats -1 (clamped to 1)
    assert SPACE.decode(low) == B0_ARCH and SPACE.key(SPACE.decode(low)) == SPACE.key(B0_ARCH)


@given(choices_strategy)
def test_decode_encode_json_key(choices):
    arch = SPACE.decode(choices)
    assert SPACE.validate(arch) is arch
    again = SPACE.decode(SPACE.encode(arch))
    assert again == arch and SPACE.key(again) == SPACE.key(arch)
    data = SPACE.to_json(arch)
    assert data["space"] == "mbconv" and len(data["stages"]) == 7
    assert SPACE.loads(SPACE.dumps(arch)) == arch
    assert space_for_json(json.loads(json.dumps(data))).from_json(data) == arch
    hash(arch)


@given(choices_strategy, choices_strategy)
def test_key_equal_iff_same_architecture(a, b):
    x, y = SPACE.decode(a), SPACE.decode(b)
    assert (SPACE.key(x) == SPACE.key(y)) == (x == y)


@given(choices_strategy, st.integers(0, 2 ** 32 - 1))
def test_mutate_changes_one_decision(choices, seed):
    arch = SPACE.decode(choices)
    child = SPACE.mutate(arch, np.random.default_rng(seed))
    assert child != arch
    SPACE.validate(child)
    diffs = [(i, f) for i, (s, t) in enumerate(zip(arch.stages, child.stages))
             for f in ("kernel", "expansion", "se_ratio", "repeats", "channels") if getattr(s, f) != getattr(t, f)]
    assert len(diffs) == 1


def test_sample_is_seeded():
    a = [SPACE.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    assert SPACE.sample(np.random.default_rng(4)) != a[0]


@pytest.mark.parametrize("change, field", [
    ({"kernel": 7}, "stages[2].kernel"),
    ({"expansion": 3}, "stages[2].expansion"),
    ({"se_ratio": 0.5}, "stages[2].se_ratio"),
    ({"repeats": 5}, "stages[2].repeats"),
    ({"channels": 44}, "stages[2].channels"),
    ({"kernel": True}, "stages[2].kernel"),
])
def test_validate_names_the_field(change, field):
    with pytest.raises(ArchitectureError) as exc:
        SPACE.validate(with_stage(B0_ARCH, 2, **change))
    assert exc.value.field == field and "allowed" in str(exc.value)


def test_from_json_errors():
    good = SPACE.to_json(B0_ARCH)
    with pytest.raises(ArchitectureError, match="stages"):
        SPACE.from_json({"space": "mbconv", "stages": good["stages"][:6]})
    bad = json.loads(json.dumps(good))
    del bad["stages"][1]["kernel"]
    with pytest.raises(ArchitectureError, match=r"stages\[1\]\.kernel"):
        SPACE.from_json(bad)
    bad = json.loads(json.dumps(good))
    bad["stages"][0]["stride"] = 2
    with pytest.raises(ArchitectureError, match=r"stages\[0\]\.stride"):
        SPACE.from_json(bad)
    with pytest.raises(ArchitectureError, match="space"):
        SPACE.from_json({**good, "space": "nasnet"})
    with pytest.raises(ArchitectureError, match="architecture"):
        SPACE.from_json([1, 2])
    with pytest.raises(ArchitectureError, match="architecture"):
        SPACE.validate("B0")
    with pytest.raises(ArchitectureError, match="stages"):
        SPACE.validate(MBConvArchitecture(B0_ARCH.stages + (MBConvStage(3, 6, 0.25, 1, 320),)))
    with pytest.raises(ArchitectureError, match="choices"):
        SPACE.decode([0] * 34)


def test_build_sampled_network_and_options():
    arch = SPACE.sample(np.random.default_rng(0))
    torch.manual_seed(0)
    model = SPACE.build(arch, num_classes=10, resolution=32, width_mult=0.5, depth_mult=0.5, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="stem"):
        SPACE.build(arch, stem="cifar")


def test_custom_space():
    small = MBConvSpace(kernels=(3, 5), expansions=(1, 6), se_ratios=(0.25,), repeat_changes=(0,), width_ratios=(1.0,))
    assert small.size() == 4 ** 7 and small.validate(B0_ARCH) is B0_ARCH
    with pytest.raises(ConfigError, match="kernels"):
        MBConvSpace(kernels=(4,))


def test_cli_profile_of_an_mbconv_file(tmp_path, capsys):
    path = tmp_path / "b0.json"
    path.write_text(SPACE.dumps(B0_ARCH))
    assert main(["profile", "--arch", str(path), "--num-classes", "1000", "--resolution", "64", "--json",
                 "--no-latency"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 5_288_548 and out["resolution"] == 64 and out["macs"] > 0
