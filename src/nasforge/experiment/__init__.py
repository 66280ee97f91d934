"""Experiments: the search loop, its stores (the run's SQLite file, or memory), executors and the search config.

    from nasforge.experiment import Experiment, SearchConfig

    config = SearchConfig.from_dict({"space": "nb201", "strategy": "ppo",
                                     "evaluator": {"name": "table", "options": {...}},
                                     "budget": {"max_trials": 200}, "seed": 0})
    summary = Experiment.from_config(config, resolve_run_dir("nb201-ppo", "runs")).run()

A multi-fidelity search adds ``scheduler=create_scheduler("hyperband", max_epochs=9)`` (or
``"scheduler": "sh"`` in the config); see docs/multi_fidelity.md. See docs/experiments.md.
"""

from nasforge.experiment.config import (
    Budget,
    Component,
    Components,
    SearchConfig,
    build_components,
    config_diff,
)
from nasforge.experiment.executors import (
    EXECUTORS,
    Executor,
    Handle,
    Outcome,
    ProcessExecutor,
    SerialExecutor,
    SimulatedExecutor,
    create_executor,
)
from nasforge.experiment.experiment import (
    Experiment,
    RunSummary,
    evaluate_architecture,
    resolve_run_dir,
    run_search,
    trial_seed,
)
from nasforge.experiment.memory_store import MemoryStore
from nasforge.experiment.records import Checkpoint, RungResult, StoreError, TrialRecord, TrialStore
from nasforge.experiment.scheduler import (
    SCHEDULERS,
    Asynchronous,
    Hyperband,
    Scheduler,
    create_scheduler,
)
from nasforge.experiment.store import DB_NAME, Store

__all__ = [
    "Asynchronous",
    "Budget",
    "Checkpoint",
    "Component",
    "Components",
    "DB_NAME",
    "EXECUTORS",
    "Executor",
    "Experiment",
    "Handle",
    "Hyperband",
    "MemoryStore",
    "Outcome",
    "ProcessExecutor",
    "RunSummary",
    "RungResult",
    "SCHEDULERS",
    "Scheduler",
    "SearchConfig",
    "SerialExecutor",
    "SimulatedExecutor",
    "Store",
    "StoreError",
    "TrialRecord",
    "TrialStore",
    "build_components",
    "config_diff",
    "create_executor",
    "create_scheduler",
    "evaluate_architecture",
    "resolve_run_dir",
    "run_search",
    "trial_seed",
]
