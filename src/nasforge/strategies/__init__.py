"""Search strategies behind one ask/tell interface."""

from __future__ import annotations

from typing import Any

from nasforge.spaces.base import SearchSpace
from nasforge.strategies.base import (
    STRATEGIES,
    AskTellStrategy,
    Exhausted,
    NotAskedError,
    PendingAsks,
    Result,
    Strategy,
    as_result,
)
from nasforge.strategies.controller import Controller
from nasforge.strategies.evolution import RegularizedEvolution
from nasforge.strategies.grid import GridSearch
from nasforge.strategies.local import LocalSearch
from nasforge.strategies.policy_gradient import PolicyGradientStrategy, PPOStrategy, ReinforceStrategy
from nasforge.strategies.predictor import PredictorStrategy
from nasforge.strategies.random import RandomSearch


def strategy_options(name: str) -> list[str]:
    """The options `create_strategy(name, ...)` accepts (constructor keywords besides space, seed)."""
    return STRATEGIES.options(name)


def create_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """Build a strategy by name; unknown names and options raise a one-line `ConfigError`."""
    return STRATEGIES.create(name, space, seed, **options)


__all__ = [
    "AskTellStrategy",
    "Controller",
    "Exhausted",
    "GridSearch",
    "LocalSearch",
    "NotAskedError",
    "PPOStrategy",
    "PendingAsks",
    "PolicyGradientStrategy",
    "PredictorStrategy",
    "RandomSearch",
    "RegularizedEvolution",
    "ReinforceStrategy",
    "Result",
    "STRATEGIES",
    "Strategy",
    "as_result",
    "create_strategy",
    "strategy_options",
]
