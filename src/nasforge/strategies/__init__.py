"""Search strategies behind one ask/tell interface."""

from __future__ import annotations

import inspect
from typing import Any

from nasforge.errors import ConfigError
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import (AskTellStrategy, Exhausted, NotAskedError, PendingAsks, Result, Strategy,
                                      as_result)
from nasforge.strategies.controller import Controller
from nasforge.strategies.evolution import RegularizedEvolution
from nasforge.strategies.grid import GridSearch
from nasforge.strategies.local import LocalSearch
from nasforge.strategies.policy_gradient import PolicyGradientStrategy, PPOStrategy, ReinforceStrategy
from nasforge.strategies.predictor import PredictorStrategy
from nasforge.strategies.random import RandomSearch

#: strategy name (as the CLI and configs spell it) -> class.
STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomSearch,
    "evolution": RegularizedEvolution,
    "grid": GridSearch,
    "ppo": PPOStrategy,
    "reinforce": ReinforceStrategy,
    "local": LocalSearch,
    "predictor": PredictorStrategy,
}


def strategy_options(name: str) -> list[str]:
    """The options `create_strategy(name, ...)` accepts (constructor keywords besides space, seed)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "space", "seed")]


def create_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name; unknown names and options raise a one-line `ConfigError`."""
    cls = _lookup(name)
    allowed = strategy_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError("strategy", f"unknown option{'s' if len(unknown) > 1 else ''} "
                                      f"{', '.join(map(repr, unknown))} for strategy {name!r}", allowed or "none")
    return cls(space, seed, **options)


def _lookup(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {name!r}", sorted(STRATEGIES))
    return STRATEGIES[name]


__all__ = ["AskTellStrategy", "Controller", "Exhausted", "GridSearch", "LocalSearch", "NotAskedError", "PPOStrategy",
           "PendingAsks", "PolicyGradientStrategy", "PredictorStrategy", "RandomSearch", "RegularizedEvolution",
           "ReinforceStrategy", "Result", "STRATEGIES", "Strategy", "as_result", "create_strategy",
           "strategy_options"]
