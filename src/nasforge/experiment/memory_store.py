"""A run's trials in Python containers: the `TrialStore` of searches that need no run folder.

Benchmarks against tabulated results (`nasforge.benchmarking`) run thousands of short searches of
hundreds of trials each, where a trial costs microseconds; the SQLite `Store`'s transactions and
per-ask checkpoints would cost more than the search itself and leave nothing worth keeping. This
backend gives `Experiment` the same records with the same rules (ids 1..n in asking order, the
same status changes, the same `find_result`/`best`/`counts` answers) and keeps them only as long
as the object lives, like Optuna's ``InMemoryStorage`` beside its RDB storage.

It is not `durable`, so `Experiment` takes no strategy checkpoints for it (nothing could resume
from them); checkpoints handed to it anyway are kept as deep copies. Records share their
architecture and metrics values with the store: treat them as read-only. One process, one thread: no locking.
"""

from __future__ import annotations

import copy
import heapq
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from nasforge.experiment.checkpoint import json_safe
from nasforge.experiment.records import (
    STATUSES,
    UNFINISHED,
    Checkpoint,
    CheckpointUpdate,
    RungResult,
    StoreError,
    TrialRecord,
)

#: what a memory store calls itself in errors (SQLite's name for an in-memory database)
MEMORY = ":memory:"


def _finite(reward: float | None) -> float | None:
    return None if reward is None or not math.isfinite(reward) else float(reward)


def _metrics(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the SQLite store would give back: a JSON-safe copy (non-finite floats become None)."""
    return None if metrics is None else json_safe(metrics)


def _full_fidelity(row: dict[str, Any]) -> bool:
    fidelity = (row["metrics"] or {}).get("fidelity")
    return not isinstance(fidelity, (int, float)) or fidelity >= 1.0


class MemoryStore:
    """The `TrialStore` of one in-memory run (see the module docstring).

    Args:
        config: the run's config, returned by `config()` (a copy).
    """

    #: the records die with the process: no run can be resumed from them
    durable = False

    def __init__(self, config: Mapping[str, Any] | None = None):
        self._config = copy.deepcopy(dict(config or {}))
        self.path = MEMORY
        # trial id i is self._trials[i - 1]: TrialRecord's fields, changed in place (cheaper than
        # replacing a frozen record on every change); records are made when read
        self._trials: list[dict[str, Any]] = []
        self._by_key: dict[str, list[int]] = {}
        self._rungs: dict[tuple[int, int], RungResult] = {}  # in the order recorded
        self._checkpoints: dict[str, Checkpoint] = {}
        self._created = time.time()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._trials)} trials)"

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; the records stay readable."""

    def config(self) -> dict[str, Any]:
        return copy.deepcopy(self._config)

    def created(self) -> float:
        return self._created

    # -- writes -----------------------------------------------------------------------------------
    def _unfinished(self, trial_id: int) -> dict[str, Any]:
        """The trial's row, which must still be pending or running (else a StoreError, as SQLite's)."""
        if not 1 <= trial_id <= len(self._trials):
            raise StoreError(MEMORY, f"trial {trial_id} does not exist")
        row = self._trials[trial_id - 1]
        if row["status"] not in UNFINISHED:
            raise StoreError(MEMORY, f"trial {trial_id} is already {row['status']}")
        return row

    def _put_checkpoint(self, update: CheckpointUpdate | None, trial_id: int | None) -> None:
        if update is not None:
            state = copy.deepcopy(update.state)
            self._checkpoints[update.name] = Checkpoint(state, trial_id, update.event, update.elapsed, time.time())

    def add_trial(
        self,
        arch: Any,
        key: str,
        seed: int | Callable[[int], int],
        *,
        status: str = "pending",
        metrics: Mapping[str, Any] | None = None,
        reward: float | None = None,
        error: str | None = None,
        reused_from: int | None = None,
        rejected: bool = False,
        queued: int | None = None,
        checkpoint: CheckpointUpdate | None = None,
    ) -> int:
        """Add a trial (see `Store.add_trial`); `arch` is kept as given (JSON text is parsed)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if reused_from is not None and not 1 <= reused_from <= len(self._trials):
            raise StoreError(MEMORY, f"trial {reused_from} does not exist")  # SQLite's foreign key
        trial_id = len(self._trials) + 1
        now = time.time()
        row = {
            "id": trial_id,
            "arch": json.loads(arch) if isinstance(arch, str) else arch,
            "key": key,
            "status": status,
            "metrics": _metrics(metrics),
            "reward": _finite(reward),
            "error": error,
            "created": now,
            "started": now if status != "pending" else None,
            "finished": now if status in ("done", "failed") else None,
            "seed": int(seed(trial_id) if callable(seed) else seed),
            "attempts": int(status == "running"),
            "failures": 0,
            "reused_from": reused_from,
            "rejected": bool(rejected),
            "queued": queued,
        }
        self._trials.append(row)
        self._by_key.setdefault(key, []).append(trial_id)
        self._put_checkpoint(checkpoint, trial_id)
        return trial_id

    def mark_running(self, trial_id: int, *, queued: int | None = None, reused_from: int | None | bool = False) -> None:
        row = self._unfinished(trial_id)
        row["status"] = "running"
        row["started"] = time.time()
        row["attempts"] += 1
        if queued is not None:
            row["queued"] = queued
        if reused_from is not False:
            row["reused_from"] = reused_from

    def requeue_trial(self, trial_id: int, error: str, *, queued: int | None = None) -> None:
        row = self._unfinished(trial_id)
        row["status"] = "running"
        row["error"] = error
        row["failures"] += 1
        row["attempts"] += 1
        row["started"] = time.time()
        if queued is not None:
            row["queued"] = queued

    def finish_trial(
        self,
        trial_id: int,
        status: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        reward: float | None = None,
        error: str | None = None,
        started: float | None = None,
        failures: int | None = None,
        reused_from: int | None | bool = False,
        checkpoint: CheckpointUpdate | None = None,
    ) -> None:
        if status not in ("done", "failed"):
            raise ValueError(f"a trial finishes as done or failed, not {status!r}")
        row = self._unfinished(trial_id)
        now = time.time()
        row["status"] = status
        row["metrics"] = _metrics(metrics)
        row["reward"] = _finite(reward)
        if error is not None:
            row["error"] = error
        row["finished"] = now
        if started is not None:
            row["started"] = started
        elif row["started"] is None:
            row["started"] = now
        if failures is not None:
            row["failures"] = failures
        if reused_from is not False:
            row["reused_from"] = reused_from
        self._put_checkpoint(checkpoint, trial_id)

    def record_schedule(
        self,
        result: RungResult | None,
        decisions: Mapping[int, str],
        finished: list[tuple[int, str, str | None]],
        *,
        checkpoint: CheckpointUpdate | None = None,
    ) -> None:
        """One scheduler event (see `Store.record_schedule`); checked before anything changes,
        so a refused event changes nothing, as a rolled-back transaction would."""
        if result is not None:
            self._unfinished(result.trial_id)
        closing: set[int] = set()
        for trial_id, _, _ in finished:
            self._unfinished(trial_id)
            if trial_id in closing:
                raise StoreError(MEMORY, f"trial {trial_id} is already finishing")
            closing.add(trial_id)
        now = time.time()
        if result is not None:
            reward = _finite(result.reward)
            metrics = _metrics(result.metrics)
            rung = RungResult(result.trial_id, result.rung, result.epochs, metrics, reward, result.error, None, now)
            self._rungs.pop((result.trial_id, result.rung), None)  # a replaced row goes last, as in SQLite
            self._rungs[(result.trial_id, result.rung)] = rung
            row = self._trials[result.trial_id - 1]
            row["reward"] = reward if result.error is None else None
            if result.error is None or metrics is not None:
                row["metrics"] = metrics
        for trial_id, decision in decisions.items():
            rungs = [k for k in self._rungs if k[0] == trial_id]
            if rungs:
                last = max(rungs, key=lambda k: k[1])
                self._rungs[last] = replace(self._rungs[last], decision=decision)
        for trial_id, status, error in finished:
            row = self._trials[trial_id - 1]
            row["status"] = status
            if error is not None:
                row["error"] = error
            row["finished"] = now
        self._put_checkpoint(checkpoint, result.trial_id if result is not None else None)

    # -- reads ------------------------------------------------------------------------------------
    def trial(self, trial_id: int) -> TrialRecord:
        if not 1 <= trial_id <= len(self._trials):
            raise KeyError(f"no trial {trial_id}")
        return TrialRecord(**self._trials[trial_id - 1])

    def trials(self, status: str | tuple[str, ...] | None = None) -> list[TrialRecord]:
        """Trials in id order, optionally only those with the given status(es)."""
        return list(self.iter_trials(status))

    def iter_trials(self, status: str | tuple[str, ...] | None = None) -> Iterator[TrialRecord]:
        statuses = None if status is None else (status,) if isinstance(status, str) else tuple(status)
        return iter([TrialRecord(**t) for t in self._trials if statuses is None or t["status"] in statuses])

    def find_result(self, key: str) -> TrialRecord | None:
        """The first finished trial of `key` whose result can be reused: done, or rejected."""
        for trial_id in self._by_key.get(key, ()):
            t = self._trials[trial_id - 1]
            if t["status"] == "done" or (t["status"] == "failed" and t["rejected"]):
                return TrialRecord(**t)
        return None

    def count(self) -> int:
        return len(self._trials)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        reused = 0
        for t in self._trials:
            out[t["status"]] += 1
            reused += t["reused_from"] is not None
        out["reused"] = reused
        out["total"] = len(self._trials)
        return out

    def best(self, n: int = 10) -> list[TrialRecord]:
        """The n best done trials by reward, ranked as `Store.best` ranks them (fully trained
        first, then reward, the first seen on ties; reused copies left out)."""
        done = (
            t for t in self._trials if t["status"] == "done" and t["reward"] is not None and t["reused_from"] is None
        )
        ranked = heapq.nsmallest(int(n), done, key=lambda t: (not _full_fidelity(t), -t["reward"], t["id"]))
        return [TrialRecord(**t) for t in ranked]

    def rungs(self, trial_id: int | None = None) -> list[RungResult]:
        """The rung results (of one trial, or all), in the order they were recorded."""
        return [r for r in self._rungs.values() if trial_id is None or r.trial_id == trial_id]

    def max_queued(self) -> int:
        return max((t["queued"] for t in self._trials if t["queued"] is not None), default=0)

    def load_checkpoint(self, name: str = "strategy") -> Checkpoint | None:
        return self._checkpoints.get(name)


__all__ = ["MEMORY", "MemoryStore"]
