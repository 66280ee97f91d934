"""What a run records, whatever keeps it: trial statuses, the records a store returns, the
checkpoint a trial change carries, and `TrialStore`, the protocol the search loop
(`nasforge.experiment.Experiment`) writes through.

Two backends implement it: `nasforge.experiment.store.Store` (SQLite, one file per run folder)
and `nasforge.experiment.memory_store.MemoryStore` (Python containers, for searches that need no
run folder, such as benchmarks against tables). The split follows Optuna's storages (an RDB
storage and an in-memory one behind one interface): the loop is written once and the backend
decides what outlives the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nasforge.errors import NasforgeError
from nasforge.experiment.checkpoint import state_to_bytes

STATUSES = ("pending", "running", "done", "failed")
UNFINISHED = ("pending", "running")


class StoreError(NasforgeError, RuntimeError):
    """A run database is missing, unreadable, corrupt or not nasforge's."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


# -- records ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRecord:
    """One row of the trials table (JSON columns parsed)."""

    id: int
    arch: Any
    key: str
    status: str
    metrics: dict[str, Any] | None
    reward: float | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    seed: int
    attempts: int
    failures: int
    reused_from: int | None
    rejected: bool
    queued: int | None

    @property
    def reused(self) -> bool:
        return self.reused_from is not None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["reused"] = self.reused
        return d


@dataclass(frozen=True)
class RungResult:
    """One row of the rungs table: a child's result at a rung of a multi-fidelity schedule."""

    trial_id: int
    rung: int
    epochs: float | None
    metrics: dict[str, Any] | None
    reward: float | None
    error: str | None = None
    decision: str | None = None
    recorded: float | None = None


@dataclass(frozen=True)
class Checkpoint:
    state: Any
    trial_id: int | None
    event: str | None
    elapsed: float | None
    updated: float


@dataclass(frozen=True)
class CheckpointUpdate:
    """A checkpoint to write in the same transaction as a trial change."""

    state: Any
    event: str
    elapsed: float | None = None
    name: str = "strategy"

    def blob(self, blobs: dict[str, Any]) -> bytes:
        """The state's bytes; its large tensors are added to `blobs` (hash -> tensor)."""
        return self.state if isinstance(self.state, bytes) else state_to_bytes(self.state, blobs)


# -- what the search loop needs from a store ----------------------------------------------------------
class TrialStore(Protocol):
    """The trial records of one run, as `Experiment` reads and writes them.

    Trial ids are 1, 2, ... in the order trials are added. A trial is ``pending`` or ``running``
    until it finishes as ``done`` or ``failed``; a method that changes a finished trial raises
    `StoreError`. Each write that takes a `CheckpointUpdate` records it with the trial change, so
    a durable store never holds a checkpoint that disagrees with its trials. Backends: `Store`
    (SQLite, one file per run folder) and `MemoryStore` (Python containers).
    """

    @property
    def durable(self) -> bool:
        """Whether the records outlive the process: only then are strategy checkpoints (taken
        after every ask and tell, for resuming) worth their cost."""
        ...

    def config(self) -> dict[str, Any]: ...

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
    ) -> int: ...

    def mark_running(
        self, trial_id: int, *, queued: int | None = None, reused_from: int | None | bool = False
    ) -> None: ...

    def requeue_trial(self, trial_id: int, error: str, *, queued: int | None = None) -> None: ...

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
    ) -> None: ...

    def record_schedule(
        self,
        result: RungResult | None,
        decisions: Mapping[int, str],
        finished: list[tuple[int, str, str | None]],
        *,
        checkpoint: CheckpointUpdate | None = None,
    ) -> None: ...

    def trial(self, trial_id: int) -> TrialRecord: ...

    def trials(self, status: str | tuple[str, ...] | None = None) -> list[TrialRecord]: ...

    def iter_trials(self, status: str | tuple[str, ...] | None = None) -> Iterator[TrialRecord]: ...

    def find_result(self, key: str) -> TrialRecord | None: ...

    def count(self) -> int: ...

    def counts(self) -> dict[str, int]: ...

    def best(self, n: int = 10) -> list[TrialRecord]: ...

    def rungs(self, trial_id: int | None = None) -> list[RungResult]: ...

    def max_queued(self) -> int: ...

    def load_checkpoint(self, name: str = "strategy") -> Checkpoint | None: ...

    def close(self) -> None: ...


# -- the store ----------------------------------------------------------------------------------------


__all__ = [
    "STATUSES",
    "UNFINISHED",
    "Checkpoint",
    "CheckpointUpdate",
    "RungResult",
    "StoreError",
    "TrialRecord",
    "TrialStore",
]
