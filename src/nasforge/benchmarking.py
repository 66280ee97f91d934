"""Strategies against tabulated benchmarks: many independent seeds, in memory, in seconds.

`nasforge bench` and `benchmarks/strategies.py` are thin wrappers around `run_bench`. One seed is
one independent search: a fresh strategy seeded with the seed's index asks `queries` times; each
architecture is looked up in the table (a failed lookup is told as a failure) and told at once.
The search is the `Experiment` that `nasforge search` runs (its duplicate filter, its stop
reasons), with the table as the evaluator, the serial in-process executor and a `MemoryStore`:
no run folder, no database, no checkpoints, so random search and evolution do thousands of
queries per second and the controller's own computation dominates the RL runs.

What is reported, per the NAS-Bench-201 protocol (Dong & Yang, ICLR 2020, section 5): each seed's best architecture
is picked **by reward** (the earliest on ties) and its **report column** is what the seed scores;
`mean`/`std` are over seeds (std with ddof=0, numpy's default). `seconds_per_query` is the
strategy's own computation (ask + tell, duplicates included), not the lookups.

Duplicates are handled as `nasforge search` handles them, the same rules for every strategy:
``"reask"`` (the default) turns down a proposal already asked in the seed's search (the strategy
is told so and asked again; `nasforge.strategies.base.ask_new`), so every query is a distinct
architecture; ``"reuse"`` is the published benchmarks' protocol, where every ask is a query and a
repeat looks its row up again. `distinct` says how many different canonical keys a seed evaluated,
`asks` how many proposals it took.

Rewards reach the strategy as the evaluator reports them: accuracies stored in percent are
divided by 100 (as `NB201Table`/`MacroTable` do, so a bench sees the rewards a `nasforge search`
sees); reported numbers stay in the table's units.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError, DatasetError
from nasforge.evaluators.table import (
    ArchitectureNotInTable,
    TableEvaluator,
    _resolve_space,
    _space_name,
    shared_tables,
)
from nasforge.experiment.experiment import Experiment
from nasforge.experiment.memory_store import MemoryStore
from nasforge.experiment.records import TrialRecord
from nasforge.spaces.base import SearchSpace
from nasforge.strategies import Result, create_strategy
from nasforge.strategies.base import AskTellStrategy, Strategy


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of `values`; NaN, NaN when there are none."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


# -- the table -----------------------------------------------------------------------------------------
#: the metrics each bench trial records besides its reward: the table's numbers in its own units
TABLE_REWARD = "table_reward"
TABLE_REPORT = "table_report"


@dataclass
class Lookup:
    """One table lookup: reward and report in the table's units, or the error of a failed one."""

    reward: float | None
    report: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BenchTable:
    """A table opened for benchmarking: its space, reward and report columns, and a memo of lookups.

    Args:
        table: a CSV path, or the name of a shared table's evaluator (`shared_tables()`).
        space: the space the table's architectures belong to (a name or object); optional with a
            shortcut, which implies it.
        reward_column: the column searched on (a shortcut gives its protocol's default).
        report_column: the column reported for each seed's best-by-reward architecture (default:
            the shortcut's, else the reward column); several columns (a sequence, or names joined
            by commas) report their mean.
        arch_column: the architecture column (default: the evaluator's guess).
        percent: accuracies in percent, given to strategies as fractions. None = the shortcut's
            setting, or for a file: the reward column's name contains "acc" and its values lie in
            [0, 100] with some above 1.
    """

    def __init__(
        self,
        table: str | Path,
        space: SearchSpace | str | None = None,
        reward_column: str | None = None,
        report_column: str | Sequence[str] | None = None,
        arch_column: str | None = None,
        percent: bool | None = None,
    ):
        shortcut = shared_tables().get(str(table)) if isinstance(table, str) else None
        if shortcut is not None:
            from nasforge.data.paths import require_data

            if space is not None and _space_name(_resolve_space(space)) != shortcut.space:
                raise ConfigError(
                    "space",
                    f"the {table!r} table lists {shortcut.space!r} architectures, "
                    f"not {_space_name(_resolve_space(space))!r}",
                )
            space = space if space is not None else shortcut.space
            reward_column = reward_column or shortcut.reward_column
            report_column = report_column or (
                shortcut.report_column if reward_column == shortcut.reward_column else None
            )
            arch_column = arch_column or shortcut.arch_column
            percent = shortcut.percent if percent is None else percent
            path: Path = require_data(*shortcut.file)
            self.name = str(table)
        else:
            if space is None:
                problem = "a table file needs the space its architectures belong to"
                raise ConfigError("space", problem, sorted(shared_tables()) + ["..."])
            if not reward_column:
                raise ConfigError("reward_column", f"name the column of {table} to search on")
            path = Path(table).expanduser()
            self.name = str(path)
        self.space = _resolve_space(space)
        self.reward_column = str(reward_column)
        report = report_column or reward_column
        columns = [c.strip() for c in report.split(",")] if isinstance(report, str) else [str(c) for c in report]
        if not columns or not all(columns):
            raise ConfigError("report_column", f"expected column names, got {report_column!r}")
        self.report_columns = columns
        self.report_column = ",".join(columns)
        # The evaluator checks columns and parses the first row; values are read in the table's units.
        self.evaluator = TableEvaluator(
            path, self.reward_column, self.space, report_column=columns[0], arch_column=arch_column, percent=percent
        )
        table_data = self.evaluator.load()
        self.path = table_data.path
        self.rows = len(table_data)
        self._reward = table_data.numeric(self.reward_column, "reward_column")
        self._report = np.mean([table_data.numeric(c, "report_column") for c in columns], axis=0)
        self.percent = self.evaluator.percent
        self.scale = 100.0 if self.percent else 1.0
        self._memo: dict[Any, Lookup] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "path": str(self.path),
            "rows": self.rows,
            "space": _space_name(self.space),
            "reward_column": self.reward_column,
            "report_column": self.report_column,
            "percent": self.percent,
            "reward_is_report": self.reward_column == self.report_column,
        }

    def lookup(self, arch: Any) -> Lookup:
        """The row of `arch` (memoised): `Lookup(reward, report)` or `Lookup(None, None, error)`."""
        try:
            return self._memo[arch]
        except KeyError:
            pass
        except TypeError:  # an unhashable architecture value: no memo
            return self._lookup(arch)
        hit = self._memo[arch] = self._lookup(arch)
        return hit

    def _lookup(self, arch: Any) -> Lookup:
        try:
            k = self.evaluator.row(arch, self.space)
        except ArchitectureNotInTable as exc:
            return Lookup(None, None, str(exc))
        reward, report = float(self._reward[k]), float(self._report[k])
        if not math.isfinite(reward):
            return Lookup(None, None, f"row {k + 2}: {self.reward_column} is {reward}")
        return Lookup(reward, report)

    def evaluate(self, space: SearchSpace, arch: Any, seed: int = 0) -> dict[str, float]:
        """The table as `Experiment`'s evaluator: "val_accuracy" is the reward the strategy is told
        (a fraction for percent tables), `TABLE_REWARD`/`TABLE_REPORT` the reward and the report in
        the table's units; a failed lookup raises. `space` is the table's own; `seed` is unused."""
        hit = self.lookup(arch)
        if not hit.ok:
            raise DatasetError(str(self.path), hit.error or "lookup failed")
        assert hit.reward is not None and hit.report is not None  # an ok lookup has both
        return {"val_accuracy": hit.reward / self.scale, TABLE_REWARD: hit.reward, TABLE_REPORT: hit.report}


# -- one seed, many seeds ------------------------------------------------------------------------------------
@dataclass
class SeedResult:
    seed: int
    queries: int  # evaluated proposals (fewer than asked for only if the strategy ran out)
    best_reward: float | None  # table units
    report: float | None  # the report column of the best-by-reward architecture
    best_arch: Any  # its JSON
    best_query: int | None  # the query (1-based) that found it
    distinct: int  # distinct canonical keys asked
    failures: int
    strategy_seconds: float  # ask + tell, summed
    asks: int = 0  # proposals made, duplicates turned down by the filter included
    stop: str = ""  # why the search ended before its budget, if it did


DUPLICATE_MODES = ("reask", "reuse")
#: the search's duplicate mode for each of the bench's: "reuse" looks every ask up again, as the
#: published benchmarks query their tables; a repeat of the same architecture finds the same row,
#: but an isomorphic one (the same canonical key) its own row, which the search's "reuse" mode, by
#: key, would not read. Looking up again is the search's "evaluate" mode.
_SEARCH_DUPLICATES = {"reask": "reask", "reuse": "evaluate"}


def run_seed(
    table: BenchTable,
    strategy: str,
    queries: int,
    seed: int,
    options: Mapping[str, Any] | None = None,
    duplicates: str = "reask",
    reask_limit: int = 100,
) -> SeedResult:
    """One independent search of `queries` queries with `create_strategy(strategy, space, seed, **options)`."""
    return run_seed_budgets(table, strategy, [queries], seed, options, duplicates, reask_limit)[queries]


def run_seed_budgets(
    table: BenchTable,
    strategy: str,
    budgets: Sequence[int],
    seed: int,
    options: Mapping[str, Any] | None = None,
    duplicates: str = "reask",
    reask_limit: int = 100,
    plan: int | None = None,
) -> dict[int, SeedResult]:
    """One search of `max(budgets)` queries, with the seed's result after each of `budgets` queries.

    The strategy is told the budget it plans for (`plan`, default the largest budget; it shapes
    evolution's default population); otherwise the first 100 queries of a 200-query search are
    those of a 100-query search with the same plan, so one run gives both (the tests check it).
    """
    if duplicates not in DUPLICATE_MODES:
        raise ConfigError("duplicates", f"unknown mode {duplicates!r}", list(DUPLICATE_MODES))
    options = dict(options or {})
    searcher = create_strategy(strategy, table.space, seed=seed, **options)
    if not isinstance(searcher, AskTellStrategy):  # the seed's result counts the strategy's asks
        raise ConfigError("strategy", f"{strategy!r} is not an ask/tell strategy: its asks cannot be counted")
    marks = sorted(set(int(b) for b in budgets))
    clocked = _Clocked(searcher, marks[-1] if plan is None else plan)
    store = MemoryStore()
    keys: set[str] = set()  # of the trials so far
    out: dict[int, SeedResult] = {}

    def snapshot(stop: str) -> SeedResult:
        counts = store.counts()
        best = store.best(1)
        top = best[0] if best else None
        metrics = {} if top is None else top.metrics or {}
        return SeedResult(
            seed=seed,
            queries=counts["total"],
            best_reward=metrics.get(TABLE_REWARD),
            report=metrics.get(TABLE_REPORT),
            best_arch=None if top is None else top.arch,
            best_query=None if top is None else top.id,  # trial ids are 1..n in asking order
            distinct=len(keys),
            failures=counts["failed"],
            strategy_seconds=clocked.seconds,
            asks=searcher.num_asked,
            stop=stop,
        )

    def on_trial(record: TrialRecord) -> None:
        # One serial trial at a time: trial n finishes before trial n + 1 is asked.
        keys.add(record.key)
        if record.id in marks:
            out[record.id] = snapshot("")

    experiment = Experiment(
        table.space,
        clocked,
        table,
        budget=marks[-1],
        seed=seed,
        duplicates=_SEARCH_DUPLICATES[duplicates],
        reask_limit=reask_limit,
        progress=False,
        config={"bench": table.name, "strategy": strategy, "options": options, "seed": seed},
        on_trial=on_trial,
        store=store,
    )
    summary = experiment.run()
    if len(out) < len(marks):  # the strategy stopped proposing: every later budget sees the end
        final = snapshot(summary.stop_reason)
        for b in marks:
            out.setdefault(b, final)
    return out


class _Clocked(Strategy):
    """A strategy whose asks and tells are timed: a seed's `strategy_seconds` is the strategy's own
    computation, not the search loop's or the lookups'. It plans for `run_seed_budgets`'s `plan`,
    which may differ from the largest budget the search runs to."""

    def __init__(self, strategy: AskTellStrategy, plan: int):
        super().__init__(strategy.space, strategy.seed)
        self.strategy = strategy
        self.name = strategy.name
        self.planned = plan
        self.seconds = 0.0

    def plan(self, budget: int | None) -> None:
        self.strategy.plan(self.planned)

    def ask(self) -> Any:
        start = time.perf_counter()
        try:
            return self.strategy.ask()
        finally:
            self.seconds += time.perf_counter() - start

    def tell(self, arch: Any, result: Result) -> None:
        start = time.perf_counter()
        try:
            self.strategy.tell(arch, result)
        finally:
            self.seconds += time.perf_counter() - start

    def state_dict(self) -> dict[str, Any]:
        return self.strategy.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.strategy.load_state_dict(state)


@dataclass
class BenchResult:
    strategy: str
    options: dict[str, Any]
    queries: int
    seeds: int
    mean: float  # of the report column over seeds with a successful lookup
    std: float
    sem: float  # sample std / sqrt(n): the uncertainty of `mean`
    mean_best_reward: float
    std_best_reward: float
    seeds_without_result: int
    mean_distinct: float
    mean_asks: float  # proposals per seed, duplicates turned down included
    duplicates: str  # "reask" (the filter) or "reuse" (every ask a query)
    failures: int
    seconds_per_query: float  # the strategy's own computation per ask + tell
    wall_seconds: float
    table: dict[str, Any]
    per_seed: list[SeedResult] = field(default_factory=list, repr=False)

    def to_dict(self, per_seed: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if per_seed:
            out["per_seed"] = [asdict(s) for s in self.per_seed]
        else:
            out.pop("per_seed")
        return out


def summarize(
    strategy: str,
    options: Mapping[str, Any],
    queries: int,
    results: Sequence[SeedResult],
    table: Mapping[str, Any] | None = None,
    wall_seconds: float = 0.0,
    duplicates: str = "reask",
) -> BenchResult:
    """Mean and std over seeds of each seed's report (and best reward), plus costs."""
    reports = [r.report for r in results if r.report is not None]
    rewards = [r.best_reward for r in results if r.best_reward is not None]
    mean, std = mean_std(reports)
    mean_r, std_r = mean_std(rewards)
    sem = float(np.std(reports, ddof=1) / math.sqrt(len(reports))) if len(reports) > 1 else math.nan
    asked = sum(r.queries for r in results)
    return BenchResult(
        strategy=strategy,
        options=dict(options),
        queries=queries,
        seeds=len(results),
        mean=mean,
        std=std,
        sem=sem,
        mean_best_reward=mean_r,
        std_best_reward=std_r,
        seeds_without_result=sum(r.report is None for r in results),
        mean_distinct=float(np.mean([r.distinct for r in results])) if results else math.nan,
        mean_asks=float(np.mean([r.asks for r in results])) if results else math.nan,
        duplicates=duplicates,
        failures=sum(r.failures for r in results),
        seconds_per_query=sum(r.strategy_seconds for r in results) / asked if asked else math.nan,
        wall_seconds=wall_seconds,
        table=dict(table or {}),
        per_seed=list(results),
    )


def run_bench(
    table: BenchTable,
    strategy: str,
    queries: int,
    seeds: int | Sequence[int],
    options: Mapping[str, Any] | None = None,
    progress: Callable[[SeedResult], None] | None = None,
    duplicates: str = "reask",
    reask_limit: int = 100,
) -> BenchResult:
    """`seeds` independent searches (seeds 0..seeds-1, or the given seed list) of `queries` queries each."""
    return run_bench_budgets(
        table, strategy, [queries], seeds, options, progress, duplicates, reask_limit, plan=queries
    )[queries]


def run_bench_budgets(
    table: BenchTable,
    strategy: str,
    budgets: Sequence[int],
    seeds: int | Sequence[int],
    options: Mapping[str, Any] | None = None,
    progress: Callable[[SeedResult], None] | None = None,
    duplicates: str = "reask",
    reask_limit: int = 100,
    plan: int | None = None,
) -> dict[int, BenchResult]:
    """`run_bench` for several budgets at once: one search of the largest budget per seed, which
    the strategy plans for (`plan`, default the largest budget)."""
    budgets = list(budgets)
    if not budgets or any(isinstance(q, bool) or not isinstance(q, int) or q < 1 for q in budgets):
        raise ConfigError("queries", f"must be positive integers, got {budgets!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds", "need at least one seed")
    options = dict(options or {})
    create_strategy(strategy, table.space, seed=0, **options)  # unknown names and options fail before any work
    start = time.perf_counter()
    per_budget: dict[int, list[SeedResult]] = {b: [] for b in budgets}
    for seed in seed_list:
        results = run_seed_budgets(table, strategy, budgets, seed, options, duplicates, reask_limit, plan)
        for b in budgets:
            per_budget[b].append(results[b])
        if progress is not None:
            progress(results[max(budgets)])
    wall = time.perf_counter() - start
    return {b: summarize(strategy, options, b, per_budget[b], table.describe(), wall, duplicates) for b in budgets}


__all__ = [
    "BenchResult",
    "BenchTable",
    "Lookup",
    "SeedResult",
    "TABLE_REPORT",
    "TABLE_REWARD",
    "mean_std",
    "run_bench",
    "run_bench_budgets",
    "run_seed",
    "run_seed_budgets",
    "summarize",
]
