"""The in-memory `TrialStore`: the same records as the SQLite store, for the same operations and
for whole searches (failures, retries, rejections, reused results, waiting repeats, schedulers)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nasforge.errors import ConfigError
from nasforge.experiment import Experiment, MemoryStore, SimulatedExecutor, Store, StoreError, TrialStore
from nasforge.experiment.scheduler import create_scheduler
from nasforge.experiment.records import CheckpointUpdate
from nasforge.spaces import SPACES
from nasforge.strategies import create_strategy
from toys import FAIL, ChoiceSpace, Curves, ToyEvaluator, ToyStrategy, make_experiment

CONFIG = {"space": "toy", "seed": 3}
#: what the two backends must agree on (times differ)
FIELDS = ("id", "arch", "key", "status", "metrics", "reward", "error", "seed", "attempts", "failures",
          "reused_from", "rejected", "queued")


def rows(store: TrialStore) -> list[tuple]:
    return [tuple(getattr(t, f) for f in FIELDS) for t in store.trials()]


def rung_rows(store: TrialStore) -> list[tuple]:
    return [(r.trial_id, r.rung, r.epochs, r.metrics, r.reward, r.error, r.decision) for r in store.rungs()]


def both(tmp_path):
    return [Store.create(tmp_path / "sqlite", CONFIG), MemoryStore(CONFIG)]


def test_only_the_sqlite_store_is_durable(tmp_path):
    for store in both(tmp_path):
        assert store.config() == CONFIG
        store.close()
    assert Store.durable and not MemoryStore.durable


def test_the_same_operations_give_the_same_records(tmp_path):
    checkpoint = CheckpointUpdate({"step": 1, "rng": np.random.default_rng(1).bit_generator.state}, "ask")
    answers = []
    for store in both(tmp_path):
        tid = store.add_trial({"a": 1}, "k1", lambda i: 100 + i, status="running", queued=1, checkpoint=checkpoint)
        store.requeue_trial(tid, "ValueError: flaky", queued=2)
        store.finish_trial(tid, "done", metrics={"val_accuracy": 0.5, "x": float("nan")}, reward=0.5)
        with pytest.raises(StoreError, match="trial 1 is already done"):
            store.finish_trial(tid, "failed", error="again")
        with pytest.raises(StoreError, match="trial 9 does not exist"):
            store.mark_running(9)
        rid = store.add_trial({"a": 1}, "k1", 0, status="done", metrics={"val_accuracy": 0.5}, reward=0.5,
                              reused_from=tid)
        fid = store.add_trial('{"a": 2}', "k2", 0, status="failed", error="rejected: too big", rejected=True)
        store.add_trial({"a": 3}, "k3", 0, status="failed", error="boom")
        pid = store.add_trial({"a": 4}, "k4", 5, reward=float("inf"))
        store.mark_running(pid, queued=7, reused_from=None)
        store.finish_trial(pid, "failed", error="broke", failures=2)
        better = store.add_trial({"a": 5}, "k5", 6, status="running")
        store.finish_trial(better, "done", metrics={"fidelity": 0.5}, reward=0.9)  # partly trained: ranks last
        answers.append((rows(store), store.counts(), [t.id for t in store.best()], store.find_result("k1").id,
                        store.find_result("k2").id, store.find_result("k3"), store.max_queued(), store.count(),
                        [t.id for t in store.iter_trials(("failed",))], rid, fid))
        assert store.load_checkpoint().state["step"] == 1  # kept, and a copy: the next change of the
        checkpoint.state["step"] = 2  # caller's state is not seen by a memory store either
        assert store.load_checkpoint().state["step"] == 1
        checkpoint.state["step"] = 1
        store.close()
    assert answers[0] == answers[1]
    assert answers[0][2] == [1, 6]  # the reused copy is left out; the partly trained child comes last


def test_a_whole_search_gives_the_same_records(tmp_path):
    """Failures, flaky retries, a rejection and reused results (toys.make_experiment), then
    repeats that wait for their original under six simulated workers."""
    for duplicates in ("reuse", "reask", "evaluate"):
        sqlite = make_experiment(tmp_path / duplicates, duplicates=duplicates)
        memory = make_experiment(None, duplicates=duplicates)
        assert isinstance(memory.store, MemoryStore)
        for exp in (sqlite, memory):
            exp.run()
        assert rows(memory.store) == rows(sqlite.store)
        assert any(r[3] == "failed" for r in rows(memory.store))
        summaries = [exp.summary() for exp in (sqlite, memory)]
        assert len({(s.trials, s.done, s.failed, s.reused, s.unfinished, s.cost, s.stop_reason, s.best.id)
                    for s in summaries}) == 1
        sqlite.close()
    space = ChoiceSpace(steps=2)  # 9 architectures: repeats while the original is evaluated
    records = []
    for store in (Store.create(tmp_path / "sim", {"toy": 1}), MemoryStore()):
        exp = Experiment(space, ToyStrategy(space, 0), ToyEvaluator(fail=FAIL), None, budget=40, store=store,
                         executor=SimulatedExecutor(workers=6, seed=1), progress=False, duplicates="reuse",
                         config={"toy": 1})
        exp.run()
        records.append(rows(store))
    assert records[0] == records[1] and any(r[10] is not None for r in records[0])


def test_a_scheduled_search_gives_the_same_records(tmp_path):
    space = SPACES["nb201"]()
    records = []
    for name, store in (("sqlite", None), ("memory", MemoryStore())):
        scheduler = create_scheduler("hyperband", min_epochs=1, max_epochs=9, eta=3)
        exp = Experiment(space, create_strategy("evolution", space, 0), Curves(), run_dir=tmp_path / name,
                         budget=20, progress=False, scheduler=scheduler, store=store)
        exp.run()
        records.append((rows(exp.store), rung_rows(exp.store)))
        exp.close()
    assert records[0] == records[1]
    assert any(r[6] == "promote" for r in records[0][1])


def test_an_experiment_without_a_run_folder_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = ChoiceSpace()

    class Counting(ToyStrategy):
        saved = 0

        def state_dict(self):
            Counting.saved += 1
            return super().state_dict()

    exp = Experiment(space, Counting(space, 0), ToyEvaluator(), budget=12, progress=False)
    summary = exp.run()
    exp.close()
    assert summary.trials == 12 and summary.run_dir is None and summary.to_dict()["run_dir"] is None
    assert Counting.saved == 0  # no checkpoints: nothing could resume from them
    assert os.listdir(tmp_path) == []
    with pytest.raises(ConfigError, match="nothing to resume"):
        Experiment(space, ToyStrategy(space, 0), ToyEvaluator(), budget=3, resume=True, progress=False)
    with pytest.raises(ConfigError, match="run folder"):
        Experiment(SPACES["nb201"](), create_strategy("random", SPACES["nb201"](), 0), Curves(), budget=3,
                   scheduler=create_scheduler("sh", max_epochs=9), progress=False)
    with pytest.raises(ConfigError, match="already holds trials"):
        Experiment(space, ToyStrategy(space, 0), ToyEvaluator(), budget=3, store=exp.store, progress=False)
    with pytest.raises(ConfigError, match="no strategy checkpoint"):
        Experiment(space, Counting(space, 0), ToyEvaluator(), budget=3, store=exp.store, resume=True,
                   progress=False)


def test_a_passed_sqlite_store_is_resumed_and_left_open(tmp_path):
    space = ChoiceSpace()
    config = {"toy": 2}
    store = Store.create(tmp_path / "run", config)
    first = Experiment(space, ToyStrategy(space, 0), ToyEvaluator(), budget=10, store=store, config=config,
                       progress=False)
    first.run()
    first.close()
    assert store.count() == 10  # still open: the caller's store
    second = Experiment(space, ToyStrategy(space, 0), ToyEvaluator(), budget=20, store=store, config=config,
                        resume="auto", progress=False)
    second.run()
    reference = Experiment(space, ToyStrategy(space, 0), ToyEvaluator(), None, tmp_path / "ref", budget=20,
                           config=config, progress=False)
    reference.run()
    assert rows(store) == rows(reference.store)
    store.close()
    reference.close()
