"""The ask/tell contract shared by every search strategy.

A strategy knows a space only through its decision sequence (and `sample`/`mutate`/`key`), never
how rewards are made. Several asks may be outstanding at once and tells may arrive in any order:
tells are matched to asks by the architecture's canonical key (first outstanding ask first).
A failed evaluation is told as a `Result` with `reward=None`; strategies must not treat it as 0.
A proposal the search loop turned down because its canonical key was already asked in the run is
told as `Result.already_asked(key)`: a failure with `duplicate=True`, never evaluated (see
`ask_new`). Strategies learn no reward from it; they may use the flag to propose differently.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

#: strategy name (as the CLI and configs spell it) -> class; a strategy module registers its class
#: with ``@STRATEGIES.register("name")``. The space and seed are passed by `Registry.create`'s caller.
STRATEGIES: Registry[Strategy] = Registry("strategy", supplied=("space", "seed"))


@dataclass(frozen=True)
class Result:
    """What one evaluation told the strategy."""

    reward: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    #: the loop turned the proposal down as already asked in the run (see `ask_new`)
    duplicate: bool = False

    @property
    def failed(self) -> bool:
        return self.reward is None

    @classmethod
    def ok(cls, reward: float, metrics: Mapping[str, float] | None = None) -> Result:
        return cls(float(reward), dict(metrics or {}))

    @classmethod
    def failure(cls, error: str, metrics: Mapping[str, float] | None = None) -> Result:
        return cls(None, dict(metrics or {}), error)

    @classmethod
    def already_asked(cls, key: str) -> Result:
        return cls(None, {}, f"duplicate: {key} was already asked in this run", duplicate=True)


class Exhausted(Exception):
    """Raised by `ask` when a finite strategy (grid) has nothing left to propose."""


class Strategy(ABC):
    """Proposes architectures (`ask`) and learns from their results (`tell`).

    `state_dict()` returns plain Python values (and tensors where a strategy has a network), so
    a run can checkpoint it after every ask and tell and resume exactly where it stopped.
    """

    name = "strategy"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def plan(self, budget: int | None) -> None:
        """Hear how many evaluations the search expects (None: not known, e.g. a time budget).

        The loop calls it before the first ask; a strategy whose good defaults depend on the
        budget (evolution's population) fits them here. Options given explicitly always win.
        """

    @abstractmethod
    def ask(self) -> Any:
        """The next architecture to evaluate."""

    @abstractmethod
    def tell(self, arch: Any, result: Result) -> None:
        """Learn from the result of an earlier `ask`."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


# -- shared helpers ----------------------------------------------------------------------------------


class RepeatedProposals(Exception):
    """Raised by `ask_new` when the strategy proposed only already-asked architectures `limit` + 1
    times in a row: a converged or tiny search, stopped with a reason instead of looping."""

    def __init__(self, limit: int):
        super().__init__(f"the strategy proposed only architectures already asked in this run ({limit + 1} in a row)")
        self.limit = limit


def ask_new(strategy: Strategy, space: SearchSpace, seen: Container[str], limit: int = 100) -> tuple[Any, str, int]:
    """Ask until the proposal's canonical key is not in `seen`; `(arch, key, duplicates told)`.

    This is the search loop's duplicate filter, the same for every strategy: each repeat is told
    `Result.already_asked` (no evaluation, no reward, not a query of the budget) and the strategy
    is asked again, up to `limit` times; then `RepeatedProposals`. `Exhausted` passes through.
    """
    for repeats in range(limit + 1):
        arch = strategy.ask()
        key = space.key(arch)
        if key not in seen:
            return arch, key, repeats
        strategy.tell(arch, Result.already_asked(key))
    raise RepeatedProposals(limit)


class NotAskedError(ConfigError):
    """`tell` was given an architecture with no outstanding `ask` (never asked, or already told)."""

    def __init__(self, strategy: str, key: str, outstanding: int):
        super().__init__(
            "tell",
            f"{strategy}: architecture {key} has no outstanding ask (never asked, or already told; "
            f"{outstanding} ask(s) outstanding)",
        )
        self.key = key


def as_result(result: Any) -> Result:
    """A `Result` from what `tell` was given: a `Result`, or a plain number as a successful reward.

    A non-finite reward (NaN, inf) counts as a failure: it must never reach a strategy's update.
    """
    if isinstance(result, Result):
        reward = result.reward
    elif isinstance(result, (int, float, np.integer, np.floating)) and not isinstance(result, bool):
        result, reward = Result.ok(float(result)), float(result)
    else:
        raise ConfigError("tell", f"expected a Result or a number as the result, got {type(result).__name__}")
    if reward is not None and not math.isfinite(float(reward)):
        return Result(None, result.metrics, result.error or f"non-finite reward {reward!r}")
    if reward is not None and not isinstance(reward, float):
        return Result(float(reward), result.metrics, result.error, result.duplicate)
    return result


class PendingAsks:
    """Asks that are waiting for their tells, oldest first.

    Each entry is `(key, payload)`; `payload` is whatever the strategy needs back at tell time, kept
    as plain Python values (lists, ints, floats, str) so the ledger goes into a `state_dict` as is,
    and never changed after `add` (state dicts share it).
    A tell takes the *first* outstanding entry with the architecture's key.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[str, Any]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, payload: Any = None) -> None:
        self._entries.append((key, payload))

    def pop(self, key: str, strategy: str = "strategy") -> Any:
        for i, (k, payload) in enumerate(self._entries):
            if k == key:
                del self._entries[i]
                return payload
        raise NotAskedError(strategy, key, len(self._entries))

    def keys(self) -> list[str]:
        return [k for k, _ in self._entries]

    def state_dict(self) -> list[list[Any]]:
        # Checkpointed after every ask and tell with up to hundreds of asks outstanding, so the
        # payloads are shared, not copied: a payload is never changed once it is added.
        return [[k, p] for k, p in self._entries]

    def load_state_dict(self, state: Any) -> None:
        self._entries = [(str(k), copy.deepcopy(p)) for k, p in state]


class AskTellStrategy(Strategy):
    """A `Strategy` that keeps the bookkeeping every concrete strategy shares.

    Subclasses implement `_propose() -> (arch, payload)` and `_learn(arch, payload, result)`; this
    class records each ask in a `PendingAsks` ledger, matches tells to asks by canonical key
    (raising `NotAskedError` for an architecture that has no outstanding ask), turns plain numbers
    into `Result`s, counts asks/tells/failures and keeps the best successful result.
    """

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space, seed)
        self.pending = PendingAsks()
        self.num_asked = 0
        self.num_told = 0
        self.num_failed = 0
        self.num_duplicates = 0  # proposals the loop turned down as already asked (not failures)
        self._best: tuple[Any, float] | None = None

    @abstractmethod
    def _propose(self) -> tuple[Any, Any]:
        """The next architecture and the payload to get back when it is told."""

    @abstractmethod
    def _learn(self, arch: Any, payload: Any, result: Result) -> None:
        """Use one result (successful or failed) of an earlier ask."""

    def ask(self) -> Any:
        arch, payload = self._propose()
        self.pending.add(self.space.key(arch), payload)
        self.num_asked += 1
        return arch

    def tell(self, arch: Any, result: Result | float) -> None:
        result = as_result(result)
        payload = self.pending.pop(self.space.key(arch), self.name)
        self.num_told += 1
        if result.duplicate:
            self.num_duplicates += 1
        elif result.failed:
            self.num_failed += 1
        else:
            reward = result.reward
            assert reward is not None  # not failed
            if self._best is None or reward > self._best[1]:
                self._best = (arch, float(reward))
        self._learn(arch, payload, result)

    @property
    def num_pending(self) -> int:
        """Asks still waiting for their tells."""
        return len(self.pending)

    def best(self) -> tuple[Any, float] | None:
        """`(architecture, reward)` of the best successful result told so far, or None."""
        return self._best

    def options(self) -> dict[str, Any]:
        """The constructor options that shape the search (stored with, and checked by, the state)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            strategy=self.name,
            options=self.options(),
            pending=self.pending.state_dict(),
            num_asked=self.num_asked,
            num_told=self.num_told,
            num_failed=self.num_failed,
            num_duplicates=self.num_duplicates,
            best=None if self._best is None else [self.space.to_json(self._best[0]), self._best[1]],
        )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        name = state.get("strategy", self.name)
        if name != self.name:
            raise ConfigError("strategy", f"the checkpoint is of strategy {name!r}, not {self.name!r}")
        saved, here = dict(state.get("options", {})), self.options()
        differing = sorted(k for k in set(saved) | set(here) if saved.get(k) != here.get(k))
        if differing:
            detail = ", ".join(f"{k} (checkpoint {saved.get(k)!r}, here {here.get(k)!r})" for k in differing)
            raise ConfigError("strategy", f"the checkpoint's {self.name} options differ: {detail}")
        super().load_state_dict(state)
        self.pending.load_state_dict(state["pending"])
        self.num_asked = int(state["num_asked"])
        self.num_told = int(state["num_told"])
        self.num_failed = int(state["num_failed"])
        self.num_duplicates = int(state.get("num_duplicates", 0))
        best = state["best"]
        self._best = None if best is None else (self.space.from_json(copy.deepcopy(best[0])), float(best[1]))
