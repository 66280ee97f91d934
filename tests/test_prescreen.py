"""The training-free pre-screen: every strategy under it, what the store records, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.data.paths import data_path
from nasforge.errors import ConfigError
from nasforge.evaluators.base import Evaluator
from nasforge.experiment import Experiment, SearchConfig, Store
from nasforge.experiment.prescreen import PreScreen
from nasforge.spaces.nb201 import NB201Space
from nasforge.strategies import create_strategy

SPACE = NB201Space()


def _convs(arch) -> int:
    return sum(op.startswith("nor_conv") for op in arch.ops)


class Accuracy(Evaluator):
    """A stand-in for training: depends on the cell and the trial's seed."""

    name = "toy-accuracy"

    def evaluate(self, space, arch, seed):
        return {"val_accuracy": 0.1 * _convs(arch) + (seed % 97) * 1e-4}


class ConvScore(Evaluator):
    """A stand-in for a zero-cost score: counts convolutions, fails on cells without any edge."""

    name = "toy-score"
    reward_metric = "score"

    def __init__(self):
        self.calls = 0

    def evaluate(self, space, arch, seed):
        self.calls += 1
        if all(op == "none" for op in arch.ops):
            raise ValueError("no path")
        return {"score": float(_convs(arch))}


class Counting:
    """Wraps a strategy and counts what it was told."""

    def __init__(self, inner):
        self.inner, self.asks, self.screened, self.rewards, self.duplicates = inner, 0, 0, 0, 0

    def ask(self):
        self.asks += 1
        return self.inner.ask()

    def tell(self, arch, result):
        if result.duplicate:
            self.duplicates += 1
        elif result.failed and result.error.startswith("screened out"):
            self.screened += 1
        elif not result.failed:
            self.rewards += 1
        self.inner.tell(arch, result)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


def _run(tmp_path, name, strategy="evolution", trials=12, candidates=4, resume=False, screen=None):
    inner = create_strategy(strategy, SPACE, 0, **({"population_size": 5, "sample_size": 2}
                                                   if strategy == "evolution" else {}))
    counting = Counting(inner)
    counting.prescreen = PreScreen(screen or ConvScore(), candidates)
    exp = Experiment(SPACE, counting, Accuracy(), run_dir=tmp_path / name, budget=trials, seed=0,
                     progress=False, resume=resume, prescreen=counting.prescreen)
    exp.run()
    exp.close()
    return counting


@pytest.mark.parametrize("strategy", ["random", "evolution", "local", "predictor", "ppo", "reinforce"])
def test_every_strategy_evaluates_only_the_best_of_its_candidates(tmp_path, strategy):
    counting = _run(tmp_path, strategy, strategy)
    with Store.open(tmp_path / strategy) as store:
        trials = store.trials()
    evaluated = [t for t in trials if t.reused_from is None]
    assert len(trials) == 12
    # every ask is told once; repeats of evaluated cells are re-asked before screening
    assert counting.asks == 12 * 4 + counting.duplicates and counting.screened == 12 * 3
    assert counting.rewards == 12 and len({t.key for t in trials}) == 12
    for t in evaluated:
        assert t.metrics["prescreen_candidates"] == 4
        # the score of the cell's key (isomorphic cells share one score, taken from the first seen)
        assert t.metrics["prescreen_score"] == counting.prescreen.score(SPACE, SPACE.from_json(t.arch), t.key)
        assert "val_accuracy" in t.metrics


def test_screening_raises_the_quality_of_what_is_evaluated(tmp_path):
    screened = _run(tmp_path, "a", "random", trials=20, candidates=8)
    with Store.open(tmp_path / "a") as store:
        kept = [t.metrics["prescreen_score"] for t in store.trials()]
    rng = np.random.default_rng(0)
    rng_space = [_convs(SPACE.sample(rng)) for _ in range(200)]
    assert screened.rewards == 20
    assert sum(kept) / len(kept) > sum(rng_space) / len(rng_space) + 1.0  # best of 8 beats a random draw


def test_scores_are_cached_by_key_within_a_run(tmp_path):
    screen = ConvScore()
    counting = _run(tmp_path, "c", "evolution", trials=30, candidates=6, screen=screen)
    assert counting.asks == 30 * 6 + counting.duplicates
    assert screen.calls < 30 * 6  # evolution proposes the same mutants again; they are not re-scored
    with Store.open(tmp_path / "c") as store:
        assert len({t.key for t in store.trials()}) <= screen.calls


def test_resume_screens_exactly_as_an_uninterrupted_run(tmp_path):
    _run(tmp_path, "straight", "evolution", trials=16)
    _run(tmp_path, "split", "evolution", trials=7)
    _run(tmp_path, "split", "evolution", trials=16, resume=True)

    def seq(name):
        with Store.open(tmp_path / name) as store:
            return [(t.key, t.metrics.get("prescreen_score"), t.reward) for t in store.trials()]

    assert seq("split") == seq("straight")


def test_a_candidate_without_a_score_is_picked_last():
    pre = PreScreen(ConvScore(), 3)
    dead = SPACE.from_json("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    conv = SPACE.from_json("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    best, scores = pre.choose(SPACE, [dead, conv, dead])
    assert best == 1 and scores == [None, 1.0, None]


def test_prescreen_config_is_checked_and_recorded(tmp_path):
    with pytest.raises(ConfigError, match="prescreen.candidates"):
        SearchConfig.from_dict({"space": "nb201", "strategy": "random", "evaluator": "params",
                                "prescreen": {"evaluator": "params", "candidates": 0}})
    with pytest.raises(ConfigError, match="prescreen.evaluator"):
        SearchConfig.from_dict({"space": "nb201", "strategy": "random", "evaluator": "params",
                                "prescreen": {"candidates": 3}})
    config = SearchConfig.from_dict({
        "space": "nb201", "strategy": "random", "budget": 3,
        "evaluator": {"name": "params", "options": {"dataset": "digits", "batch_size": 8,
                                                    "network": {"channels": 4, "cells_per_stage": 1}}},
        "prescreen": {"evaluator": {"name": "naswot", "options": {
            "dataset": "digits", "batch_size": 8, "network": {"channels": 4, "cells_per_stage": 1}}},
            "candidates": 3}})
    with Experiment.from_config(config, tmp_path / "cfg", progress=False) as exp:
        summary = exp.run()
    assert summary.trials == 3
    with Store.open(tmp_path / "cfg") as store:
        assert store.config()["prescreen"]["evaluator"]["name"] == "naswot"
        assert all("prescreen_score" in t.metrics and "zc_params" in t.metrics for t in store.trials())


@pytest.mark.skipif(data_path("nasbench201", "nb201_cifar10.csv.gz") is None,
                    reason="shared NAS-Bench-201 table not found (set NASFORGE_DATA)")
def test_a_table_search_screened_on_images_through_the_cli(tmp_path, monkeypatch, capsys):
    import json

    from nasforge.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", "nb201", "--strategy", "random", "--trials", "3", "--prescreen", "params",
                 "--prescreen-candidates", "4", "--dataset", "digits", "--network-option", "channels=4",
                 "--network-option", "cells_per_stage=1", "--run", "runs/tp", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert len(top) == 3 and all(t["metrics"]["prescreen_candidates"] == 4 for t in top)
    with Store.open(tmp_path / "runs" / "tp") as store:
        screener = store.config()["prescreen"]["evaluator"]
    assert screener["name"] == "params" and screener["options"]["dataset"] == "digits"
    assert main(["search", "--space", "nb201", "--prescreen-candidates", "4", "--run", "runs/x"]) == 2
    assert "needs --prescreen" in capsys.readouterr().err
