"""`nasforge run`: from a dataset to a scaled family of models and a report, in four stages.

1. search a baseline architecture on the data: on a real dataset the recommended search
   (regularized evolution rewarded by the zero-cost ensemble score, no child trained), on the
   built-in digits or with a scheduler named a search whose children are proxy-trained
   (`search_evaluator` chooses either way);
2. search the compound-scaling coefficients alpha, beta, gamma at phi = 1 for that baseline,
   with the single-dimension alternatives beside them;
3. build the family phi = 0..K with the chosen coefficients and train every member to a comparable
   point (`family_schedule`: epochs growing with the member's MACs by default, or early stopping
   on validation; see `nasforge.scaling.schedule`), recording each member's epochs and why it
   stopped (validation accuracy, test accuracy reported only, params, MACs, latency);
4. write the HTML report.

The coefficient search gives every candidate a standard error and a verdict (is the best triple
told apart from the runner-up?), and evaluates the baseline (phi = 0) with the candidates' own
schedule, so that the single-dimension table compares numbers trained alike. `test_dataset`
replaces the dataset's test split for the family's final, reported-only test accuracy.

The run folder's database is the search's; the pipeline keeps its own config and each finished
stage there as markers, and the coefficient search has its own run in `RUN/coefficients`. A
resumed pipeline checks its config, skips finished stages and continues the interrupted one at the
trial where it stopped (every stage is built on resumable pieces).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasforge.arch import DEFAULT_SPACE
from nasforge.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so `nasforge run --help` stays light
    from rich.console import Console

    from nasforge.experiment.store import Store
    from nasforge.scaling.coefficients import ScaledMemberEvaluator
    from nasforge.scaling.family import Family
    from nasforge.spaces.base import SearchSpace

#: budget name -> search trials, child epochs, coefficient grid step, family epochs, child size.
#: Sized on the built-in digits with 2 CPU cores: small ~4 min (docs/pipeline.md), medium ~40 min, large hours.
#: F starts at 16 so that the family's width multipliers (1.2, 1.44, ...) survive rounding F to a
#: multiple of 4 (with F = 8, phi = 1 and phi = 0 had the same width).
BUDGETS: dict[str, dict[str, Any]] = {
    "small": {"trials": 16, "epochs": 2, "step": 0.2, "family_epochs": 4, "cells": 1, "filters": 16},
    "medium": {"trials": 60, "epochs": 5, "step": 0.1, "family_epochs": 10, "cells": 1, "filters": 24},
    "large": {"trials": 200, "epochs": 8, "step": 0.05, "family_epochs": 20, "cells": 2, "filters": 32},
}
STAGES = ("search", "coefficients", "family", "report")
#: What a run stored before a setting existed did, i.e. the value an old stored config stands for.
LEGACY_SETTINGS: dict[str, Any] = {
    "family_schedule": "fixed",
    "patience": None,
    "test_dataset": None,
    "scheduler": None,
    "min_epochs": None,
    "max_epochs": None,
    "eta": None,
    "search_evaluator": "proxy",
    "grid_seeds": 1,
}
#: The multi-fidelity settings of the search stage, passed to its scheduler when one is named.
SCHEDULER_SETTINGS = ("min_epochs", "max_epochs", "eta")


@dataclass(frozen=True)
class PipelineConfig:
    dataset: str = "digits"
    space: str = DEFAULT_SPACE
    strategy: str = "evolution"
    budget: str = "small"
    trials: int | None = None
    epochs: int | None = None
    step: float | None = None
    family_epochs: int | None = None
    cells: int | None = None
    filters: int | None = None
    phi_max: int = 2
    seed: int = 0
    train_size: int | None = None
    val_size: int | None = None
    family_schedule: str = "grow"
    patience: int | None = None
    test_dataset: str | None = None
    scheduler: str | None = None
    min_epochs: int | None = None
    max_epochs: int | None = None
    eta: int | None = None
    search_evaluator: str | None = None
    grid_seeds: int = 1

    def __post_init__(self) -> None:
        from nasforge.scaling.schedule import check_schedule

        # resolved here, so that the stored config names the evaluator the search stage really used
        object.__setattr__(self, "search_evaluator", self._search_evaluator())

        check_schedule(self.family_schedule, self.patience)
        if self.patience is not None and self.family_schedule != "early-stop":
            raise ConfigError("patience", f"only applies to family_schedule 'early-stop', not {self.family_schedule!r}")
        if self.budget not in BUDGETS:
            raise ConfigError("budget", f"unknown budget {self.budget!r}", list(BUDGETS))
        from nasforge.scaling.family import scalable_spaces

        scalable = scalable_spaces()
        if self.space not in scalable:
            raise ConfigError("space", f"the pipeline cannot scale space {self.space!r}", scalable)
        if isinstance(self.phi_max, bool) or not isinstance(self.phi_max, int) or not 0 <= self.phi_max <= 8:
            raise ConfigError("phi_max", f"must be an integer from 0 to 8, got {self.phi_max!r}")
        for name in (
            "trials",
            "epochs",
            "family_epochs",
            "cells",
            "filters",
            "train_size",
            "val_size",
            "grid_seeds",
            *SCHEDULER_SETTINGS,
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(name, f"must be a positive integer, got {value!r}")
        if self.step is not None and not 0.0 < self.step <= 1.0:
            raise ConfigError("step", f"must be in (0, 1], got {self.step!r}")
        self.scheduler_component()  # refuses an unknown scheduler or bad rungs now, not after stage 1

    def _search_evaluator(self) -> str:
        """The search stage's evaluator: the recommended zero-cost search on a real dataset (it
        returned a top-1.2 % NAS-Bench-201 cell on CIFAR-10 for every seed measured, in minutes),
        proxy training on the built-in digits (seconds per child there) or under a scheduler
        (which needs children that train)."""
        from nasforge.evaluators import EVALUATORS, RECOMMENDED, evaluator_options, resolve_evaluator

        name = self.search_evaluator
        if name is None:
            return "proxy" if self.dataset == "digits" or self.scheduler is not None else RECOMMENDED
        readers = sorted(n for n in EVALUATORS if "dataset" in evaluator_options(n))
        name = resolve_evaluator(name)
        if name not in readers:
            raise ConfigError("search_evaluator", f"unknown or table-only evaluator {name!r}", ["auto", *readers])
        if name != "proxy" and self.scheduler is not None:
            raise ConfigError("scheduler", f"needs children that train (search_evaluator 'proxy'), not {name!r}")
        return name

    def scheduler_component(self) -> dict[str, Any] | None:
        """The search stage's scheduler as a `SearchConfig` component; its top rung defaults to the
        children's epochs, so the scheduler never trains a child longer than a plain search."""
        given = [name for name in SCHEDULER_SETTINGS if getattr(self, name) is not None]
        if self.scheduler is None:
            if given:
                raise ConfigError(given[0], "only applies with a scheduler (sh, hyperband, asha or median)")
            return None
        from nasforge.experiment.scheduler import SCHEDULERS, create_scheduler

        SCHEDULERS.entry(self.scheduler)
        options: dict[str, Any] = {name: getattr(self, name) for name in given}
        options.setdefault("max_epochs", self.setting("epochs"))
        create_scheduler(self.scheduler, **options)  # its own checks: min_epochs <= max_epochs, eta >= 2
        return {"name": self.scheduler, "options": options}

    def setting(self, name: str) -> Any:
        """An explicit value, else the budget's."""
        value = getattr(self, name)
        return BUDGETS[self.budget][name] if value is None else value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(unknown[0], "unknown pipeline option", allowed)
        return cls(**data)


def _proxy_options(cfg: PipelineConfig, epochs: int | None, network: dict[str, Any] | None) -> dict[str, Any]:
    """The data (and, given `epochs`, training) options of an evaluator reading `cfg.dataset`."""
    options: dict[str, Any] = {"dataset": cfg.dataset, "split_seed": cfg.seed}
    if epochs is not None:
        options["train"] = {"epochs": epochs}
    if network is not None:
        options["network"] = network
    for name in ("train_size", "val_size"):
        if getattr(cfg, name) is not None:
            options[name] = getattr(cfg, name)
    return options


def search_network(cfg: PipelineConfig) -> dict[str, Any]:
    """The children's network: the space's proxy network, with the budget's cells and filters where
    it has them (NASNet's N and F)."""
    from nasforge.spaces import SPACES

    # a space may be registered as a factory function, which has no proxy_network (as in train.py)
    network = dict(getattr(SPACES[cfg.space], "proxy_network", {}))
    if "num_cells" in network and "num_filters" in network:
        network.update(num_cells=cfg.setting("cells"), num_filters=cfg.setting("filters"))
    return network


def search_config(cfg: PipelineConfig) -> dict[str, Any]:
    """Stage 1's `SearchConfig` dict."""
    network = search_network(cfg)
    evaluator: dict[str, Any]
    if cfg.search_evaluator == "proxy":
        evaluator = {"name": "proxy", "options": _proxy_options(cfg, cfg.setting("epochs"), network)}
        trials = cfg.setting("trials")
    else:
        from nasforge.evaluators import RECOMMENDED_TRIALS

        # scored at initialisation: nothing is trained
        evaluator = {"name": cfg.search_evaluator, "options": _proxy_options(cfg, None, network)}
        trials = cfg.trials or RECOMMENDED_TRIALS  # the budget presets size trained searches
    return {
        "space": cfg.space,
        "strategy": cfg.strategy,
        "evaluator": evaluator,
        "budget": {"max_trials": trials},
        "seed": cfg.seed,
        **({"scheduler": scheduler} if (scheduler := cfg.scheduler_component()) is not None else {}),
    }


class Pipeline:
    """Runs (or resumes) the four stages in `run_dir`; see the module docstring."""

    def __init__(
        self,
        config: PipelineConfig,
        run_dir: str | os.PathLike,
        resume: bool = False,
        progress: bool = True,
        console: Console | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.progress = progress
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, quiet=not progress)
        self.console = console

    # -- bookkeeping --------------------------------------------------------------------------------
    def _check_config(self, store: Store, record: bool = True) -> None:
        """Refuse other pipeline settings than the run's; `record` stores them in a run without any."""
        from nasforge.experiment.config import config_diff, describe_diff

        old = store.get_marker("pipeline.config")
        new = self.config.to_dict()
        if old is None:
            if record:
                store.set_marker("pipeline.config", new)
            return
        legacy = sorted(k for k in LEGACY_SETTINGS if k not in old)
        old = {**{k: LEGACY_SETTINGS[k] for k in legacy}, **old}
        keys = config_diff(old, new, ignore=frozenset())
        if keys:
            hint = ""
            if any(k in legacy for k in keys):
                flags = " ".join(
                    f"--{k.replace('_', '-')} {old[k]}" for k in keys if k in legacy and old[k] is not None
                )
                hint = (
                    f"; the run was started by an older nasforge, before {', '.join(k for k in keys if k in legacy)}"
                    f" existed{f' (resume it with {flags})' if flags else ''}"
                )
            raise ConfigError(
                "config", "the run was started with other pipeline settings: " + describe_diff(old, new, keys) + hint
            )

    def _stage(self, name: str) -> None:
        self.console.print(f"[bold]stage {STAGES.index(name) + 1}/4: {name}[/bold]")

    # -- the stages ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from nasforge.experiment import Experiment, SearchConfig, Store

        if Store.exists(self.run_dir) and not self.resume:
            raise ConfigError("run", f"{self.run_dir} already holds a run; pass --resume to continue it")
        if self.resume and Store.exists(self.run_dir):
            existing = Store.open(self.run_dir)
            try:
                self._check_config(existing, record=False)  # read only: the search's own check comes first
            finally:
                existing.close()
        splits = self._check_test_dataset()
        self._stage("search")
        with Experiment.from_config(
            SearchConfig.from_dict(search_config(self.config)),
            self.run_dir,
            resume="auto" if self.resume else False,
            progress=self.progress,
        ) as experiment:
            store = experiment.store
            assert isinstance(store, Store)  # a run folder's store, which keeps the stage markers
            self._check_config(store)
            if not store.get_marker("pipeline.stage.search"):
                experiment.run()
                store.set_marker("pipeline.stage.search", True)
            best = store.best(1)
            if not best:
                raise ConfigError(
                    "search", f"every trial of the architecture search failed; see `nasforge show {self.run_dir}`"
                )
            arch = experiment.space.from_json(best[0].arch)
            family = self._family(experiment.space, arch)
            coefficients = self._coefficients(store, family)
            members = self._family_members(store, family, coefficients)
            self._stage("report")
        from nasforge.report import write_report

        index = write_report(self.run_dir)
        return {
            "run": str(self.run_dir),
            "best_trial": best[0].id,
            "coefficients": coefficients["best"],
            "verdict": coefficients.get("verdict"),
            "candidates": coefficients.get("candidates", []),
            "baseline": coefficients.get("baseline"),
            "schedule": coefficients.get("schedule"),
            "family_schedule": self.config.family_schedule,
            "members": members,
            "test_dataset": (self.config.test_dataset or f"{self.config.dataset} (its own test split)")
            if splits.test is not None
            else None,
            "report": str(index),
        }

    def _check_test_dataset(self) -> Any:
        """The splits the family is tested on; a --test-dataset that does not fit is refused now,
        before anything is trained."""
        from nasforge.scaling.schedule import splits_for

        cfg = self.config
        return splits_for(cfg.dataset, 0.1, cfg.seed, cfg.train_size, cfg.val_size, cfg.test_dataset)

    def _family(self, space: SearchSpace, arch: Any) -> Family:
        from nasforge.evaluators.proxy import cached_splits
        from nasforge.scaling.family import family_for

        cfg = self.config
        splits = cached_splits(cfg.dataset, 0.1, cfg.seed, cfg.train_size, cfg.val_size)
        return family_for(
            space, arch, base_resolution=splits.resolution, num_classes=splits.num_classes, **search_network(cfg)
        )

    def _scaled_evaluator(self, family: Family, phi: float) -> ScaledMemberEvaluator:
        """The coefficient search's evaluator: the phi member, `epochs` of proxy training, `grid_seeds` times."""
        from nasforge.evaluators.proxy import ProxyTrainer
        from nasforge.scaling.coefficients import ScaledMemberEvaluator

        inner = ProxyTrainer(**_proxy_options(self.config, self.config.setting("epochs"), None))
        return ScaledMemberEvaluator(
            family, inner, phi=phi, resolution_divisor=_divisor(family), seeds=self.config.grid_seeds
        )

    def _member_checkpoint(self, phi: int) -> Path:
        return self.run_dir / "family" / f"phi{phi}.ckpt"

    def _member_evaluator(self, family: Family, phi: float, epochs: int) -> ScaledMemberEvaluator:
        """A family member's evaluator: its own epochs (or cap), early stopping, the test set, and a
        checkpoint after every epoch, so that a killed run goes on inside the member it was training."""
        from nasforge.scaling.coefficients import ScaledMemberEvaluator
        from nasforge.scaling.schedule import DEFAULT_PATIENCE, MemberTrainer

        cfg = self.config
        patience = (cfg.patience or DEFAULT_PATIENCE) if cfg.family_schedule == "early-stop" else None
        inner = MemberTrainer(
            **_proxy_options(cfg, epochs, None),
            report_test=True,
            patience=patience,
            test_dataset=cfg.test_dataset,
            schedule=cfg.family_schedule,
            checkpoint=self._member_checkpoint(int(phi)),
        )
        return ScaledMemberEvaluator(family, inner, phi=phi, resolution_divisor=_divisor(family))

    def _coefficients(self, store: Store, family: Family) -> dict[str, Any]:
        from nasforge.scaling.search import search_coefficients

        # Run even when the stage is done: a finished grid trains nothing again, and its rows and
        # verdict are read afresh from the trials (a run of an older nasforge gains its baseline row
        # and the checks added since).
        self._stage("coefficients")
        result = search_coefficients(
            family,
            self._scaled_evaluator(family, 1.0),
            self.run_dir / "coefficients",
            step=self.config.setting("step"),
            seed=self.config.seed,
            resume="auto",
            progress=self.progress,
        )
        data = result.to_marker()
        store.set_marker("coefficients", data)
        store.set_marker("pipeline.stage.coefficients", True)
        return data

    def _family_members(self, store: Store, family: Family, coefficients: dict[str, Any]) -> list[dict[str, Any]]:
        from nasforge.experiment import trial_seed
        from nasforge.scaling.coefficients import CoefficientSpace, CoefficientTriple
        from nasforge.scaling.compound import CompoundScaler, build_counted
        from nasforge.scaling.schedule import member_epochs

        self._stage("family")
        cfg = self.config
        best = coefficients["best"]
        space = CoefficientSpace(family=family)
        triple = CoefficientTriple(best["alpha"], best["beta"], best["gamma"], best.get("label", "compound"))
        scaler = CompoundScaler(triple.alpha, triple.beta, triple.gamma, _divisor(family), 1)
        base_epochs = cfg.setting("family_epochs")
        base_macs = build_counted(family, 1.0, 1.0, family.base_resolution)[1]
        members = []
        for phi in range(cfg.phi_max + 1):
            key = f"pipeline.family.phi{phi}"
            member = store.get_marker(key)
            if member is None:
                w, d, r = scaler._checked(float(phi), family.base_resolution)
                ratio = build_counted(family, w, d, r)[1] / base_macs
                epochs = member_epochs(base_epochs, ratio, cfg.family_schedule)
                self.console.print(
                    f"  training phi = {phi} ({epochs} epochs"
                    f"{' at most' if cfg.family_schedule == 'early-stop' else ''})"
                )
                metrics = self._member_evaluator(family, float(phi), epochs).evaluate(
                    space, triple, trial_seed(cfg.seed, 10_000 + phi)
                )
                member = {
                    "phi": phi,
                    **{
                        k: metrics.get(k)
                        for k in (
                            "width_mult",
                            "depth_mult",
                            "resolution",
                            "params",
                            "macs",
                            "val_accuracy",
                            "test_accuracy",
                            "latency_ms",
                            "epochs",
                            "max_epochs",
                            "best_epoch",
                            "stopped",
                            "stop_reason",
                        )
                    },
                }
                if cfg.family_schedule == "grow":
                    member["stop_reason"] = (
                        f"end of its schedule: {base_epochs} x √(MACs ratio {ratio:.2f}), rounded up = {epochs} epochs"
                    )
                member["schedule"] = cfg.family_schedule
                store.set_marker(key, member)
                self._member_checkpoint(phi).unlink(missing_ok=True)  # the marker holds the result now
            members.append(member)
        # phi = 0 against the phi = 1 alternatives: the baseline row is the one evaluated with the
        # coefficient search's own schedule (same epochs as the alternatives), never the family's.
        baseline = coefficients.get("baseline") or {}
        base_row = {**baseline, "phi": 0} if baseline.get("status") == "done" else None
        alternatives = {}
        for cand in coefficients.get("candidates", []):
            label = cand.get("label", "")
            for dim in ("depth", "width", "resolution"):
                if label.startswith(dim) and base_row is not None:
                    alternatives[dim] = [base_row, {**cand, "phi": 1}]
        comparison = None
        if base_row is not None:
            chosen = next((c for c in coefficients.get("candidates", []) if c.get("index") == best.get("index")), best)
            comparison = {
                "schedule": coefficients.get("schedule"),
                "rows": [{**base_row, "method": "baseline"}, {**chosen, "phi": 1, "method": "compound"}]
                + [{**recs[1], "method": f"{dim} only"} for dim, recs in alternatives.items()],
            }
        store.set_marker(
            "family",
            {
                "coefficients": {k: best[k] for k in ("alpha", "beta", "gamma")},
                "members": members,
                "alternatives": alternatives,
                "comparison": comparison,
                "schedule": {
                    "name": cfg.family_schedule,
                    "base_epochs": base_epochs,
                    "patience": (cfg.patience or _default_patience()) if cfg.family_schedule == "early-stop" else None,
                },
                "test_dataset": cfg.test_dataset,
            },
        )
        store.set_marker("pipeline.stage.family", True)
        return members


def _divisor(family: Family) -> int:
    """Small images (digits are 8 px) scale their resolution in steps of 1 px, not 8."""
    return 8 if family.base_resolution >= 64 else 1


def _default_patience() -> int:
    from nasforge.scaling.schedule import DEFAULT_PATIENCE

    return DEFAULT_PATIENCE


def run_pipeline(
    config: PipelineConfig, run_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    return Pipeline(config, run_dir, resume=resume, progress=progress).run()


__all__ = ["BUDGETS", "LEGACY_SETTINGS", "Pipeline", "PipelineConfig", "STAGES", "run_pipeline"]
