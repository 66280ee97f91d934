"""Multi-fidelity schedulers: most of the training goes to the children that look best early.

Successive halving (Jamieson & Talwalkar, "Non-stochastic best arm identification and
hyperparameter optimization", AISTATS 2016) trains n children for r epochs, keeps the best 1/eta,
trains those eta times longer, and so on up to R epochs. Hyperband (Li et al., JMLR 2018) cycles
through brackets that trade the number of children against their first rung. The asynchronous
rule (ASHA, Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020, in the
form Optuna's ``SuccessiveHalvingPruner`` uses) decides for each child the moment its result at a
rung arrives, so no worker waits for a rung to fill; the median rule (Golovin et al., "Google
Vizier", KDD 2017) stops a child whose result is below the median of earlier children at the same
point.

Fidelity is cumulative epochs of one training run whose learning-rate schedule spans
``max_epochs``: a promoted child continues from its saved state, so 1 epoch and then 3 more give
exactly what 4 straight epochs give. A scheduler sees trial ids and rewards only; the experiment
loop (`nasforge.experiment.experiment`) runs the jobs, keeps the children's states and tells the
strategy about a child once, when the scheduler stops it or it reaches ``max_epochs``.

A scheduler's whole state is plain JSON (`state_dict`), saved in the strategy's checkpoint in the
same transaction as each trial and rung result, so a resumed run continues the same schedule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError
from nasforge.registry import Registry


@dataclass(frozen=True)
class Job:
    """Train `trial` (None: a new child) up to rung `rung`."""

    trial: int | None
    rung: int


@dataclass(frozen=True)
class Decision:
    """What became of a child after a result: promoted to the next rung, or stopped for good."""

    trial: int
    action: str  # "promote" | "stop"


def rung_epochs(min_epochs: int, max_epochs: int, eta: int) -> tuple[int, ...]:
    """Epochs of each rung, geometric with ratio eta, ending at exactly max_epochs.

    1, 12, 3 -> (1, 4, 12) (Hyperband's r_i = R * eta^-(s_max - i), rounded).
    """
    s_max = int(math.floor(math.log(max_epochs / min_epochs, eta) + 1e-9))
    epochs: list[int] = []
    for i in range(s_max + 1):
        e = max(1, int(round(max_epochs * eta ** (i - s_max))))
        if not epochs or e > epochs[-1]:
            epochs.append(e)
    if epochs[-1] != max_epochs:
        epochs.append(max_epochs)
    return tuple(epochs)


def _positive_int(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"scheduler.{field}", f"must be an integer >= {minimum}, got {value!r}")
    return value


class Scheduler:
    """What a scheduler offers the experiment loop (see the module docstring)."""

    name = "scheduler"

    def __init__(self, min_epochs: int = 1, max_epochs: int = 12, eta: int = 3):
        self.min_epochs = _positive_int(min_epochs, "min_epochs")
        self.max_epochs = _positive_int(max_epochs, "max_epochs")
        self.eta = _positive_int(eta, "eta", 2)
        if self.min_epochs > self.max_epochs:
            raise ConfigError(
                "scheduler.min_epochs", f"must be at most max_epochs ({self.max_epochs}), got {self.min_epochs}"
            )
        self.rungs = self._rungs()
        self._promotions: list[int] = []  # trials promoted and not yet handed out, in order
        self._rung_of: dict[int, int] = {}  # trial -> rung it is being trained to / last reached
        self._running: set[int] = set()  # trials whose job is handed out and not yet reported

    def _rungs(self) -> tuple[int, ...]:
        return rung_epochs(self.min_epochs, self.max_epochs, self.eta)

    def options(self) -> dict[str, Any]:
        return {"min_epochs": self.min_epochs, "max_epochs": self.max_epochs, "eta": self.eta}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options()}

    # -- the loop's calls ------------------------------------------------------------------------
    def next_job(self, new_allowed: bool) -> Job | None:
        """The next job to start: a promotion first, else a new child (when `new_allowed`), else
        None (wait for results, or nothing is left)."""
        if self._promotions:
            trial = self._promotions.pop(0)
            self._rung_of[trial] += 1
            self._running.add(trial)
            return Job(trial, self._rung_of[trial])
        return self._new_job() if new_allowed else None

    def started(self, trial: int, job: Job) -> None:
        """A new child's job got trial id `trial`."""
        self._rung_of[trial] = job.rung
        self._running.add(trial)

    def cancel(self, job: Job) -> None:
        """A new-child job produced no trial (nothing to propose, or the child was rejected)."""

    def report(self, trial: int, value: float | None) -> list[Decision]:
        """The result of `trial` at its current rung (None: failed or cut short, so it stops)."""
        raise NotImplementedError

    def decline(self, trial: int) -> list[Decision]:
        """A handed-out promotion was not started (it cannot finish in the time left): the child
        stops at the rung it reached."""
        self._rung_of[trial] -= 1
        self._forget(trial)
        return [Decision(trial, "stop")]

    def close(self) -> list[Decision]:
        """No new children will come: decide what waited for them."""
        return []

    def waiting(self) -> list[int]:
        """Children with a result that are neither running nor stopped (waiting for a rung to fill
        or for their promotion to be handed out)."""
        return sorted(self._promotions)

    def rung_of(self, trial: int) -> int:
        return self._rung_of[trial]

    def running(self) -> list[int]:
        """Children whose job was handed out and has no result yet (to re-run after a resume)."""
        return sorted(self._running)

    def epochs(self, rung: int) -> int:
        return self.rungs[rung]

    def _new_job(self) -> Job | None:
        return Job(None, 0)

    def _forget(self, trial: int) -> None:
        self._rung_of.pop(trial, None)
        self._running.discard(trial)
        if trial in self._promotions:
            self._promotions.remove(trial)

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "promotions": list(self._promotions),
            "running": sorted(self._running),
            "rung_of": [[t, r] for t, r in sorted(self._rung_of.items())],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._promotions = [int(t) for t in state["promotions"]]
        self._rung_of = {int(t): int(r) for t, r in state["rung_of"]}
        self._running = {int(t) for t in state["running"]}


def _ranked(results: Iterable[tuple[int, float]]) -> list[int]:
    """Trials best first; ties go to the earlier trial."""
    return [t for t, _ in sorted(results, key=lambda item: (-item[1], item[0]))]


class Hyperband(Scheduler):
    """Synchronous brackets of successive halving; `brackets="sh"` runs only the most aggressive
    bracket (plain successive halving, n = eta^s_max children from `min_epochs` unless `n` says
    otherwise), `"hyperband"` cycles through all of them.

    A rung is decided when every child of it has a result: the best 1/eta go on, the others stop.
    With several workers a new bracket opens while an older one waits for its results.
    """

    name = "hyperband"

    def __init__(
        self, min_epochs: int = 1, max_epochs: int = 12, eta: int = 3, n: int | None = None, brackets: str = "hyperband"
    ):
        super().__init__(min_epochs, max_epochs, eta)
        if brackets not in ("hyperband", "sh"):
            raise ConfigError("scheduler.brackets", f"unknown value {brackets!r}", ["hyperband", "sh"])
        self.brackets = brackets
        self.n = None if n is None else _positive_int(n, "n")
        self.s_max = len(self.rungs) - 1
        self._open: list[dict[str, Any]] = []  # brackets with undecided children, oldest first
        self._count = 0  # brackets opened so far
        self._closed = False

    def options(self) -> dict[str, Any]:
        return {**super().options(), "n": self.n, "brackets": self.brackets}

    def bracket_plan(self, index: int) -> tuple[int, list[int]]:
        """(first rung, children per rung) of the `index`-th bracket opened."""
        s = self.s_max if self.brackets == "sh" else self.s_max - index % (self.s_max + 1)
        if self.n is not None and self.brackets == "sh":
            n = self.n
        else:
            n = int(math.ceil((self.s_max + 1) / (s + 1) * self.eta**s))
        sizes = [max(1, n // self.eta**k) for k in range(s + 1)]
        return self.s_max - s, sizes

    def _new_job(self) -> Job | None:
        if self._closed:
            return None
        current = self._open[-1] if self._open else None
        if current is None or current["asked"] >= current["sizes"][0]:
            first, sizes = self.bracket_plan(self._count)
            current = {
                "first": first,
                "sizes": sizes,
                "asked": 0,
                "members": [],
                "entered": [sizes[0]] + [0] * (len(sizes) - 1),
                "decided": 0,
                "results": [[] for _ in sizes],
            }
            self._open.append(current)
            self._count += 1
        current["asked"] += 1
        return Job(None, current["first"])

    def _bracket_of(self, trial: int) -> dict[str, Any]:
        return next(b for b in self._open if trial in b["members"])

    def started(self, trial: int, job: Job) -> None:
        super().started(trial, job)
        self._open[-1]["members"].append(trial)

    def cancel(self, job: Job) -> None:
        bracket = self._open[-1]
        bracket["asked"] -= 1
        if bracket["asked"] == 0 and not bracket["members"]:
            self._open.pop()
            self._count -= 1

    def report(self, trial: int, value: float | None) -> list[Decision]:
        self._running.discard(trial)
        bracket = self._bracket_of(trial)
        level = self._rung_of[trial] - bracket["first"]
        bracket["results"][level].append([trial, value])
        decisions = []
        if value is None or level == len(bracket["sizes"]) - 1:  # failed, cut short or at the top
            self._forget(trial)
            decisions.append(Decision(trial, "stop"))
        return decisions + self._decide(bracket)

    def decline(self, trial: int) -> list[Decision]:
        bracket = self._bracket_of(trial)
        level = self._rung_of[trial] - bracket["first"]
        bracket["results"][level].append([trial, None])  # it cannot take its seat at this rung
        return super().decline(trial) + self._decide(bracket)

    def close(self) -> list[Decision]:
        self._closed = True
        decisions: list[Decision] = []
        for bracket in list(self._open):
            if bracket["asked"] < bracket["entered"][0]:  # a bracket cut short keeps 1/eta per rung
                bracket["sizes"] = [max(1, bracket["asked"] // self.eta**k) for k in range(len(bracket["sizes"]))]
                bracket["entered"][0] = bracket["asked"]
            decisions += self._decide(bracket)
        return decisions

    def _decide(self, bracket: dict[str, Any]) -> list[Decision]:
        """Decide every rung of the bracket whose children all have a result."""
        decisions: list[Decision] = []
        top = len(bracket["sizes"]) - 1
        while bracket["decided"] < top:
            level = bracket["decided"]
            results = bracket["results"][level]
            if len(results) < bracket["entered"][level]:
                break
            ok = [(t, v) for t, v in results if v is not None]
            promoted = set(_ranked(ok)[: min(bracket["sizes"][level + 1], len(ok))])
            bracket["entered"][level + 1] = len(promoted)
            bracket["decided"] += 1
            for t, v in sorted(results):
                if v is None:
                    continue  # stopped when it was reported
                if t in promoted:
                    self._promotions.append(t)
                    decisions.append(Decision(t, "promote"))
                else:
                    decisions.append(Decision(t, "stop"))
                    self._forget(t)
        finished = not any(t in self._rung_of for t in bracket["members"])
        if finished and bracket["asked"] == bracket["entered"][0] == len(bracket["members"]):
            self._open.remove(bracket)
        return decisions

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "open": self._open, "count": self._count, "closed": self._closed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._open = [dict(b) for b in state["open"]]
        self._count = int(state["count"])
        self._closed = bool(state["closed"])


class Asynchronous(Scheduler):
    """Decides for each child as its result at a rung arrives, against the results already there.

    ``rule="asha"``: promoted when among the best ``max(1, k // eta)`` of the k results at the
    rung so far (itself included). ``rule="median"``: promoted unless below the median of the
    earlier results at the rung (after ``min_results`` of them); its rungs are every
    ``min_epochs`` epochs rather than a geometric ladder.
    """

    name = "asha"

    def __init__(
        self, min_epochs: int = 1, max_epochs: int = 12, eta: int = 3, rule: str = "asha", min_results: int = 3
    ):
        if rule not in ("asha", "median"):
            raise ConfigError("scheduler.rule", f"unknown rule {rule!r}", ["asha", "median"])
        self.rule = rule
        self.min_results = _positive_int(min_results, "min_results")
        super().__init__(min_epochs, max_epochs, eta)
        self._results: list[list[float]] = [[] for _ in self.rungs]

    def _rungs(self) -> tuple[int, ...]:
        if self.rule == "median":
            steps = list(range(self.min_epochs, self.max_epochs, self.min_epochs))
            return tuple(steps + [self.max_epochs])
        return super()._rungs()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "rule": self.rule, "min_results": self.min_results}

    def report(self, trial: int, value: float | None) -> list[Decision]:
        self._running.discard(trial)
        rung = self._rung_of[trial]
        if value is None or rung == len(self.rungs) - 1:
            if value is not None:
                self._results[rung].append(value)
            self._forget(trial)
            return [Decision(trial, "stop")]
        earlier = list(self._results[rung])
        self._results[rung].append(value)
        if self.rule == "asha":
            keep = max(1, len(self._results[rung]) // self.eta)
            better = sum(v > value for v in earlier)
            promote = better < keep
        else:
            promote = len(earlier) < self.min_results or value >= float(_median(earlier))
        if promote:
            self._promotions.append(trial)
            return [Decision(trial, "promote")]
        self._forget(trial)
        return [Decision(trial, "stop")]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "results": self._results}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._results = [list(map(float, r)) for r in state["results"]]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


#: scheduler name (configs, --scheduler) -> factory.
SCHEDULERS: Registry[Scheduler] = Registry("scheduler")
SCHEDULERS.register(
    "sh",
    functools.partial(Hyperband, brackets="sh"),
    description=("successive halving: n children from min_epochs, the best 1/eta go on, up to max_epochs"),
)
SCHEDULERS.register(
    "hyperband",
    functools.partial(Hyperband, brackets="hyperband"),
    description=("Hyperband: cycles through successive-halving brackets of every starting rung"),
)
SCHEDULERS.register(
    "asha",
    functools.partial(Asynchronous, rule="asha"),
    description=("asynchronous successive halving: each result is judged when it arrives"),
)
SCHEDULERS.register(
    "median",
    functools.partial(Asynchronous, rule="median"),
    description=("median stopping: a child below the median of earlier ones at the same epoch stops"),
)


def create_scheduler(name: str, **options: Any) -> Scheduler:
    scheduler = SCHEDULERS.create(name, **options)
    scheduler.name = name
    return scheduler


__all__ = ["SCHEDULERS", "Asynchronous", "Decision", "Hyperband", "Job", "Scheduler", "create_scheduler", "rung_epochs"]
