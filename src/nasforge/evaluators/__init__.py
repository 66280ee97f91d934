"""Evaluators turn architectures into metrics; objectives turn metrics into rewards.

Registered evaluators (`EVALUATORS`, built with `create_evaluator(name, space=..., **options)`):

* "proxy": `ProxyTrainer`, trains the child network on a dataset;
* "table": `TableEvaluator`, looks the architecture up in any CSV table;
* "nb201": `NB201Table`, the shared NAS-Bench-201 CIFAR-10 table;
* "macro": `MacroTable`, the shared NAS-Bench-Macro CIFAR-10 table;
* "zero_cost" and one per score ("naswot", "synflow", "snip", "grasp", "fisher", "jacob_cov",
  "params", "flops"): `ZeroCostEvaluator`, scores an untrained child on one batch (reward metric
  "score" rather than "val_accuracy").

Objectives (`Accuracy`, `MnasNetObjective`, `Limits`, `create_objective`) live in
`nasforge.evaluators.objectives`.
"""

from __future__ import annotations

from typing import Any

from nasforge.evaluators.base import (
    EVALUATORS,
    ArchitectureEvaluator,
    EvaluateFn,
    EvaluationError,
    Evaluator,
    Metrics,
)
from nasforge.evaluators.objectives import (
    Accuracy,
    Limits,
    MnasNetObjective,
    Objective,
    create_limits,
    create_objective,
    model_costs,
)
from nasforge.evaluators.proxy import ProxyTrainer
from nasforge.evaluators.table import MacroTable, NB201Table, TableEvaluator
from nasforge.evaluators.zero_cost import ZeroCostEnsemble, ZeroCostEvaluator
from nasforge.registry import factory_parameters
from nasforge.spaces.base import SearchSpace

#: what `--evaluator auto` means: the best ranker per second measured on NAS-Bench-201 with real
#: CIFAR-10 images (docs/evaluators.md); a run records the real name.
RECOMMENDED = "zc_ensemble"
#: the trial budget of the recommended search (regularized evolution over RECOMMENDED scores), which
#: `nasforge search --dataset ...` runs when given no evaluator and no budget: on NAS-Bench-201 with
#: real CIFAR-10 it took 7 to 8 minutes on 2 otherwise idle CPU cores (docs/multi_fidelity.md)
RECOMMENDED_TRIALS = 300


def resolve_evaluator(name: str) -> str:
    return RECOMMENDED if name == "auto" else name


def evaluator_options(name: str) -> list[str]:
    """Constructor options of an evaluator (besides `space`, which `create_evaluator` passes)."""
    return EVALUATORS.options(name)


def create_evaluator(name: str, space: SearchSpace | str | None = None, **options: Any) -> Evaluator:
    """An evaluator by name; `space` is passed to those that take one. Unknown names, unknown
    options and missing required options raise a one-line `ConfigError`."""
    cls = EVALUATORS.entry(name).factory
    if space is not None and "space" in (factory_parameters(cls) or {}):
        options = {**options, "space": space}
    EVALUATORS.check_options(name, {k: v for k, v in options.items() if k != "space"})
    return cls(**options)


__all__ = [
    "Accuracy",
    "ArchitectureEvaluator",
    "EvaluateFn",
    "EVALUATORS",
    "EvaluationError",
    "Evaluator",
    "Limits",
    "MacroTable",
    "Metrics",
    "MnasNetObjective",
    "NB201Table",
    "Objective",
    "ProxyTrainer",
    "TableEvaluator",
    "ZeroCostEnsemble",
    "ZeroCostEvaluator",
    "create_evaluator",
    "create_limits",
    "create_objective",
    "evaluator_options",
    "model_costs",
    "resolve_evaluator",
]
