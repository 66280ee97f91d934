"""The ask/tell contract shared by every search strategy.

A strategy knows a space only through its decision sequence (and `sample`/`mutate`/`key`), never
how rewards are made. Several asks may be outstanding at once and tells may arrive in any order:
tells are matched to asks by the architecture's canonical key (first outstanding ask first).
A failed evaluation is told as a `Result` with `reward=None`; strategies must not treat it as 0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasforge.spaces.base import SearchSpace


@dataclass(frozen=True)
class Result:
    """What one evaluation told the strategy."""

    reward: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.reward is None

    @classmethod
    def ok(cls, reward: float, metrics: Mapping[str, float] | None = None) -> Result:
        return cls(float(reward), dict(metrics or {}))

    @classmethod
    def failure(cls, error: str, metrics: Mapping[str, float] | None = None) -> Result:
        return cls(None, dict(metrics or {}), error)


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
