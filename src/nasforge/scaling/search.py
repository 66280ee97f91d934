"""The coefficient search (the EfficientNet paper's step 1) as a recorded, resumable run.

`search_coefficients(family, evaluator, run_dir)` builds the `CoefficientSpace` (every admissible
(alpha, beta, gamma) of the grid, then the depth-only, width-only and resolution-only alternatives
with the same MACs budget), runs a `GridSearch` over it on the ordinary `Experiment` machinery (so
every candidate is a trial in `run_dir/nasforge.db`, and an interrupted search resumes where it
stopped without evaluating a triple twice), then picks the best admissible triple by reward and
reports the alternatives beside it.

Every candidate carries the standard error of its reward (`se`): for an accuracy on n validation
images the binomial sqrt(p (1 - p) / n), with an evaluator's `seeds=K` the spread of the K runs'
mean added to it, for a deterministic score (`MACsScore`) 0. The result's
`verdict` says whether the best triple is ahead of the runner-up by more than
Z_MARGIN x sqrt(se_best^2 + se_runner^2) ("clear winner") or not ("no clear winner"), and compares
the best triple with the best single-dimension alternative the same way. The choice itself stays
deterministic either way: the highest reward (ties: fewer MACs, then grid order).

Two candidates can build the same network: the family rounds widths and depths, so with NASNet
filters in steps of 4, beta = 1.4 and the width-only beta = sqrt(2) both give 16 -> 24 filters.
Each row records `same_network_as` (the first candidate with the same concrete member), the
verdict never reports a network as beating itself, and the rows trained once show what one
training's luck is: their spread within each such group (pooled) is added to the standard error
of every row trained once, which the binomial error alone leaves out.

Once every candidate is finished, the baseline (phi = 0) is evaluated by the same evaluator, with
the same schedule, and stored as `baseline`, so that the table of phi = 0 against phi = 1 compares
numbers trained alike.

The result is also stored in the run as the marker ``coefficients`` (read by the HTML report)::

    {"candidates": [{"alpha", "beta", "gamma", "label", "reward", "se", "val_accuracy" | "score",
                     "params", "macs", ...}, ...],
     "best": {...}, "verdict": {...}, "baseline": {...} | None, "schedule": {...},
     "metric": "score", "complete": true, ...}

`RebasedFamily(family, width_mult, depth_mult)` makes a smaller (or larger) member of a family the
baseline, e.g. B0 at width 0.25 for a proxy search on a small dataset.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from nasforge.errors import ConfigError
from nasforge.evaluators.base import ArchitectureEvaluator, Evaluator
from nasforge.scaling.coefficients import (
    CoefficientSpace,
    CoefficientTriple,
    MACsScore,
    ScaledMemberEvaluator,
    admissible_triples,
)
from nasforge.scaling.compound import CompoundScaler
from nasforge.scaling.family import Family, family_from

#: What every candidate row holds about its phi = 1 member (None until it is evaluated).
MEMBER_FIELDS = ("params", "macs", "macs_ratio", "width_mult", "depth_mult", "resolution")
#: Metrics copied from a trial into its candidate row when the evaluator reports them.
CANDIDATE_METRICS = (
    *MEMBER_FIELDS,
    "val_accuracy",
    "score",
    "ideal_ratio",
    "train_seconds",
    "seeds",
    "val_accuracy_seeds",
)
INTEGER_FIELDS = ("params", "macs", "resolution")
#: Two candidates are told apart when their rewards differ by more than this many combined
#: standard errors (about a 95 % two-sided test of the difference for accuracies).
Z_MARGIN = 2.0
#: Metrics that are accuracies on the validation split (a binomial standard error applies).
ACCURACY_METRICS = ("val_accuracy", "reward")


# -- a family with another baseline ------------------------------------------------------------------
class RebasedFamily(Family):
    """`family` with its member (width_mult, depth_mult) as the new baseline.

    Member (w, d, r) of the rebased family is member (w x width_mult, d x depth_mult, r) of
    `family`; `model.scaling` carries the rebased multipliers, so scores and tables are relative to
    the new baseline.
    """

    def __init__(self, family: Family, width_mult: float = 1.0, depth_mult: float = 1.0):
        for name, value in (("width_mult", width_mult), ("depth_mult", depth_mult)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    name, f"the baseline's {name.split('_')[0]} multiplier must be a positive number, got {value!r}"
                )
        super().__init__(family.base_resolution, family.num_classes)
        self.inner = family
        self.name = family.name
        self.width_mult, self.depth_mult = float(width_mult), float(depth_mult)

    def _build(self, width_mult, depth_mult, resolution, num_classes, **network):
        return self.inner.build(
            width_mult * self.width_mult, depth_mult * self.depth_mult, resolution, num_classes=num_classes, **network
        )

    def describe(self, width_mult: float = 1.0, depth_mult: float = 1.0) -> dict[str, Any]:
        return self.inner.describe(width_mult * self.width_mult, depth_mult * self.depth_mult)

    def config(self) -> dict[str, Any]:
        inner = dict(self.inner.config())
        inner.update(base_resolution=self.base_resolution, num_classes=self.num_classes)
        return {**inner, "rebased": {"width_mult": self.width_mult, "depth_mult": self.depth_mult}}


def rebase(family: Family, width_mult: float = 1.0, depth_mult: float = 1.0) -> Family:
    """`family` itself when both multipliers are 1, else a `RebasedFamily`."""
    if width_mult == 1 and depth_mult == 1 and not isinstance(width_mult, bool):
        return family
    return RebasedFamily(family, width_mult, depth_mult)


# -- the objective -----------------------------------------------------------------------------------
class MetricObjective:
    """reward = metrics[metric]; a missing metric is a configuration mistake (stops the run)."""

    def __init__(self, metric: str):
        self.metric = metric

    def reward(self, metrics: Mapping[str, Any]) -> float:
        if self.metric not in metrics:
            raise ConfigError("objective", f"the evaluator reports no {self.metric!r} metric", sorted(metrics))
        return float(metrics[self.metric])

    def config(self) -> dict[str, Any]:
        return {"name": "metric", "metric": self.metric}


def _objective(objective: Any, evaluator: object) -> tuple[Any, str]:
    if objective is None:
        metric = getattr(evaluator, "reward_metric", None) or "val_accuracy"
        return MetricObjective(metric), metric
    if isinstance(objective, str):
        return MetricObjective(objective), objective
    if not callable(objective) and not callable(getattr(objective, "reward", None)):
        raise ConfigError(
            "objective", f"expected a metric name, a callable or an object with reward(metrics), got {objective!r}"
        )
    return objective, getattr(objective, "metric", None) or "reward"


# -- the result -----------------------------------------------------------------------------------------
def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class CoefficientResult:
    """What a coefficient search found.

    Attributes:
        run_dir: the run folder (its `nasforge.db` holds every trial).
        metric: the metric the reward is (e.g. "score" for `MACsScore`, "val_accuracy" for training),
            or "reward" for a custom objective.
        candidates: every candidate in grid order: the admissible triples (label "compound"), then
            the alternatives; each a dict with alpha, beta, gamma, label, product, admissible
            (|product - target| <= tolerance), status, trial,
            reward, the metric, params, macs, macs_ratio, width/depth multipliers and resolution of
            the phi = 1 member (None where not evaluated yet), and error for a failed one.
        best: the admissible triple with the highest reward (ties: fewer MACs, then grid order), or
            None when none has been evaluated successfully yet.
        complete: every candidate has a finished trial.
        counts: the run's trial counts (done, failed, pending, total, ...).
        settings: the grid (step, ranges, target, tolerance), the phi evaluated and the
            evaluation `schedule` (epochs per candidate, validation images).
        verdict: see `verdict`: whether the best triple is told apart from the runner-up and
            from the best single-dimension alternative, given the standard errors.
        baseline: the phi = 0 member evaluated with the candidates' schedule (None until every
            candidate has finished, or when it failed: then it holds the error).
    """

    run_dir: Path
    metric: str
    candidates: list[dict[str, Any]]
    best: dict[str, Any] | None
    complete: bool
    counts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None

    @property
    def compound(self) -> list[dict[str, Any]]:
        """The admissible triples, best first (unevaluated and failed ones last, in grid order)."""
        return sorted((c for c in self.candidates if c["label"] == "compound"), key=_rank_key)

    @property
    def alternatives(self) -> list[dict[str, Any]]:
        """The single-dimension alternatives, each with `reward_vs_best` (its reward minus the best's)."""
        out = []
        best = self.best.get("reward") if self.best else None
        for c in self.candidates:
            if c["label"] != "compound":
                gap = c["reward"] - best if _finite(c.get("reward")) and _finite(best) else None
                out.append({**c, "reward_vs_best": gap})
        return out

    @property
    def coefficients(self) -> tuple[float, float, float] | None:
        return None if self.best is None else (self.best["alpha"], self.best["beta"], self.best["gamma"])

    def scaler(self, **kwargs: Any) -> CompoundScaler:
        """A `CompoundScaler` with the chosen coefficients."""
        if self.best is None:
            raise ConfigError("coefficients", f"no admissible triple has been evaluated in {self.run_dir} yet")
        return CompoundScaler(self.best["alpha"], self.best["beta"], self.best["gamma"], **kwargs)

    def to_marker(self) -> dict[str, Any]:
        """The JSON stored as the run's ``coefficients`` marker (what the HTML report reads)."""
        return {
            "candidates": [dict(c) for c in self.candidates],
            "best": None if self.best is None else dict(self.best),
            "verdict": self.verdict,
            "baseline": None if self.baseline is None else dict(self.baseline),
            "metric": self.metric,
            "complete": self.complete,
            **self.settings,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            **self.to_marker(),
            "alternatives": self.alternatives,
            "counts": dict(self.counts),
        }


def _rank_key(c: Mapping[str, Any]) -> tuple:
    reward = c.get("reward")
    if not _finite(reward):
        return (1, 0.0, 0.0, c.get("index", 0))
    macs = c.get("macs")
    # rewards equal up to float noise (a symmetric score) are ties: the cheaper member wins
    return (0, -round(reward, 9), macs if _finite(macs) else math.inf, c.get("index", 0))


def standard_error(value: Any, metric: str, n_val: int | None, reported: Any = None) -> float | None:
    """The standard error of one candidate's reward.

    An accuracy p on n validation images: the binomial sqrt(p (1 - p) / n) (at least 1/(2n)
    is never assumed: p = 0 or 1 gives 0). A deterministic score (`MACsScore`'s "score"): 0.
    A `<metric>_se` the evaluator reports (the spread over seeds of `mean_over_seeds`) is added in
    quadrature: the seeds share one validation set, so its sampling error does not average out
    (counting it whole is the cautious side). None when nothing is known.
    """
    se: float | None = None
    if metric == "score":
        se = 0.0
    elif metric in ACCURACY_METRICS and _finite(value) and 0.0 <= value <= 1.0 and n_val:
        se = math.sqrt(value * (1.0 - value) / n_val)
    if _finite(reported) and reported >= 0:
        se = float(reported) if se is None else math.hypot(se, float(reported))
    return se


def _candidate(
    index: int, triple: CoefficientTriple, admissible: bool, trial: Any, metric: str, n_val: int | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "index": index,
        "alpha": triple.alpha,
        "beta": triple.beta,
        "gamma": triple.gamma,
        "label": triple.label,
        "product": triple.product,
        "admissible": admissible,
        "trial": None,
        "status": "not run",
        "reward": None,
        "se": None,
    }
    for name in (*MEMBER_FIELDS, *((metric,) if metric != "reward" else ())):
        row[name] = None
    if trial is None:
        return row
    row.update(trial=trial.id, status=trial.status)
    metrics = trial.metrics or {}
    for name in (*CANDIDATE_METRICS, metric):
        if name in metrics:
            value = metrics[name]
            if name in INTEGER_FIELDS and _finite(value) and float(value).is_integer():
                value = int(value)
            row[name] = value
    if trial.status == "done":
        row["reward"] = trial.reward
        row["se"] = standard_error(trial.reward, metric, n_val, metrics.get(f"{metric}_se"))
    if trial.error:
        row["error"] = trial.error
    return row


def compare(a: Mapping[str, Any], b: Mapping[str, Any], z: float = Z_MARGIN) -> dict[str, Any]:
    """How far `a` is ahead of `b` (their "reward"s) and whether that is more than `z` combined
    standard errors (their "se"s; `clear` is None when either is unknown)."""
    diff = a["reward"] - b["reward"]
    diff = 0.0 if abs(diff) < 1e-9 else diff  # float noise of equal rewards (the ranking's ties)
    if _finite(a.get("se")) and _finite(b.get("se")):
        margin = z * math.sqrt(a["se"] ** 2 + b["se"] ** 2)
        clear: bool | None = abs(diff) > margin + 1e-12
    else:
        margin, clear = None, None
    return {"difference": diff, "margin": margin, "clear": clear}


def _name(c: Mapping[str, Any]) -> str:
    if c.get("label", "compound") != "compound":
        return str(c["label"])
    return f"(α={c['alpha']:g}, β={c['beta']:g}, γ={c['gamma']:g})"


# -- candidates that build one network ------------------------------------------------------------------
def member_network(space: CoefficientSpace, triple: CoefficientTriple) -> str | None:
    """The concrete phi-member of `triple` (the family's widths and depths, and the resolution) as
    a canonical string; None when the family does not describe its members."""
    if space.family is None:
        return None
    width, depth, resolution = space.member_multipliers(triple)
    shape = space.family.describe(width, depth)
    return json.dumps({**shape, "resolution": resolution}, sort_keys=True) if shape else None


def mark_same_networks(rows: Sequence[dict[str, Any]], networks: Sequence[str | None]) -> None:
    """Give each row `same_network_as`: the index of the first earlier row with the same network, or None."""
    first: dict[str, int] = {}
    for row, net in zip(rows, networks):
        row["same_network_as"] = None
        if net is None:
            continue
        if net in first:
            row["same_network_as"] = first[net]
        else:
            first[net] = row["index"]


def network_id(c: Mapping[str, Any]) -> Any:
    """One id per distinct network: the first candidate's index."""
    same = c.get("same_network_as")
    return c.get("index") if same is None else same


def _trained_once(c: Mapping[str, Any]) -> bool:
    return c.get("seeds") in (None, 1)


def widen(row: dict[str, Any], spread: Mapping[str, Any] | None) -> dict[str, Any]:
    """Add one training's luck (`training_spread`) to the ± of a row trained once, keeping the
    binomial part as `se_binomial`; `row` itself, changed in place."""
    if spread is not None and _trained_once(row) and _finite(row.get("se")):
        row["se_binomial"], row["se"] = row["se"], math.hypot(row["se"], spread["sd"])
    return row


def training_spread(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """How much one training's luck moves a reward, measured where rows trained once build one
    network: the pooled standard deviation within those groups (None without such a group).

    Returns {"sd", "df" (degrees of freedom: rows minus groups), "groups": one list of [name, reward]
    per network trained more than once}.
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        if _trained_once(r) and _finite(r.get("reward")):
            groups.setdefault(network_id(r), []).append(r)
    repeated = [g for g in groups.values() if len(g) > 1]
    if not repeated:
        return None
    squares = sum(sum((r["reward"] - sum(x["reward"] for x in g) / len(g)) ** 2 for r in g) for g in repeated)
    df = sum(len(g) - 1 for g in repeated)
    return {
        "sd": math.sqrt(squares / df),
        "df": df,
        "groups": [[[_name(r), r["reward"]] for r in g] for g in repeated],
    }


def verdict(candidates: Sequence[Mapping[str, Any]], z: float = Z_MARGIN) -> dict[str, Any] | None:
    """Whether the best compound triple is told apart from the rest, given each reward's `se`.

    Returns None when no compound triple has a reward yet, else a dict:
      - clear: True when the best is ahead of the runner-up by more than z sqrt(se1^2 + se2^2),
        False when not ("no clear winner"), None when the standard errors are unknown (or there
        is no runner-up: then True);
      - best, runner_up: the two triples' index, name, reward and se; difference, margin;
      - tied: the names of the triples within the margin of the best (the best included);
      - same_network: the candidates that build the best's very network (never its runner-up or
        its alternative: a second training of one network is no rival);
      - training_spread: see `training_spread` (None when no network was trained twice);
      - alternative: the best single-dimension alternative against the best triple (its name,
        reward, se, difference = best triple - alternative, margin, clear and `better`:
        "compound", "alternative" or None when not told apart);
      - text: one plain sentence of all that; rule: how the choice is made.
    """
    ranked = sorted((c for c in candidates if c.get("label") == "compound" and _finite(c.get("reward"))), key=_rank_key)
    if not ranked:
        return None
    best = ranked[0]
    brief = lambda c: {"index": c.get("index"), "name": _name(c), "reward": c["reward"], "se": c.get("se")}  # noqa: E731
    out: dict[str, Any] = {
        "z": z,
        "best": brief(best),
        "runner_up": None,
        "difference": None,
        "margin": None,
        "clear": True,
        "tied": [_name(best)],
        "alternative": None,
        "rule": "the highest reward is chosen; ties: fewer MACs, then grid order",
    }
    # a candidate that builds the best's network is a second training of it, not a rival
    same = network_id(best)
    out["same_network"] = [
        brief(c) for c in candidates if c is not best and _finite(c.get("reward")) and network_id(c) == same
    ]
    out["training_spread"] = training_spread(candidates)
    others = [c for c in ranked if network_id(c) != same]
    if others:
        runner = others[0]
        pair = compare(best, runner, z)
        out.update(runner_up=brief(runner), **pair)
        out["tied"] = [_name(best)] + [_name(c) for c in others if compare(best, c, z)["clear"] is False]
    alts = sorted(
        (c for c in candidates if c.get("label") != "compound" and _finite(c.get("reward")) and network_id(c) != same),
        key=_rank_key,
    )
    if alts:
        pair = compare(best, alts[0], z)
        better = None if pair["clear"] is not True else ("compound" if pair["difference"] > 0 else "alternative")
        out["alternative"] = {**brief(alts[0]), **pair, "better": better}
    out["text"] = verdict_text(out)
    return out


def verdict_text(v: Mapping[str, Any]) -> str:
    """The verdict as plain sentences (what the CLI and the report print)."""
    best = v["best"]
    runner = v.get("runner_up")
    show = lambda c: f"{c['reward']:.4f}" + (f" ± {c['se']:.4f}" if _finite(c.get("se")) and c["se"] > 0 else "")  # noqa: E731
    if runner is None:
        text = f"only one network was evaluated: {best['name']}, {show(best)}."
    elif v.get("clear") is None:
        text = (
            f"best {best['name']} {show(best)}, runner-up {runner['name']} {show(runner)}; the standard "
            f"errors are unknown, so whether this is a clear winner is not known."
        )
    elif v["clear"]:
        text = (
            f"clear winner: {best['name']} {show(best)} is ahead of the runner-up {runner['name']} "
            f"{show(runner)} by {v['difference']:.4f}, more than {v['z']:g}·√(se₁²+se₂²) = {v['margin']:.4f}."
        )
    else:
        n = len(v.get("tied") or [])
        text = (
            f"no clear winner: the best {best['name']} {show(best)} is ahead of the runner-up "
            f"{runner['name']} {show(runner)} by only {v['difference']:.4f}, within "
            f"{v['z']:g}·√(se₁²+se₂²) = {v['margin']:.4f}; {n} triples are within that margin of the best. "
            f"Chosen anyway: the highest measured (ties: fewer MACs, then grid order)"
            + (
                "; the scores are tied exactly."
                if not v["margin"]
                else "; more validation images, longer training or more seeds would tell them apart."
            )
        )
    twins = v.get("same_network") or []
    if twins:
        text += (
            f" {', '.join(c['name'] for c in twins)} build{'s' if len(twins) == 1 else ''} the same network as "
            f"{best['name']} (the family rounds them to the same widths, depths and resolution): "
            f"{', '.join(format(c['reward'], '.4f') for c in twins)} against {best['reward']:.4f}."
        )
    spread = v.get("training_spread")
    if spread:
        text += (
            f" One training's luck, measured on the networks trained more than once, has a standard deviation "
            f"of {spread['sd']:.4f} ({spread['df']} degree{'s' if spread['df'] != 1 else ''} of freedom); it is "
            f"part of the ± of every row trained once."
        )
    alt = v.get("alternative")
    if alt:
        if alt.get("better") == "compound":
            text += f" Compound scaling beats the best single dimension, {alt['name']} {show(alt)}."
        elif alt.get("better") == "alternative":
            text += f" The single-dimension {alt['name']} {show(alt)} is clearly better than the best compound triple."
        elif alt.get("clear") is False:
            text += (
                f" Compound vs the best single dimension, {alt['name']} {show(alt)}: no clear difference "
                f"(|{alt['difference']:+.4f}| ≤ {alt['margin']:.4f})."
            )
    return text


def collect_result(
    store: Any,
    space: CoefficientSpace,
    metric: str,
    run_dir: Path,
    settings: Mapping[str, Any] | None = None,
    n_val: int | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> CoefficientResult:
    """The `CoefficientResult` of the trials in `store` (any state: finished, interrupted, empty).

    `n_val`: the number of validation images behind an accuracy (for its standard error).
    """
    by_key: dict[str, Any] = {}
    for t in store.iter_trials():  # the first trial of a key; a finished one over an unfinished one
        if t.reused_from is not None:
            continue
        seen = by_key.get(t.key)
        if seen is None or (seen.status not in ("done", "failed") and t.status in ("done", "failed")):
            by_key[t.key] = t
    rows = [
        _candidate(i, c, space.is_admissible(c), by_key.get(space.key(c)), metric, n_val)
        for i, c in enumerate(space.candidates)
    ]
    mark_same_networks(rows, [member_network(space, c) for c in space.candidates])
    spread = training_spread(rows)
    for r in rows:
        widen(r, spread)
    ranked = sorted((r for r in rows if r["label"] == "compound" and _finite(r["reward"])), key=_rank_key)
    complete = all(r["status"] in ("done", "failed") for r in rows)
    return CoefficientResult(
        Path(run_dir),
        metric,
        rows,
        dict(ranked[0]) if ranked else None,
        complete,
        store.counts(),
        dict(settings or {}),
        verdict(rows),
        None if baseline is None else dict(baseline),
    )


# -- the search -------------------------------------------------------------------------------------------
def _as_scaled_evaluator(
    family: Family | str | None, evaluator: ArchitectureEvaluator | None
) -> tuple[Family, ScaledMemberEvaluator]:
    if isinstance(evaluator, ScaledMemberEvaluator):
        if family is None:
            return evaluator.family, evaluator
        family = family_from(family)
        if family is not evaluator.family and family.config() != evaluator.family.config():
            raise ConfigError(
                "family",
                "the evaluator scales another family than the one given; pass the same family to both (or family=None)",
            )
        return family, evaluator
    family = family_from(family) if family is not None else None
    if family is None:
        raise ConfigError("family", "give the baseline family (or a ScaledMemberEvaluator that holds one)")
    if evaluator is None:
        return family, ScaledMemberEvaluator(family, MACsScore())
    if not isinstance(evaluator, Evaluator) and not callable(getattr(evaluator, "evaluate", None)):
        raise ConfigError("evaluator", f"expected an evaluator, got {type(evaluator).__name__}")
    return family, ScaledMemberEvaluator(family, evaluator)


def check_members(space: CoefficientSpace, family: Family, evaluator: ScaledMemberEvaluator) -> None:
    """Every candidate's member resolution and multipliers, before anything is evaluated."""
    base = family.base_resolution
    if base < evaluator.min_resolution:
        raise ConfigError(
            "resolution", f"the baseline's {base} px is under the minimum of {evaluator.min_resolution} px"
        )
    for c in space.candidates:
        CompoundScaler(c.alpha, c.beta, c.gamma, evaluator.resolution_divisor, evaluator.min_resolution)._checked(
            evaluator.phi, base
        )


def search_coefficients(
    family: Family | str | None,
    evaluator: ArchitectureEvaluator | None,
    run_dir: str | os.PathLike,
    *,
    step: float = 0.05,
    target: float = 2.0,
    tolerance: float = 0.1,
    alpha_range: Sequence[float] = (1.0, 2.0),
    beta_range: Sequence[float] = (1.0, 1.5),
    gamma_range: Sequence[float] = (1.0, 1.5),
    alternatives: bool = True,
    seed: int = 0,
    resume: bool | str = False,
    progress: bool = True,
    objective: Any = None,
    max_trials: int | None = None,
    max_seconds: float | None = None,
    retries: int = 0,
    console: Any = None,
    baseline: bool = True,
) -> CoefficientResult:
    """Grid-search alpha, beta, gamma at phi = 1 for `family`, as a recorded, resumable run.

    Args:
        family: the baseline (a `Family`, a registered model name or an architecture file); None
            to take the family of a `ScaledMemberEvaluator`.
        evaluator: a `ScaledMemberEvaluator`, or the inner evaluator of the phi = 1 member
            (`MACsScore()`, a `ProxyTrainer`), which is wrapped in one; None for `MACsScore()`.
        run_dir: the run folder (created; `resume` decides what an existing one means).
        step, target, tolerance, alpha_range, beta_range, gamma_range: the grid (see
            `nasforge.scaling.admissible_triples`).
        alternatives: also evaluate the single-dimension alternatives.
        seed: the run seed (trial seeds derive from it).
        resume: False (refuse an existing run), True (continue one), "auto".
        progress: show the experiment's progress line on stderr.
        objective: None for the evaluator's `reward_metric` ("score" for `MACsScore`, else
            "val_accuracy"), a metric name, or a callable/objective object.
        max_trials, max_seconds: stop early (the result is then partial; resume to finish).
        retries: re-runs of a failed evaluation.
        baseline: once every candidate has finished, also evaluate the phi = 0 member with the same
            evaluator (same epochs), stored as the run's marker ``coefficients.baseline``.

    Returns a `CoefficientResult`, also stored in the run as the marker ``coefficients``.
    Raises `ConfigError` for a grid without admissible triple, a coefficient range below 1, a
    member resolution under the evaluator's `min_resolution`, or every admissible triple failing.
    """
    from nasforge.experiment.experiment import Experiment
    from nasforge.experiment.store import Store
    from nasforge.strategies.grid import GridSearch

    family, scaled = _as_scaled_evaluator(family, evaluator)
    space = CoefficientSpace(
        step,
        alpha_range,
        beta_range,
        gamma_range,
        target,
        tolerance,
        alternatives,
        family=family,
        phi=scaled.phi,
        resolution_divisor=scaled.resolution_divisor,
        min_resolution=scaled.min_resolution,
    )
    if not any(c.label == "compound" for c in space.candidates):
        grid = admissible_triples(step, alpha_range, beta_range, gamma_range, target, tolerance)
        only = ", ".join(f"({c.alpha:g}, {c.beta:g}, {c.gamma:g})" for c in grid)
        raise ConfigError(
            "grid",
            f"no admissible triple besides the single-dimension alternatives: the grid "
            f"points with |alpha beta^2 gamma^2 - {target:g}| <= {tolerance:g} at step "
            f"{step:g} are only {only}; use a finer step or a larger tolerance",
        )
    check_members(space, family, scaled)
    objective, metric = _objective(objective, scaled)
    total = len(space.candidates)
    budget: dict[str, Any] = {"max_trials": total if max_trials is None else max_trials}
    if max_seconds is not None:
        budget["max_seconds"] = max_seconds
    settings = {
        "step": step,
        "target": float(target),
        "tolerance": float(tolerance),
        "alpha_range": list(alpha_range),
        "beta_range": list(beta_range),
        "gamma_range": list(gamma_range),
        "phi": scaled.phi,
        "admissible": sum(1 for c in space.candidates if c.label == "compound"),
    }
    n_val = validation_size(scaled)
    settings["schedule"] = evaluation_schedule(scaled, n_val)
    with Experiment(
        space,
        GridSearch(space, seed),
        scaled,
        objective,
        Path(run_dir),
        budget=budget,
        seed=seed,
        retries=retries,
        resume=resume,
        progress=progress,
        console=console,
    ) as experiment:
        experiment.run()
        store = experiment.store
        assert isinstance(store, Store)  # a run folder's store, which keeps the markers
        result = collect_result(store, space, metric, Path(run_dir), settings, n_val)
        base = store.get_marker("coefficients.baseline")
        if base is None and baseline and result.complete:
            base = evaluate_baseline(space, scaled, metric, n_val, seed)
            store.set_marker("coefficients.baseline", base)
        # the stored row keeps its own error; what is reported adds the luck the grid measured
        result.baseline = None if base is None else widen(dict(base), (result.verdict or {}).get("training_spread"))
        store.set_marker("coefficients", result.to_marker())
    if result.complete and result.best is None:
        errors = {c["error"] for c in result.candidates if c["label"] == "compound" and c.get("error") is not None}
        raise ConfigError(
            "coefficients",
            f"every admissible triple failed to evaluate "
            f"(e.g. {sorted(errors)[0] if errors else 'no result'}); "
            f"see `nasforge show {run_dir}`",
        )
    return result


def validation_size(evaluator: object) -> int | None:
    """How many validation images an evaluator's accuracy is measured on (None: not known)."""
    inner = getattr(evaluator, "inner", evaluator)
    splits = getattr(inner, "splits", None)
    if not callable(splits):
        return None
    try:
        return len(splits().val)
    except Exception:  # noqa: BLE001 - a data problem shows up (with its message) in the evaluation itself
        return None


def evaluation_schedule(evaluator: object, n_val: int | None = None) -> dict[str, Any]:
    """What every candidate (and the baseline) was evaluated with: the evaluator, epochs, images."""
    inner = getattr(evaluator, "inner", evaluator)
    train = getattr(inner, "train", None)
    out: dict[str, Any] = {
        "evaluator": getattr(inner, "name", type(inner).__name__),
        "epochs": getattr(train, "epochs", None),
        "val_images": n_val,
        "seeds": getattr(evaluator, "seeds", 1),
    }
    for name in ("train_size", "val_size"):
        if getattr(inner, name, None) is not None:
            out[name] = getattr(inner, name)
    return out


#: The trial index whose seed the baseline's evaluation uses (past any grid's trials).
BASELINE_SEED_INDEX = 1_000_000


def evaluate_baseline(
    space: CoefficientSpace, scaled: ScaledMemberEvaluator, metric: str, n_val: int | None, seed: int
) -> dict[str, Any]:
    """The phi = 0 member evaluated exactly as the candidates are (same inner evaluator, epochs and
    data), as a candidate-like row with label "baseline"; a failure is recorded, not raised."""
    from nasforge.experiment.experiment import trial_seed

    base = ScaledMemberEvaluator(
        scaled.family,
        scaled.inner,
        phi=0.0,
        resolution_divisor=scaled.resolution_divisor,
        min_resolution=scaled.min_resolution,
        seeds=scaled.seeds,
    )
    row: dict[str, Any] = {"label": "baseline", "phi": 0, "alpha": 1.0, "beta": 1.0, "gamma": 1.0}
    try:
        metrics = base.evaluate(space, space.candidates[0], trial_seed(seed, BASELINE_SEED_INDEX))
    except Exception as exc:  # noqa: BLE001 - the table then says why the baseline row is missing
        return {**row, "status": "failed", "reward": None, "se": None, "error": f"{type(exc).__name__}: {exc}"}
    value = metrics.get(metric)
    row.update(status="done", reward=float(value) if _finite(value) else None)
    for name in (*CANDIDATE_METRICS, metric):
        if name in metrics and name not in ("ideal_ratio",):
            v = metrics[name]
            row[name] = int(v) if name in INTEGER_FIELDS and _finite(v) and float(v).is_integer() else v
    row["macs_ratio"] = 1.0
    row["se"] = standard_error(row["reward"], metric, n_val, metrics.get(f"{metric}_se"))
    return row


def open_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``coefficients`` marker of a finished or interrupted coefficient run (None if absent)."""
    from nasforge.experiment import Store

    if not Store.exists(run_dir):
        raise ConfigError("run", f"no nasforge run in {run_dir}")
    with Store.open(run_dir) as store:
        return store.get_marker("coefficients")


__all__ = [
    "CANDIDATE_METRICS",
    "MEMBER_FIELDS",
    "Z_MARGIN",
    "CoefficientResult",
    "MetricObjective",
    "RebasedFamily",
    "check_members",
    "collect_result",
    "compare",
    "evaluate_baseline",
    "evaluation_schedule",
    "mark_same_networks",
    "member_network",
    "network_id",
    "open_result",
    "rebase",
    "search_coefficients",
    "standard_error",
    "training_spread",
    "validation_size",
    "verdict",
    "verdict_text",
    "widen",
]
