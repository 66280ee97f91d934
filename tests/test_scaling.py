"""Compound scaling: scaler arithmetic, families, published vs formula, and the coefficient search."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nasforge.errors import ArchitectureError, ConfigError, UnknownNameError
from nasforge.profile import count_params
from nasforge.scaling import (FAMILIES, CoefficientSpace, CoefficientTriple, CompoundScaler, EfficientNetFamily,
                              Family, MACsScore, MBConvFamily, NASNetFamily, PublishedScaler, ScaledMemberEvaluator,
                              admissible_triples, balanced_returns_score, family_from, get_family,
                              published_vs_formula, register_family, round_filters, round_repeats,
                              single_dimension_alternatives)
from nasforge.spaces import space_for_json
from nasforge.spaces.mbconv import B0_ARCH, MBConvSpace

# A small EfficientNet-like baseline that costs milliseconds to build and count.
TINY = [(1, 3, 1, 8, 1, 0.25), (4, 3, 2, 16, 1, 0.25), (4, 5, 2, 24, 2, 0.25)]


def tiny_family(base_resolution=32):
    return EfficientNetFamily(TINY, base_resolution=base_resolution, num_classes=10, stem_channels=8,
                              head_channels=64)


def meta_params(family, *args, **kw):
    with torch.device("meta"):
        return count_params(family.build(*args, **kw))


# -- the scaler ----------------------------------------------------------------------------------------
def test_rounding_reexported():
    assert round_filters(40, 1.1) == 48 and round_repeats(3, 1.4) == 5


def test_scaler_arithmetic_matches_reference():
    s = CompoundScaler(1.2, 1.1, 1.15)
    assert s.product == pytest.approx(1.92027, abs=1e-5)
    alpha = [1.200, 1.440, 1.728, 2.074, 2.488, 2.986, 3.583]
    beta = [1.100, 1.210, 1.331, 1.464, 1.611, 1.772, 1.949]
    res = [257.6, 296.2, 340.7, 391.8, 450.5, 518.1, 595.8]
    for phi in range(1, 8):
        assert s.depth_mult(phi) == pytest.approx(alpha[phi - 1], abs=5e-4)
        assert s.width_mult(phi) == pytest.approx(beta[phi - 1], abs=5e-4)
        assert s.exact_resolution(phi, 224) == pytest.approx(res[phi - 1], abs=0.05)
        r = s.resolution(phi, 224)
        assert r % 8 == 0 and abs(r - res[phi - 1]) <= 4
        assert s.ideal_ratio(phi) == pytest.approx(1.92027 ** phi, rel=1e-4)
    assert s.multipliers(0, 224) == (1.0, 1.0, 224)
    assert s.resolution(1, 224) == 256 and s.resolution(7, 224) == 592
    assert CompoundScaler(1.2, 1.1, 1.15, resolution_divisor=1).resolution(1, 224) == 258


@pytest.mark.parametrize("kwargs, field", [
    ({"alpha": 0.9}, "alpha"), ({"beta": 0.5}, "beta"), ({"gamma": -1}, "gamma"),
    ({"alpha": float("nan")}, "alpha"), ({"resolution_divisor": 0}, "resolution_divisor"),
])
def test_scaler_rejects_bad_coefficients(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        CompoundScaler(**kwargs)


def test_scaler_refuses_tiny_resolutions_and_bad_phi():
    s = CompoundScaler(1.2, 1.1, 1.15)
    with pytest.raises(ConfigError, match="resolution"):
        s.family(tiny_family(32), [-3])  # 32 x 1.15^-3 = 21 px < 32
    with pytest.raises(ConfigError, match="phi"):
        s.family(tiny_family(), ["one"])
    with pytest.raises(ConfigError, match="width_mult"):
        tiny_family().build(-1.0, 1.0)


def test_efficientnet_family_members_grow_monotonically():
    members = CompoundScaler(1.2, 1.1, 1.15).family(EfficientNetFamily(), [0, 1, 2, 3])
    assert [m.phi for m in members] == [0, 1, 2, 3]
    assert members[0].params == 5_288_548 and members[0].macs_ratio == 1.0
    macs = [m.macs for m in members]
    assert macs == sorted(macs) and len(set(macs)) == 4
    for m in members:
        assert m.target_ratio == 2.0 ** m.phi
        assert m.ideal_ratio == pytest.approx(1.92027 ** m.phi, rel=1e-4)
        assert 0.8 < m.macs_ratio / m.ideal_ratio < 1.4  # rounding moves it, not by much
    # phi = 1 of B0 is B2's structure (width 1.1, depth 1.2) at 256 px
    assert members[1].structure["channels"] == [16, 24, 48, 88, 120, 208, 352]
    assert members[1].params == 9_109_994 and members[1].resolution == 256
    json.dumps([m.to_dict() for m in members])


def test_family_without_phi_zero_still_reports_ratios():
    members = CompoundScaler().family(tiny_family(), [2])
    assert len(members) == 1 and members[0].macs_ratio > 1


def test_nasnet_family_scales_f_and_n():
    fam = NASNetFamily(num_cells=2, num_filters=16)
    assert fam.describe(1.0, 1.0) == {"num_cells": 2, "num_filters": 16}
    assert fam.describe(1.1, 1.2) == {"num_cells": 3, "num_filters": 16}   # 17.6 -> 16, ceil(2.4) = 3
    assert fam.describe(1.21, 1.44) == {"num_cells": 3, "num_filters": 20}  # 19.36 -> 20
    members = CompoundScaler(1.2, 1.1, 1.15).family(NASNetFamily(num_cells=1, num_filters=16), [0, 1, 2])
    assert [m.structure for m in members] == [{"num_cells": 1, "num_filters": 16}, {"num_cells": 2, "num_filters": 16},
                                              {"num_cells": 2, "num_filters": 20}]
    macs = [m.macs for m in members]
    assert macs == sorted(macs) and members[1].resolution == 40  # 32 x 1.15 = 36.8 -> 40


def test_published_mode_reproduces_the_registry():
    members = PublishedScaler().family(EfficientNetFamily(), [0, 1, 2, 3])
    assert [m.params for m in members] == [5_288_548, 7_794_184, 9_109_994, 12_233_232]
    assert [m.resolution for m in members] == [224, 240, 260, 300]
    with pytest.raises(ConfigError, match="phi"):
        PublishedScaler().multipliers(2.5, 224)
    # another baseline resolution: the table's resolutions scale with it
    assert PublishedScaler().multipliers(7, 32)[2] == 88  # 600 x 32 / 224 = 85.7 -> 88


def test_published_vs_formula_table():
    rows = {r["phi"]: r for r in published_vs_formula()}
    b7 = rows[7]
    assert (b7["published_width"], b7["published_depth"], b7["published_resolution"]) == (2.0, 3.1, 600)
    assert b7["formula_width"] == pytest.approx(1.949, abs=1e-3)
    assert b7["formula_depth"] == pytest.approx(3.583, abs=1e-3)
    assert b7["formula_exact_resolution"] == pytest.approx(595.8, abs=0.05)
    assert rows[1]["published_depth"] == 1.1 and rows[1]["formula_depth"] == pytest.approx(1.2)


# -- families ------------------------------------------------------------------------------------------
def test_family_registry_and_lookup(tmp_path):
    assert {"efficientnet", "nasnet", "mbconv"} <= set(FAMILIES)
    with pytest.raises(UnknownNameError, match="efficientnet"):
        get_family("efficientnett")

    class Widths(Family):
        name = "widths"

        def _build(self, width_mult, depth_mult, resolution, num_classes, **network):
            width = max(1, round(8 * width_mult))
            return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.AdaptiveAvgPool2d(1),
                                       torch.nn.Flatten(), torch.nn.Linear(width, num_classes))

    register_family("widths", lambda **kw: Widths(kw.get("base_resolution", 32), kw.get("num_classes", 10)))
    try:
        fam = get_family("widths")
        members = CompoundScaler(1.0, 2.0, 1.0).family(fam, [0, 1])
        assert members[1].macs > members[0].macs
        assert fam.build(2.0).scaling.width_mult == 2.0
        with pytest.raises(ValueError):
            register_family("widths", Widths)
    finally:
        FAMILIES.pop("widths")

    b3 = family_from("efficientnet_b3")
    assert (b3.base_width, b3.base_depth, b3.base_resolution) == (1.2, 1.4, 300)
    assert meta_params(b3) == 12_233_232
    assert isinstance(family_from("nasnet_a_cifar"), NASNetFamily)
    assert isinstance(family_from("mbconv", num_classes=10), MBConvFamily)
    arch_file = tmp_path / "b0.json"
    arch_file.write_text(json.dumps(MBConvSpace().to_json(B0_ARCH)))
    fam = family_from(str(arch_file), num_classes=1000)
    assert isinstance(fam, MBConvFamily) and meta_params(fam) == 5_288_548
    with pytest.raises(ConfigError, match="base"):
        family_from("no_such_model_or_file")


def test_efficientnet_family_published_points():
    fam = EfficientNetFamily()
    assert meta_params(fam, 1.2, 1.4, 300) == 12_233_232
    assert meta_params(MBConvFamily(), 1.0, 1.0) == 5_288_548
    assert fam.describe(2.0, 3.1)["repeats"] == [4, 7, 7, 10, 10, 13, 4]
    json.dumps(fam.config()), json.dumps(NASNetFamily().config()), json.dumps(MBConvFamily().config())


# -- coefficient search: the grid --------------------------------------------------------------------
def test_admissible_grid():
    grid = admissible_triples()
    assert grid and all(min(t.values()) >= 1 for t in grid)
    assert all(abs(t.product - 2.0) <= 0.1 + 1e-9 for t in grid)
    paper = [t for t in grid if t.values() == (1.2, 1.1, 1.15)]
    assert len(paper) == 1 and paper[0].product == pytest.approx(1.92027, abs=1e-5)
    assert grid == sorted(grid, key=lambda t: t.values())
    # every grid point that satisfies the constraint is there
    axis_a = [round(1 + 0.05 * i, 10) for i in range(21)]
    axis_bg = [round(1 + 0.05 * i, 10) for i in range(11)]
    expected = {(a, b, g) for a in axis_a for b in axis_bg for g in axis_bg if abs(a * b * b * g * g - 2) <= 0.1 + 1e-9}
    assert {t.values() for t in grid} == expected
    assert (1.2, 1.1, 1.15) not in {t.values() for t in admissible_triples(tolerance=0.05)}


@pytest.mark.parametrize("kwargs, field", [
    ({"alpha_range": (0.9, 2.0)}, "alpha_range"), ({"step": 0}, "step"), ({"tolerance": -1}, "tolerance"),
    ({"beta_range": (1.5, 1.0)}, "beta_range"), ({"target": 0.5}, "target"),
])
def test_grid_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        admissible_triples(**kwargs)


def test_empty_grid_is_an_error():
    with pytest.raises(ConfigError, match="no admissible triple"):
        CoefficientSpace(alpha_range=(1, 1), beta_range=(1, 1), gamma_range=(1, 1))


def test_single_dimension_alternatives():
    depth, width, res = single_dimension_alternatives(2.0)
    assert depth.values() == (2.0, 1.0, 1.0) and depth.label == "depth-only"
    assert width.values() == (1.0, math.sqrt(2), 1.0) and width.label == "width-only"
    assert res.values() == (1.0, 1.0, math.sqrt(2)) and res.label == "resolution-only"
    assert all(t.product == pytest.approx(2.0) for t in (depth, width, res))


# -- coefficient search: the space ---------------------------------------------------------------------
SPACE = CoefficientSpace()


def test_coefficient_space_candidates():
    labels = [t.label for t in SPACE.candidates]
    assert labels[-3:] == ["depth-only", "width-only", "resolution-only"]
    assert labels.count("compound") == len(labels) - 3
    # (2, 1, 1) is on the grid and admissible; it appears once, as the depth-only alternative
    assert sum(t.values() == (2.0, 1.0, 1.0) for t in SPACE.candidates) == 1
    assert len(SPACE.decisions) == 1 and SPACE.decisions[0].num_options == len(SPACE.candidates)
    assert len(list(SPACE.iter_all())) == SPACE.size() == len(SPACE.candidates)
    assert len(CoefficientSpace(alternatives=False).candidates) == len(admissible_triples())


@given(st.integers(0, len(SPACE.candidates) - 1))
def test_coefficient_space_round_trips(i):
    t = SPACE.decode([i])
    assert SPACE.encode(t) == (i,)
    data = SPACE.to_json(t)
    assert set(data) == {"space", "alpha", "beta", "gamma", "label"} and data["space"] == "coefficients"
    assert SPACE.loads(SPACE.dumps(t)) == t
    assert space_for_json(data).from_json(data) == t
    unlabelled = {k: v for k, v in data.items() if k != "label"}
    assert SPACE.from_json(unlabelled) == t
    assert SPACE.key(t) == SPACE.key(SPACE.from_json(json.loads(json.dumps(data))))
    n = SPACE.mutate(t, np.random.default_rng(i))
    assert n != t
    dist = [np.linalg.norm(np.subtract(c.values(), t.values())) for c in SPACE.candidates if c != t]
    assert np.linalg.norm(np.subtract(n.values(), t.values())) == pytest.approx(min(dist))


def test_coefficient_space_errors():
    with pytest.raises(ArchitectureError, match="not a candidate"):
        SPACE.from_json({"space": "coefficients", "alpha": 1.3, "beta": 1.0, "gamma": 1.0})
    with pytest.raises(ArchitectureError, match="alpha"):
        SPACE.from_json({"alpha": 0.5, "beta": 1.0, "gamma": 1.0})
    with pytest.raises(ArchitectureError, match="gamma"):
        SPACE.from_json({"alpha": 1.2, "beta": 1.1})
    with pytest.raises(ArchitectureError, match="label"):
        SPACE.validate(CoefficientTriple(1.2, 1.1, 1.15, "width-only"))
    with pytest.raises(ArchitectureError, match="space"):
        SPACE.from_json({"space": "mbconv", "alpha": 1.2, "beta": 1.1, "gamma": 1.15})
    with pytest.raises(ArchitectureError, match="json"):
        SPACE.loads("{not json")


def test_coefficient_space_builds_the_phi1_member():
    fam = tiny_family()
    space = CoefficientSpace(family=fam)
    t = CoefficientTriple(1.2, 1.1, 1.15)
    model = space.build(t, num_classes=5, resolution=999)  # resolution comes from gamma, not the caller
    assert model.scaling.resolution == 40 and model.scaling.depth_mult == 1.2
    assert model.classifier.out_features == 5
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 5)
    assert space.member_multipliers(t) == (1.1, 1.2, 40)


# -- coefficient search: evaluation ----------------------------------------------------------------------
def test_balanced_returns_score_prefers_balance():
    assert balanced_returns_score(1.0, 1.0, 1.0) == 0.0
    balanced = balanced_returns_score(1.1, 1.2, 1.15)
    for w, d, r in ((1.0, 2.0, 1.0), (math.sqrt(2), 1.0, 1.0), (1.0, 1.0, math.sqrt(2))):
        assert balanced > balanced_returns_score(w, d, r)


def test_scaled_member_evaluator_metrics():
    fam = tiny_family()
    space = CoefficientSpace(family=fam)
    ev = ScaledMemberEvaluator(fam)
    t = CoefficientTriple(1.2, 1.1, 1.15)
    m = ev.evaluate(space, t, seed=0)
    assert m == ev.evaluate(space, t, seed=1)  # deterministic
    assert {"params", "macs", "score", "alpha", "beta", "gamma", "label", "width_mult", "depth_mult",
            "resolution", "macs_ratio", "ideal_ratio"} <= set(m)
    assert m["resolution"] == 40 and m["macs_ratio"] > 1 and m["ideal_ratio"] == pytest.approx(1.92027)
    res_only = ev.evaluate(space, space.candidates[-1], seed=0)
    assert res_only["label"] == "resolution-only" and res_only["params"] == meta_params(fam)
    json.dumps(m), json.dumps(ev.config())
    assert ev.reward_metric == "score"
    with pytest.raises(ConfigError, match="space"):
        ev.evaluate(MBConvSpace(), B0_ARCH, 0)


def test_macs_score_alone_on_another_space():
    m = MACsScore(network={"num_classes": 10}, resolution=32).evaluate(MBConvSpace(), B0_ARCH, 0)
    assert m["score"] == 0.0 and m["resolution"] == 32 and m["params"] > 0


def test_coefficient_search_end_to_end(tmp_path):
    """Step 1 of the paper on the experiment machinery: a grid over every candidate, resumable."""
    from nasforge.experiment import experiment
    from nasforge.strategies import grid

    fam = tiny_family()
    space = CoefficientSpace(step=0.1, tolerance=0.05, family=fam)
    ev = ScaledMemberEvaluator(fam)
    exp = experiment.Experiment(space, grid.GridSearch(space), ev, objective=lambda m: m["score"],
                                run_dir=tmp_path / "run", budget=100, progress=False)
    summary = exp.run().to_dict()
    exp.close()
    assert summary["done"] == len(space.candidates) and summary["failed"] == 0
    best = summary["best"]["metrics"]
    assert best["label"] == "compound"
    scores = {}
    for t in space.candidates:
        w, d, r = space.member_multipliers(t)
        scores[t.label if t.label != "compound" else t.values()] = balanced_returns_score(w, d, r / 32)
    assert best["score"] == pytest.approx(max(scores.values()))
    assert all(best["score"] > scores[k] for k in ("depth-only", "width-only", "resolution-only"))
