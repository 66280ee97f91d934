"""Evaluators turn an architecture into metrics.

An evaluator raises on failure (the experiment records the trial as failed with the error text);
it returns a flat dict of floats, where "val_accuracy" is the conventional reward source. Test
metrics, where an evaluator has them, are reported under "test_*" keys and never used as reward.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

Metrics = dict[str, Any]  # floats, plus lists for curves (e.g. the training loss)


class ArchitectureEvaluator(Protocol):
    """What the search loop and the tools call: `Evaluator` subclasses, and any plug-in class with
    this method, whether or not it derives from `Evaluator` (duck typing, as Optuna's objectives)."""

    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics: ...


#: a plain function evaluates too: ``evaluate(space, arch, seed) -> metrics``.
EvaluateFn = Callable[[SearchSpace, Any, int], Metrics]

#: evaluator name (configs and the CLI) -> class; an evaluator module registers its class with
#: ``@EVALUATORS.register("name")``. `space` is passed by the experiment to those that take it.
EVALUATORS: Registry[Evaluator] = Registry("evaluator", supplied=("space",))


@dataclass(frozen=True)
class Fidelity:
    """How far one evaluation trains: to `epochs` of a learning-rate schedule spanning `horizon`
    epochs, continuing from `state` (what an earlier evaluation of the same child returned), and
    never past `deadline` (a `time.time()` value), where it stops at the fidelity it reached.
    None means the evaluator's own setting (its epochs; no state; no deadline)."""

    epochs: int | None = None
    horizon: int | None = None
    state: bytes | None = None
    deadline: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """An evaluation at a fidelity: its metrics (with "epochs" trained and "fidelity" =
    epochs / horizon) and the state that continues it (None once it cannot continue)."""

    metrics: Metrics
    state: bytes | None = None


class EvaluationError(RuntimeError):
    """An evaluation failed in a way the search should record and move past (NaN loss...)."""


class Evaluator(ABC):
    """Stateless apart from its configuration, so it can be shipped to worker processes."""

    name = "evaluator"
    #: the metric a search rewards unless its objective names another.
    reward_metric = "val_accuracy"
    #: True where `evaluate` takes a `fidelity=Fidelity(...)` keyword and then returns an
    #: `Evaluation`: such an evaluator can run under a multi-fidelity scheduler and be stopped at
    #: a time budget's deadline.
    supports_fidelity = False

    @abstractmethod
    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics:
        """Metrics for `arch`; `seed` makes any randomness in the evaluation reproducible."""

    def config(self) -> dict[str, Any]:
        """JSON-able description, stored with a run so a resume can check it is unchanged."""
        return {"name": self.name}

    def prepare(self) -> None:
        """Check what every evaluation needs (e.g. the dataset) before a run starts, so a user's
        mistake there is one error up front rather than a failed trial per architecture."""
