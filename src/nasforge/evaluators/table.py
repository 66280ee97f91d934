"""Tabulated benchmarks: evaluate an architecture by looking it up in a CSV table.

`TableEvaluator` reads any CSV (gzip-compressed or not, detected from the file's first bytes)
that has an architecture column and named metric columns:

* the reward column becomes the metric "val_accuracy" (the conventional reward source);
* the report column becomes "test_accuracy" (reported only; objectives refuse test metrics);
* `columns` maps further metric names to columns (a column whose name has a word starting with
  "test" must get a metric name that starts with "test", so no test number can leak into a reward);
* "cost_seconds", the simulated time an evaluation would have taken, comes from `cost_column`
  times `cost_scale`, or is the constant `cost_seconds`; experiments sum it for a time budget.

`NB201Table` and `MacroTable` are the same evaluator preset for the two shared tables in
``$NASFORGE_DATA/nasbench201/`` and ``$NASFORGE_DATA/nasbench_macro/`` (see `nasforge.data.paths`).

A table is read once per process and file version (path, size, modification time) and shared by
every evaluator that uses it; evaluators themselves hold only their settings, so they pickle
cheaply to worker processes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from nasforge.data.paths import ENV_VAR, require_data
from nasforge.errors import ArchitectureError, ConfigError, DatasetError
from nasforge.evaluators.base import EVALUATORS, Evaluator, Metrics
from nasforge.evaluators.objectives import is_test_metric, model_costs
from nasforge.spaces.base import SearchSpace
from nasforge.spaces.macro import MacroSpace
from nasforge.spaces.nb201 import NB201Space

NB201_FILE = ("nasbench201", "nb201_cifar10.csv.gz")
MACRO_FILE = ("nasbench_macro", "nb_macro_cifar10.csv.gz")


@dataclass(frozen=True)
class SharedTable:
    """A shared table and the protocol a strategy benchmark follows on it: where the shared data
    keeps it, its space, the column searched on, the column(s) reported for the best-by-reward
    architecture (several: their mean), its architecture column, and whether accuracies are in %."""

    file: tuple[str, ...]
    space: str
    reward_column: str
    report_column: str | tuple[str, ...]
    arch_column: str
    percent: bool = True


class ArchitectureNotInTable(DatasetError, KeyError):
    """The table has no row for an architecture."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


# -- reading tables --------------------------------------------------------------------------------
class Table:
    """A CSV table held in memory: every column as strings, numeric columns parsed on demand."""

    def __init__(self, path: Path, header: Sequence[str], rows: list[list[str]]):
        self.path = path
        self.header = tuple(header)
        self.text: dict[str, list[str]] = {name: [r[k] for r in rows] for k, name in enumerate(self.header)}
        self._numeric: dict[str, np.ndarray] = {}
        self._indexes: dict[Any, dict[str, int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(next(iter(self.text.values()))) if self.text else 0

    def __repr__(self) -> str:
        return f"Table({str(self.path)!r}, rows={len(self)}, columns={len(self.header)})"

    def require(self, column: str, field: str) -> str:
        if column not in self.text:
            raise ConfigError(field, f"no column {column!r} in {self.path}", self.header)
        return column

    def numeric(self, column: str, field: str = "column") -> np.ndarray:
        """The column as float64 (parsed once); a non-numeric cell names its row."""
        if column not in self._numeric:
            self.require(column, field)
            values = self.text[column]
            try:
                arr = np.array(values, dtype=np.float64)
            except ValueError:
                for k, v in enumerate(values):
                    try:
                        float(v)
                    except ValueError:
                        raise DatasetError(
                            str(self.path), f"column {column!r}, row {k + 2}: {v!r} is not a number"
                        ) from None
                raise
            self._numeric[column] = arr
        return self._numeric[column]

    def index(self, key: Any, build) -> dict[str, int]:
        """A lookup dict cached under `key` (made by `build(self)` the first time)."""
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = build(self)
            return self._indexes[key]


_TABLES: dict[tuple[str, int, int], Table] = {}
_TABLES_LOCK = threading.Lock()


def read_table(path: str | Path) -> Table:
    """Read a CSV (gzip or plain) with a header row, once per file version."""
    p = Path(path).expanduser()
    try:
        stat = p.stat()
    except OSError:
        raise DatasetError(
            str(p),
            f"no such table file (the shared tables live under ${ENV_VAR}, or ../shared/data next to the repository)",
        ) from None
    cache_key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    with _TABLES_LOCK:
        table = _TABLES.get(cache_key)
    if table is not None:
        return table
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DatasetError(str(p), f"cannot read the table ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(str(p), "the table is empty (no header row)") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DatasetError(str(p), f"repeated column name(s) in the header: {', '.join(dup)}")
    rows = []
    for k, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(str(p), f"row {k} has {len(row)} fields, the header has {len(header)}")
        rows.append(row)
    if not rows:
        raise DatasetError(str(p), "the table has a header but no rows")
    table = Table(p, header, rows)
    with _TABLES_LOCK:
        _TABLES[cache_key] = table
    return table


def clear_table_cache() -> None:
    with _TABLES_LOCK:
        _TABLES.clear()


# -- architectures <-> rows ------------------------------------------------------------------------
def arch_id(space: SearchSpace, arch: Any) -> str:
    """The string a table row is matched on: the JSON's "arch" string (NB201, Macro), else the
    architecture's sorted JSON."""
    data = space.to_json(arch)
    if isinstance(data, dict) and isinstance(data.get("arch"), str):
        return data["arch"]
    return json.dumps(data, sort_keys=True)


class _CostedSpace(Protocol):
    """A space that counts an architecture's costs without building it (as `NB201Space.costs`)."""

    def costs(self, arch: Any) -> Mapping[str, float]: ...


def _space_name(space: Any) -> str:
    return getattr(space, "name", type(space).__name__)


class _RowIds:
    """How a table's rows are turned into architecture ids (picklable settings only)."""

    def __init__(self, space: SearchSpace, table: Table, arch_column: str | None):
        self.space = space
        if arch_column is not None:
            table.require(arch_column, "arch_column")
            self.columns: tuple[str, ...] = (arch_column,)
        else:
            candidates = getattr(space, "table_columns", SearchSpace.table_columns)
            found = [(c,) if isinstance(c, str) else tuple(c) for c in candidates]
            found = [cols for cols in found if all(c in table.text for c in cols)]
            if not found:
                raise ConfigError("arch_column", f"no architecture column in {table.path}; name one", table.header)
            self.columns = found[0]

    def raw(self, table: Table, k: int) -> str:
        if len(self.columns) == 1:
            return table.text[self.columns[0]][k]
        return json.dumps([table.text[c][k] for c in self.columns])

    def parse(self, table: Table, k: int) -> Any:
        try:
            if len(self.columns) == 1:
                return self.space.from_table_cell(table.text[self.columns[0]][k])
            return self.space.from_json([table.text[c][k] for c in self.columns])
        except ArchitectureError as exc:
            raise DatasetError(str(table.path), f"row {k + 2}, column {'/'.join(self.columns)}: {exc}") from None


def row_architectures(
    space: SearchSpace, table: Table, rows: Sequence[int], arch_column: str | None = None
) -> list[Any]:
    """The architectures of `rows` of `table`, read as `space`'s (errors name the row)."""
    ids = _RowIds(space, table, arch_column)
    return [ids.parse(table, k) for k in rows]


def looks_like_percent(column: str, values: np.ndarray) -> bool:
    """An accuracy column in percent: its name says accuracy and its values lie in [0, 100] with
    some above 1 (a fraction column never exceeds 1)."""
    finite = values[np.isfinite(values)]
    return (
        "acc" in column.lower() and finite.size > 0 and float(finite.min()) >= 0 and 1.0 < float(finite.max()) <= 100.0
    )


# -- the evaluators -----------------------------------------------------------------------------------
@EVALUATORS.register("table")
class TableEvaluator(Evaluator):
    """Look architectures up in a CSV table (see the module docstring for the metrics).

    Args:
        table: path of the CSV (gzip or plain).
        reward_column: the column reported as "val_accuracy".
        space: the space whose architectures the table lists (an object, or a registered name).
        arch_column: the architecture column (default: "arch_str"/"arch"/"architecture", or NB201's
            six ``op_*`` columns).
        report_column: the column reported as "test_accuracy" (optional).
        columns: further {metric name: column}.
        cost_column, cost_scale: "cost_seconds" = cost_scale x that column.
        cost_seconds: a constant "cost_seconds" when there is no cost column.
        match_key: if an architecture has no row of its own, use a row of an equivalent one
            (same canonical key), for tables that list one architecture per class.
        percent: the table stores accuracies in percent; nasforge reports every "*accuracy*"
            metric as a fraction in [0, 1], as the proxy trainer does, so rewards are comparable.
            None: guessed when the table is read (see `looks_like_percent`).
    """

    name = "table"

    def __init__(
        self,
        table: str | Path,
        reward_column: str,
        space: SearchSpace | str | None = None,
        report_column: str | None = None,
        arch_column: str | None = None,
        columns: Mapping[str, str] | None = None,
        cost_column: str | None = None,
        cost_scale: float = 1.0,
        cost_seconds: float | None = None,
        match_key: bool = True,
        percent: bool | None = None,
    ):
        if table is None or (not isinstance(table, (str, Path))) or not str(table):
            raise ConfigError("table", f"must be the path of a CSV table, got {table!r}")
        if not isinstance(reward_column, str) or not reward_column:
            raise ConfigError("reward_column", f"must name the table's reward column, got {reward_column!r}")
        self.table_path = Path(table).expanduser()
        self.space = _resolve_space(space)
        self.reward_column = reward_column
        self.report_column = report_column
        self.arch_column = arch_column
        self.columns = dict(columns or {})
        for metric, column in self.columns.items():
            if not isinstance(metric, str) or not isinstance(column, str):
                raise ConfigError("columns", f"expected {{metric name: column}}, got {metric!r}: {column!r}")
            if metric in ("val_accuracy", "test_accuracy", "cost_seconds"):
                raise ConfigError(f"columns.{metric}", "is set by reward_column/report_column/cost options")
            if is_test_metric(column) and not metric.startswith("test"):
                raise ConfigError(
                    f"columns.{metric}", f"column {column!r} holds test results; its metric name must start with 'test'"
                )
        if isinstance(cost_scale, bool) or not isinstance(cost_scale, (int, float)) or cost_scale < 0:
            raise ConfigError("cost_scale", f"must be a non-negative number, got {cost_scale!r}")
        if cost_seconds is not None and (
            isinstance(cost_seconds, bool) or not isinstance(cost_seconds, (int, float)) or cost_seconds < 0
        ):
            raise ConfigError("cost_seconds", f"must be a non-negative number, got {cost_seconds!r}")
        self.cost_column = cost_column
        self.cost_scale = float(cost_scale)
        self.cost_seconds = None if cost_seconds is None else float(cost_seconds)
        self.match_key = bool(match_key)
        self.given_percent = None if percent is None else bool(percent)
        self.percent = bool(percent)  # settled by load() when not given
        self._table: Table | None = None
        self._ids: _RowIds | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = None
        state["_ids"] = None
        return state

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": str(self.table_path),
            "space": _space_name(self.space),
            "reward_column": self.reward_column,
            "report_column": self.report_column,
            "arch_column": self.arch_column,
            "columns": dict(self.columns),
            "cost_column": self.cost_column,
            "cost_scale": self.cost_scale,
            "cost_seconds": self.cost_seconds,
            "match_key": self.match_key,
            "percent": self.given_percent,
        }

    def load(self) -> Table:
        """Read (once) and check the table: its columns exist and its first row parses."""
        if self._table is None:
            try:
                table = read_table(self.table_path)
            except zlib.error as exc:  # a damaged gzip stream past the header
                raise DatasetError(str(self.table_path), f"cannot read the table ({exc})") from None
            table.require(self.reward_column, "reward_column")
            for field, column in (("report_column", self.report_column), ("cost_column", self.cost_column)):
                if column is not None:
                    table.require(column, field)
            for metric, column in self.columns.items():
                table.require(column, f"columns.{metric}")
            ids = _RowIds(self.space, table, self.arch_column)
            ids.parse(table, 0)
            if self.given_percent is None:
                self.percent = looks_like_percent(
                    self.reward_column, table.numeric(self.reward_column, "reward_column")
                )
            self._table, self._ids = table, ids
        return self._table

    def prepare(self) -> None:
        self.load()

    def __len__(self) -> int:
        return len(self.load())

    def _space_for(self, space: SearchSpace | None) -> SearchSpace:
        if space is None:
            return self.space
        if _space_name(space) != _space_name(self.space):
            raise ConfigError(
                "space", f"this table lists {_space_name(self.space)!r} architectures, not {_space_name(space)!r}"
            )
        return space

    def _raw_index(self, table: Table) -> dict[str, int]:
        ids = self._ids
        assert ids is not None  # `table` came from load()
        return table.index(("raw", ids.columns), lambda t: {ids.raw(t, k): k for k in range(len(t))})

    def _parsed_index(self, table: Table) -> dict[str, int]:
        ids, space = self._ids, self.space
        assert ids is not None  # `table` came from load()
        return table.index(
            ("parsed", ids.columns, _space_name(space)),
            lambda t: {arch_id(space, ids.parse(t, k)): k for k in range(len(t))},
        )

    def _key_index(self, table: Table) -> dict[str, int]:
        ids, space = self._ids, self.space
        assert ids is not None  # `table` came from load()

        def build(t: Table) -> dict[str, int]:
            out: dict[str, int] = {}
            for k in range(len(t)):
                out.setdefault(space.key(ids.parse(t, k)), k)
            return out

        return table.index(("key", ids.columns, _space_name(space)), build)

    def row(self, arch: Any, space: SearchSpace | None = None) -> int:
        """The table row (0-based) of `arch`; `ArchitectureNotInTable` if there is none."""
        space = self._space_for(space)
        table = self.load()
        ident = arch_id(space, space.validate(arch))
        k = self._raw_index(table).get(ident)
        if k is None:
            k = self._parsed_index(table).get(ident)
        if k is None and self.match_key:
            k = self._key_index(table).get(space.key(arch))
        if k is None:
            assert self._ids is not None  # set by load()
            raise ArchitectureNotInTable(
                str(table.path),
                f"architecture {ident} is not in the table ({len(table)} rows, column {'/'.join(self._ids.columns)})",
            )
        return k

    def value(self, column: str, k: int) -> float:
        return float(self.load().numeric(column)[k])

    def accuracy(self, column: str, k: int) -> float:
        """An accuracy column as a fraction."""
        value = self.value(column, k)  # loads the table, which settles `percent`
        return value / (100.0 if self.percent else 1.0)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, space: SearchSpace, arch: Any, seed: int = 0) -> Metrics:
        k = self.row(arch, space)
        metrics: Metrics = {"val_accuracy": self.accuracy(self.reward_column, k)}
        if self.report_column is not None:
            metrics["test_accuracy"] = self.accuracy(self.report_column, k)
        for metric, column in self.columns.items():
            metrics[metric] = self.accuracy(column, k) if "accuracy" in metric else self.value(column, k)
        cost = self.cost(k)
        if cost is not None:
            metrics["cost_seconds"] = cost
        return metrics

    def cost(self, k: int) -> float | None:
        if self.cost_column is not None:
            return self.cost_scale * self.value(self.cost_column, k)
        return self.cost_seconds

    def static_metrics(self, space: SearchSpace | None, arch: Any) -> dict[str, float]:
        """Parameters and MACs before an evaluation: from the table's "params"/"macs" metrics if it
        maps them, else from the space's own cost model or a meta-device build."""
        space = self._space_for(space)
        if "params" in self.columns and "macs" in self.columns:
            k = self.row(arch, space)
            return {"params": self.value(self.columns["params"], k), "macs": self.value(self.columns["macs"], k)}
        costs = getattr(space, "costs", None)
        if callable(costs):
            return {k: float(v) for k, v in costs(arch).items()}
        return model_costs(space, arch)

    # -- whole-table queries (benchmarks, tests) -------------------------------------------------
    def best(self, column: str | None = None) -> tuple[Any, float]:
        """The architecture with the highest value in `column` (default: the reward column)."""
        column = column or self.reward_column
        values = self.load().numeric(column, "column")
        k = int(np.argmax(values))
        table = self.load()
        assert self._ids is not None  # set by load()
        return self._ids.parse(table, k), float(values[k])

    def architectures(self) -> list[Any]:
        table = self.load()
        ids = self._ids
        assert ids is not None  # set by load()
        return [ids.parse(table, k) for k in range(len(table))]


def _resolve_space(space: SearchSpace | str | None, default: str | None = None) -> SearchSpace:
    if space is None:
        space = default
    if isinstance(space, str):
        from nasforge.spaces import SPACES

        return SPACES.create(space)
    if space is None:
        raise ConfigError("space", "a table evaluator needs the space its architectures belong to")
    if not isinstance(space, SearchSpace):
        raise ConfigError("space", f"expected a search space or its name, got {space!r}")
    return space


def _default_table(parts: tuple[str, ...], table: str | Path | None) -> Path:
    if table is not None:
        return Path(table).expanduser()
    return require_data(*parts)


@EVALUATORS.register("nb201")
class NB201Table(TableEvaluator):
    """NAS-Bench-201 on CIFAR-10, as the benchmark's own search baselines use it (Dong & Yang, ICLR 2020, section 5).

    Metrics: "val_accuracy" is the ``cifar10-valid`` validation accuracy after `epochs` (12, the
    protocol's reward, or 200); "val_accuracy_12ep"/"val_accuracy_200ep" both schedules;
    "test_accuracy" the 200-epoch test accuracy (reported only) and "test_accuracy_12ep";
    "train_time_per_epoch_s"; "params"/"macs" of the benchmark's network (C=16, N=5, 32x32),
    computed by `NB201Space.costs` since the table has none; and "cost_seconds", the simulated
    time of the query: `epochs` x the table's per-epoch time x `cost_scale` (default 0.5, because
    the table times an epoch of the 50k training set and ``cifar10-valid`` trains on 25k; the
    validation pass is not included).
    """

    name = "nb201"
    #: NAS-Bench-201's own search protocol: reward 12-epoch validation, report 200-epoch test
    shared = SharedTable(NB201_FILE, NB201Space.name, "c10_valid_acc_12ep", "c10_test_acc_200ep", "arch_str")

    def __init__(
        self,
        table: str | Path | None = None,
        epochs: int = 12,
        cost_scale: float = 0.5,
        space: SearchSpace | str | None = None,
        match_key: bool = False,
    ):
        if epochs not in (12, 200):
            raise ConfigError(
                "epochs", f"NAS-Bench-201 has validation accuracies after 12 and 200 epochs, not {epochs!r}", [12, 200]
            )
        space = _resolve_space(space, NB201Space.name)
        if _space_name(space) != NB201Space.name:
            raise ConfigError(
                "space", f"the NAS-Bench-201 table needs the {NB201Space.name!r} space, not {_space_name(space)!r}"
            )
        self.epochs = epochs
        self.given_table = None if table is None else str(table)
        super().__init__(
            _default_table(NB201_FILE, table),
            f"c10_valid_acc_{epochs}ep",
            space,
            report_column="c10_test_acc_200ep",
            columns={
                "val_accuracy_12ep": "c10_valid_acc_12ep",
                "val_accuracy_200ep": "c10_valid_acc_200ep",
                "test_accuracy_12ep": "c10_test_acc_12ep",
                "train_time_per_epoch_s": "c10_train_time_per_epoch_s",
            },
            cost_column="c10_train_time_per_epoch_s",
            cost_scale=epochs * cost_scale,
            match_key=match_key,
            percent=True,
        )
        self.epoch_cost_scale = float(cost_scale)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.given_table,
            "epochs": self.epochs,
            "cost_scale": self.epoch_cost_scale,
            "match_key": self.match_key,
        }

    def evaluate(self, space: SearchSpace, arch: Any, seed: int = 0) -> Metrics:
        metrics = super().evaluate(space, arch, seed)
        metrics.update(self.static_metrics(space, arch))
        return metrics

    def static_metrics(self, space: SearchSpace | None, arch: Any) -> dict[str, float]:
        # the 'nb201' space (checked by name in __init__ and _space_for) counts costs without building
        costed = cast(_CostedSpace, self._space_for(space))
        return {k: float(v) for k, v in costed.costs(arch).items()}


@EVALUATORS.register("macro")
class MacroTable(TableEvaluator):
    """NAS-Bench-Macro on CIFAR-10.

    The benchmark has no validation split: each network's accuracy is the best *test* accuracy
    over its 50 epochs, and the test split doubles as the validation split (Su et al., NAS-Bench-Macro,
    arXiv:2103.11922). So
    "val_accuracy" (the reward) and "test_accuracy" are the same number here, the mean of the
    three runs, and the metrics carry "val_is_test" = 1.0 to say so. With ``sample_runs=True``
    "val_accuracy" is instead one of the three runs, drawn from the evaluation's seed, which
    gives the reward the run-to-run noise a real search sees.

    Other metrics: "val_accuracy_std" (population std of the runs), "params" and "macs" (the
    table's counts; its "flops" column counts multiply-accumulates of convs and linear layers),
    and "cost_seconds", which the table does not record: an *estimate*, 50 epochs x 50,000
    images x 3 (forward + backward) x MACs / `macs_per_second` (default 1e12), or the constant
    `cost_seconds` if given.
    """

    name = "macro"
    #: No validation split, three training runs each scored on test: a search is rewarded by the
    #: first run and reports the mean of the other two, so the reported number is never searched on.
    shared = SharedTable(MACRO_FILE, MacroSpace.name, "test_acc_run1", ("test_acc_run2", "test_acc_run3"), "arch")

    def __init__(
        self,
        table: str | Path | None = None,
        sample_runs: bool = False,
        macs_per_second: float = 1e12,
        cost_seconds: float | None = None,
        space: SearchSpace | str | None = None,
        match_key: bool = False,
    ):
        space = _resolve_space(space, MacroSpace.name)
        if _space_name(space) != MacroSpace.name:
            raise ConfigError(
                "space", f"the NAS-Bench-Macro table needs the {MacroSpace.name!r} space, not {_space_name(space)!r}"
            )
        if isinstance(macs_per_second, bool) or not isinstance(macs_per_second, (int, float)) or macs_per_second <= 0:
            raise ConfigError("macs_per_second", f"must be a positive number, got {macs_per_second!r}")
        self.sample_runs = bool(sample_runs)
        self.macs_per_second = float(macs_per_second)
        self.given_table = None if table is None else str(table)
        super().__init__(
            _default_table(MACRO_FILE, table),
            "mean_acc",
            space,
            arch_column="arch",
            columns={"val_accuracy_std": "std_acc", "params": "params", "macs": "flops"},
            cost_seconds=cost_seconds,
            match_key=match_key,
            percent=True,
        )

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.given_table,
            "sample_runs": self.sample_runs,
            "macs_per_second": self.macs_per_second,
            "cost_seconds": self.cost_seconds,
            "match_key": self.match_key,
        }

    def evaluate(self, space: SearchSpace, arch: Any, seed: int = 0) -> Metrics:
        metrics = super().evaluate(space, arch, seed)
        k = self.row(arch, space)
        metrics["test_accuracy"] = metrics["val_accuracy"]
        if self.sample_runs:
            run = int(np.random.default_rng(seed).integers(3)) + 1
            metrics["val_accuracy"] = self.accuracy(f"test_acc_run{run}", k)
        metrics["val_is_test"] = 1.0
        if self.cost_seconds is None:
            metrics["cost_seconds"] = 50 * 50_000 * 3 * metrics["macs"] / self.macs_per_second
        return metrics


def shared_tables() -> dict[str, SharedTable]:
    """The shared tables by the name of their evaluator (plug-in tables included)."""
    out = {}
    for name in EVALUATORS:
        shared = getattr(EVALUATORS[name], "shared", None)
        if isinstance(shared, SharedTable):
            out[name] = shared
    return out


__all__ = [
    "ArchitectureNotInTable",
    "MACRO_FILE",
    "SharedTable",
    "shared_tables",
    "MacroTable",
    "NB201Table",
    "NB201_FILE",
    "Table",
    "TableEvaluator",
    "arch_id",
    "clear_table_cache",
    "read_table",
    "row_architectures",
]
