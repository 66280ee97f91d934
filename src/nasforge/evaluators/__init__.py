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

import inspect
from typing import Any

from nasforge.errors import ConfigError
from nasforge.evaluators.base import EvaluationError, Evaluator, Metrics
from nasforge.evaluators.objectives import (Accuracy, Limits, MnasNetObjective, Objective, create_limits,
                                            create_objective, model_costs)
from nasforge.evaluators.proxy import ProxyTrainer
from nasforge.evaluators.table import MacroTable, NB201Table, TableEvaluator
from nasforge.evaluators.zero_cost import SCORE_EVALUATORS, ZeroCostEnsemble, ZeroCostEvaluator

#: evaluator name (configs and the CLI) -> class.
EVALUATORS: dict[str, type[Evaluator]] = {
    "proxy": ProxyTrainer,
    "table": TableEvaluator,
    "nb201": NB201Table,
    "macro": MacroTable,
    "zero_cost": ZeroCostEvaluator,
    "zc_ensemble": ZeroCostEnsemble,
    **SCORE_EVALUATORS,
}


#: what `--evaluator auto` means: the best ranker per second measured on NAS-Bench-201 with real
#: CIFAR-10 images (docs/evaluators.md); a run records the real name.
RECOMMENDED = "zc_ensemble"


def resolve_evaluator(name: str) -> str:
    return RECOMMENDED if name == "auto" else name


def register_evaluator(name: str, cls: type[Evaluator]) -> None:
    EVALUATORS[name] = cls


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Named constructor parameters; a constructor that passes ``**options`` on to its base class
    takes the base class's as well."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        for name, p in params.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                out.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return out


def evaluator_options(name: str) -> list[str]:
    """Constructor options of an evaluator (besides `space`, which `create_evaluator` passes)."""
    return [p for p in _init_parameters(_lookup(name)) if p != "space"]


def _lookup(name: Any) -> type[Evaluator]:
    if not isinstance(name, str) or name not in EVALUATORS:
        raise ConfigError("evaluator", f"unknown evaluator {name!r}", sorted(EVALUATORS))
    return EVALUATORS[name]


def create_evaluator(name: str, space: Any = None, **options: Any) -> Evaluator:
    """An evaluator by name; `space` is passed to those that take one. Unknown names, unknown
    options and missing required options raise a one-line `ConfigError`."""
    cls = _lookup(name)
    params = _init_parameters(cls)
    allowed = [p for p in params if p != "space"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"evaluator.{unknown[0]}", f"unknown option for evaluator {name!r}", allowed or "none")
    missing = [p for p in allowed if params[p].default is inspect.Parameter.empty and p not in options]
    if missing:
        raise ConfigError(f"evaluator.{missing[0]}", f"is required for evaluator {name!r}")
    if "space" in params and space is not None:
        options["space"] = space
    return cls(**options)


__all__ = ["Accuracy", "EVALUATORS", "EvaluationError", "Evaluator", "Limits", "MacroTable", "Metrics",
           "MnasNetObjective", "NB201Table", "Objective", "ProxyTrainer", "TableEvaluator", "ZeroCostEvaluator", "create_evaluator",
           "create_limits", "create_objective", "evaluator_options", "model_costs", "register_evaluator", "resolve_evaluator"]
