"""Compound scaling: scaler arithmetic, families, published vs formula, and the coefficient search."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nasforge.arch.mbconv import B0_ARCH
from nasforge.errors import ArchitectureError, ConfigError, UnknownNameError
from nasforge.evaluators.base import Evaluator
from nasforge.profile import count_params
from nasforge.scaling import (
    FAMILIES,
    CoefficientSpace,
    CoefficientTriple,
    CompoundScaler,
    EfficientNetFamily,
    Family,
    MACsScore,
    MBConvFamily,
    NASNetFamily,
    PublishedScaler,
    ScaledMemberEvaluator,
    admissible_triples,
    balanced_returns_score,
    family_from,
    get_family,
    published_vs_formula,
    round_filters,
    round_repeats,
    single_dimension_alternatives,
)
from nasforge.spaces import space_for_json

# A small EfficientNet-like baseline that costs milliseconds to build and count.
from nasforge.spaces.mbconv import MBConvSpace

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

    FAMILIES.register("widths", lambda **kw: Widths(kw.get("base_resolution", 32), kw.get("num_classes", 10)))
    try:
        fam = get_family("widths")
        members = CompoundScaler(1.0, 2.0, 1.0).family(fam, [0, 1])
        assert members[1].macs > members[0].macs
        assert fam.build(2.0).scaling.width_mult == 2.0
        with pytest.raises(ConfigError, match="^family: family 'widths' is already registered"):
            FAMILIES.register("widths", Widths)
    finally:
        FAMILIES.unregister("widths")

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


# -- uncertainty, the shared schedule of the comparison, family schedules -------------------------------
def _cand(index, reward, se, label="compound", alpha=1.0, beta=1.0, gamma=1.0, macs=100):
    return {"index": index, "label": label, "alpha": alpha, "beta": beta, "gamma": gamma, "reward": reward,
            "se": se, "macs": macs}


def test_verdict_says_no_clear_winner_within_the_combined_standard_error():
    from nasforge.scaling.search import standard_error, verdict

    se = standard_error(0.37, "val_accuracy", 1000)
    assert se == pytest.approx(math.sqrt(0.37 * 0.63 / 1000))
    assert standard_error(0.5, "score", None) == 0.0 and standard_error(0.5, "val_accuracy", None) is None
    # a spread over seeds adds to the binomial error of the one validation set they share
    assert standard_error(0.5, "val_accuracy", 100, reported=0.2) == pytest.approx(math.hypot(0.05, 0.2))
    assert standard_error(0.5, "score", None, reported=0.2) == pytest.approx(0.2)
    # The user's report: eight triples 0.323..0.370 on 1000 images, width-only 0.374.
    rewards = [0.370, 0.368, 0.361, 0.355, 0.349, 0.340, 0.331, 0.323]
    cands = [_cand(i, r, standard_error(r, "val_accuracy", 1000), alpha=1 + i / 10) for i, r in enumerate(rewards)]
    cands.append(_cand(8, 0.374, standard_error(0.374, "val_accuracy", 1000), "width-only", beta=2 ** 0.5))
    v = verdict(cands)
    assert v["clear"] is False and v["best"]["index"] == 0 and v["runner_up"]["index"] == 1
    assert v["margin"] == pytest.approx(2 * math.sqrt(cands[0]["se"] ** 2 + cands[1]["se"] ** 2))
    assert len(v["tied"]) == 7  # margin 2 sqrt(se1² + se2²) ≈ 0.043: 0.331 is within, 0.323 is not
    assert v["alternative"]["name"] == "width-only" and v["alternative"]["clear"] is False
    assert v["alternative"]["better"] is None
    assert v["text"].startswith("no clear winner:") and "0.3700 ± 0.0153" in v["text"]
    assert "no clear difference" in v["text"]
    # A lead far past the margin is a clear winner; a deterministic score has se 0.
    far = [_cand(0, 0.60, 0.01), _cand(1, 0.50, 0.01), _cand(2, 0.40, 0.01, "depth-only")]
    v = verdict(far)
    assert v["clear"] is True and v["tied"] == ["(α=1, β=1, γ=1)"] and v["alternative"]["better"] == "compound"
    assert v["text"].startswith("clear winner:")
    tie = verdict([_cand(0, 0.5, 0.0, macs=90), _cand(1, 0.5, 0.0, alpha=1.1, macs=100)])
    assert tie["clear"] is False and tie["best"]["index"] == 0 and "tied exactly" in tie["text"]
    assert verdict([_cand(0, 0.5, None), _cand(1, 0.4, None)])["clear"] is None
    assert verdict([_cand(0, None, None)]) is None


def test_a_second_training_of_one_network_is_no_rival_and_measures_training_luck():
    """Two grid rows can be one network (the family rounds widths); the verdict must not report it
    beating itself, and the two trainings show what one training's luck is."""
    from nasforge.scaling.search import mark_same_networks, member_network, training_spread, verdict

    # NASNet filters round to multiples of 4: 16 x 1.4 = 22.4 and 16 x √2 = 22.6 are both 24 filters;
    # resolutions to multiples of 8 here: 32 x 1.4 = 44.8 and 32 x √2 = 45.3 are both 48 px
    space = CoefficientSpace(step=0.2, family=NASNetFamily(num_cells=1, num_filters=16))
    net = {(c.label, c.values()): member_network(space, c) for c in space.candidates}
    assert net[("compound", (1.0, 1.4, 1.0))] == net[("width-only", (1.0, 2 ** 0.5, 1.0))]
    assert json.loads(net[("compound", (1.0, 1.4, 1.0))]) == {"num_cells": 1, "num_filters": 24, "resolution": 32}
    assert net[("compound", (1.0, 1.0, 1.4))] == net[("resolution-only", (1.0, 1.0, 2 ** 0.5))]
    assert len(set(net.values())) == len(net) - 2
    assert member_network(CoefficientSpace(step=0.2), space.candidates[0]) is None  # no family: unknown

    # The scaling run on CIFAR-10: compound β 1.4 scored 0.679 and width-only (its network) 0.648.
    rows = [_cand(0, 0.651, 0.008, gamma=1.4), _cand(1, 0.679, 0.008, beta=1.4), _cand(2, 0.606, 0.008, alpha=1.4),
            _cand(3, 0.624, 0.008, "depth-only", alpha=2.0), _cand(4, 0.648, 0.008, "width-only", beta=2 ** 0.5)]
    before = verdict(rows)
    mark_same_networks(rows, ["g", "b", "a", "d", "b"])
    assert [r["same_network_as"] for r in rows] == [None, None, None, None, 1]
    spread = training_spread(rows)
    assert spread["df"] == 1 and spread["sd"] == pytest.approx(abs(0.679 - 0.648) / math.sqrt(2))
    v = verdict(rows)
    # without the grouping the width-only row was the "alternative" the best beat; now it is the same network
    assert before["alternative"]["name"] == "width-only"
    assert [c["name"] for c in v["same_network"]] == ["width-only"]
    assert v["alternative"]["name"] == "depth-only" and v["runner_up"]["index"] == 0
    assert "width-only builds the same network as (α=1, β=1.4, γ=1)" in v["text"]
    assert "0.0219" in v["text"]  # the spread, stated
    # rows trained several times carry their own spread: they are not pooled
    assert training_spread([dict(r, seeds=3) for r in rows]) is None
    # a network trained once has no spread to report
    only = [_cand(0, 0.6, 0.01), _cand(1, 0.5, 0.01)]
    mark_same_networks(only, ["x", "y"])
    assert training_spread(only) is None and verdict(only)["same_network"] == []


def test_the_coefficient_search_widens_the_error_of_rows_trained_once_by_their_twins_spread(tmp_path):
    from nasforge.scaling.search import network_id, search_coefficients

    fam = NASNetFamily(num_cells=1, num_filters=16)
    result = search_coefficients(fam, ScaledMemberEvaluator(fam, _SeedLuck()), tmp_path / "run", step=0.2,
                                 progress=False)
    rows = {(c["label"], c["beta"], c["gamma"]): c for c in result.candidates}
    pairs = [(rows[("width-only", 2 ** 0.5, 1.0)], rows[("compound", 1.4, 1.0)]),
             (rows[("resolution-only", 1.0, 2 ** 0.5)], rows[("compound", 1.0, 1.4)])]
    for twin, first in pairs:
        assert twin["same_network_as"] == first["index"] and twin["params"] == first["params"]
    assert sum(c["same_network_as"] is not None for c in result.candidates) == 2
    # pooled over the two pairs: each pair's variance is (difference)² / 2, one degree of freedom each
    sd = math.sqrt(sum((a["reward"] - b["reward"]) ** 2 / 2 for a, b in pairs) / 2)
    assert sd > 0 and result.verdict["training_spread"]["sd"] == pytest.approx(sd)
    assert result.verdict["training_spread"]["df"] == 2
    for c in [*result.candidates, result.baseline]:  # the baseline row was trained once too
        binomial = math.sqrt(c["reward"] * (1 - c["reward"]) / 400)
        assert c["se_binomial"] == pytest.approx(binomial) and c["se"] == pytest.approx(math.hypot(binomial, sd))
    by_index = {c["index"]: c for c in result.candidates}
    v = result.verdict
    assert all(network_id(by_index[c["index"]]) != network_id(result.best) for c in (v["alternative"], v["runner_up"]))


class _EpochRecorder(Evaluator):
    """Reports a fake accuracy and the epochs it was configured with (no training)."""

    name = "epoch_recorder"

    def __init__(self, epochs=2):
        from nasforge.evaluators.training import TrainConfig

        self.train = TrainConfig(epochs=epochs)
        self.resolution = None

    def config(self):
        return {"name": self.name, "epochs": self.train.epochs}

    def splits(self):
        class _S:
            val = range(400)
        return _S()

    def evaluate(self, space, arch, seed):
        with torch.device("meta"):
            model = space.build(arch)
        return {"val_accuracy": 0.5 + 0.1 * (model.scaling.width_mult - 1), "epochs_seen": self.train.epochs,
                "resolution_seen": self.resolution}


def test_the_baseline_row_is_evaluated_with_the_candidates_schedule(tmp_path):
    from nasforge.scaling.search import search_coefficients

    fam = tiny_family()
    ev = ScaledMemberEvaluator(fam, _EpochRecorder(epochs=2))
    result = search_coefficients(fam, ev, tmp_path / "run", step=0.25, progress=False)
    assert result.settings["schedule"] == {"evaluator": "epoch_recorder", "epochs": 2, "val_images": 400, "seeds": 1}
    base = result.baseline
    assert base["label"] == "baseline" and base["phi"] == 0 and base["status"] == "done"
    assert base["resolution"] == 32 and base["width_mult"] == 1.0 and base["reward"] == pytest.approx(0.5)
    assert base["se"] == pytest.approx(math.sqrt(0.25 / 400))
    assert all(c["se"] == pytest.approx(math.sqrt(c["reward"] * (1 - c["reward"]) / 400))
               for c in result.candidates)
    marker = result.to_marker()
    assert marker["baseline"] == base and marker["verdict"]["best"]["index"] == result.best["index"]
    # resumed: the baseline is not evaluated again
    again = search_coefficients(fam, ev, tmp_path / "run", step=0.25, progress=False, resume=True)
    assert again.baseline == base


def test_mean_over_seeds_averages_what_varies_and_sums_the_cost():
    from nasforge.scaling.coefficients import mean_over_seeds, repeat_seeds

    runs = [{"val_accuracy": a, "params": 10, "train_seconds": 2.0, "train_loss": [2.0, b], "stopped": None,
             "flag": True} for a, b in ((0.50, 1.0), (0.56, 1.2), (0.53, 1.4))]
    m = mean_over_seeds(runs, "val_accuracy")
    assert m["val_accuracy"] == pytest.approx(0.53) and m["val_accuracy_seeds"] == [0.50, 0.56, 0.53]
    assert m["val_accuracy_se"] == pytest.approx(0.03 / math.sqrt(3))  # sample std 0.03 over three seeds
    assert m["train_loss"] == pytest.approx([2.0, 1.2]) and m["train_seconds"] == 6.0
    assert m["params"] == 10 and m["flag"] is True and m["stopped"] is None and m["seeds"] == 3
    assert mean_over_seeds(runs[:1], "val_accuracy") == runs[0]  # one seed: the evaluation itself
    seeds = repeat_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and repeat_seeds(7, 4) == seeds and repeat_seeds(7, 1) == [7]
    with pytest.raises(ConfigError, match="^seeds: must be a positive integer, got 0"):
        ScaledMemberEvaluator(tiny_family(), MACsScore(), seeds=0)


class _SeedLuck(_EpochRecorder):
    """The width's fake accuracy plus a seed-dependent 'training luck' of up to ±0.03."""

    name = "seed_luck"

    def evaluate(self, space, arch, seed):
        m = super().evaluate(space, arch, seed)
        return {**m, "val_accuracy": m["val_accuracy"] + (seed % 7 - 3) / 100, "train_seconds": 1.5}


def test_grid_seeds_train_every_row_several_times_and_widen_its_standard_error(tmp_path):
    import statistics

    from nasforge.scaling.search import search_coefficients

    fam = tiny_family()
    one = search_coefficients(fam, ScaledMemberEvaluator(fam, _SeedLuck()), tmp_path / "one", step=0.25,
                              progress=False)
    ev = ScaledMemberEvaluator(fam, _SeedLuck(), seeds=3)
    three = search_coefficients(fam, ev, tmp_path / "three", step=0.25, progress=False)
    assert one.settings["schedule"]["seeds"] == 1 and three.settings["schedule"]["seeds"] == 3
    assert "seeds" not in ScaledMemberEvaluator(fam, _SeedLuck()).config() and ev.config()["seeds"] == 3
    widened = 0
    for a, b in zip(one.candidates + [one.baseline], three.candidates + [three.baseline]):
        accs = b["val_accuracy_seeds"]
        assert b["seeds"] == 3 and len(accs) == 3 and b["train_seconds"] == 4.5
        assert accs[0] == pytest.approx(a["reward"])  # the first seed is the one-seed run's evaluation
        assert b["reward"] == pytest.approx(statistics.fmean(accs))
        binomial = math.sqrt(b["reward"] * (1 - b["reward"]) / 400)
        assert b["se"] == pytest.approx(math.hypot(binomial, statistics.stdev(accs) / math.sqrt(3)))
        widened += b["se"] > binomial + 1e-9
    assert widened > 0  # the seeds did differ
    # the verdict weighs the wider errors
    assert three.verdict["margin"] == pytest.approx(
        2 * math.hypot(three.verdict["best"]["se"], three.verdict["runner_up"]["se"]))


def test_family_epochs_grow_with_the_member_and_early_stopping_keeps_the_best_epoch():
    from nasforge.scaling.schedule import MemberTrainer, member_epochs

    assert [member_epochs(4, r, "fixed") for r in (1, 2, 4)] == [4, 4, 4]
    assert [member_epochs(4, r, "grow") for r in (1, 2.0, 4.0, 8.0)] == [4, 6, 8, 12]
    assert member_epochs(4, 0.5, "grow") == 4 and member_epochs(4, 4.0, "early-stop") == 16
    with pytest.raises(ConfigError, match="^family_schedule: unknown family schedule 'longer'"):
        member_epochs(4, 1, "longer")
    # early stopping on a tiny digits task: patience 1 with a cap of 4 epochs
    from nasforge.scaling.family import NASNetFamily

    fam = NASNetFamily(num_cells=1, num_filters=4, base_resolution=8, num_classes=10)
    space = CoefficientSpace(step=0.25, family=fam)
    inner = MemberTrainer("digits", train={"epochs": 4, "batch_size": 32}, train_size=64, val_size=40,
                          latency=False, report_test=True, patience=1, schedule="early-stop")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ScaledMemberEvaluator(fam, inner, phi=0.0, resolution_divisor=1).evaluate(
            space, space.candidates[0], 0)
    finally:
        torch.set_num_threads(threads)
    history = m["val_history"]
    assert m["max_epochs"] == 4 and 1 <= m["epochs"] == len(history) <= 4
    assert m["best_epoch"] == 1 + history.index(max(history)) and m["val_accuracy"] == pytest.approx(max(history))
    if m["stopped"] == "patience":
        assert m["epochs"] == m["best_epoch"] + 1 and "no better validation accuracy for 1" in m["stop_reason"]
    else:
        assert m["stopped"] == "cap" and m["epochs"] == 4
    assert 0 <= m["test_accuracy"] <= 1


@pytest.mark.parametrize("patience", [None, 1])
def test_a_member_killed_mid_training_goes_on_from_its_checkpoint_with_the_same_result(tmp_path, monkeypatch,
                                                                                       patience):
    """The per-epoch checkpoint: an uninterrupted training, the same training killed after its second
    epoch and started again, and (fixed schedule) the plain one-call training all give one result."""
    from nasforge.evaluators import training
    from nasforge.scaling.family import NASNetFamily
    from nasforge.scaling.schedule import MemberTrainer

    fam = NASNetFamily(num_cells=1, num_filters=4, base_resolution=8, num_classes=10)
    space = CoefficientSpace(step=0.25, family=fam)

    def member(checkpoint=None, seed=3):
        inner = MemberTrainer("digits", train={"epochs": 4, "batch_size": 32}, train_size=64, val_size=40,
                              latency=False, report_test=True, patience=patience, checkpoint=checkpoint,
                              schedule="fixed" if patience is None else "early-stop")
        return ScaledMemberEvaluator(fam, inner, phi=0.0, resolution_divisor=1).evaluate(space, space.candidates[0],
                                                                                          seed)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = member(tmp_path / "whole.ckpt")
        real_train, calls, killed = training.train_model, [], []

        def killed_in_epoch_three(*args, **kwargs):
            calls.append(kwargs["until"])
            if kwargs["until"] == 3 and not killed:
                killed.append(True)
                raise KeyboardInterrupt
            return real_train(*args, **kwargs)

        monkeypatch.setattr(training, "train_model", killed_in_epoch_three)
        ckpt = tmp_path / "member.ckpt"
        with pytest.raises(KeyboardInterrupt):
            member(ckpt)
        assert torch.load(ckpt, weights_only=True)["epoch"] == 2
        resumed = member(ckpt)
        finished = member(tmp_path / "whole.ckpt")  # killed after its last epoch was saved: only scored
        plain = member() if patience is None else None
        resumed_calls = calls[3:]
        calls.clear()
        member(ckpt, seed=4)  # another seed's file is not taken for this training: it starts at epoch 1
    finally:
        torch.set_num_threads(threads)
    assert calls[0] == 1
    assert resumed_calls[0] == 3  # the killed training went on at its third epoch
    keys = ("val_accuracy", "val_loss", "test_accuracy", "train_loss", "val_history", "epochs", "best_epoch", "stopped")
    assert {k: resumed[k] for k in keys} == {k: whole[k] for k in keys} == {k: finished[k] for k in keys}
    if plain is not None:  # one call to the trainer: the result the checkpointed epochs reproduce
        assert {k: plain[k] for k in keys if k != "val_history"} == {k: whole[k] for k in keys if k != "val_history"}
