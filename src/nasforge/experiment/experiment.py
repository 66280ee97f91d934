"""The search loop: ask -> (duplicates, limits) -> evaluate through an executor -> record -> tell.

One `Experiment` drives one run, recorded in a `TrialStore`: the SQLite `Store` of a run folder,
or, for a search without one (benchmarks against tables), a `MemoryStore`. Everything the
strategy must agree with is written to a durable store in one transaction with the strategy's
checkpoint:

* after an `ask`: the new trial (status ``running``, handed to the executor) and the checkpoint;
* after a `tell`: the trial's result (``done``/``failed``) and the checkpoint.

A resumed run loads the checkpoint, re-runs the trials that were still unfinished (same
architecture, same seed) in the order they had been queued, and goes on. With the serial
executor the resumed run's trial sequence is the uninterrupted run's, however it was stopped.
A store that dies with the process (`MemoryStore`) gets the same records and no checkpoints.

Duplicates (``duplicates``): by default (``"reask"``) a proposal whose canonical key was already
asked in the run never becomes a trial: the strategy is told it was a duplicate and asked again
(`nasforge.strategies.base.ask_new`), so every trial of the budget is a distinct architecture,
whatever the strategy. ``"reuse"`` makes a repeat its own trial that reuses the stored result
(``reused_from`` points at the original; a repeat whose original is still being evaluated waits
for it, status ``pending``) and counts it in the budget, as published NAS benchmarks count every
query; ``"evaluate"`` evaluates it again.

Trials that never reach the executor are finished at once, in one transaction with the
checkpoint after their tell: reused results and architectures rejected by the pre-evaluation
limit check (``rejected``, told as a failure).

Under a multi-fidelity scheduler (`nasforge.experiment.scheduler`) a trial is one child trained in
jobs, one per rung: its result at each rung and the scheduler's decision are recorded (the store's
``rungs`` table), its training state between rungs lies in ``RUN/states/``, and the strategy is
told about it once, when the scheduler stops it or it reaches the top rung, with its result at the
highest rung it reached (``metrics["epochs"]``, ``metrics["fidelity"]`` say how far that was). The
scheduler's state is saved with the strategy's in every checkpoint, so a resumed run continues the
same schedule.

A time budget is a deadline: an evaluator that can stop early (``supports_fidelity``) is handed
the moment the budget ends and stops there, recorded at the fidelity it reached (ranked below
fully trained children), and a scheduler starts no job its measured pace says cannot finish in
the time left.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from nasforge.errors import ConfigError, NasforgeError
from nasforge.evaluators.base import ArchitectureEvaluator, EvaluateFn, Evaluation, Fidelity
from nasforge.experiment.config import (
    DUPLICATE_MODES,
    Budget,
    SearchConfig,
    build_components,
    config_diff,
    describe_diff,
    objective_function,
)
from nasforge.experiment.executors import Executor, Handle, Outcome, create_executor, describe_exception
from nasforge.experiment.memory_store import MemoryStore
from nasforge.experiment.prescreen import PreScreen
from nasforge.experiment.records import UNFINISHED, CheckpointUpdate, RungResult, TrialRecord, TrialStore
from nasforge.experiment.scheduler import Decision, Job, Scheduler
from nasforge.experiment.store import Store
from nasforge.registry import describe_component
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import Exhausted, RepeatedProposals, Result, Strategy, ask_new

VAL_PREFIXES = ("val_", "val")


class _Union:
    """Membership in either of two key sets, without copying the run's set for each trial."""

    def __init__(self, first: Container[str], second: Container[str]):
        self.first, self.second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second


# -- helpers -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 15)
def trial_seed(run_seed: int, trial_id: int, failures: int = 0) -> int:
    """The seed of a trial's evaluation: a function of the run seed, the trial index and, for a
    retry, how many attempts already failed (31 bits, safe for every RNG).

    Cached: a `SeedSequence` costs more than a table lookup, and benchmarks search with the same
    run seeds and trial indices for every strategy and protocol (`nasforge.benchmarking`)."""
    entropy = [int(run_seed), int(trial_id)] + ([int(failures)] if failures else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0]) & 0x7FFFFFFF


def evaluate_architecture(
    evaluator: ArchitectureEvaluator | EvaluateFn,
    space: SearchSpace,
    arch: Any,
    seed: int,
    fidelity: Fidelity | None = None,
) -> Any:
    """What an executor runs for one trial (module level, so worker processes can unpickle it)."""
    evaluate = getattr(evaluator, "evaluate", None)
    if fidelity is not None:
        if evaluate is None:
            raise TypeError(f"{evaluator!r} has no evaluate method to take a fidelity")
        return evaluate(space, arch, seed, fidelity=fidelity)
    if evaluate is not None:
        return evaluate(space, arch, seed)
    assert callable(evaluator)  # no evaluate method: the plain-function form
    return evaluator(space, arch, seed)


def resolve_run_dir(name: str | os.PathLike, runs_root: str | os.PathLike = "runs") -> Path:
    """The folder of run `name` inside `runs_root`, refusing names that would escape it.

    For names that come from someone other than the user at the keyboard (a config file's `run`,
    a request to a server): such a name must not reach outside `runs_root`. `name` may have several
    parts ("cifar/ppo-1") but no "..", no absolute path or drive, no control characters, and must
    not resolve outside `runs_root` through a symbolic link. A path typed on the command line is
    the user's own and goes anywhere (`nasforge.cli.common.user_path`).
    """
    if not isinstance(name, (str, os.PathLike)):  # e.g. a number in a JSON or TOML file
        raise ConfigError("run", f"must be a run name (a string), got {name!r}")
    text = os.fspath(name)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("run", "must be a non-empty run name")
    if any(ord(c) < 32 for c in text):
        raise ConfigError("run", f"{text!r} must not contain control characters")
    root = Path(runs_root).resolve()
    windows = PureWindowsPath(text)
    if PurePosixPath(text).is_absolute() or windows.drive or windows.root:
        raise ConfigError("run", f"{text!r} must be a name inside the runs folder {root}, not an absolute path")
    parts = text.replace("\\", "/").split("/")
    if ".." in parts:
        raise ConfigError("run", f"{text!r} must not contain '..' (run names stay inside {root})")
    target = (root / text).resolve()
    if target == root or root not in target.parents:
        raise ConfigError("run", f"{text!r} does not name a folder inside the runs folder {root}")
    return target


@dataclass
class _Active:
    """A trial handed to the executor, and the trials of the same key that wait for it."""

    id: int
    arch: Any
    key: str
    seed: int
    failures: int
    handle: Handle | None = None
    followers: list[tuple[int, Any]] = field(default_factory=list)
    extra: dict[str, Any] | None = None  # metrics known before the evaluation (the pre-screen's score)
    rung: int | None = None  # under a scheduler: the rung this job trains the child to


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path | None  # None for a run without a folder (an in-memory store)
    trials: int
    done: int
    failed: int
    reused: int
    unfinished: int
    best: TrialRecord | None
    elapsed: float
    cost: float
    stop_reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "trials": self.trials,
            "done": self.done,
            "failed": self.failed,
            "reused": self.reused,
            "unfinished": self.unfinished,
            "best": None if self.best is None else self.best.to_dict(),
            "elapsed": self.elapsed,
            "cost": self.cost,
            "stop_reason": self.stop_reason,
        }


class _ProgressView:
    """Trials done, best so far, rate and ETA on stderr via rich (or nothing when disabled)."""

    def __init__(self, enabled: bool, budget: Budget, console: Any = None):
        self.enabled = enabled
        self.budget = budget
        self.console = console
        self._progress: Any = None
        self._task: Any = None
        self._last = 0.0

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        total: float | None
        if self.budget.max_trials is not None:
            total = self.budget.max_trials
        elif self.budget.max_cost is not None:
            total = self.budget.max_cost
        else:
            total = self.budget.max_seconds
        self._progress = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            TextColumn("{task.fields[trials]}"),
            TextColumn("best {task.fields[best]}"),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console or Console(stderr=True),
            refresh_per_second=4,
        )
        self._progress.start()
        self._task = self._progress.add_task("search", total=total, trials="", best="-", failed=0, rate="")

    def update(self, exp: Experiment, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        if self.budget.max_trials is not None:
            completed: float = exp.finished_trials
        elif self.budget.max_cost is not None:
            completed = exp.cost
        else:
            completed = exp.elapsed
        limit = f"/{self.budget.max_trials}" if self.budget.max_trials else ""
        session = max(1e-9, now - exp._session_start)
        self._progress.update(
            self._task,
            completed=completed,
            trials=f"{exp.finished_trials}{limit} trials",
            best="-" if exp.best_reward is None else f"{exp.best_reward:.4g}",
            failed=exp.failed_trials,
            rate=f"{exp._session_finished / session:.2f}/s",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# -- the experiment ----------------------------------------------------------------------------------
class Experiment:
    """Run a strategy against an evaluator until the budget is spent, recording every trial.

    Args:
        space, strategy, evaluator: the search's parts (see `nasforge.spaces`, `.strategies`,
            `.evaluators`); the evaluator is `evaluate(space, arch, seed) -> metrics` (or a
            callable with that signature).
        objective: metrics -> reward (a callable, or an object with `reward(metrics)`); None
            for ``metrics["val_accuracy"]``.
        run_dir: the run's folder; its database is ``run_dir/nasforge.db``. None (and no `store`):
            the run is kept in memory (`MemoryStore`): nothing on disk, nothing to resume.
        budget: a `Budget` (or a dict of its fields, or an int number of trials).
        seed: the run seed; trial seeds derive from it and the trial index.
        duplicates: what a proposal already asked in the run becomes: "reask" (default: not a
            trial; the strategy is told and asked again, up to `reask_limit` times in a row),
            "reuse" (a trial reusing the stored result) or "evaluate" (evaluated again).
        reask_limit: with "reask", repeats in a row after which the search stops with a reason.
        retries: how many times a failed evaluation is re-run (fresh seed) before it is recorded
            as failed and told to the strategy as a failure.
        limit_check: arch -> reason | None, before evaluation; a reason rejects the architecture.
        executor: an `Executor` (default: serial, in-process).
        max_outstanding: asks outstanding at once (default: the executor's `workers`).
        timeout: seconds one evaluation may take (a longer one fails with that reason).
        resume: False creates a new run (refusing a folder that holds one); True continues the
            run in `run_dir` (its config must match); "auto" resumes when a run exists.
        progress: show a progress line on stderr (rich).
        config: the JSON-able config to store (e.g. `SearchConfig.to_dict()`); derived from the
            objects when not given.
        on_trial: called with each finished `TrialRecord`.
        prescreen: a `PreScreen`: each trial evaluates the best-scored of several proposals.
        scheduler: a multi-fidelity `Scheduler` (successive halving, Hyperband, ASHA, median
            stopping); the evaluator must support fidelities (`supports_fidelity`).
        fault_hook: passed to the run's `Store` (tests kill or fail the process inside a write).
        store: a `TrialStore` to record into instead of the one `run_dir` names, e.g. an open
            `Store` or a `MemoryStore`; `resume` then says whether to continue what it holds.
    """

    def __init__(
        self,
        space: SearchSpace,
        strategy: Strategy,
        evaluator: ArchitectureEvaluator | EvaluateFn,
        objective: Any = None,
        run_dir: str | os.PathLike | None = None,
        *,
        budget: Budget | Mapping | int,
        seed: int = 0,
        duplicates: str = "reask",
        reask_limit: int = 100,
        retries: int = 0,
        limit_check: Callable[[Any], str | None] | None = None,
        executor: Executor | None = None,
        max_outstanding: int | None = None,
        timeout: float | None = None,
        resume: bool | str = False,
        progress: bool = True,
        config: Mapping[str, Any] | None = None,
        on_trial: Callable[[TrialRecord], None] | None = None,
        console: Any = None,
        prescreen: PreScreen | None = None,
        scheduler: Scheduler | None = None,
        fault_hook: Callable[[str], None] | None = None,
        store: TrialStore | None = None,
    ):
        if resume not in (True, False, "auto"):
            raise ConfigError("resume", f"must be true, false or 'auto', got {resume!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError("retries", f"must be a non-negative integer, got {retries!r}")
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.objective = objective_function(objective)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.budget = Budget.parse(budget)
        self.seed = int(seed)
        if duplicates not in DUPLICATE_MODES:
            raise ConfigError("duplicates", f"unknown mode {duplicates!r}", list(DUPLICATE_MODES))
        if isinstance(reask_limit, bool) or not isinstance(reask_limit, int) or reask_limit < 0:
            raise ConfigError("reask_limit", f"must be a non-negative integer, got {reask_limit!r}")
        self.duplicates = duplicates
        self.reask_limit = reask_limit
        self.retries = retries
        self.limit_check = limit_check
        self.executor = executor if executor is not None else create_executor("serial")
        self._own_executor = executor is None
        self.max_outstanding = int(max_outstanding or self.executor.workers)
        if self.max_outstanding < 1:
            raise ConfigError("max_outstanding", f"must be at least 1, got {max_outstanding}")
        self.timeout = timeout
        self.on_trial = on_trial
        self.prescreen = prescreen
        self.scheduler = scheduler
        if scheduler is not None:
            if not getattr(evaluator, "supports_fidelity", False):
                raise ConfigError(
                    "scheduler",
                    f"the {getattr(evaluator, 'name', type(evaluator).__name__)} "
                    "evaluator cannot train to a fidelity; a scheduler needs "
                    "one that can (e.g. proxy)",
                )
            if duplicates != "reask":
                raise ConfigError("duplicates", f"must be 'reask' under a scheduler, got {duplicates!r}")
            if run_dir is None:
                raise ConfigError("run", "a scheduler keeps its children's training states in a run folder: give one")
        self._progress = _ProgressView(progress, self.budget, console)
        self.config = dict(config) if config is not None else self._derive_config(objective)

        # run state
        self._active: dict[Handle, _Active] = {}
        self._active_by_key: dict[str, _Active] = {}
        self._waiting: list[tuple[int, Any, int | None]] = []  # unfinished trials found on resume
        self._unresolved = 0  # asked and not yet told (active trials and their followers)
        self._queued = 0
        self._exhausted = False
        self._asked_keys: set[str] = set()  # every trial's key: the duplicate filter's memory
        self.stop_reason = ""
        self.total_trials = 0
        self.finished_trials = 0
        self.failed_trials = 0
        self.cost = 0.0
        self.best_reward: float | None = None
        self._elapsed_before = 0.0
        self._session_start = time.monotonic()
        self._session_finished = 0
        self._ran = False
        self._scheduler_closed = False
        self._pace: list[float] = [0.0, 0.0]  # seconds and epochs of the jobs measured so far

        self.store: TrialStore
        self._own_store = store is None  # a store passed in is the caller's to close
        if store is not None:
            if fault_hook is not None:
                raise ConfigError("fault_hook", "give it to the store itself when passing a store")
            resuming = resume is True or (resume == "auto" and store.count() > 0)
            if not resuming and store.count():
                raise ConfigError("run", "the store already holds trials; resume them or pass an empty store")
            self.store = store
            if resuming:
                self._restore(store, f"the run in {getattr(store, 'path', store)}")
        elif self.run_dir is None:
            if resume is True:
                raise ConfigError("resume", "a run without a run folder is kept in memory: there is nothing to resume")
            resuming = False
            self.store = MemoryStore(self.config)
        else:
            resuming = resume is True or (resume == "auto" and Store.exists(self.run_dir))
            if resuming:
                self.store = self._open_existing(self.run_dir, fault_hook)
            else:
                self.store = Store.create(self.run_dir, self.config, fault_hook=fault_hook)
        self.resumed = resuming

    @classmethod
    def from_config(
        cls,
        config: SearchConfig | Mapping[str, Any],
        run_dir: str | os.PathLike,
        *,
        resume: bool | str = False,
        progress: bool = True,
        executor: Executor | None = None,
        on_trial: Callable[[TrialRecord], None] | None = None,
        console: Any = None,
    ) -> Experiment:
        """Build every part from a `SearchConfig` (registry names) and open the run."""
        if not isinstance(config, SearchConfig):
            config = SearchConfig.from_dict(config)
        parts = build_components(config)
        prepare = getattr(parts.evaluator, "prepare", None)
        if callable(prepare):  # a bad dataset fails here, before the run folder is made
            prepare()
        if parts.prescreen is not None:
            parts.prescreen.prepare()
        if executor is None:
            executor = create_executor(config.executor, workers=config.workers)
        return cls(
            parts.space,
            parts.strategy,
            parts.evaluator,
            parts.objective,
            run_dir,
            budget=config.budget,
            seed=config.seed,
            duplicates=config.duplicates,
            reask_limit=config.reask_limit,
            retries=config.retries,
            limit_check=parts.limit_check,
            executor=executor,
            max_outstanding=config.max_outstanding,
            timeout=config.timeout,
            resume=resume,
            progress=progress,
            config=config.to_dict(),
            on_trial=on_trial,
            console=console,
            prescreen=parts.prescreen,
            scheduler=parts.scheduler,
        )

    def _derive_config(self, objective: Any) -> dict[str, Any]:
        return {
            "space": describe_component(self.space),
            "strategy": describe_component(self.strategy),
            "evaluator": describe_component(self.evaluator),
            "objective": describe_component(objective),
            "limits": describe_component(self.limit_check),
            "seed": self.seed,
            "duplicates": self.duplicates,
            "reask_limit": self.reask_limit,
            "retries": self.retries,
            "budget": self.budget.to_dict(),
            "workers": self.executor.workers,
            "executor": self.executor.name,
            "max_outstanding": self.max_outstanding,
            "timeout": self.timeout,
            **({"prescreen": self.prescreen.config()} if self.prescreen is not None else {}),
            **({"scheduler": self.scheduler.config()} if self.scheduler is not None else {}),
        }

    # -- opening a run ------------------------------------------------------------------------------
    def _open_existing(self, run_dir: Path, fault_hook: Callable[[str], None] | None) -> Store:
        if not Store.exists(run_dir):
            raise ConfigError("resume", f"there is no run to resume in {run_dir}")
        store = Store.open(run_dir, fault_hook=fault_hook)
        try:
            self._restore(store, f"the run in {run_dir}")
        except BaseException:
            store.close()
            raise
        return store

    def _restore(self, store: TrialStore, run: str) -> None:
        """Take up the run in `store` (`run` names it in errors): the strategy's (and the
        scheduler's) checkpoint, the counters, the duplicate filter's keys, the unfinished trials."""
        stored = store.config()
        differing = config_diff(stored, self.config)
        if differing:
            raise ConfigError(
                "resume",
                f"{run} was started with a different config: {describe_diff(stored, self.config, differing)}",
            )
        checkpoint = store.load_checkpoint("strategy")
        if checkpoint is not None:
            if self.scheduler is not None:
                self.strategy.load_state_dict(checkpoint.state["strategy"])
                self.scheduler.load_state_dict(checkpoint.state["scheduler"])
            else:
                self.strategy.load_state_dict(checkpoint.state)
            self._elapsed_before = float(checkpoint.elapsed or 0.0)
        elif store.count():
            raise ConfigError(
                "resume",
                f"{run} has trials but no strategy checkpoint; it cannot be resumed exactly",
            )
        self._queued = store.max_queued()
        for t in store.iter_trials():
            self.total_trials += 1
            self._asked_keys.add(t.key)
            if t.status in UNFINISHED:
                self._waiting.append((t.id, t.arch, t.queued))
                continue
            self.finished_trials += 1
            if t.status == "failed":
                self.failed_trials += 1
            elif t.reused_from is None:
                self.cost += self._cost_of(t.metrics)
            if t.status == "done" and t.reward is not None:
                if self.best_reward is None or t.reward > self.best_reward:
                    self.best_reward = t.reward
        reached: dict[int, float] = {}
        for r in store.rungs():
            self._measure_pace(r.metrics, reached.get(r.trial_id, 0.0))
            if r.epochs is not None:
                reached[r.trial_id] = r.epochs
        self._unresolved = len(self._waiting)

    # -- state ---------------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._session_start)

    @staticmethod
    def _cost_of(metrics: Mapping[str, Any] | None) -> float:
        if not metrics:
            return 0.0
        value: Any = metrics.get("cost_seconds")  # float(None) raises TypeError too
        try:
            value = float(value)
        except (TypeError, ValueError):
            return 0.0
        return value if math.isfinite(value) and value > 0 else 0.0

    def _checkpoint(self, event: str) -> CheckpointUpdate | None:
        """The strategy's (and scheduler's) state to record with a trial change; None for a store
        that dies with the process, where nothing could resume from it."""
        if not self.store.durable:
            return None
        state = self.strategy.state_dict()
        if self.scheduler is not None:
            state = {"strategy": state, "scheduler": self.scheduler.state_dict()}
        return CheckpointUpdate(state, event, self.elapsed)

    def _next_queued(self) -> int:
        self._queued += 1
        return self._queued

    def _seed_of(self, trial_id: int) -> int:
        return trial_seed(self.seed, trial_id)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Search until the budget is spent (or the strategy is exhausted); return a summary.

        KeyboardInterrupt/SystemExit stop the run at once; the run folder stays consistent and
        `resume=True` continues it.
        """
        if self._ran:
            raise RuntimeError("an Experiment runs once; open the run again with resume=True")
        self._ran = True
        self._session_start = time.monotonic()
        self._progress.start()
        try:
            plan = getattr(self.strategy, "plan", None)  # a duck-typed strategy may have none
            if callable(plan):
                plan(self.budget.max_trials)
            self._recover()
            while True:
                self._fill()
                if not self._active:
                    break
                for outcome in self.executor.wait(timeout=0.25):
                    self._complete(outcome)
                self._progress.update(self)
            if not self.stop_reason:
                self.stop_reason = "budget spent"
        finally:
            self._progress.update(self, force=True)
            self._progress.stop()
            self.executor.shutdown()
        return self.summary()

    def summary(self) -> RunSummary:
        counts = self.store.counts()
        best = self.store.best(1)
        return RunSummary(
            self.run_dir,
            counts["total"],
            counts["done"],
            counts["failed"],
            counts["reused"],
            counts["pending"] + counts["running"],
            best[0] if best else None,
            self.elapsed,
            self.cost,
            self.stop_reason,
        )

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown()
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _can_ask(self) -> bool:
        if self._exhausted:
            return False
        reason = self.budget.exhausted(self.total_trials, self.elapsed, self.cost)
        if reason:
            self.stop_reason = reason
            return False
        return True

    def _fill(self) -> None:
        if self.scheduler is not None:
            self._fill_scheduled()
            return
        while self._unresolved < self.max_outstanding and self._can_ask():
            self._ask_one()
            self._progress.update(self)

    # -- multi-fidelity ------------------------------------------------------------------------------
    def _fill_scheduled(self) -> None:
        """Start the scheduler's jobs (promotions first, then new children) while workers are free."""
        assert self.scheduler is not None
        while len(self._active) < self.max_outstanding:
            new_allowed = self._can_ask()
            if not new_allowed and not self._scheduler_closed:
                self._scheduler_closed = True
                self._apply(self.scheduler.close())
            job = self.scheduler.next_job(new_allowed)
            if job is None:
                return
            if job.trial is None:
                if not self._fits(self.scheduler.epochs(job.rung)):
                    self.scheduler.cancel(job)
                    self._exhausted = True
                    self.stop_reason = "time budget: a new child cannot reach its first rung in the time left"
                    continue
                self._ask_one(job)
            else:
                before = self.scheduler.epochs(job.rung - 1)
                if not self._fits(self.scheduler.epochs(job.rung) - before):
                    self._apply(self.scheduler.decline(job.trial))
                    continue
                record = self.store.trial(job.trial)
                extra = {k: v for k, v in (record.metrics or {}).items() if k.startswith("prescreen_")}
                self._submit(
                    _Active(
                        record.id,
                        self.space.from_json(record.arch),
                        record.key,
                        record.seed,
                        0,
                        extra=extra or None,
                        rung=job.rung,
                    ),
                    mark=True,
                    requeue=True,
                )
            self._progress.update(self)

    def _fits(self, epochs: float) -> bool:
        """Whether `epochs` more epochs of one child can finish before a time budget ends, at the
        pace measured so far (always, before the first measurement or without a time budget)."""
        if self.budget.max_seconds is None or self._pace[1] <= 0:
            return True
        return self.elapsed + epochs * self._pace[0] / self._pace[1] <= self.budget.max_seconds

    def _measure_pace(self, metrics: Mapping[str, Any] | None, before: float) -> None:
        if not metrics:
            return
        seconds, epochs = metrics.get("wall_seconds"), metrics.get("epochs")
        if isinstance(seconds, float) and isinstance(epochs, float) and epochs > before:
            self._pace[0] += seconds
            self._pace[1] += epochs - before

    def _deadline(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return time.time() + (self.budget.max_seconds - self.elapsed)

    def _states(self) -> Path:
        """Where a scheduler's children keep their training state between rungs."""
        assert self.run_dir is not None  # a scheduler needs a run folder (checked when built)
        return self.run_dir / "states"

    def _state_path(self, trial_id: int, rung: int) -> Path:
        return self._states() / f"trial-{trial_id}-rung-{rung}.pt"

    def _fidelity(self, active: _Active) -> Fidelity | None:
        """What one job asks of the evaluator: the rung's epochs and the state it continues from
        (under a scheduler); the deadline of a time budget (any evaluator that can stop early)."""
        if self.scheduler is not None and active.rung is not None:
            state = None
            if active.rung > 0:
                path = self._state_path(active.id, active.rung - 1)
                state = path.read_bytes() if path.exists() else None
            return Fidelity(
                epochs=self.scheduler.epochs(active.rung),
                horizon=self.scheduler.max_epochs,
                state=state,
                deadline=self._deadline(),
            )
        if self.budget.max_seconds is not None and getattr(self.evaluator, "supports_fidelity", False):
            return Fidelity(deadline=self._deadline())
        return None

    def _complete_rung(
        self,
        active: _Active,
        metrics: dict[str, Any] | None,
        reward: float | None,
        error: str | None,
        state: bytes | None,
    ) -> None:
        """Record a child's result at its rung, let the scheduler decide, tell what stopped."""
        assert self.scheduler is not None and active.rung is not None
        short = bool(metrics and metrics.get("stopped"))
        if error is None and state is not None and not short:
            path = self._state_path(active.id, active.rung)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(state)
            os.replace(tmp, path)  # on disk before the transaction that says the rung is done
        epochs = None if metrics is None else metrics.get("epochs")
        self._measure_pace(metrics, self.scheduler.epochs(active.rung - 1) if active.rung > 0 else 0.0)
        self.cost += self._cost_of(metrics)
        row = RungResult(active.id, active.rung, epochs if isinstance(epochs, float) else None, metrics, reward, error)
        decisions = self.scheduler.report(active.id, None if error is not None or short else reward)
        self._apply(decisions, row, failed={active.id: error} if error is not None else None)

    def _apply(
        self, decisions: list[Decision], row: RungResult | None = None, failed: Mapping[int, str] | None = None
    ) -> None:
        """Tell the strategy about the children the decisions stopped and record it all at once."""
        finished: list[tuple[int, str, str | None]] = []
        told: list[tuple[int, bool, float | None]] = []
        for d in decisions:
            if d.action != "stop":
                continue
            record = self.store.trial(d.trial)  # one read: its architecture and latest result
            arch = self.space.from_json(record.arch)
            if failed and d.trial in failed:
                self.strategy.tell(arch, Result.failure(failed[d.trial], (row.metrics if row else None) or {}))
                finished.append((d.trial, "failed", failed[d.trial]))
                told.append((d.trial, True, None))
                continue
            latest = row if row is not None and d.trial == row.trial_id else record
            assert latest.reward is not None  # stopped, not failed: it has its reward
            self.strategy.tell(arch, Result.ok(latest.reward, latest.metrics or {}))
            finished.append((d.trial, "done", None))
            told.append((d.trial, False, latest.reward))
        if row is None and not decisions:
            return
        self.store.record_schedule(
            row, {d.trial: d.action for d in decisions}, finished, checkpoint=self._checkpoint("tell")
        )
        for trial_id, is_failure, reward in told:
            for path in self._states().glob(f"trial-{trial_id}-rung-*.pt"):
                path.unlink(missing_ok=True)
            self._unresolved -= 1
            self._after_finish(trial_id, failed=is_failure, metrics=None, reward=reward, reused=False)
        if row is not None and row.error is None and row.trial_id not in {t for t, _, _ in told}:
            for path in self._states().glob(f"trial-{row.trial_id}-rung-*.pt"):
                if path != self._state_path(row.trial_id, row.rung):
                    path.unlink(missing_ok=True)  # only the newest state continues it

    def _recover(self) -> None:
        """Re-run (or resolve) the trials a previous session left unfinished."""
        if not self._waiting:
            return
        if self.scheduler is not None:
            self._recover_scheduled()
            return
        waiting, self._waiting = self._waiting, []
        records = {tid: self.store.trial(tid) for tid, _, _ in waiting}
        # 1. trials waiting on a result that now exists finish first, as they would have.
        later = []
        for tid, arch_json, _ in sorted(waiting):
            t = records[tid]
            if t.reused_from is not None:
                leader = self.store.trial(t.reused_from)
                reusable = leader.status == "done" or (leader.status == "failed" and leader.rejected)
                if reusable:
                    self._unresolved -= 1
                    self._finish_reused(tid, self.space.from_json(arch_json), leader)
                    continue
                if leader.status in UNFINISHED:
                    later.append(t)  # attached to its leader below
                    continue
                t = _dataclass_replace(t, reused_from=None, queued=None)  # leader failed: evaluate
            later.append(t)
        # 2. leaders go back to the executor in the order they had been queued.
        leaders = sorted(
            (t for t in later if t.reused_from is None), key=lambda t: (t.queued is None, t.queued or 0, t.id)
        )
        for t in leaders:
            arch = self.space.from_json(t.arch)
            self._submit(
                _Active(t.id, arch, t.key, t.seed, t.failures, extra=t.metrics),
                mark=True,
                requeue=t.queued is None,
                relink=records[t.id].reused_from is not None,
            )
        for t in later:
            if t.reused_from is not None:
                leading = next(a for a in self._active.values() if a.id == t.reused_from)
                leading.followers.append((t.id, self.space.from_json(t.arch)))

    def _recover_scheduled(self) -> None:
        """Re-run the jobs that were running, at the rung they were training to, in queue order;
        children waiting for a rung or a promotion wait on (the scheduler hands them out)."""
        assert self.scheduler is not None
        running = set(self.scheduler.running())
        records = sorted(
            (self.store.trial(tid) for tid, _, _ in self._waiting if tid in running),
            key=lambda t: (t.queued is None, t.queued or 0, t.id),
        )
        self._waiting = []
        for t in records:
            extra = {k: v for k, v in (t.metrics or {}).items() if k.startswith("prescreen_")}
            self._submit(
                _Active(
                    t.id,
                    self.space.from_json(t.arch),
                    t.key,
                    t.seed,
                    t.failures,
                    extra=extra or None,
                    rung=self.scheduler.rung_of(t.id),
                ),
                mark=True,
                requeue=t.queued is None,
            )

    def _submit(self, active: _Active, *, mark: bool = False, requeue: bool = False, relink: bool = False) -> None:
        """Hand a trial to the executor; `mark` records the (re)start (`requeue`: at the end of
        the queue; `relink`: a waiting trial whose original failed is now evaluated itself)."""
        if mark:
            self.store.mark_running(
                active.id, queued=self._next_queued() if requeue else None, reused_from=None if relink else False
            )
        attempt_seed = trial_seed(self.seed, active.id, active.failures)
        fidelity = self._fidelity(active)
        args = (self.evaluator, self.space, active.arch, attempt_seed) + ((fidelity,) if fidelity else ())
        active.handle = self.executor.submit(evaluate_architecture, *args, timeout=self.timeout)
        self._active[active.handle] = active
        self._active_by_key.setdefault(active.key, active)

    def _propose(self, also_seen: Container[str] = ()) -> tuple[Any, str | None]:
        """The strategy's next proposal and, when the duplicate filter ("reask" mode) computed it,
        its canonical key (None otherwise)."""
        if self.duplicates != "reask":
            return self.strategy.ask(), None
        seen = self._asked_keys if not also_seen else _Union(self._asked_keys, also_seen)
        arch, key, _ = ask_new(self.strategy, self.space, seen, self.reask_limit)
        return arch, key

    def _ask_one(self, job: Job | None = None) -> None:
        """Ask the strategy for a new trial and start it (under a scheduler: as `job`)."""
        try:
            arch, key = self._propose()
        except (Exhausted, RepeatedProposals) as exc:
            self._exhausted = True
            self.stop_reason = str(exc) or "the strategy has nothing left to propose"
            if job is not None:
                assert self.scheduler is not None  # jobs come from the scheduler
                self.scheduler.cancel(job)
            return
        extra = None
        if self.prescreen is not None:
            arch, extra = self._screen(arch)
            key = None  # the screen may have chosen another proposal
        if key is None:
            key = self.space.key(arch)
        arch_json = self.space.to_json(arch)
        self.total_trials += 1
        self._asked_keys.add(key)
        if self.duplicates == "reuse":
            previous = self.store.find_result(key)
            if previous is not None:
                self._finish_reused(None, arch, previous, arch_json=arch_json, key=key)
                return
            leader = self._active_by_key.get(key)
            if leader is not None:
                tid = self.store.add_trial(
                    arch_json,
                    key,
                    self._seed_of,
                    status="pending",
                    reused_from=leader.id,
                    checkpoint=self._checkpoint("ask"),
                )
                leader.followers.append((tid, arch))
                self._unresolved += 1
                return
        if self.limit_check is not None:
            error: str | None
            try:
                reason = self.limit_check(arch)
            except NasforgeError as exc:
                reason, error = None, f"limit check: {exc}"
            except Exception as exc:  # noqa: BLE001 - the architecture failed, the search goes on
                reason, error = None, f"limit check: {describe_exception(exc)}"
            else:
                error = None
            if reason is not None or error is not None:
                message = f"rejected: {reason}" if reason is not None else error
                assert message is not None  # a reason or an error
                if job is not None:
                    assert self.scheduler is not None  # jobs come from the scheduler
                    self.scheduler.cancel(job)
                self.strategy.tell(arch, Result.failure(message))
                tid = self.store.add_trial(
                    arch_json,
                    key,
                    self._seed_of,
                    status="failed",
                    error=message,
                    rejected=reason is not None,
                    checkpoint=self._checkpoint("tell"),
                )
                self._after_finish(tid, failed=True, metrics=None, reward=None, reused=False)
                return
        if job is not None:  # trial ids are 1..n in asking order, so this one's is known now
            assert self.scheduler is not None  # jobs come from the scheduler
            self.scheduler.started(self.total_trials, job)
        tid = self.store.add_trial(
            arch_json,
            key,
            self._seed_of,
            status="running",
            metrics=extra,
            queued=self._next_queued(),
            checkpoint=self._checkpoint("ask"),
        )
        if job is not None and tid != self.total_trials:
            raise NasforgeError(
                f"trial {tid} was recorded where trial {self.total_trials} was expected "
                "(another process writes to this run?)"
            )
        self._unresolved += 1
        self._submit(
            _Active(tid, arch, key, self._seed_of(tid), 0, extra=extra, rung=None if job is None else job.rung)
        )

    def _screen(self, first: Any) -> tuple[Any, dict[str, Any]]:
        """Ask for more proposals, keep the best-scored one (returned with its metrics) and tell the
        strategy the others were screened out (see `nasforge.experiment.prescreen`)."""
        assert self.prescreen is not None
        archs = [first]
        batch = {self.space.key(first)}
        while len(archs) < self.prescreen.candidates:
            try:
                archs.append(self._propose(batch)[0])
            except (Exhausted, RepeatedProposals):
                break
            batch.add(self.space.key(archs[-1]))
        best, scores = self.prescreen.choose(self.space, archs)
        for i, arch in enumerate(archs):
            if i != best:
                shown = "none" if scores[i] is None else f"{scores[i]:.6g}"
                self.strategy.tell(
                    arch,
                    Result.failure(
                        f"screened out: {self.prescreen.name} score {shown} below {scores[best]:.6g}"
                        if scores[best] is not None
                        else f"screened out: no {self.prescreen.name} score"
                    ),
                )
        extra: dict[str, Any] = {"prescreen_candidates": float(len(archs))}
        if scores[best] is not None:
            extra["prescreen_score"] = scores[best]
        return archs[best], extra

    def _finish_reused(
        self, tid: int | None, arch: Any, source: TrialRecord, *, arch_json: Any = None, key: str | None = None
    ) -> None:
        """Tell `arch` the stored result of `source`; record it (new trial or waiting follower)."""
        origin = source.reused_from if source.reused_from is not None else source.id
        if source.status == "done":
            assert source.reward is not None  # a done trial has its reward
            self.strategy.tell(arch, Result.ok(source.reward, source.metrics or {}))
            fields: dict[str, Any] = {"metrics": source.metrics, "reward": source.reward}
            status = "done"
        else:  # a rejection
            self.strategy.tell(arch, Result.failure(source.error or "rejected"))
            fields = {"error": source.error}
            status = "failed"
        checkpoint = self._checkpoint("tell")
        if tid is None:
            assert key is not None  # a new trial comes with its key
            tid = self.store.add_trial(
                arch_json,
                key,
                self._seed_of,
                status=status,
                reused_from=origin,
                rejected=source.rejected,
                checkpoint=checkpoint,
                **fields,
            )
        else:
            self.store.finish_trial(tid, status, reused_from=origin, checkpoint=checkpoint, **fields)
        self._after_finish(tid, failed=status == "failed", metrics=None, reward=source.reward, reused=True)

    def _score(self, value: Any) -> tuple[dict[str, Any] | None, float | None, str | None]:
        """(metrics, reward, error) from what the evaluator returned."""
        if not isinstance(value, Mapping):
            return None, None, f"the evaluator returned {type(value).__name__}, not a dict of metrics"
        metrics: dict[str, Any] = {}
        for name, v in value.items():
            if isinstance(v, (bool, np.bool_)):
                metrics[str(name)] = float(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                metrics[str(name)] = float(v)
            elif v is None or isinstance(v, str):
                metrics[str(name)] = v
            elif hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # 0-d tensors and arrays
                metrics[str(name)] = float(v.item())
            elif isinstance(v, (list, tuple)) and all(
                isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in v
            ):
                metrics[str(name)] = [float(x) for x in v]  # curves, e.g. the loss per epoch
            else:
                return None, None, f"metric {name!r} is a {type(v).__name__}, not a number"
        for name, v in metrics.items():
            if name.startswith(VAL_PREFIXES) and isinstance(v, float) and not math.isfinite(v):
                return metrics, None, f"{name} is {v}"
        try:
            reward = float(self.objective(metrics))
        except NasforgeError:
            raise  # a configuration mistake (e.g. the objective's metric is never produced)
        except Exception as exc:  # noqa: BLE001
            return metrics, None, f"objective: {describe_exception(exc)}"
        if not math.isfinite(reward):
            return metrics, None, f"reward is {reward}"
        return metrics, reward, None

    def _complete(self, outcome: Outcome) -> None:
        active = self._active.pop(outcome.handle, None)
        if active is None:
            return
        metrics: dict[str, Any] | None = None
        reward: float | None = None
        error = outcome.error
        value, state = outcome.value, None
        if isinstance(value, Evaluation):
            state, value = value.state, value.metrics
        if error is None:
            metrics, reward, error = self._score(value)
        if active.extra:
            metrics = {**active.extra, **(metrics or {})}
        if error is not None:
            active.failures += 1
            if active.failures <= self.retries:
                self.store.requeue_trial(active.id, error, queued=self._next_queued())
                self._submit(active)
                return
        if active.rung is not None:
            if self._active_by_key.get(active.key) is active:
                del self._active_by_key[active.key]
            self._complete_rung(active, metrics, reward, error, state)
            return
        if error is not None:
            self.strategy.tell(active.arch, Result.failure(error, metrics or {}))
            self.store.finish_trial(
                active.id,
                "failed",
                metrics=metrics,
                error=error,
                started=outcome.started,
                failures=active.failures,
                checkpoint=self._checkpoint("tell"),
            )
        else:
            assert reward is not None  # scored without error
            self.strategy.tell(active.arch, Result.ok(reward, metrics))
            self.store.finish_trial(
                active.id,
                "done",
                metrics=metrics,
                reward=reward,
                started=outcome.started,
                checkpoint=self._checkpoint("tell"),
            )
            self.cost += self._cost_of(metrics)
        if self._active_by_key.get(active.key) is active:
            del self._active_by_key[active.key]
        self._unresolved -= 1
        self._after_finish(active.id, failed=error is not None, metrics=metrics, reward=reward, reused=False)
        # trials of the same key that waited for this one
        if not active.followers:
            return
        if error is None:
            source = self.store.trial(active.id)
            for tid, arch in active.followers:
                self._unresolved -= 1
                self._finish_reused(tid, arch, source)
        else:  # the first evaluation failed: each waiting trial is evaluated itself
            for tid, arch in active.followers:
                self._submit(
                    _Active(tid, arch, active.key, self._seed_of(tid), 0), mark=True, requeue=True, relink=True
                )

    def _after_finish(self, tid: int, *, failed: bool, metrics: Any, reward: float | None, reused: bool) -> None:
        self.finished_trials += 1
        self._session_finished += 1
        if failed:
            self.failed_trials += 1
        elif reward is not None and (self.best_reward is None or reward > self.best_reward):
            self.best_reward = reward
        if self.on_trial is not None:
            self.on_trial(self.store.trial(tid))


def _dataclass_replace(record: TrialRecord, **changes: Any) -> TrialRecord:
    from dataclasses import replace

    return replace(record, **changes)


def run_search(
    config: SearchConfig | Mapping[str, Any],
    run_dir: str | os.PathLike,
    *,
    resume: bool | str = False,
    progress: bool = True,
) -> RunSummary:
    """Build and run a search from a config in one call."""
    with Experiment.from_config(config, run_dir, resume=resume, progress=progress) as experiment:
        return experiment.run()


__all__ = ["Experiment", "RunSummary", "evaluate_architecture", "resolve_run_dir", "run_search", "trial_seed"]
