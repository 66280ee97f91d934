"""A search's configuration as one frozen, JSON-able value, and how to build it into objects.

`SearchConfig` names every part of a search by registry name and options (space, strategy,
evaluator, objective), plus the budget and the loop's settings. It is what a run stores (and
what `resume` compares), what a config file holds, and what the CLI assembles from its flags.
`build_components(config)` looks the names up lazily in `nasforge.spaces.SPACES`,
`nasforge.strategies.create_strategy`, `nasforge.evaluators` and
`nasforge.evaluators.objectives`, so importing this module imports none of them.

Budget and runtime settings (`budget`, `workers`, `executor`, `max_outstanding`, `timeout`) are
not part of a run's identity: a run may be resumed with a larger budget or more workers. Every
other field must match on resume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from nasforge.errors import ConfigError

if TYPE_CHECKING:  # imported where used: a config is read before any of them is needed
    from nasforge.evaluators.base import ArchitectureEvaluator, EvaluateFn, Evaluator
    from nasforge.evaluators.objectives import Limits
    from nasforge.experiment.prescreen import PreScreen
    from nasforge.experiment.scheduler import Scheduler
    from nasforge.spaces.base import SearchSpace
    from nasforge.strategies.base import Strategy

#: Top-level config keys that may change between a run and its resume.
RUNTIME_KEYS = frozenset({"budget", "workers", "executor", "max_outstanding", "timeout", "progress"})


# -- freezing JSON values ----------------------------------------------------------------------------
def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(where, f"keys must be strings, got {k!r}")
            out[k] = _freeze(v, f"{where}.{k}")
        return MappingProxyType(out)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(where, f"must be a finite number, got {value}")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ConfigError(
        where, f"must be a JSON value (string, number, bool, null, list, object), got {type(value).__name__}"
    )


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _number(
    value: Any,
    where: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    allow_none: bool = True,
    exclusive: bool = False,
) -> Any:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(where, "is required")
    kind = "an integer" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not (isinstance(value, int) or float(value).is_integer()))
    ):
        raise ConfigError(where, f"must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(where, f"must be a finite number, got {value!r}")
    value = int(value) if integer else float(value)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        raise ConfigError(where, f"must be {bound}, got {value!r}")
    return value


# -- parts -------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=True)
class Component:
    """A registry name and its keyword options (frozen)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", f"must be a non-empty string, got {self.name!r}")
        if not isinstance(self.options, MappingProxyType):
            if not isinstance(self.options, Mapping):
                raise ConfigError(f"{self.name}.options", "must be an object of keyword options")
            object.__setattr__(self, "options", _freeze(self.options, f"{self.name}.options"))

    @classmethod
    def parse(cls, value: Any, where: str) -> Component:
        """A name string, or {"name": ..., "options": {...}}."""
        if isinstance(value, Component):
            return value
        if isinstance(value, str):
            if not value:
                raise ConfigError(where, "must be a non-empty name")
            return cls(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"name", "options"})
            if unknown:
                raise ConfigError(f"{where}.{unknown[0]}", "unknown key", ["name", "options"])
            name = value.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.name", f"must be a non-empty string, got {name!r}")
            options = value.get("options", {}) or {}
            if not isinstance(options, Mapping):
                raise ConfigError(f"{where}.options", "must be an object of keyword options")
            return cls(name, _freeze(options, f"{where}.options"))
        raise ConfigError(where, f"must be a name or an object with name and options, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": _thaw(self.options)}

    def kwargs(self) -> dict[str, Any]:
        return _thaw(self.options)


@dataclass(frozen=True)
class Budget:
    """When a search stops asking: any limit reached ends it (at least one must be set).

    `max_trials` counts every recorded trial (reused and rejected ones included); `max_seconds`
    is wall time over all sessions of the run; `max_cost` is the sum of the evaluations'
    ``metrics["cost_seconds"]`` (simulated training time of tabulated benchmarks).
    """

    max_trials: int | None = None
    max_seconds: float | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_trials", _number(self.max_trials, "budget.max_trials", integer=True, minimum=1))
        object.__setattr__(
            self, "max_seconds", _number(self.max_seconds, "budget.max_seconds", minimum=0, exclusive=True)
        )
        object.__setattr__(self, "max_cost", _number(self.max_cost, "budget.max_cost", minimum=0, exclusive=True))
        if self.max_trials is None and self.max_seconds is None and self.max_cost is None:
            raise ConfigError("budget", "set at least one limit", ["max_trials", "max_seconds", "max_cost"])

    @classmethod
    def parse(cls, value: Any) -> Budget:
        if isinstance(value, Budget):
            return value
        if isinstance(value, bool):
            raise ConfigError("budget", f"must be a number of trials or an object, got {value!r}")
        if isinstance(value, int):
            return cls(max_trials=value)
        if isinstance(value, Mapping):
            allowed = [f.name for f in fields(cls)]
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise ConfigError(f"budget.{unknown[0]}", "unknown key", allowed)
            return cls(**value)
        raise ConfigError("budget", f"must be a number of trials or an object, got {value!r}")

    def exhausted(self, trials: int, seconds: float, cost: float) -> str | None:
        """Why the budget is spent, or None."""
        if self.max_trials is not None and trials >= self.max_trials:
            return f"trial budget reached ({self.max_trials} trials)"
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return f"time budget reached ({self.max_seconds:g} s)"
        if self.max_cost is not None and cost >= self.max_cost:
            return f"cost budget reached ({self.max_cost:g} s of evaluation cost)"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"max_trials": self.max_trials, "max_seconds": self.max_seconds, "max_cost": self.max_cost}


DUPLICATE_MODES = ("reask", "reuse", "evaluate")
#: the trial budget of a search that sets none (`nasforge search` without --trials/--time/--cost):
#: what docs/search.md measured the default search with
DEFAULT_TRIALS = 48


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search, by registry names and options."""

    space: Component
    strategy: Component
    evaluator: Component
    objective: Component = field(default_factory=lambda: Component("accuracy"))
    limits: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    budget: Budget = field(default_factory=lambda: Budget(max_trials=DEFAULT_TRIALS))
    seed: int = 0
    #: "reask" | "reuse" | "evaluate": see `nasforge.experiment.experiment`
    duplicates: str = "reask"
    reask_limit: int = 100
    retries: int = 0
    workers: int = 1
    executor: str = "auto"
    timeout: float | None = None
    max_outstanding: int | None = None
    #: {"evaluator": name or {name, options}, "candidates": N}: see `nasforge.experiment.prescreen`.
    prescreen: Mapping[str, Any] | None = None
    #: a multi-fidelity scheduler, name or {name, options}: see `nasforge.experiment.scheduler`.
    scheduler: Component | None = None

    def __post_init__(self) -> None:
        for name in ("space", "strategy", "evaluator", "objective"):
            object.__setattr__(self, name, Component.parse(getattr(self, name), name))
        if not isinstance(self.limits, Mapping):
            raise ConfigError("limits", "must be an object of limit options (e.g. max_params)")
        if not isinstance(self.limits, MappingProxyType):
            object.__setattr__(self, "limits", _freeze(self.limits, "limits"))
        object.__setattr__(self, "budget", Budget.parse(self.budget))
        object.__setattr__(self, "seed", _number(self.seed, "seed", integer=True, minimum=0, allow_none=False))
        if self.duplicates not in DUPLICATE_MODES:
            raise ConfigError("duplicates", f"unknown mode {self.duplicates!r}", list(DUPLICATE_MODES))
        object.__setattr__(
            self, "reask_limit", _number(self.reask_limit, "reask_limit", integer=True, minimum=0, allow_none=False)
        )
        object.__setattr__(self, "retries", _number(self.retries, "retries", integer=True, minimum=0, allow_none=False))
        object.__setattr__(self, "workers", _number(self.workers, "workers", integer=True, minimum=1, allow_none=False))
        from nasforge.experiment.executors import EXECUTORS

        EXECUTORS.entry(self.executor)  # an unknown name fails here, before any work
        object.__setattr__(self, "timeout", _number(self.timeout, "timeout", minimum=0, exclusive=True))
        object.__setattr__(
            self, "max_outstanding", _number(self.max_outstanding, "max_outstanding", integer=True, minimum=1)
        )
        if self.prescreen is not None:
            object.__setattr__(self, "prescreen", _parse_prescreen(self.prescreen))
        if self.scheduler is not None:
            object.__setattr__(self, "scheduler", Component.parse(self.scheduler, "scheduler"))
            from nasforge.experiment.scheduler import SCHEDULERS

            SCHEDULERS.entry(self.scheduler.name)
            if self.duplicates != "reask":
                raise ConfigError("duplicates", f"must be 'reask' under a scheduler, got {self.duplicates!r}")

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "strategy": self.strategy.to_dict(),
            "evaluator": self.evaluator.to_dict(),
            "objective": self.objective.to_dict(),
            "limits": _thaw(self.limits),
            "budget": self.budget.to_dict(),
            "seed": self.seed,
            "duplicates": self.duplicates,
            "reask_limit": self.reask_limit,
            "retries": self.retries,
            "workers": self.workers,
            "executor": self.executor,
            "timeout": self.timeout,
            "max_outstanding": self.max_outstanding,
            **(
                {
                    "prescreen": {
                        "evaluator": self.prescreen["evaluator"].to_dict(),
                        "candidates": self.prescreen["candidates"],
                    }
                }
                if self.prescreen
                else {}
            ),
            **({"scheduler": self.scheduler.to_dict()} if self.scheduler is not None else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        if not isinstance(data, Mapping):
            raise ConfigError("config", f"must be an object, got {type(data).__name__}")
        data = dict(data)
        if "dedup" in data and "duplicates" not in data:  # runs made before the duplicate filter
            dedup = data.pop("dedup")
            if not isinstance(dedup, bool):
                raise ConfigError("dedup", f"must be true or false (or use duplicates), got {dedup!r}")
            data["duplicates"] = "reuse" if dedup else "evaluate"
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(unknown[0], "unknown config key", allowed)
        missing = [k for k in ("space", "strategy", "evaluator") if k not in data]
        if missing:
            raise ConfigError(missing[0], "is required")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> SearchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> SearchConfig:
        return replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The part of the config a resume must match."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}

    def build(self) -> Components:
        return build_components(self)


# -- comparing configs -------------------------------------------------------------------------------
def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: frozenset[str] | set[str] = RUNTIME_KEYS
) -> list[str]:
    """Dotted keys whose values differ (top-level keys in `ignore` are skipped), sorted."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten({k: v for k, v in old.items() if k not in ignore}, "", a)
    _flatten({k: v for k, v in new.items() if k not in ignore}, "", b)
    missing = object()
    return sorted(k for k in set(a) | set(b) if a.get(k, missing) != b.get(k, missing))


def describe_diff(old: Mapping[str, Any], new: Mapping[str, Any], keys: list[str], limit: int = 6) -> str:
    """'seed (0 -> 1), strategy.options.population (100 -> 50)' on one line."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(dict(old), "", a)
    _flatten(dict(new), "", b)

    def show(d: dict[str, Any], k: str) -> str:
        if k not in d:
            return "unset"
        text = json.dumps(d[k], sort_keys=True)
        return text if len(text) <= 40 else text[:37] + "..."

    parts = [f"{k} ({show(a, k)} -> {show(b, k)})" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts)


# -- building ----------------------------------------------------------------------------------------
@dataclass
class Components:
    """The objects a `SearchConfig` describes, ready for an `Experiment`."""

    config: SearchConfig
    space: SearchSpace
    strategy: Strategy
    evaluator: ArchitectureEvaluator | EvaluateFn
    objective: Callable[[Mapping[str, Any]], float]
    limit_check: Callable[[Any], str | None] | None
    prescreen: PreScreen | None = None
    scheduler: Scheduler | None = None


class LimitCheck:
    """Pre-evaluation limits: static metrics of an architecture checked by a `Limits` object.

    Static metrics come from the evaluator's `static_metrics(space, arch)` when it has one (a
    table knows params/FLOPs), else from building the network (`space.build(arch, **network)`)
    and counting parameters and MACs at `resolution`.
    """

    def __init__(
        self,
        limits: Limits,
        space: SearchSpace,
        evaluator: ArchitectureEvaluator | EvaluateFn,
        network: Mapping[str, Any] | None = None,
        resolution: int | None = None,
    ):
        self.limits = limits
        self.space = space
        self.evaluator = evaluator
        self.network = dict(network or getattr(evaluator, "network", None) or {})
        self.resolution = int(resolution or getattr(evaluator, "resolution", None) or 32)

    def static_metrics(self, arch: Any) -> dict[str, float]:
        static = getattr(self.evaluator, "static_metrics", None)
        if callable(static) and self.limits.max_latency_ms is None:
            return dict(static(self.space, arch))
        return self.limits.static_metrics(self.space, arch, self.network, self.resolution)

    def __call__(self, arch: Any) -> str | None:
        return self.limits.check(self.static_metrics(arch))


def build_space(component: Component) -> SearchSpace:
    from nasforge.spaces import SPACES

    try:
        return SPACES.create(component.name, **component.kwargs())
    except TypeError as exc:  # an option of the wrong type
        raise ConfigError("space.options", str(exc)) from None


def build_strategy(component: Component, space: SearchSpace, seed: int) -> Strategy:
    from nasforge.strategies import create_strategy

    try:
        return create_strategy(component.name, space, seed, **component.kwargs())
    except TypeError as exc:
        raise ConfigError("strategy.options", str(exc)) from None


def build_evaluator(component: Component, space: SearchSpace) -> Evaluator:
    from nasforge.evaluators import create_evaluator

    try:
        return create_evaluator(component.name, space, **component.kwargs())
    except TypeError as exc:  # an option of the wrong type
        raise ConfigError("evaluator.options", str(exc)) from None


def build_objective(component: Component, evaluator: object = None) -> Callable[[Mapping[str, Any]], float]:
    """The objective; "accuracy" without a metric rewards the evaluator's own reward metric
    (a zero-cost evaluator's "score", a training one's "val_accuracy")."""
    from nasforge.evaluators.objectives import create_objective

    metric = getattr(evaluator, "reward_metric", "val_accuracy")
    if component.name == "accuracy" and "metric" not in component.kwargs() and metric != "val_accuracy":
        return objective_function(create_objective("accuracy", metric=metric))
    return objective_function(create_objective(component.name, **component.kwargs()))


def objective_function(objective: Any) -> Callable[[Mapping[str, Any]], float]:
    """A callable metrics -> reward from an objective (a callable, or an object with `reward`)."""
    if objective is None:
        from nasforge.evaluators.objectives import Accuracy

        objective = Accuracy()
    if callable(objective):
        return objective
    reward = getattr(objective, "reward", None)
    if callable(reward):
        return reward
    raise ConfigError("objective", f"{objective!r} is neither callable nor has a reward(metrics)")


def build_limits(limits: Mapping[str, Any]) -> Callable[[Any, Any], LimitCheck] | None:
    """Checks the limits' options now (before an evaluator loads any data, so a bad limit is the
    error a user sees) and returns what builds the check once the space and evaluator exist."""
    if not limits:
        return None
    options = _thaw(limits)
    network = options.pop("network", None)
    if network is not None and not isinstance(network, Mapping):
        raise ConfigError("limits.network", f"must be an object of network options, got {network!r}")
    resolution = _number(options.pop("resolution", None), "limits.resolution", integer=True, minimum=1)
    from nasforge.evaluators.objectives import create_limits

    limit_obj = create_limits(**options)
    return lambda space, evaluator: LimitCheck(limit_obj, space, evaluator, network, resolution)


def build_components(config: SearchConfig) -> Components:
    """Look the config's names up in the registries and build every part of the search."""
    space = build_space(config.space)
    strategy = build_strategy(config.strategy, space, config.seed)
    limits = build_limits(config.limits)
    evaluator = build_evaluator(config.evaluator, space)
    objective = build_objective(config.objective, evaluator)
    limit_check = None if limits is None else limits(space, evaluator)
    prescreen = None
    if config.prescreen:
        from nasforge.experiment.prescreen import PreScreen

        prescreen = PreScreen(
            build_evaluator(config.prescreen["evaluator"], space), config.prescreen["candidates"], seed=config.seed
        )
    scheduler = None
    if config.scheduler is not None:
        from nasforge.experiment.scheduler import create_scheduler

        scheduler = create_scheduler(config.scheduler.name, **config.scheduler.kwargs())
    return Components(config, space, strategy, evaluator, objective, limit_check, prescreen, scheduler)


def _parse_prescreen(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError("prescreen", f"must be an object with evaluator and candidates, got {value!r}")
    unknown = sorted(set(value) - {"evaluator", "candidates"})
    if unknown:
        raise ConfigError(f"prescreen.{unknown[0]}", "unknown key", ["evaluator", "candidates"])
    if "evaluator" not in value:
        raise ConfigError("prescreen.evaluator", "is required (e.g. naswot or zc_ensemble)")
    candidates = value.get("candidates", 10)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ConfigError("prescreen.candidates", f"must be a positive integer, got {candidates!r}")
    return {"evaluator": Component.parse(value["evaluator"], "prescreen.evaluator"), "candidates": candidates}


__all__ = [
    "Budget",
    "Component",
    "Components",
    "LimitCheck",
    "RUNTIME_KEYS",
    "SearchConfig",
    "build_components",
    "config_diff",
    "describe_diff",
    "objective_function",
]
