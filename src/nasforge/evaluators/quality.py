"""How well does an evaluator rank architectures? Measured against a table's known truth.

A tabulated benchmark (NAS-Bench-201, NAS-Bench-Macro, or any CSV with an architecture column)
knows every cell's accuracy after full training. `check_evaluator` scores a fixed, seeded random
sample of the table's architectures with any evaluator -- one that trains on real images, a
zero-cost score, a combination -- and compares its ranking with the table's:

* Kendall's tau and Spearman's rho (scipy.stats), the usual figures in the zero-cost literature
  (Abdelfattah et al., 2021; White et al., "A Deeper Look at Zero-Cost Proxies", NAS-Bench-Suite-Zero);
* the precision of the top 10 %: the share of the truly best tenth that the evaluator also puts
  in its best tenth, which is what a pre-screen needs;
* seconds per cell, the price of that ranking.

The evaluator never sees the truth column: the table is read here only to pick the sample and to
grade the scores afterwards. A cell whose evaluation fails is ranked below every scored cell (a
search would never pick it) and counted in ``failed``.

Long checks resume: with a cache file, each scored cell is appended as one JSON line, and a rerun
with the same evaluator settings scores only the cells not yet in it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasforge.errors import ConfigError
from nasforge.evaluators.base import ArchitectureEvaluator
from nasforge.evaluators.objectives import read_metric
from nasforge.evaluators.table import Table, read_table, row_architectures
from nasforge.registry import describe_component
from nasforge.spaces.base import SearchSpace


@dataclass
class RankQuality:
    kendall_tau: float
    spearman_rho: float
    top10_precision: float
    cells: int
    failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_quality(scores: Sequence[float | None], truth: Sequence[float]) -> RankQuality:
    """Agreement of `scores` (None or NaN: failed, ranked last) with `truth` (higher is better)."""
    from scipy.stats import kendalltau, spearmanr

    truth_arr = np.asarray(truth, dtype=np.float64)
    raw = np.array([np.nan if s is None else float(s) for s in scores], dtype=np.float64)
    failed = ~np.isfinite(raw)
    if len(raw) != len(truth_arr) or len(raw) < 2:
        raise ConfigError("sample", f"need at least 2 scored cells with their truth, got {len(raw)}")
    score_arr = raw.copy()
    if failed.any():
        floor = np.min(raw[~failed]) if (~failed).any() else 0.0
        score_arr[failed] = floor - 1.0 - np.abs(floor)
    tau = kendalltau(score_arr, truth_arr).statistic
    rho = spearmanr(score_arr, truth_arr).statistic
    k = max(1, int(round(0.1 * len(raw))))
    top_truth = set(np.argsort(-truth_arr, kind="stable")[:k].tolist())
    top_score = set(np.argsort(-score_arr, kind="stable")[:k].tolist())
    return RankQuality(
        kendall_tau=_finite(tau),
        spearman_rho=_finite(rho),
        top10_precision=len(top_truth & top_score) / k,
        cells=len(raw),
        failed=int(failed.sum()),
    )


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0  # constant scores carry no ranking


@dataclass
class CheckResult:
    """The outcome of `check_evaluator`: overall figures plus every cell's score and truth."""

    quality: RankQuality
    seconds_per_cell: float
    metric: str
    truth_column: str
    evaluator: dict[str, Any]
    cells: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_cells: bool = False) -> dict[str, Any]:
        out = {
            **self.quality.to_dict(),
            "seconds_per_cell": self.seconds_per_cell,
            "metric": self.metric,
            "truth_column": self.truth_column,
            "evaluator": self.evaluator,
        }
        if with_cells:
            out["per_cell"] = self.cells
        return out


def sample_rows(table: Table, sample: int, seed: int) -> list[int]:
    """`sample` distinct row indices of `table`, chosen by `seed` (the same rows for every evaluator)."""
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 2:
        raise ConfigError("sample", f"must be an integer >= 2, got {sample!r}")
    if sample > len(table):
        raise ConfigError("sample", f"{sample} is more than the {len(table)} rows of {table.path}")
    return sorted(np.random.default_rng(seed).choice(len(table), size=sample, replace=False).tolist())


def check_evaluator(
    space: SearchSpace,
    evaluator: ArchitectureEvaluator,
    table_path: str | Path,
    truth_column: str,
    *,
    sample: int = 500,
    seed: int = 0,
    eval_seed: int = 0,
    metric: str | None = None,
    arch_column: str | None = None,
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Score a seeded sample of `table_path`'s architectures with `evaluator` and grade the ranking
    by `truth_column` (see the module docstring). `seed` picks the sample, `eval_seed` the
    evaluations' own seeds (weights, batches); `metric` is the metric ranked (default: the
    evaluator's reward metric)."""
    table = read_table(table_path)
    truth = table.numeric(table.require(truth_column, "truth_column"), "truth_column")
    reward_metric: str = getattr(evaluator, "reward_metric", "val_accuracy")
    metric = metric or reward_metric
    rows = sample_rows(table, sample, seed)
    archs = row_architectures(space, table, rows, arch_column)
    config = describe_component(evaluator)
    done = _read_cache(cache, {"evaluator": config, "eval_seed": eval_seed}) if cache else {}
    prepare = getattr(evaluator, "prepare", None)
    if callable(prepare) and len(done) < len(rows):
        prepare()
    cells: list[dict[str, Any]] = []
    for k, (row, arch) in enumerate(zip(rows, archs)):
        ident = json.dumps(space.to_json(arch), sort_keys=True)
        entry = done.get(ident)
        if entry is None:
            entry = _score_cell(space, evaluator, arch, eval_seed * 1_000_003 + row)
            entry["arch"] = ident
            if cache:
                with open(cache, "a") as f:
                    f.write(json.dumps(entry) + "\n")
        cells.append({**entry, "row": row, "truth": float(truth[row])})
        if progress is not None:
            progress(k + 1, len(rows))
    scores = [_metric_or_none(c.get("metrics"), metric) for c in cells]
    if all(s is None for s in scores) and any(c.get("metrics") for c in cells):
        read_metric(next(c["metrics"] for c in cells if c.get("metrics")), metric, "metric")  # names the choices
    quality = rank_quality(scores, [c["truth"] for c in cells])
    seconds = float(np.mean([c["seconds"] for c in cells]))
    return CheckResult(quality, seconds, metric, truth_column, config, cells)


def _score_cell(space: SearchSpace, evaluator: ArchitectureEvaluator, arch: Any, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        metrics = evaluator.evaluate(space, arch, seed)
        error = None
    except ConfigError:
        raise
    except Exception as exc:  # a failed cell is data here, as in a search
        metrics, error = None, f"{type(exc).__name__}: {exc}"
    plain = None if metrics is None else {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return {"metrics": plain, "error": error, "seconds": time.perf_counter() - start}


def _metric_or_none(metrics: dict[str, float] | None, metric: str) -> float | None:
    if not metrics or metric not in metrics:
        return None
    value = metrics[metric]
    return value if math.isfinite(value) else None


def _read_cache(path: str | Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Cells already scored with these evaluator settings; a cache made with others is refused."""
    p = Path(path)
    if not p.exists():
        p.write_text(json.dumps(settings, sort_keys=True) + "\n")
        return {}
    lines = p.read_text().splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header != json.loads(json.dumps(settings)):
        raise ConfigError("cache", f"{p} holds scores of another evaluator configuration; use a new cache file")
    out: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: that cell is scored again
        out[entry["arch"]] = entry
    return out


__all__ = ["CheckResult", "RankQuality", "check_evaluator", "rank_quality", "sample_rows"]
