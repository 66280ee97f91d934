"""Objectives (accuracy, MnasNet's reward), hard limits, and the pre-evaluation cost helper."""

import math
import pickle

import pytest
import torch

from nasforge.errors import ConfigError
from nasforge.evaluators.objectives import (Accuracy, Limits, MnasNetObjective, create_limits, create_objective,
                                            is_test_metric, model_costs)
from nasforge.profile import count_params
from nasforge.spaces.nb201 import NB201Space

M = {"val_accuracy": 80.0, "macs": 300e6, "params": 2e6, "latency_ms": 120.0, "test_accuracy": 99.0}


def test_accuracy():
    assert Accuracy()(M) == 80.0 and Accuracy().reward(M) == 80.0
    assert Accuracy("params")(M) == 2e6 and Accuracy().requires() == ("val_accuracy",)
    with pytest.raises(ConfigError) as info:
        Accuracy("val_loss")({"val_accuracy": 1.0})
    assert str(info.value) == "objective.metric: the evaluator returned no 'val_loss' metric (allowed: val_accuracy)"


def test_mnasnet_soft_reward_arithmetic():
    obj = MnasNetObjective(target=80.0, cost="latency_ms")
    # the paper's example: ACC 0.5, T = 80 ms; doubling latency costs about 5 % relative accuracy
    assert obj({"val_accuracy": 0.5, "latency_ms": 80.0}) == pytest.approx(0.5)
    assert obj({"val_accuracy": 0.5, "latency_ms": 160.0}) == pytest.approx(0.5 * 2 ** -0.07)
    assert obj({"val_accuracy": 0.5, "latency_ms": 40.0}) == pytest.approx(0.5 * 0.5 ** -0.07)
    assert 0.5 * 2 ** -0.07 == pytest.approx(0.5 / 1.05, rel=2e-3)
    obj = MnasNetObjective(target=150e6)  # MACs by default
    assert obj(M) == pytest.approx(80.0 * 2 ** -0.07)
    assert obj.requires() == ("val_accuracy", "macs")


def test_mnasnet_hard_constraint_and_two_weights():
    hard = MnasNetObjective.hard(100.0, cost="latency_ms")
    assert (hard.weight, hard.weight_over) == (0.0, -1.0)
    assert hard({"val_accuracy": 0.7, "latency_ms": 50.0}) == pytest.approx(0.7)  # no bonus under the target
    assert hard({"val_accuracy": 0.7, "latency_ms": 200.0}) == pytest.approx(0.35)  # ACC x T / LAT above it
    assert create_objective("mnasnet", target=100.0, cost="latency_ms", hard=True) == hard
    two = MnasNetObjective(100.0, weight=-0.05, weight_over=-0.5, cost="latency_ms")
    assert two({"val_accuracy": 1.0, "latency_ms": 50.0}) == pytest.approx(0.5 ** -0.05)
    assert two({"val_accuracy": 1.0, "latency_ms": 400.0}) == pytest.approx(4 ** -0.5)
    with pytest.raises(ValueError, match="must be positive"):
        two({"val_accuracy": 1.0, "latency_ms": 0.0})


def test_config_round_trips_and_pickles():
    for obj in (Accuracy(), Accuracy("val_top5"), MnasNetObjective(75.0, cost="latency_ms"),
                MnasNetObjective.hard(4e8)):
        config = obj.config()
        again = create_objective(**config)
        assert again == obj and again(M | {"val_top5": 90.0}) == obj(M | {"val_top5": 90.0})
        assert pickle.loads(pickle.dumps(obj)) == obj
    assert isinstance(create_objective("metric"), Accuracy)


@pytest.mark.parametrize("name, options, message", [
    ("acuracy", {}, "objective: unknown objective 'acuracy'; did you mean: accuracy? (allowed: accuracy, metric, mnasnet)"),
    ("accuracy", {"metrc": "x"}, "objective.metrc: unknown option for objective 'accuracy' (allowed: metric)"),
    ("mnasnet", {}, "objective.target: is required for objective 'mnasnet'"),
    ("mnasnet", {"target": -1}, "objective.target: must be greater than 0, got -1"),
    ("mnasnet", {"target": 1, "weight": "big"}, "objective.weight: must be a finite number, got 'big'"),
    ("mnasnet", {"target": 1, "hard": True, "weight": 0.1}, "objective.hard: give either hard=true or "
                                                            "weight/weight_over, not both"),
])
def test_bad_configs_are_one_line_config_errors(name, options, message):
    with pytest.raises(ConfigError) as info:
        create_objective(name, **options)
    assert str(info.value) == message


@pytest.mark.parametrize("metric", ["test_accuracy", "c10_test_acc_200ep", "Test-Top1", "test"])
def test_objectives_never_read_test_metrics(metric):
    assert is_test_metric(metric)
    with pytest.raises(ConfigError, match="test metric"):
        Accuracy(metric)
    with pytest.raises(ConfigError, match="^objective.metric: .*test metric"):
        create_objective("mnasnet", target=1.0, metric=metric)
    with pytest.raises(ConfigError, match="^objective.cost: .*test metric"):
        MnasNetObjective(1.0, cost=metric)
    assert not is_test_metric("val_accuracy") and not is_test_metric("latest_acc")


def test_limits():
    assert Limits().check(M) is None and not Limits()
    assert Limits(max_params=3e6, max_macs=4e8).check(M) is None
    assert Limits(max_params=1_000_000).check(M) == "params 2,000,000 > max_params 1,000,000"
    assert Limits(max_macs=1e8, max_latency_ms=200).check(M) == "macs 300,000,000 > max_macs 100,000,000"
    assert Limits(max_latency_ms=99.5).check(M) == "latency_ms 120 > max_latency_ms 99.5"
    assert Limits(max_latency_ms=10).requires() == ("latency_ms",)
    with pytest.raises(ConfigError, match="^limits.max_latency_ms: the evaluator returned no 'latency_ms'"):
        Limits(max_latency_ms=10).check({"params": 1.0})
    with pytest.raises(ConfigError, match="^limits.max_params: must be greater than 0"):
        Limits(max_params=0)
    with pytest.raises(ConfigError, match="^limits.max_flops: unknown limit"):
        create_limits(max_flops=1)
    assert Limits(**Limits(max_macs=5).config()) == Limits(max_macs=5)


def test_static_costs_before_evaluation():
    space = NB201Space()
    arch = space.from_json("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    network = {"channels": 4, "cells_per_stage": 1, "num_classes": 5}
    state = torch.random.get_rng_state()
    costs = model_costs(space, arch, network, resolution=16)
    assert torch.equal(state, torch.random.get_rng_state())  # counting draws nothing from the global RNG
    expected = space.costs(arch, resolution=16, **network)
    assert costs == {"params": expected["params"], "macs": expected["macs"]}
    assert costs["params"] == count_params(space.build(arch, **network))
    limits = Limits(max_params=costs["params"] - 1, max_latency_ms=1e6)
    static = limits.static_metrics(space, arch, network, resolution=16)
    assert static["latency_ms"] > 0 and math.isfinite(static["latency_ms"])
    assert limits.check(static).startswith("params ")
