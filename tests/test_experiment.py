"""The experiment loop, resume after crashes and SIGKILLs, executors, configs.

Everything here runs on a toy space (3 decisions x 3 options), a toy strategy whose asks depend
on what it was told, and a toy evaluator whose metrics depend on the architecture *and* the seed,
so any lost, repeated or re-seeded trial shows up in the compared sequences. They live in
tests/toys.py (ChoiceSpace, ToyStrategy, ToyEvaluator), shared with test_reliability and test_ray_executor.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nasforge.errors import ConfigError
from nasforge.experiment import (
    Budget,
    Experiment,
    ProcessExecutor,
    SearchConfig,
    SerialExecutor,
    SimulatedExecutor,
    Store,
    config_diff,
    create_executor,
    resolve_run_dir,
    trial_seed,
)
from nasforge.experiment import store as store_mod
from toys import (
    FAIL,
    PRELOAD,
    ChoiceSpace,
    ToyEvaluator,
    ToyStrategy,
    check_run,
    killed_child,
    make_experiment,
    sequence,
)

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    exp = make_experiment(run)
    summary = exp.run()
    exp.close()
    assert summary.trials == 30
    check_run(run, 30)
    return sequence(run)


# -- the loop ----------------------------------------------------------------------------------------
def test_run_records_every_trial(reference, tmp_path):
    statuses = {row[2] for row in reference}
    assert statuses == {"done", "failed"}
    assert any(row[5] is not None for row in reference), "the toy search should repeat itself"
    assert any(row[4] and row[4].startswith("rejected") for row in reference)
    assert all(row[6] == trial_seed(0, row[0]) for row in reference)
    assert all(row[4] == "RuntimeError: cannot train " + row[1]
               for row in reference if row[1] in FAIL and row[5] is None)
    # same seed, same trials; another seed, other trials
    again = make_experiment(tmp_path / "again")
    again.run()
    assert sequence(tmp_path / "again") == reference
    other = make_experiment(tmp_path / "other", seed=1)
    other.run()
    assert [r[1] for r in sequence(tmp_path / "other")] != [r[1] for r in reference]


def test_reuse_mode_reuses_results(tmp_path):
    evaluator = ToyEvaluator()
    exp = make_experiment(tmp_path / "dedup", evaluator=evaluator, trials=40)
    exp.run()
    with Store.open(tmp_path / "dedup") as store:
        rows = store.trials()
        reused = [t for t in rows if t.reused]
        assert reused and evaluator.calls == len(rows) - len(reused) - sum(t.rejected for t in rows
                                                                             if not t.reused)
        for t in reused:
            original = store.trial(t.reused_from)
            assert original.key == t.key and original.reused_from is None
            assert (t.status, t.reward, t.metrics) == (original.status, original.reward,
                                                       original.metrics)
    evaluator = ToyEvaluator()
    make_experiment(tmp_path / "nodedup", evaluator=evaluator, trials=40, duplicates="evaluate").run()
    assert evaluator.calls == 40 - sum(1 for r in sequence(tmp_path / "nodedup")
                                       if r[4] and r[4].startswith("rejected"))


def test_reask_mode_makes_every_trial_a_new_architecture(tmp_path):
    """The default filter: a repeat is told as a duplicate and re-asked, never a trial; resume is exact."""
    evaluator = ToyEvaluator()
    space = ChoiceSpace()
    strategy = ToyStrategy(space)
    exp = make_experiment(tmp_path / "reask", evaluator=evaluator, strategy=strategy, trials=20,
                          duplicates="reask", retries=0)
    summary = exp.run()
    exp.close()
    rows = sequence(tmp_path / "reask")
    assert summary.trials == 20 and len({r[1] for r in rows}) == 20 and summary.reused == 0
    assert all(r[5] is None for r in rows)
    assert strategy.told > 20 and strategy.pending == []  # the repeats were told, not evaluated
    assert evaluator.calls == sum(not (r[4] or "").startswith("rejected") for r in rows)
    # resumed after 12 trials, the run continues with the same new architectures
    first = make_experiment(tmp_path / "resumed", evaluator=ToyEvaluator(), trials=12, duplicates="reask",
                            retries=0)
    first.run()
    first.close()
    second = make_experiment(tmp_path / "resumed", evaluator=ToyEvaluator(), trials=20, duplicates="reask",
                             retries=0, resume=True)
    second.run()
    second.close()
    assert sequence(tmp_path / "resumed") == rows


def test_reask_mode_stops_a_search_that_only_repeats_itself(tmp_path):
    space = ChoiceSpace()
    exp = make_experiment(tmp_path / "stuck", trials=100, duplicates="reask", reask_limit=50, retries=0)
    summary = exp.run()  # 27 architectures: the toy strategy runs out of new ones
    exp.close()
    assert summary.stop_reason == ("the strategy proposed only architectures already asked in this run "
                                   "(51 in a row)")
    assert summary.trials == len({r[1] for r in sequence(tmp_path / "stuck")}) <= space.size()


def test_failures_nan_and_retries(tmp_path):
    space = ChoiceSpace()
    strategy = ToyStrategy(space, 0)
    evaluator = ToyEvaluator(fail={"000", "111"}, nan={"001"}, flaky=True)
    exp = make_experiment(tmp_path / "f", trials=60, strategy=strategy, evaluator=evaluator,
                          retries=2)
    summary = exp.run()
    assert summary.trials == 60 and summary.unfinished == 0
    with Store.open(tmp_path / "f") as store:
        rows = store.trials()
    failed = {t.key: t for t in rows if t.status == "failed" and not t.reused}
    assert failed["000"].error == "RuntimeError: cannot train 000" and failed["000"].failures == 3
    assert failed["000"].attempts == 3
    assert failed["001"].error == "val_accuracy is nan"
    retried = [t for t in rows if t.status == "done" and t.failures]
    assert retried and all(t.error == "RuntimeError: flaky failure" and t.attempts == t.failures + 1
                           for t in retried)
    assert all(t.seed % 5 == 0 for t in retried)  # the first attempt's seed failed
    assert strategy.failures == sum(t.status == "failed" for t in rows)
    assert strategy.told == 60 and strategy.pending == []


def test_limits_reject_before_evaluation(tmp_path):
    evaluator = ToyEvaluator()
    space = ChoiceSpace()
    exp = Experiment(space, ToyStrategy(space), evaluator, None, tmp_path / "l", budget=30,
                     limit_check=lambda arch: "too many ones" if 1 in arch else None,
                     progress=False)
    exp.run()
    with Store.open(tmp_path / "l") as store:
        rows = store.trials()
    rejected = [t for t in rows if t.rejected]
    assert rejected and all(t.error == "rejected: too many ones" and 1 in t.arch["choices"]
                            for t in rejected)
    assert all(1 not in t.arch["choices"] for t in rows if t.status == "done")
    assert evaluator.calls == sum(1 for t in rows if t.status == "done" and not t.reused)


def test_cost_and_time_budgets(tmp_path):
    space = ChoiceSpace()
    exp = Experiment(space, ToyStrategy(space), ToyEvaluator(), None, tmp_path / "c",
                     budget=Budget(max_cost=55), duplicates="evaluate", progress=False)
    summary = exp.run()
    assert 55 <= summary.cost < 55 + 13 and summary.stop_reason.startswith("cost budget")
    with Store.open(tmp_path / "c") as store:
        costs = [t.metrics["cost_seconds"] for t in store.trials()]
    assert sum(costs[:-1]) < 55 <= sum(costs)
    exp = Experiment(space, ToyStrategy(space), ToyEvaluator(delay=0.02), None, tmp_path / "t",
                     budget={"max_seconds": 0.3}, duplicates="evaluate", progress=False)
    start = time.monotonic()
    summary = exp.run()
    assert time.monotonic() - start < 2 and 2 <= summary.trials <= 16
    assert summary.stop_reason.startswith("time budget")


def test_progress_output(tmp_path):
    from rich.console import Console

    console = Console(file=__import__("io").StringIO(), force_terminal=False, width=150)
    space = ChoiceSpace()
    Experiment(space, ToyStrategy(space), ToyEvaluator(), None, tmp_path / "p", budget=10,
               progress=True, console=console).run()
    text = console.file.getvalue()
    assert "10/10 trials" in text and "best" in text


# -- run folders and configs -------------------------------------------------------------------------
def test_new_run_never_overwrites(tmp_path, reference):
    run = tmp_path / "run"
    make_experiment(run, trials=5).run()
    before = sequence(run)
    with pytest.raises(ConfigError, match="already holds a run"):
        make_experiment(run, trials=5)
    assert sequence(run) == before
    with pytest.raises(ConfigError, match="no run to resume"):
        make_experiment(tmp_path / "nothing", resume=True)


def test_resume_requires_the_same_config(tmp_path):
    run = tmp_path / "run"
    make_experiment(run, trials=5).run()
    with pytest.raises(ConfigError) as info:
        make_experiment(run, trials=5, seed=1, resume=True)
    message = str(info.value)
    assert "seed (0 -> 1)" in message and "\n" not in message
    # a larger budget is not a different run: it continues
    exp = make_experiment(run, trials=8, resume=True)
    exp.run()
    assert len(sequence(run)) == 8


def test_resolve_run_dir(tmp_path):
    root = tmp_path / "runs"
    assert resolve_run_dir("a", root) == (root / "a").resolve()
    assert resolve_run_dir("cifar/ppo-1", root) == (root / "cifar" / "ppo-1").resolve()
    for bad in ["", "..", "../x", "a/../../x", "a/..", "/etc", "C:\\x", "a\\..\\..\\x", "x\ny", "."]:
        with pytest.raises(ConfigError):
            resolve_run_dir(bad, root)
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="inside the runs folder"):
        resolve_run_dir("link/escape", root)


def test_search_config_round_trip_and_validation():
    config = SearchConfig.from_dict({
        "space": "toy", "strategy": {"name": "evolution", "options": {"population": 10}},
        "evaluator": {"name": "table", "options": {"columns": ["a", "b"]}},
        "budget": {"max_trials": 50}, "seed": 3, "workers": 2})
    assert SearchConfig.from_json(config.to_json()) == config
    assert config.strategy.options["population"] == 10
    assert config.evaluator.kwargs() == {"columns": ["a", "b"]}
    with pytest.raises(Exception):
        config.seed = 4  # frozen
    with pytest.raises(TypeError):
        config.strategy.options["population"] = 11
    other = config.replace(budget=Budget(max_trials=100), workers=4, seed=4)
    assert config_diff(config.to_dict(), other.to_dict()) == ["seed"]
    assert "budget" not in config.identity()
    for bad, field in [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"retries": "x"}, "retries"),
                       ({"workers": 0}, "workers"), ({"budget": {}}, "budget"),
                       ({"budget": {"max_trials": 0}}, "budget.max_trials"),
                       ({"budget": {"trials": 5}}, "budget.trials"), ({"colour": 1}, "colour"),
                       ({"executor": "slurm"}, "executor"), ({"duplicates": "yes"}, "duplicates"), ({"reask_limit": -1}, "reask_limit"),
                       ({"strategy": {"nam": "x"}}, "strategy.nam"),
                       ({"timeout": float("nan")}, "timeout")]:
        data = {"space": "toy", "strategy": "random", "evaluator": "table", **bad}
        with pytest.raises(ConfigError, match=f"^{field}:") as info:
            SearchConfig.from_dict(data)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^evaluator: is required"):
        SearchConfig.from_dict({"space": "toy", "strategy": "random"})


def test_from_config_builds_through_the_registries(tmp_path, request):
    from nasforge.evaluators import EVALUATORS
    from nasforge.spaces import SPACES

    SPACES.register("toy-test", ChoiceSpace)
    EVALUATORS.register("toy-test", ToyEvaluator)
    request.addfinalizer(lambda: (SPACES.unregister("toy-test"), EVALUATORS.unregister("toy-test")))
    config = SearchConfig.from_dict({
        "space": {"name": "toy-test", "options": {"options": 4}},
        "strategy": {"name": "random"}, "evaluator": {"name": "toy-test", "options": {}},
        "budget": 12, "seed": 5})
    exp = Experiment.from_config(config, tmp_path / "cfg", progress=False)
    summary = exp.run()
    assert summary.trials == 12 and summary.best is not None
    assert Store.open(tmp_path / "cfg").config() == config.to_dict()
    exp.close()
    exp = Experiment.from_config(config.replace(budget=Budget(max_trials=15)), tmp_path / "cfg",
                                 resume=True, progress=False)
    assert exp.run().trials == 15
    with pytest.raises(ConfigError, match="space.options.options"):
        Experiment.from_config(config.replace(space={"name": "toy-test", "options": {"options": 3}}),
                               tmp_path / "cfg", resume=True, progress=False)
    with pytest.raises(Exception, match="nosuch"):
        Experiment.from_config(config.replace(strategy="nosuch"), tmp_path / "x", progress=False)


# -- crashes and resume ------------------------------------------------------------------------------
class Crash:
    """Raises `exc` at the n-th evaluation."""

    def __init__(self, n: int, exc: BaseException):
        self.n, self.exc, self.count = n, exc, 0

    def __call__(self, label: str) -> None:
        self.count += 1
        if self.count == self.n:
            raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)])
def test_resume_after_simulated_crash(tmp_path, reference, exc):
    run = tmp_path / "run"
    for n in (4, 9, 2):  # crash three times, at different evaluations
        exp = make_experiment(run, resume="auto",
                              evaluator=ToyEvaluator(fail=FAIL, flaky=True, hook=Crash(n, exc)))
        with pytest.raises(type(exc)):
            exp.run()
        exp.close()
        with Store.open(run) as store:
            assert store.integrity_check() == []
            assert store.counts()["running"] == 1  # the interrupted trial, to be re-run
    make_experiment(run, resume=True).run()
    assert sequence(run) == reference
    check_run(run, 30)


def test_resume_after_sigkill_at_any_step(tmp_path, reference):
    """SIGKILL during evaluation, during a database write, during a strategy update, during an ask."""
    run = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    kills = [("eval", 3), ("before-commit", 5), ("tell", 4), ("before-checkpoint", 6),
             ("ask", 2), ("eval", 1), ("before-commit", 1), ("tell", 7)]
    for point, n in kills:
        p = ctx.Process(target=killed_child, args=(str(run), point, n))
        p.start()
        p.join(60)
        assert p.exitcode == -signal.SIGKILL, (point, n, p.exitcode)
        with Store.open(run) as store:
            assert store.integrity_check() == []
            assert store.counts()["pending"] + store.counts()["running"] <= 1
    make_experiment(run, resume=True).run()
    assert sequence(run) == reference
    check_run(run, 30)


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from toys import ToyEvaluator, FAIL, make_experiment
make_experiment({run!r}, resume="auto", evaluator=ToyEvaluator(fail=FAIL, flaky=True, delay=0.05)).run()
"""


def test_sigkill_a_real_search_process(tmp_path, reference):
    """A fresh interpreter killed from outside at a moment we do not choose, then resumed."""
    run = tmp_path / "run"
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(tests=str(TESTS_DIR), run=str(run)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for threshold in (5, 12):
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if Store.exists(run):
                try:
                    with Store.open(run) as store:
                        if store.count() >= threshold:
                            break
                except store_mod.StoreError:
                    pass  # created but not initialised yet
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[0].decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        with Store.open(run) as store:
            assert store.integrity_check() == []
            assert threshold <= store.count() < 30
    make_experiment(run, resume=True).run()
    assert sequence(run) == reference
    check_run(run, 30)


# -- several outstanding asks, executors -------------------------------------------------------------
def test_out_of_order_results_and_followers(tmp_path):
    space = ChoiceSpace(steps=2)  # 9 architectures: in-flight repeats are certain
    strategy = ToyStrategy(space, 0)
    evaluator = ToyEvaluator()
    exp = Experiment(space, strategy, evaluator, None, tmp_path / "o", budget=40,
                     executor=SimulatedExecutor(workers=6, seed=1), progress=False, duplicates="reuse")
    assert exp.max_outstanding == 6
    exp.run()
    assert strategy.pending == [] and strategy.told == 40
    with Store.open(tmp_path / "o") as store:
        rows = store.trials()
        assert store.integrity_check() == []
    assert all(t.status == "done" for t in rows)
    assert evaluator.calls == len({t.key for t in rows}) == sum(not t.reused for t in rows)
    finish_order = [t.id for t in sorted(rows, key=lambda t: t.finished)]
    assert finish_order != sorted(finish_order)
    # the default filter also turns down keys still being evaluated: every trial a new one
    evaluator = ToyEvaluator()
    exp = Experiment(space, ToyStrategy(space, 0), evaluator, None, tmp_path / "r", budget=9,
                     executor=SimulatedExecutor(workers=6, seed=1), progress=False)
    assert exp.run().trials == 9 and evaluator.calls == 9
    with Store.open(tmp_path / "r") as store:
        assert len({t.key for t in store.trials()}) == 9


def test_resume_with_outstanding_asks_loses_nothing(tmp_path):
    space = ChoiceSpace(steps=2)
    run = tmp_path / "run"
    for n in (3, 6):
        strategy = ToyStrategy(space, 0)
        exp = Experiment(space, strategy, ToyEvaluator(hook=Crash(n, KeyboardInterrupt())), None,
                         run, budget=40, executor=SerialExecutor(workers=4), progress=False, duplicates="reuse",
                         resume="auto", config={"toy": True})
        with pytest.raises(KeyboardInterrupt):
            exp.run()
        exp.close()
        with Store.open(run) as store:
            assert store.counts()["pending"] + store.counts()["running"] >= 1
    strategy = ToyStrategy(space, 0)
    Experiment(space, strategy, ToyEvaluator(), None, run, budget=40, progress=False, duplicates="reuse",
               executor=SerialExecutor(workers=4), resume=True, config={"toy": True}).run()
    assert strategy.pending == [] and strategy.told == 40
    with Store.open(run) as store:
        assert store.integrity_check() == []
        assert [t.status for t in store.trials()] == ["done"] * 40
    # and the same run uninterrupted gives the same trials
    strategy = ToyStrategy(space, 0)
    Experiment(space, strategy, ToyEvaluator(), None, tmp_path / "ref", budget=40, progress=False, duplicates="reuse",
               executor=SerialExecutor(workers=4), config={"toy": True}).run()
    assert [r[1:] for r in sequence(run)] == [r[1:] for r in sequence(tmp_path / "ref")]


def _ok(x):
    return x * 2


def _raise(x):
    raise ValueError(f"bad {x}")


def _exit(code):
    os._exit(code)


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def _memory_grows(n):
    global _LEAK
    _LEAK = [0] * n  # would accumulate in a reused worker; a fresh process starts clean
    return len(_LEAK)


def test_process_executor_isolates_failures():
    with ProcessExecutor(workers=2, preload=PRELOAD) as ex:
        handles = {
            ex.submit(_ok, 21): ("value", 42),
            ex.submit(_raise, 1): ("error", "ValueError: bad 1"),
            ex.submit(_exit, 3): ("error", "worker process exited with code 3 before returning a result"),
            ex.submit(_kill_self): ("error", "worker process killed by signal SIGKILL before returning a result"),
            ex.submit(_sleep, 5, timeout=0.5): ("error", "timed out after 0.5 s"),
            ex.submit(_sleep, 0.01, timeout=20): ("value", 0.01),
            ex.submit(_memory_grows, 10): ("value", 10),
        }
        outcomes = []
        start = time.monotonic()
        while len(outcomes) < len(handles):
            outcomes += ex.wait(timeout=5)
            assert time.monotonic() - start < 30
        assert ex.pending() == 0
    for outcome in outcomes:
        kind, expected = handles[outcome.handle]
        assert (outcome.value if kind == "value" else outcome.error) == expected, outcome


class ScriptedStrategy(ToyStrategy):
    """Asks a fixed list in order, so every failure kind is reached whatever order tells arrive in
    (ToyStrategy's asks follow its tells, which a process pool delivers in timing order)."""

    def __init__(self, space, keys: Sequence[str]):
        super().__init__(space, 0)
        self.script = [tuple(int(c) for c in key) for key in keys]

    def ask(self):
        arch = self.script[len(self.pending) + self.told]
        self.pending.append(self.space.key(arch))
        return arch


def test_experiment_with_worker_processes(tmp_path):
    space = ChoiceSpace()
    evaluator = ToyEvaluator(fail={"000"}, crash={"111", "012"}, sleep={"222", "021"})
    keys = ["001", "000", "111", "002", "222", "010", "012", "011", "021", "020", "100", "101",
            "102", "110"]
    exp = Experiment(space, ScriptedStrategy(space, keys), evaluator, None, tmp_path / "p",
                     budget=14,
                     executor=ProcessExecutor(workers=2, preload=PRELOAD), timeout=3.0,
                     retries=0, progress=False)
    summary = exp.run()
    exp.close()
    assert summary.trials == 14 and summary.unfinished == 0
    with Store.open(tmp_path / "p") as store:
        rows = store.trials()
        assert store.integrity_check() == []
    errors = {t.key: t.error for t in rows if t.status == "failed" and not t.reused}
    for key, error in errors.items():
        if key in evaluator.crash:
            assert error == "worker process killed by signal SIGKILL before returning a result"
        elif key in evaluator.sleep:
            assert error == "timed out after 3 s"
        else:
            assert error == "RuntimeError: cannot train 000"
    assert set(errors) == {"000"} | evaluator.crash | evaluator.sleep
    assert all(t.metrics["seed"] == t.seed for t in rows if t.status == "done" and not t.reused)


def test_create_executor():
    assert isinstance(create_executor("auto", workers=1), SerialExecutor)
    assert isinstance(create_executor("auto", workers=3), ProcessExecutor)
    with pytest.raises(Exception, match="unknown executor 'dask'"):
        create_executor("dask")
    ex = SerialExecutor()
    handle = ex.submit(_sleep, 2, timeout=0.2)
    [outcome] = ex.wait()
    assert outcome.handle == handle and outcome.error == "timed out after 0.2 s"


@pytest.mark.parametrize("name", ["random", "evolution", "grid", "ppo", "reinforce"])
def test_real_strategies_resume_exactly(tmp_path, name):
    from nasforge import strategies

    assert name in strategies.STRATEGIES
    space = ChoiceSpace(steps=4, options=4)

    def experiment(run, hook=None, resume: Any = False):
        return Experiment(space, strategies.create_strategy(name, space, 0),
                          ToyEvaluator(fail=FAIL, flaky=True, hook=hook), None, run, budget=40,
                          retries=1, resume=resume, progress=False, config={"strategy": name})

    experiment(tmp_path / "ref").run()
    for n in (3, 10, 17):
        exp = experiment(tmp_path / "run", hook=Crash(n, KeyboardInterrupt()), resume="auto")
        with pytest.raises(KeyboardInterrupt):
            exp.run()
        exp.close()
    experiment(tmp_path / "run", resume=True).run()
    assert sequence(tmp_path / "run") == sequence(tmp_path / "ref")
    with Store.open(tmp_path / "run") as store:
        assert store.integrity_check() == []  # incl. the controllers' tensors in the blobs table
