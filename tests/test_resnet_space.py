"""The ResNet-style macro space (`nasforge.spaces.resnet`): its values, keys, errors and networks, and
a real search of it through the command line on digits, shown, reported with its stage picture,
trained and exported."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from nasforge.cli import main
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.profile import count_params
from nasforge.report import draw_architecture, stage_table
from nasforge.report.mbconv_pictures import stage_columns
from nasforge.spaces import SPACES, space_for_json
from nasforge.spaces.resnet import (
    RESNET20,
    ResidualBlock,
    ResNetArchitecture,
    ResNetSpace,
    ResNetStage,
)

SPACE = ResNetSpace()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def samples(n: int = 200, seed: int = 0, space: ResNetSpace = SPACE) -> list[ResNetArchitecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_registered_with_one_line_and_found_by_its_json():
    assert SPACES["resnet"] is ResNetSpace
    assert "He et al." in SPACES.entry("resnet").description
    assert isinstance(space_for_json(SPACE.to_json(RESNET20)), ResNetSpace)
    four = SPACE.to_json(RESNET20)
    four["stages"].append({"block": "bottleneck", "depth": 1, "width": 128, "kernel": 3})
    assert space_for_json(four).num_stages == 4 and space_for_json(four).from_json(four).stages[3].width == 128
    assert SPACE.drawing == "stages" and SPACE.default_evaluator == "proxy" and SPACE.scaling_family is None


def test_the_decisions_and_the_size():
    assert [d.name for d in SPACE.decisions[:4]] == ["stages[0].block", "stages[0].depth", "stages[0].width",
                                                     "stages[0].kernel"]
    assert [SPACE.widths(i) for i in range(3)] == [(8, 12, 16, 24), (16, 24, 32, 48), (32, 48, 64, 96)]
    assert SPACE.size() == (2 * 3 * 4 * 2) ** 3 == 110_592
    assert SPACE.strides() == (1, 2, 2) and ResNetSpace(stages=4).strides() == (1, 2, 2, 2)
    assert ResNetSpace(stages=4).widths(3) == (64, 96, 128, 192)


def test_json_round_trip_and_decision_round_trip():
    for arch in samples() + [RESNET20]:
        data = json.loads(json.dumps(SPACE.to_json(arch)))
        assert data["space"] == "resnet" and len(data["stages"]) == 3
        assert SPACE.from_json(data) == arch
        assert SPACE.loads(SPACE.dumps(arch)) == arch
        assert SPACE.decode(SPACE.encode(arch)) == arch
        assert SPACE.from_table_cell(json.dumps(data)) == arch
    assert SPACE.to_json(RESNET20) == {"space": "resnet", "stages": [
        {"block": "basic", "depth": 3, "width": w, "kernel": 3} for w in (16, 32, 64)]}
    # the JSON without its space field reads too, in this space
    assert SPACE.from_json({"stages": SPACE.to_json(RESNET20)["stages"]}) == RESNET20


def test_every_decision_sequence_is_its_own_network():
    archs = samples(300, seed=1)
    keys = {SPACE.key(a) for a in archs}
    assert len(keys) == len(set(archs))  # distinct values, distinct keys
    assert SPACE.key(RESNET20) == "resnet-basic3x16k3-basic3x32k3-basic3x64k3"
    choices = list(SPACE.iter_all())[:500]
    assert len({SPACE.key(a) for a in choices}) == 500


def test_key_invariances():
    # the spelling of the JSON: field order, stage-object key order, whitespace
    rnd = random.Random(0)
    for arch in samples(50, seed=2):
        data = SPACE.to_json(arch)
        stages = []
        for st in data["stages"]:
            items = list(st.items())
            rnd.shuffle(items)
            stages.append(dict(items))
        shuffled = {"stages": stages, "space": "resnet"}
        text = json.dumps(shuffled, indent=3)
        assert SPACE.key(SPACE.loads(text)) == SPACE.key(arch)
    # the order of the space's options changes the encoding, not the architecture or its key
    other = ResNetSpace(blocks=("bottleneck", "basic"), depths=(3, 2, 1), width_ratios=(1.5, 1.0, 0.75, 0.5),
                        kernels=(5, 3))
    for arch in samples(50, seed=3):
        assert other.encode(arch) != SPACE.encode(arch)
        assert other.decode(other.encode(arch)) == arch and other.key(arch) == SPACE.key(arch)
    # numpy integers (a table reader's) are the same value and the same key
    np_arch = ResNetArchitecture(tuple(ResNetStage(s.block, np.int64(s.depth), np.int64(s.width), np.int64(s.kernel))
                                       for s in RESNET20.stages))
    assert np_arch == RESNET20 and SPACE.key(np_arch) == SPACE.key(RESNET20)


def test_mutate_changes_one_decision_and_stays_in_the_space():
    rng = np.random.default_rng(4)
    for arch in samples(50, seed=5):
        child = SPACE.mutate(arch, rng)
        SPACE.validate(child)
        assert sum(a != b for a, b in zip(SPACE.encode(arch), SPACE.encode(child))) == 1
    one = ResNetSpace(stages=1, blocks=("basic",), depths=(2,), width_ratios=(1.0,), kernels=(3,))
    only = one.sample(rng)
    assert one.size() == 1 and one.mutate(only, rng) == only


def _error(call) -> ArchitectureError:
    with pytest.raises(ArchitectureError) as info:
        call()
    return info.value


def _with(stage: int, **change) -> dict:
    data = SPACE.to_json(RESNET20)
    data["stages"][stage].update(change)
    return data


@pytest.mark.parametrize("data, field, allowed", [
    (_with(1, block="wide"), "stages[1].block", ("basic", "bottleneck")),
    (_with(0, depth=4), "stages[0].depth", (1, 2, 3)),
    (_with(0, depth=2.0), "stages[0].depth", (1, 2, 3)),
    (_with(2, width=32 + 1), "stages[2].width", (32, 48, 64, 96)),
    (_with(1, width=64), "stages[1].width", (16, 24, 32, 48)),
    (_with(2, kernel=7), "stages[2].kernel", (3, 5)),
    (_with(2, kernel=True), "stages[2].kernel", (3, 5)),
    (_with(0, block=["basic"]), "stages[0].block", ("basic", "bottleneck")),
])
def test_validation_errors_name_the_field_and_the_allowed_values(data, field, allowed):
    err = _error(lambda: SPACE.from_json(data))
    assert err.field == field and tuple(err.allowed) == allowed
    assert field in str(err) and "allowed:" in str(err)


def test_malformed_json_is_named():
    data = SPACE.to_json(RESNET20)
    del data["stages"][1]["kernel"]
    assert _error(lambda: SPACE.from_json(data)).field == "stages[1].kernel"
    assert _error(lambda: SPACE.from_json(_with(0, stride=2))).field == "stages[0].stride"
    assert _error(lambda: SPACE.from_json({**SPACE.to_json(RESNET20), "stem": 16})).field == "stem"
    assert _error(lambda: SPACE.from_json({**SPACE.to_json(RESNET20), "space": "mbconv"})).field == "space"
    assert _error(lambda: SPACE.from_json({"space": "resnet", "stages": "basic"})).field == "stages"
    assert _error(lambda: SPACE.from_json({"space": "resnet", "stages": [1, 2, 3]})).field == "stages[0]"
    two = SPACE.to_json(RESNET20)
    two["stages"].pop()
    assert "expected 3 stages" in str(_error(lambda: SPACE.from_json(two)))
    assert _error(lambda: SPACE.from_json([1, 2])).field == "architecture"
    assert _error(lambda: SPACE.loads("{nope")).field == "json"
    assert _error(lambda: SPACE.validate(("basic", 3, 16, 3))).field == "architecture"
    assert _error(lambda: SPACE.decode([0] * 11)).field == "choices"
    assert _error(lambda: SPACE.decode([0, 0, 4, 0] + [0] * 8)).field == "stages[0].width"


@pytest.mark.parametrize("options, field", [
    ({"stages": 0}, "stages"), ({"stages": 7}, "stages"), ({"stages": 2.0}, "stages"),
    ({"blocks": ("basic", "dense")}, "blocks"), ({"depths": ()}, "depths"), ({"depths": (1, 1)}, "depths"),
    ({"kernels": (3, 4)}, "kernels"), ({"width_ratios": (0.0,)}, "width_ratios"),
    ({"width_ratios": (1.0, 1.01)}, "width_ratios"), ({"base_width": 0}, "base_width"),
])
def test_bad_space_options_are_named(options, field):
    with pytest.raises(ConfigError) as info:
        ResNetSpace(**options)
    assert info.value.field == field


# -- networks ------------------------------------------------------------------------------------------------
def test_resnet20_has_he_et_als_parameter_count():
    # He et al. 2016, Table 6: ResNet-20 on CIFAR-10 has 0.27 M parameters
    net = SPACE.build(RESNET20, num_classes=10)
    assert count_params(net) == 272_474
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 9
    # projection shortcuts exactly where the width or the resolution changes: each later stage's first block
    projected = [i for i, b in enumerate(blocks) if not isinstance(b.shortcut, nn.Identity)]
    assert projected == [3, 6]
    strides = [b.branch[0].stride for b in blocks]
    assert strides == [(1, 1)] * 3 + [(2, 2)] + [(1, 1)] * 2 + [(2, 2)] + [(1, 1)] * 2


@pytest.mark.parametrize("in_channels, side, stages", [(1, 8, 3), (3, 32, 3), (3, 32, 4), (3, 17, 3)])
def test_output_shapes(in_channels, side, stages):
    space = ResNetSpace(stages=stages)
    torch.manual_seed(0)
    for arch in samples(4, seed=side, space=space):
        net = space.build(arch, num_classes=7, in_channels=in_channels, resolution=side).eval()
        with torch.no_grad():
            out = net(torch.randn(3, in_channels, side, side))
        assert out.shape == (3, 7) and torch.isfinite(out).all()
        last = net.stages[-1][-1]
        assert net.classifier.in_features == arch.stages[-1].width and isinstance(last, ResidualBlock)


def test_parameter_counts_follow_the_choices():
    def params(**stage) -> int:
        base = {"block": "basic", "depth": 2, "width": 32, "kernel": 3}
        arch = ResNetArchitecture((ResNetStage("basic", 1, 16, 3), ResNetStage(**{**base, **stage}),
                                   ResNetStage("basic", 1, 64, 3)))
        return count_params(SPACE.build(arch))

    assert params(depth=1) < params(depth=2) < params(depth=3)
    assert params(width=16) < params(width=24) < params(width=32) < params(width=48)
    assert params(kernel=3) < params(kernel=5)
    assert params(block="bottleneck") < params(block="basic")  # a quarter of the width inside
    # a basic 3x3 block of w channels: two 3x3 convs and their BNs
    assert params(depth=3) - params(depth=2) == 2 * (9 * 32 * 32 + 2 * 32)
    sizes = [count_params(SPACE.build(a)) for a in samples(40, seed=6)]
    assert 1_000 < min(sizes) and max(sizes) < 2_000_000  # CIFAR-sized


def test_network_options():
    net = SPACE.build(RESNET20, num_classes=3, in_channels=1, stem_channels=8, stem_kernel=5, dropout=0.2)
    assert net.stem[0].in_channels == 1 and net.stem[0].out_channels == 8 and net.stem[0].kernel_size == (5, 5)
    assert isinstance(net.dropout, nn.Dropout) and net.classifier.out_features == 3
    with pytest.raises(ConfigError, match="network.num_cells"):
        SPACE.build(RESNET20, num_cells=2)
    for bad, field in (({"stem_kernel": 4}, "network.stem_kernel"), ({"dropout": 1.0}, "network.dropout"),
                       ({"num_classes": 0}, "network.num_classes")):
        with pytest.raises(ConfigError) as info:
            SPACE.build(RESNET20, **bad)
        assert info.value.field == field
    with pytest.raises(ArchitectureError):
        SPACE.build(ResNetArchitecture(RESNET20.stages[:2]))


# -- pictures ------------------------------------------------------------------------------------------------
def test_the_stage_picture_of_an_architecture(tmp_path):
    arch = ResNetArchitecture((ResNetStage("basic", 2, 16, 3), ResNetStage("bottleneck", 3, 48, 5),
                               ResNetStage("basic", 1, 64, 3)))
    rows = stage_table(SPACE.to_json(arch), resolution=32, stem_stride=1)
    assert [r["operator"] for r in rows] == ["Basic 3x3", "Bottleneck 5x5", "Basic 3x3"]
    assert [r["repeats"] for r in rows] == [2, 3, 1] and [r["channels"] for r in rows] == [16, 48, 64]
    assert [r["stride"] for r in rows] == [1, 2, 2] and [r["resolution"] for r in rows] == [32, 32, 16]
    assert [r["inner_width"] for r in rows] == [16, 12, 64]
    assert [label for _, label in stage_columns(rows)] == ["stage", "operator", "resolution", "kernel",
                                                          "inner width", "repeats", "channels", "stride"]
    assert draw_architecture(SPACE.to_json(arch), tmp_path / "stages.png") == "matplotlib"
    assert (tmp_path / "stages.png").read_bytes()[:8] == PNG_MAGIC
    assert draw_architecture(arch, tmp_path / "value.png", space=SPACE) == "matplotlib"


# -- the command line --------------------------------------------------------------------------------------
def test_search_show_report_train_and_export_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    search = ["search", "--space", "resnet", "--dataset", "digits", "--trials", "3", "--strategy", "evolution",
              "--epochs", "1", "--train-size", "300", "--val-size", "100", "--run", "runs/resnet", "--json",
              "--no-progress"]
    assert main(search) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["trials"] == 3
    best = result["top"][0]
    assert best["key"].startswith("resnet-") and 0.0 < best["reward"] <= 1.0
    assert best["metrics"]["params"] > 0 and best["metrics"]["macs"] > 0

    assert main(["show", "runs/resnet", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"]["done"] == 3 and shown["top"][0]["key"] == best["key"]

    assert main(["report", "runs/resnet"]) == 0
    capsys.readouterr()
    report = tmp_path / "runs" / "resnet" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert not [n for n in summary["notes"] if "diagram" in n or "not readable" in n]
    first = summary["best"][0]
    assert first["files"]["kind"] == "resnet" and first["files"]["diagram"].endswith("-stages.png")
    assert (report / first["files"]["diagram"]).read_bytes()[:8] == PNG_MAGIC
    rows = first["files"]["stages"]
    assert [r["channels"] for r in rows] == [s["width"] for s in first["arch"]["stages"]]
    assert [r["stride"] for r in rows] == [1, 2, 2]
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "inner width" in page and ("Basic " in page or "Bottleneck " in page)

    # the best architecture's JSON trains and exports as any architecture file does
    arch_file = report / first["files"]["json"]
    assert main(["train", str(arch_file), "--epochs", "1", "--out", "trained", "--json", "--no-progress"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["params"] == best["metrics"]["params"] and 0.0 < trained["test_accuracy"] <= 1.0
    assert main(["export", "trained", "--out", "model.pt2", "--json"]) == 0
    capsys.readouterr()
    program = torch.export.load(str(tmp_path / "model.pt2"))
    assert program.module()(torch.rand(2, 1, 8, 8)).shape == (2, 10)
