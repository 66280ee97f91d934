"""Toys the tests share: small spaces, strategies and evaluators with outcomes known in advance,
and the helpers that run and check searches with them. Test modules import these from here, never
from one another."""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import os
import signal
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nasforge.errors import ArchitectureError
from nasforge.evaluators.base import Evaluation, Evaluator
from nasforge.experiment import Experiment, SerialExecutor, Store
from nasforge.spaces import NB201Space
from nasforge.spaces.base import Decision, SearchSpace
from nasforge.strategies.base import Result, Strategy


# -- a multi-fidelity evaluator (schedulers, executors) -----------------------------------------------
class Curves(Evaluator):
    """A child's validation accuracy after e epochs is q * (1 - 0.5 ** e), q a fixed function of
    its architecture, so the ranking at every rung is the ranking by q. Its "state" is the number
    of epochs trained; it honours a fidelity's deadline (`sleep` seconds per epoch) and can raise
    KeyboardInterrupt at its `interrupt_at`-th call, as a killed process would stop."""

    name = "curves"
    supports_fidelity = True

    def __init__(self, sleep: float = 0.0, interrupt_at: int | None = None):
        self.sleep = sleep
        self.interrupt_at = interrupt_at
        self.calls: list[tuple[str, int, int]] = []  # (key, epochs at start, epochs at end)

    @staticmethod
    def quality(space, arch) -> float:
        return int(hashlib.sha256(space.key(arch).encode()).hexdigest()[:8], 16) / 2**32

    def evaluate(self, space, arch, seed, fidelity=None):
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt  # the process is killed with this job in flight
        horizon = (fidelity.horizon if fidelity else None) or 12
        target = (fidelity.epochs if fidelity else None) or horizon
        start = json.loads(fidelity.state)["epochs"] if fidelity and fidelity.state else 0
        epochs = start
        while epochs < target:
            if fidelity and fidelity.deadline and time.time() >= fidelity.deadline:
                break
            time.sleep(self.sleep)
            epochs += 1
        self.calls.append((space.key(arch), start, epochs))
        metrics = {"val_accuracy": self.quality(space, arch) * (1 - 0.5 ** epochs),
                   "epochs": float(epochs), "fidelity": epochs / horizon,
                   "wall_seconds": 1e-3 + self.sleep * (epochs - start)}
        if epochs < target:
            metrics["stopped"] = "deadline"
        if fidelity is None:
            return metrics
        return Evaluation(metrics, json.dumps({"epochs": epochs}).encode() if epochs < horizon else None)


# -- the experiment loop's toys (test_experiment, test_reliability, test_ray_executor) ----------------
# 3 decisions x 3 options; the strategy's asks depend on its tells, the evaluator's metrics on the
# architecture *and* the seed, so a lost, repeated or re-seeded trial shows in the compared sequences.
class ChoiceSpace(SearchSpace):
    name = "toy"

    def __init__(self, steps: int = 3, options: int = 3):
        self.steps, self.options = steps, options

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return tuple(Decision(f"d{i}", self.options) for i in range(self.steps))

    def encode(self, arch):
        return tuple(arch)

    def decode(self, choices: Sequence[int]):
        return tuple(self.check_choices(choices))

    def validate(self, arch):
        return self.decode(arch)

    def to_json(self, arch):
        return {"space": "toy", "choices": list(arch)}

    def from_json(self, data):
        if not isinstance(data, dict) or "choices" not in data:
            raise ArchitectureError("choices", "missing")
        return self.decode(data["choices"])

    def key(self, arch) -> str:
        return "".join(map(str, arch))

    def mutate(self, arch, rng):
        arch = list(arch)
        i = int(rng.integers(len(arch)))
        arch[i] = (arch[i] + 1 + int(rng.integers(self.options - 1))) % self.options
        return tuple(arch)

    def build(self, arch, **network_config):
        raise NotImplementedError


class TowerSpace(ChoiceSpace):
    """A stage-list space that is not MBConv: per stage (tower) a number of floors (1, 2 or 3) and a
    width (8, 16 or 24); its stages have no kernel and a "roof" column of their own, which only
    its `stage_rows` tells the report's stage picture. Registered by the tests that need it."""

    name = "towers-test"
    drawing = "stages"

    def __init__(self, towers: int = 3):
        super().__init__(steps=2 * towers, options=3)

    def to_json(self, arch):
        return {"space": self.name, "choices": list(arch)}

    def key(self, arch) -> str:
        return "towers-" + "".join(map(str, arch))

    def stage_rows(self, arch):
        return [{"operator": f"Tower {8 * (w + 1)}", "repeats": f + 1, "channels": 8 * (w + 1), "stride": 2,
                 "roof": "flat" if f % 2 else "gable"} for f, w in zip(arch[::2], arch[1::2])]


class ToyStrategy(Strategy):
    """Mutates its best architecture half of the time: what it asks depends on what it was told."""

    name = "toy"

    def __init__(self, space, seed: int = 0, hook=None):
        super().__init__(space, seed)
        self.best: list[int] | None = None
        self.best_reward: float | None = None
        self.pending: list[str] = []
        self.told = 0
        self.failures = 0
        self.hook = hook

    def ask(self):
        if self.hook:
            self.hook("ask")
        if self.best is not None and self.rng.random() < 0.5:
            arch = self.space.mutate(tuple(self.best), self.rng)
        else:
            arch = self.space.sample(self.rng)
        self.pending.append(self.space.key(arch))
        return arch

    def tell(self, arch, result: Result) -> None:
        self.pending.remove(self.space.key(arch))  # ValueError for a tell without an ask
        self.told += 1
        if self.hook:
            self.hook("tell")
        if result.failed:
            self.failures += 1
            return
        assert np.isfinite(result.reward)
        if self.best_reward is None or result.reward > self.best_reward:
            self.best, self.best_reward = list(arch), result.reward

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "best_reward": self.best_reward,
                "pending": list(self.pending), "told": self.told, "failures": self.failures}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best, self.best_reward = state["best"], state["best_reward"]
        self.pending = list(state["pending"])
        self.told, self.failures = state["told"], state["failures"]


class ToyEvaluator(Evaluator):
    """Deterministic metrics from (arch, seed); some architectures fail, some are flaky."""

    name = "toy"

    def __init__(self, delay: float = 0.0, hook=None, fail=(), nan=(), crash=(), sleep=(),
                 flaky: bool = False):
        self.delay, self.hook, self.flaky = delay, hook, flaky
        self.fail, self.nan, self.crash, self.sleep = set(fail), set(nan), set(crash), set(sleep)
        self.calls = 0

    def evaluate(self, space, arch, seed):
        self.calls += 1
        if self.hook:
            self.hook("eval")
        if self.delay:
            time.sleep(self.delay)
        key = space.key(arch)
        if key in self.fail:
            raise RuntimeError(f"cannot train {key}")
        if key in self.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if key in self.sleep:
            time.sleep(30)
        if self.flaky and seed % 5 == 0:
            raise RuntimeError("flaky failure")
        value = sum((i + 1) * c for i, c in enumerate(arch)) / 12 + (seed % 1000) * 1e-6
        if key in self.nan:
            value = float("nan")
        return {"val_accuracy": value, "test_accuracy": value - 0.01,
                "cost_seconds": 10.0 + arch[0], "seed": float(seed)}


def toy_limit(arch) -> str | None:
    return "params 9 > 8" if tuple(arch) == (2, 2, 2) else None


FAIL = {"012", "210"}


def make_experiment(run_dir, *, trials: int = 30, seed: int = 0, resume: Any = False,
                    evaluator=None, strategy=None, executor=None, retries: int = 1, **kwargs):
    """The toy search repeats itself: its trials reuse results ("reuse") unless told otherwise."""
    kwargs.setdefault("duplicates", "reuse")
    space = ChoiceSpace()
    return Experiment(
        space, strategy or ToyStrategy(space, seed), evaluator or ToyEvaluator(fail=FAIL, flaky=True),
        None, run_dir, budget={"max_trials": trials}, seed=seed, resume=resume, retries=retries,
        limit_check=toy_limit, executor=executor, progress=False,
        config={"space": "toy", "strategy": "toy", "evaluator": "toy", "seed": seed,
                "retries": retries, "budget": {"max_trials": trials}},
        **kwargs)


def sequence(run_dir) -> list[tuple]:
    with Store.open(run_dir) as store:
        return [(t.id, t.key, t.status, t.reward, t.error, t.reused_from, t.seed)
                for t in store.trials()]


def check_run(run_dir, trials: int) -> None:
    with Store.open(run_dir) as store:
        assert store.integrity_check() == []
        rows = store.trials()
        assert [t.id for t in rows] == list(range(1, trials + 1))
        assert all(t.status in ("done", "failed") for t in rows)
        state = store.load_checkpoint().state
        assert state["pending"] == [] and state["told"] == trials


def killed_child(run_dir: str, point: str, n: int, trials: int = 30) -> None:
    """Run the toy search (resuming if there is a run) and SIGKILL ourselves at the n-th `point`."""
    counter = itertools.count(1)

    def hook(label: str) -> None:
        if label == point and next(counter) == n:
            os.kill(os.getpid(), signal.SIGKILL)

    space = ChoiceSpace()
    exp = make_experiment(run_dir, trials=trials, resume="auto", strategy=ToyStrategy(space, 0, hook=hook),
                          evaluator=ToyEvaluator(fail=FAIL, flaky=True, hook=hook), fault_hook=hook)
    exp.run()


# ProcessExecutor workers preload this module to unpickle ToyEvaluator
PRELOAD = ("torch", "nasforge.experiment", "toys")


# -- failing children on any executor (test_reliability, test_ray_executor) --------------------------
class WatchfulStrategy(ToyStrategy):
    """Asks every toy architecture once, in order, and records what it is told, so the test can
    check that each failure mode happened and that failures never arrive as rewards."""

    def ask(self):
        arch = self.space.decode(next(itertools.islice(
            itertools.product(range(self.space.options), repeat=self.space.steps), self.told + len(self.pending), None)))
        self.pending.append(self.space.key(arch))
        return arch

    def tell(self, arch, result):
        self.log = getattr(self, "log", [])
        self.log.append((self.space.key(arch), result.failed, result.reward))
        super().tell(arch, result)


def _faulty_evaluator(crash: bool) -> ToyEvaluator:
    """Every failure mode at once; `flaky` makes one attempt in five fail, so retries matter."""
    return ToyEvaluator(fail={"000"}, nan={"111"}, sleep={"222"}, crash={"012"} if crash else (), flaky=True)


def run_faulty_search(run_dir, executor, *, trials: int = 27, retries: int = 1, timeout: float = 1.0):
    space = ChoiceSpace()
    strategy = WatchfulStrategy(space, 0)
    evaluator = _faulty_evaluator(crash=not isinstance(executor, SerialExecutor))
    # "reuse": repeats of the 27-cell toy space reuse results, so the faults, not 27 fresh
    # evaluations, are what the test spends its time on
    exp = Experiment(space, strategy, evaluator, None, run_dir, budget=trials, retries=retries,
                     executor=executor, timeout=timeout, progress=False, duplicates="reuse")
    summary = exp.run()
    exp.close()
    return summary, strategy, evaluator


CRASH = "worker process killed by signal SIGKILL before returning a result"


def check_faulty_run(run_dir, summary, strategy, evaluator, trials: int, retries: int,
                     crash_error: str = CRASH, timeout: float = 1.0, slow_starts: bool = False) -> dict:
    """`slow_starts`: the executor's timeout also covers starting a worker (Ray restarting a killed
    one can take longer than a short test timeout), so an ordinary trial may time out too."""
    expected = {"000": "RuntimeError: cannot train 000", "111": "val_accuracy is nan",
                "222": f"timed out after {timeout:g} s", "012": crash_error}
    assert summary.trials == trials and summary.unfinished == 0
    with Store.open(run_dir) as store:
        rows = store.trials()
        assert store.integrity_check() == []
    assert len(rows) == trials and all(t.status in ("done", "failed") for t in rows)
    evaluated = [t for t in rows if not t.reused]
    for t in evaluated:
        slow_start = slow_starts and t.status == "failed" and t.error.startswith("timed out after")
        if t.key in expected and (t.key != "012" or evaluator.crash):
            assert t.status == "failed" and t.failures == retries + 1, t
            assert expected[t.key] in t.error or t.error == "RuntimeError: flaky failure" or slow_start, t
        elif t.status == "failed":  # flaky on every attempt
            assert (t.error == "RuntimeError: flaky failure" or slow_start) and t.failures == retries + 1, t
    told = {t.id: t for t in rows}
    assert len(strategy.log) == trials and strategy.pending == []
    failed_keys = {t.key for t in rows if t.status == "failed"}
    for key, failed, reward in strategy.log:
        assert failed == (reward is None)
        if failed:
            assert key in failed_keys
    assert strategy.failures == sum(t.status == "failed" for t in told.values())
    retried = sum(t.failures for t in evaluated if t.status == "done")
    return {"failed": len(failed_keys & set(expected)), "retried": retried}


# -- the strategies' toys (test_strategies, test_local_predictor) ------------------------------------
class TargetSpace(SearchSpace):
    """`steps` decisions of `options` options each; an architecture is the tuple of choices.

    With `symmetric=True` the key ignores order, so different sequences can share a key.
    """

    name = "toy"

    def __init__(self, steps: int = 6, options: int = 5, symmetric: bool = False):
        self._decisions = tuple(Decision(f"s{i}", options) for i in range(steps))
        self.symmetric = symmetric
        self.target = tuple((3 * i + 1) % options for i in range(steps))

    @property
    def decisions(self):
        return self._decisions

    def encode(self, arch):
        return tuple(arch)

    def decode(self, choices):
        return tuple(self.check_choices(choices))

    def validate(self, arch):
        self.check_choices(list(arch))
        return tuple(arch)

    def to_json(self, arch):
        return list(arch)

    def from_json(self, data):
        return self.validate(tuple(data))

    def key(self, arch):
        values = sorted(arch) if self.symmetric else arch
        return "toy-" + "".join(map(str, values))

    def mutate(self, arch, rng):
        arch = list(arch)
        i = int(rng.integers(len(arch)))
        n = self._decisions[i].num_options
        arch[i] = int((arch[i] + 1 + rng.integers(n - 1)) % n)
        return tuple(arch)

    def build(self, arch, **config):
        raise NotImplementedError

    def reward(self, arch) -> float:
        """Fraction of steps that match the target: 1.0 only at the single optimum."""
        return float(np.mean([a == t for a, t in zip(arch, self.target)]))


def toy_result(space: TargetSpace, arch) -> Result:
    """Deterministic reward; every 7th key (by hash of its digits) fails."""
    if sum(int(c) * (i + 1) for i, c in enumerate(space.key(arch)[4:])) % 7 == 0:
        return Result.failure("boom")
    return Result.ok(space.reward(arch))


def make_script(length: int, seed: int) -> list[int]:
    """A sequence of operations: -1 = ask, k >= 0 = tell the k-th (modulo) outstanding ask."""
    rng = np.random.default_rng(seed)
    ops, outstanding = [], 0
    for _ in range(length):
        if outstanding == 0 or (outstanding < 6 and rng.random() < 0.55):
            ops.append(-1)
            outstanding += 1
        else:
            ops.append(int(rng.integers(100)))
            outstanding -= 1
    return ops


def run_ops(strategy, space, ops, outstanding):
    """Apply `ops`; return the keys asked. `outstanding` (a list of archs) is updated in place."""
    asked = []
    for op in ops:
        if op < 0:
            arch = strategy.ask()
            outstanding.append(arch)
            asked.append(space.key(arch))
        else:
            arch = outstanding.pop(op % len(outstanding))
            strategy.tell(arch, toy_result(space, arch))
    return asked


def roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# -- a synthetic NAS-Bench-201 table (test_reliability, test_search_cli, test_fuzz, benchmarks) --------
def write_synthetic_nb201_table(path, *, real_columns: bool = False) -> None:
    """Every NAS-Bench-201 cell with made-up accuracies: the real table's shape, no shared data.
    Columns arch_str, valid, test; with `real_columns` the shared table's names instead (what the
    `nb201` evaluator reads), gzipped when `path` ends in .gz."""
    space = NB201Space()
    header = (["c10_valid_acc_12ep", "c10_test_acc_200ep", "c10_valid_acc_200ep", "c10_test_acc_12ep",
               "c10_train_time_per_epoch_s"] if real_columns else ["valid", "test"])
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wt", newline="") as f:
        out = csv.writer(f)
        out.writerow(["arch_str", *header])
        for choices in itertools.product(range(space.decisions[0].num_options), repeat=len(space.decisions)):
            score = sum((i + 1) * c for i, c in enumerate(choices))
            values = [50 + score % 41, 49 + score % 43, 60 + score % 37, 48 + score % 39, 10 + score % 7]
            out.writerow([space.to_json(space.decode(choices))["arch"], *values[:len(header)]])


# -- warnings (test_models, test_train_export) ----------------------------------------------------------
@contextlib.contextmanager
def deprecations_are_errors():
    """No deprecation warning (TorchScript's above all) may escape from nasforge's export calls
    (test_models and test_train_export)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        yield


# -- the command line in this process (test_cli, test_search_cli, test_zero_cost) ----------------------
def run_main(capfd, *args) -> tuple[int, str, str]:
    """`nasforge ARGS` in this process, as the console script runs it (`main()`; argparse's own
    errors leave by SystemExit): the exit code, stdout and stderr, captured at the file descriptors
    so that output from C code counts too. The environment is restored after (`--ray-address` sets
    RAY_ADDRESS). A fresh interpreter costs seconds of imports (torch above all) per call; what only
    it shows (`python -m nasforge.cli` itself, nothing printed on import) is checked by the few
    tests that still run the real command."""
    from nasforge.cli import main

    capfd.readouterr()
    saved = dict(os.environ)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out, err = capfd.readouterr()
    return code, out, err
