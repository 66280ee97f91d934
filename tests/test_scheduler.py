"""Multi-fidelity schedulers in the search loop, on a toy evaluator whose learning curves are
known (`toys.Curves`): the ranking at every rung is known in advance, and a promoted child that did
not continue from its state would show it."""

from __future__ import annotations

import time

import pytest

from nasforge.errors import ConfigError, NasforgeError
from nasforge.evaluators.base import Evaluator
from nasforge.experiment import Experiment, SearchConfig, Store
from nasforge.experiment.scheduler import Decision, create_scheduler, rung_epochs
from nasforge.spaces import SPACES
from nasforge.strategies import create_strategy
from toys import Curves


def _run(tmp_path, name="run", scheduler="sh", strategy="random", budget=9, evaluator=None, **options):
    space = SPACES["nb201"]()
    evaluator = evaluator or Curves()
    options = {"min_epochs": 1, "max_epochs": 9, "eta": 3, **options}
    experiment = Experiment(space, create_strategy(strategy, space, 0), evaluator, run_dir=tmp_path / name,
                            budget=budget, progress=False, scheduler=create_scheduler(scheduler, **options))
    return experiment, space, evaluator


def test_rung_epochs_and_bracket_plans():
    assert rung_epochs(1, 12, 3) == (1, 4, 12)
    assert rung_epochs(1, 27, 3) == (1, 3, 9, 27)
    assert rung_epochs(3, 12, 2) == (3, 6, 12)
    assert rung_epochs(5, 5, 3) == (5,)
    hyperband = create_scheduler("hyperband", min_epochs=1, max_epochs=27, eta=3)
    # Li et al. (2018), Table 1 for R = 27, eta = 3: n = 27, 12, 6, 4 children
    assert [hyperband.bracket_plan(i) for i in range(5)] == [
        (0, [27, 9, 3, 1]), (1, [12, 4, 1]), (2, [6, 2]), (3, [4]), (0, [27, 9, 3, 1])]
    assert create_scheduler("sh", max_epochs=9, n=10).bracket_plan(3) == (0, [10, 3, 1])
    assert create_scheduler("median", min_epochs=2, max_epochs=7).rungs == (2, 4, 6, 7)


def test_successive_halving_promotes_the_best_third_and_continues_from_their_state(tmp_path):
    experiment, space, evaluator = _run(tmp_path)
    with experiment:
        summary = experiment.run()
        trials = experiment.store.trials()
        rungs = experiment.store.rungs()
    assert summary.trials == 9 and summary.done == 9
    by_quality = sorted(trials, key=lambda t: -Curves.quality(space, space.from_json(t.arch)))
    rung0 = {r.trial_id: r.decision for r in rungs if r.rung == 0}
    assert len(rung0) == 9
    assert {t for t, d in rung0.items() if d == "promote"} == {t.id for t in by_quality[:3]}
    rung1 = {r.trial_id: r.decision for r in rungs if r.rung == 1}
    assert set(rung1) == {t.id for t in by_quality[:3]}
    assert [t for t, d in rung1.items() if d == "promote"] == [by_quality[0].id]
    assert [(r.trial_id, r.epochs) for r in rungs if r.rung == 2] == [(by_quality[0].id, 9.0)]
    # 9 x 1 epoch, then 3 children from epoch 1 to 3, then one from 3 to 9: 21 epochs, not 81
    assert sorted((s, e) for _, s, e in evaluator.calls) == [(0, 1)] * 9 + [(1, 3)] * 3 + [(3, 9)]
    # the best is the fully trained child; each trial is told once with its highest rung
    assert summary.best.id == by_quality[0].id and summary.best.metrics["fidelity"] == 1.0
    assert {t.metrics["epochs"] for t in trials if t.id not in rung1} == {1.0}
    assert not list((tmp_path / "run" / "states").glob("*.pt"))  # states of finished children go


def test_a_child_stopped_early_never_ranks_as_fully_trained(tmp_path):
    with Store.create(tmp_path / "ranks", {"space": "toy"}) as store:
        for key, reward, fidelity in [("a", 0.99, 1 / 3), ("b", 0.50, 1.0), ("c", 0.70, None),
                                      ("d", 0.98, 0.5)]:
            metrics = {"val_accuracy": reward, **({"fidelity": fidelity} if fidelity else {})}
            store.add_trial({"k": key}, key, 0, status="done", metrics=metrics, reward=reward)
        assert [t.key for t in store.best(4)] == ["c", "b", "a", "d"]


def test_hyperband_cycles_brackets_and_asha_decides_on_arrival(tmp_path):
    experiment, _, evaluator = _run(tmp_path, "hb", "hyperband", budget=9 + 5 + 3)
    with experiment:
        experiment.run()
        rungs = experiment.store.rungs()
    first_rungs = {}
    for r in rungs:
        first_rungs.setdefault(r.trial_id, r.rung)
    # brackets of R = 9, eta = 3: 9 children from rung 0, then 5 from rung 1, then 3 from rung 2
    assert sorted(first_rungs.values()) == [0] * 9 + [1] * 5 + [2] * 3
    asha = create_scheduler("asha", min_epochs=1, max_epochs=9, eta=3)
    decisions = []
    for trial, value in enumerate([0.5, 0.4, 0.6, 0.3, 0.7, 0.1], start=1):
        job = asha.next_job(True)
        assert job.trial is None and job.rung == 0
        asha.started(trial, job)
        decisions += asha.report(trial, value)
        while asha.waiting():  # promotions are handed out before any new child
            promoted = asha.next_job(True)
            assert promoted.trial == trial and promoted.rung >= 1
            asha.report(promoted.trial, 1.0)
    # 1: alone, kept; 2: best 1 of 2 is 0.5; 3: best of 3; 4: 1 of 4; 5: best; 6: 2 of 6 kept, not it
    assert decisions == [Decision(1, "promote"), Decision(2, "stop"), Decision(3, "promote"),
                         Decision(4, "stop"), Decision(5, "promote"), Decision(6, "stop")]


@pytest.mark.parametrize("scheduler", ["sh", "asha"])
def test_resume_mid_rung_gives_the_uninterrupted_result(tmp_path, scheduler):
    reference, _, _ = _run(tmp_path, "reference", scheduler, strategy="evolution", budget=12)
    with reference:
        reference.run()
        expected_trials = [(t.key, t.status, t.reward) for t in reference.store.trials()]
        expected_rungs = [(r.trial_id, r.rung, r.epochs, r.reward, r.decision) for r in reference.store.rungs()]
    for kill_at in (4, 10, 12):  # in rung 0, just after a rung decision, inside a promotion
        name = f"killed-{kill_at}"
        experiment, space, _ = _run(tmp_path, name, scheduler, strategy="evolution", budget=12,
                                    evaluator=Curves(interrupt_at=kill_at))
        with experiment, pytest.raises(KeyboardInterrupt):
            experiment.run()
        resumed = Experiment(space, create_strategy("evolution", space, 0), Curves(),
                             run_dir=tmp_path / name, budget=12, progress=False, resume=True,
                             scheduler=create_scheduler(scheduler, min_epochs=1, max_epochs=9, eta=3))
        with resumed:
            resumed.run()
            assert [(t.key, t.status, t.reward) for t in resumed.store.trials()] == expected_trials
            assert [(r.trial_id, r.rung, r.epochs, r.reward, r.decision)
                    for r in resumed.store.rungs()] == expected_rungs
            assert resumed.store.integrity_check() == []


@pytest.mark.parametrize("strategy", ["random", "evolution", "local", "predictor", "ppo", "reinforce"])
def test_every_strategy_runs_under_a_scheduler(tmp_path, strategy):
    experiment, _, evaluator = _run(tmp_path, strategy=strategy, scheduler="hyperband", budget=14)
    with experiment:
        summary = experiment.run()
        rungs = experiment.store.rungs()
    assert summary.trials == 14 and summary.done == 14 and summary.unfinished == 0
    assert len({t for t, _, _ in evaluator.calls}) == 14  # distinct children
    assert any(r.rung > 0 for r in rungs)


def test_a_time_budget_is_a_deadline(tmp_path):
    space = SPACES["nb201"]()
    evaluator = Curves(sleep=0.05)  # 12 epochs = 0.6 s per child
    experiment = Experiment(space, create_strategy("random", space, 0), evaluator, run_dir=tmp_path / "timed",
                            budget={"max_seconds": 1.0}, progress=False)
    start = time.monotonic()
    with experiment:
        summary = experiment.run()
        trials = experiment.store.trials()
    assert time.monotonic() - start < 1.0 + 0.5  # the child in flight was stopped, not waited for
    assert summary.stop_reason.startswith("time budget")
    last = trials[-1]
    assert last.status == "done" and last.metrics["stopped"] == "deadline" and last.metrics["fidelity"] < 1
    assert experiment.store.best(1)[0].metrics["fidelity"] == 1.0  # ranked below the full ones


def test_a_scheduler_starts_no_rung_that_cannot_finish_in_time(tmp_path):
    evaluator = Curves(sleep=0.05)
    experiment, _, _ = _run(tmp_path, "paced", "sh", budget={"max_seconds": 1.5}, evaluator=evaluator)
    with experiment:
        summary = experiment.run()
        trials = experiment.store.trials()
    assert summary.unfinished == 0 and summary.stop_reason
    assert not any(t.metrics.get("stopped") for t in trials)  # stopped between rungs, not cut short


def test_scheduler_config_and_refusals(tmp_path):
    config = SearchConfig.from_dict({"space": "nb201", "strategy": "random", "evaluator": "proxy",
                                     "scheduler": {"name": "hyperband", "options": {"max_epochs": 9}}})
    assert config.to_dict()["scheduler"] == {"name": "hyperband", "options": {"max_epochs": 9}}
    with pytest.raises(NasforgeError, match="unknown scheduler 'sometimes'.*asha, hyperband, median, sh"):
        SearchConfig.from_dict({"space": "nb201", "strategy": "random", "evaluator": "proxy",
                                "scheduler": "sometimes"})
    with pytest.raises(ConfigError, match="duplicates"):
        SearchConfig.from_dict({"space": "nb201", "strategy": "random", "evaluator": "proxy",
                                "scheduler": "sh", "duplicates": "reuse"})
    space = SPACES["nb201"]()

    class Table(Evaluator):
        name = "table"

        def evaluate(self, space, arch, seed):
            return {"val_accuracy": 0.5}

    with pytest.raises(ConfigError, match="cannot train to a fidelity"):
        Experiment(space, create_strategy("random", space, 0), Table(), run_dir=tmp_path / "t", budget=3,
                   progress=False, scheduler=create_scheduler("sh"))
    assert not Store.exists(tmp_path / "t")
    with pytest.raises(ConfigError, match="eta"):
        create_scheduler("asha", eta=1)


def test_a_scheduler_runs_on_worker_processes(tmp_path):
    from nasforge.experiment.executors import create_executor

    space = SPACES["nb201"]()
    experiment = Experiment(space, create_strategy("random", space, 0), Curves(), run_dir=tmp_path / "procs",
                            budget=3, progress=False, executor=create_executor("process", workers=2),
                            scheduler=create_scheduler("sh", min_epochs=1, max_epochs=3, eta=3))
    with experiment:
        summary = experiment.run()
        rungs = experiment.store.rungs()
    assert summary.done == 3 and summary.unfinished == 0
    assert sorted(r.rung for r in rungs) == [0, 0, 0, 1]
    assert summary.best.metrics["epochs"] == 3.0  # continued from the state a worker sent back
