"""Objectives: metrics -> one reward, and hard limits checked before an evaluation.

* `Accuracy(metric="val_accuracy")`: the reward is one metric.
* `MnasNetObjective(target, weight=-0.07, weight_over=None, metric="val_accuracy", cost="macs")`:
  MnasNet's ACC x (COST / T)^w (Tan et al. 2019, Eq. 2), with w = `weight` (the paper's alpha)
  when COST <= T and w = `weight_over` (beta, default: the same as `weight`) otherwise.
  alpha = beta = -0.07 is the paper's soft constraint; `MnasNetObjective.hard(T)` is its hard
  one, alpha = 0 and beta = -1. The paper's cost is measured latency; here any metric can be
  the cost (MACs by default, "latency_ms" for latency).
* `Limits(max_params=None, max_macs=None, max_latency_ms=None)`: `check(metrics)` names the first
  limit an architecture breaks, or returns None. An experiment calls it *before* evaluating, on
  static metrics: `Limits.static_metrics(space, arch, ...)` / `model_costs(...)` compute them
  from the built network (parameters and MACs on PyTorch's meta device, so nothing is allocated
  or computed; latency only when a latency limit is set).

An objective never reads test metrics: a metric name with a word starting with "test" (e.g.
"test_accuracy", "c10_test_acc_200ep") is refused when the objective is made. Every objective is
JSON-configurable: `create_objective(**objective.config())` rebuilds it.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal, overload

from nasforge.errors import ConfigError
from nasforge.registry import Registry
from nasforge.spaces.base import SearchSpace

Metrics = Mapping[str, Any]


def is_test_metric(name: str) -> bool:
    """True for names such as "test_accuracy" or "c10_test_acc_200ep" (a word starting "test")."""
    return any(word.startswith("test") for word in re.split(r"[^a-z0-9]+", str(name).lower()))


def _metric_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"must be a metric name, got {value!r}")
    if is_test_metric(value):
        raise ConfigError(
            field,
            f"{value!r} is a test metric; test metrics are only reported, never "
            f"searched on (use a validation metric such as 'val_accuracy')",
        )
    return value


@overload
def _number(field: str, value: Any, positive: bool = False, allow_none: Literal[False] = False) -> float: ...
@overload
def _number(field: str, value: Any, positive: bool = False, *, allow_none: bool) -> float | None: ...
def _number(field: str, value: Any, positive: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(field, f"must be greater than 0, got {value!r}")
    return float(value)


def read_metric(metrics: Metrics, name: str, field: str) -> float:
    """metrics[name] as a float; a missing metric is a configuration mistake (`ConfigError`)."""
    if name not in metrics or metrics[name] is None:
        raise ConfigError(field, f"the evaluator returned no {name!r} metric", sorted(metrics) or "none")
    value = metrics[name]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} is not a number: {value!r}") from None


class Objective(ABC):
    """metrics -> reward. Callable, so anything that takes a reward function takes an objective."""

    name = "objective"

    @abstractmethod
    def reward(self, metrics: Metrics) -> float:
        """The reward for one evaluation's metrics."""

    @abstractmethod
    def requires(self) -> tuple[str, ...]:
        """The metrics `reward` reads."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """{"name": ..., **options}: `create_objective(**config())` makes an equal objective."""

    def __call__(self, metrics: Metrics) -> float:
        return self.reward(metrics)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config() == self.config()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.config().items())))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({options})"


#: objective name (configs and the CLI) -> class; "metric" is another name for "accuracy"
#: (either rewards one metric, by default val_accuracy).
OBJECTIVES: Registry[Objective] = Registry("objective")


@OBJECTIVES.register("metric")
@OBJECTIVES.register("accuracy")
class Accuracy(Objective):
    """The reward is one (validation) metric, unchanged."""

    name = "accuracy"

    def __init__(self, metric: str = "val_accuracy"):
        self.metric = _metric_name("objective.metric", metric)

    def reward(self, metrics: Metrics) -> float:
        return read_metric(metrics, self.metric, "objective.metric")

    def requires(self) -> tuple[str, ...]:
        return (self.metric,)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric}


@OBJECTIVES.register("mnasnet")
class MnasNetObjective(Objective):
    """ACC x (COST / target)^w, w = `weight` if COST <= target else `weight_over`."""

    name = "mnasnet"

    def __init__(
        self,
        target: float,
        weight: float = -0.07,
        weight_over: float | None = None,
        metric: str = "val_accuracy",
        cost: str = "macs",
    ):
        self.target = _number("objective.target", target, positive=True)
        self.weight = _number("objective.weight", weight)
        self.weight_over = _number("objective.weight_over", weight_over, allow_none=True)
        self.metric = _metric_name("objective.metric", metric)
        self.cost = _metric_name("objective.cost", cost)

    @classmethod
    def hard(cls, target: float, metric: str = "val_accuracy", cost: str = "macs") -> MnasNetObjective:
        """MnasNet's hard constraint: alpha = 0 (no bonus under the target), beta = -1."""
        return cls(target, weight=0.0, weight_over=-1.0, metric=metric, cost=cost)

    def exponent(self, cost: float) -> float:
        if cost <= self.target or self.weight_over is None:
            return self.weight
        return self.weight_over

    def reward(self, metrics: Metrics) -> float:
        acc = read_metric(metrics, self.metric, "objective.metric")
        cost = read_metric(metrics, self.cost, "objective.cost")
        if not cost > 0:
            raise ValueError(f"metric {self.cost!r} must be positive for the MnasNet reward, got {cost}")
        return acc * (cost / self.target) ** self.exponent(cost)

    def requires(self) -> tuple[str, ...]:
        return (self.metric, self.cost)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "weight": self.weight,
            "weight_over": self.weight_over,
            "metric": self.metric,
            "cost": self.cost,
        }


#: limit option -> the metric it bounds.
LIMIT_METRICS: dict[str, str] = {"max_params": "params", "max_macs": "macs", "max_latency_ms": "latency_ms"}


class Limits:
    """Hard limits on static costs; `check(metrics)` says which one an architecture breaks."""

    name = "limits"

    def __init__(
        self, max_params: float | None = None, max_macs: float | None = None, max_latency_ms: float | None = None
    ):
        self.max_params = _number("limits.max_params", max_params, positive=True, allow_none=True)
        self.max_macs = _number("limits.max_macs", max_macs, positive=True, allow_none=True)
        self.max_latency_ms = _number("limits.max_latency_ms", max_latency_ms, positive=True, allow_none=True)

    def active(self) -> dict[str, float]:
        """{option: bound} of the limits that are set."""
        return {k: getattr(self, k) for k in LIMIT_METRICS if getattr(self, k) is not None}

    def requires(self) -> tuple[str, ...]:
        return tuple(LIMIT_METRICS[k] for k in self.active())

    def check(self, metrics: Metrics) -> str | None:
        """None if every set limit holds, else one line naming the first limit broken."""
        for option, bound in self.active().items():
            name = LIMIT_METRICS[option]
            value = read_metric(metrics, name, f"limits.{option}")
            if value > bound:
                return f"{name} {_fmt(value)} > {option} {_fmt(bound)}"
        return None

    def __call__(self, metrics: Metrics) -> str | None:
        return self.check(metrics)

    def __bool__(self) -> bool:
        return bool(self.active())

    def static_metrics(
        self,
        space: SearchSpace,
        arch: Any,
        network: Mapping[str, Any] | None = None,
        resolution: int = 32,
        in_channels: int | None = None,
    ) -> dict[str, float]:
        """What `check` needs, from the built network (latency only if it is limited)."""
        return model_costs(space, arch, network, resolution, in_channels, latency=self.max_latency_ms is not None)

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in LIMIT_METRICS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limits) and other.config() == self.config()

    def __hash__(self) -> int:
        return hash(tuple(self.config().items()))

    def __repr__(self) -> str:
        return "Limits(" + ", ".join(f"{k}={v:g}" for k, v in self.active().items()) + ")"


def _fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"


def model_costs(
    space: SearchSpace,
    arch: Any,
    network: Mapping[str, Any] | None = None,
    resolution: int = 32,
    in_channels: int | None = None,
    latency: bool = False,
) -> dict[str, float]:
    """Parameters and MACs (and, if asked, batch-1 CPU latency in ms) of `space.build(arch, **network)`.

    Parameters and MACs are counted on PyTorch's meta device (shapes only: no memory, no compute,
    no draw from the global RNG); a network that cannot be built there is built on the CPU under
    a forked RNG. Latency needs real weights and always builds on the CPU.
    """
    import torch

    from nasforge.profile import count_macs, count_params, measure_latency

    config = dict(network or {})
    if in_channels is not None:
        config.setdefault("in_channels", in_channels)
    channels = config.get("in_channels")
    out: dict[str, float] = {}
    try:
        with torch.device("meta"):
            model = space.build(arch, **config)
        out["params"] = float(count_params(model))
        out["macs"] = float(count_macs(model, resolution, channels))
    except (NotImplementedError, RuntimeError):
        model = None
    if model is None or latency:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = space.build(arch, **config)
        if "params" not in out:
            out["params"] = float(count_params(model))
            out["macs"] = float(count_macs(model, resolution, channels))
        if latency:
            out["latency_ms"] = float(measure_latency(model, resolution, in_channels=channels))
    return out


def create_objective(name: str, **options: Any) -> Objective:
    """An objective by name; unknown names and options, or missing ones, raise a one-line `ConfigError`.

    For "mnasnet", ``hard=True`` selects the hard constraint (weight 0, weight_over -1).
    """
    cls = OBJECTIVES.entry(name).factory
    if cls is MnasNetObjective and options.pop("hard", False):
        if "weight" in options or "weight_over" in options:
            raise ConfigError("objective.hard", "give either hard=true or weight/weight_over, not both")
        options.update(weight=0.0, weight_over=-1.0)
    OBJECTIVES.check_options(name, options)
    return cls(**options)


def create_limits(**options: Any) -> Limits:
    """`Limits` from config options; unknown options raise a one-line `ConfigError`."""
    unknown = sorted(set(options) - set(LIMIT_METRICS))
    if unknown:
        raise ConfigError(f"limits.{unknown[0]}", "unknown limit", list(LIMIT_METRICS))
    return Limits(**options)


__all__ = [
    "Accuracy",
    "LIMIT_METRICS",
    "Limits",
    "MnasNetObjective",
    "OBJECTIVES",
    "Objective",
    "create_limits",
    "create_objective",
    "is_test_metric",
    "model_costs",
    "read_metric",
]
