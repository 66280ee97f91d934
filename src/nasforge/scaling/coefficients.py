"""The paper's step 1 as data: the alpha/beta/gamma candidates, a search space over them, and evaluators.

EfficientNet fixes phi = 1 and grid-searches alpha, beta, gamma >= 1 with alpha beta^2 gamma^2 close
to 2 (Tan & Le, ICML 2019, section 3.3). Here that grid is a `CoefficientSpace`: one categorical decision whose options
are the admissible triples plus the single-dimension alternatives with the same MACs budget
(depth only: alpha = 2; width only: beta = sqrt 2; resolution only: gamma = sqrt 2), so a grid
strategy on the ordinary experiment machinery evaluates every candidate, resumably, and the report
can show what compound scaling bought over scaling one dimension.

`ScaledMemberEvaluator(family, inner)` turns a triple into metrics: it builds the phi = 1 member of
`family` and hands it to `inner` (a `ProxyTrainer` to train it on the user's data, or the built-in
`MACsScore`, which costs a fraction of a second and needs no data). With `seeds=K` every triple is
trained K times from different seeds (`mean_over_seeds`): candidates a few hundredths apart after
one short training are often apart by the luck of one initialisation, and the spread over seeds
is what says so.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.evaluators.base import ArchitectureEvaluator, Evaluator, Metrics
from nasforge.profile import count_macs, count_params
from nasforge.registry import describe_component
from nasforge.scaling.compound import CompoundScaler, build_counted
from nasforge.scaling.family import EfficientNetFamily, Family, ScalingInfo
from nasforge.spaces.base import Decision, SearchSpace

LABELS = ("compound", "depth-only", "width-only", "resolution-only")
_EPS = 1e-9


@dataclass(frozen=True)
class CoefficientTriple:
    """One candidate (alpha, beta, gamma) with what it is: a compound triple or a one-dimension one."""

    alpha: float
    beta: float
    gamma: float
    label: str = "compound"

    @property
    def product(self) -> float:
        return self.alpha * self.beta**2 * self.gamma**2

    def values(self) -> tuple[float, float, float]:
        return self.alpha, self.beta, self.gamma

    def same_values(self, other: CoefficientTriple) -> bool:
        return all(abs(a - b) <= _EPS for a, b in zip(self.values(), other.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": "coefficients",
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "label": self.label,
        }


def _check_range(name: str, value: Any, upper: float | None = None) -> tuple[float, float]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise ConfigError(name, f"expected (low, high), got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo < 1:
        raise ConfigError(name, f"coefficients must be >= 1, got a lower bound of {lo:g}")
    if hi < lo:
        raise ConfigError(name, f"upper bound {hi:g} is below the lower bound {lo:g}")
    return lo, hi


def grid_values(low: float, high: float, step: float) -> list[float]:
    """low, low + step, ... up to high inclusive, rounded to 10 decimals (no float drift)."""
    n = int(math.floor((high - low) / step + 1e-9))
    return [round(low + i * step, 10) for i in range(n + 1)]


def admissible_triples(
    step: float = 0.05,
    alpha_range: Sequence[float] = (1.0, 2.0),
    beta_range: Sequence[float] = (1.0, 1.5),
    gamma_range: Sequence[float] = (1.0, 1.5),
    target: float = 2.0,
    tolerance: float = 0.1,
) -> list[CoefficientTriple]:
    """Grid points with alpha, beta, gamma >= 1 and |alpha beta^2 gamma^2 - target| <= tolerance.

    Sorted by (alpha, beta, gamma); possibly empty (`CoefficientSpace` refuses an empty grid).
    """
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
        raise ConfigError("step", f"must be a positive number, got {step!r}")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target >= 1:
        raise ConfigError("target", f"must be a number >= 1 (the MACs growth at phi = 1), got {target!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ConfigError("tolerance", f"must be a number >= 0, got {tolerance!r}")
    axes = [
        grid_values(*_check_range(n, r), step)
        for n, r in (("alpha_range", alpha_range), ("beta_range", beta_range), ("gamma_range", gamma_range))
    ]
    out = []
    for a in axes[0]:
        for b in axes[1]:
            for g in axes[2]:
                if abs(a * b * b * g * g - target) <= tolerance + _EPS:
                    out.append(CoefficientTriple(a, b, g))
    return out


def single_dimension_alternatives(target: float = 2.0) -> list[CoefficientTriple]:
    """Spend the same MACs budget on one dimension: alpha = target, beta = sqrt(target), gamma = sqrt(target)."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target >= 1:
        raise ConfigError("target", f"must be a number >= 1, got {target!r}")
    root = math.sqrt(target)
    return [
        CoefficientTriple(float(target), 1.0, 1.0, "depth-only"),
        CoefficientTriple(1.0, root, 1.0, "width-only"),
        CoefficientTriple(1.0, 1.0, root, "resolution-only"),
    ]


def candidates(
    step: float = 0.05,
    alpha_range: Sequence[float] = (1.0, 2.0),
    beta_range: Sequence[float] = (1.0, 1.5),
    gamma_range: Sequence[float] = (1.0, 1.5),
    target: float = 2.0,
    tolerance: float = 0.1,
    alternatives: bool = True,
) -> list[CoefficientTriple]:
    """The admissible triples, then the single-dimension alternatives.

    A grid triple equal to an alternative (alpha = 2, beta = gamma = 1 with the defaults) appears
    once, labelled as the alternative, in the alternative's place at the end.
    """
    grid = admissible_triples(step, alpha_range, beta_range, gamma_range, target, tolerance)
    if not grid:
        raise ConfigError(
            "grid",
            f"no admissible triple: no grid point with step {step:g} in alpha {alpha_range}, "
            f"beta {beta_range}, gamma {gamma_range} has |alpha beta^2 gamma^2 - {target:g}| "
            f"<= {tolerance:g}",
        )
    if not alternatives:
        return grid
    alts = single_dimension_alternatives(target)
    grid = [t for t in grid if not any(t.same_values(a) for a in alts)]
    return grid + alts


class CoefficientSpace(SearchSpace[CoefficientTriple]):
    """One decision: which (alpha, beta, gamma) candidate to try.

    Args:
        step, alpha_range, beta_range, gamma_range, target, tolerance: the grid (see `candidates`).
        alternatives: also offer the single-dimension alternatives.
        family: the baseline `build` scales (EfficientNet-B0 by default).
        phi: the member `build` makes (1, as in the paper).
        resolution_divisor, min_resolution: how member resolutions are rounded and bounded.
    """

    name = "coefficients"

    def __init__(
        self,
        step: float = 0.05,
        alpha_range: Sequence[float] = (1.0, 2.0),
        beta_range: Sequence[float] = (1.0, 1.5),
        gamma_range: Sequence[float] = (1.0, 1.5),
        target: float = 2.0,
        tolerance: float = 0.1,
        alternatives: bool = True,
        family: Family | None = None,
        phi: float = 1.0,
        resolution_divisor: int = 8,
        min_resolution: int = 1,
    ):
        self.grid = {
            "step": step,
            "alpha_range": list(alpha_range),
            "beta_range": list(beta_range),
            "gamma_range": list(gamma_range),
            "target": target,
            "tolerance": tolerance,
            "alternatives": alternatives,
        }
        self.target, self.tolerance = float(target), float(tolerance)
        self.candidates: tuple[CoefficientTriple, ...] = tuple(
            candidates(step, alpha_range, beta_range, gamma_range, target, tolerance, alternatives)
        )
        self.family = family
        self.phi = float(phi)
        self.resolution_divisor = resolution_divisor
        self.min_resolution = min_resolution
        self._decision = Decision("coefficients", len(self.candidates), tuple(_label_text(t) for t in self.candidates))

    def __repr__(self) -> str:
        return f"CoefficientSpace({len(self.candidates)} candidates, target={self.target:g})"

    def config(self) -> dict[str, Any]:
        return {
            "space": self.name,
            **self.grid,
            "phi": self.phi,
            "resolution_divisor": self.resolution_divisor,
            "min_resolution": self.min_resolution,
            "family": self.family.config() if self.family is not None else None,
        }

    # -- decision sequence -------------------------------------------------------------------
    @property
    def decisions(self) -> tuple[Decision, ...]:
        return (self._decision,)

    def index(self, triple: CoefficientTriple) -> int:
        for i, c in enumerate(self.candidates):
            if c.same_values(triple):
                return i
        raise ArchitectureError(
            "coefficients",
            f"alpha={triple.alpha:g}, beta={triple.beta:g}, gamma={triple.gamma:g} is not a candidate of this grid",
            [_label_text(c) for c in self.candidates],
        )

    def encode(self, arch: CoefficientTriple) -> tuple[int, ...]:
        return (self.index(self.validate(arch)),)

    def decode(self, choices: Sequence[int]) -> CoefficientTriple:
        return self.candidates[self.check_choices(choices)[0]]

    def is_admissible(self, triple: CoefficientTriple) -> bool:
        return abs(triple.product - self.target) <= self.tolerance + _EPS

    # -- validation and JSON -----------------------------------------------------------------
    def validate(self, arch: CoefficientTriple) -> CoefficientTriple:
        if not isinstance(arch, CoefficientTriple):
            raise ArchitectureError("architecture", f"expected a CoefficientTriple, got {type(arch).__name__}")
        for name in ("alpha", "beta", "gamma"):
            v = getattr(arch, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ArchitectureError(name, f"must be a number, got {v!r}")
            if v < 1:
                raise ArchitectureError(name, f"must be >= 1, got {v:g}")
        if arch.label not in LABELS:
            raise ArchitectureError("label", f"unknown label {arch.label!r}", LABELS)
        candidate = self.candidates[self.index(arch)]
        if candidate.label != arch.label:
            raise ArchitectureError(
                "label",
                f"this triple is labelled {candidate.label!r} in this grid, not {arch.label!r}",
                [candidate.label],
            )
        return arch

    def to_json(self, arch: CoefficientTriple) -> dict[str, Any]:
        return self.validate(arch).to_dict()

    def from_json(self, data: Any) -> CoefficientTriple:
        if not isinstance(data, dict):
            raise ArchitectureError("architecture", "expected a JSON object with 'alpha', 'beta' and 'gamma'")
        if data.get("space", "coefficients") != "coefficients":
            raise ArchitectureError("space", f"expected 'coefficients', got {data.get('space')!r}", ["coefficients"])
        values = []
        for name in ("alpha", "beta", "gamma"):
            if name not in data:
                raise ArchitectureError(name, "missing")
            v = data[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ArchitectureError(name, f"must be a number, got {v!r}")
            values.append(float(v))
        alpha, beta, gamma = values
        probe = CoefficientTriple(alpha, beta, gamma)
        label = data.get("label")
        if label is None:  # the label is descriptive; take the grid's
            for c in self.candidates:
                if c.same_values(probe):
                    label = c.label
                    break
            else:
                label = "compound"
        return self.validate(CoefficientTriple(alpha, beta, gamma, label))

    def key(self, arch: CoefficientTriple) -> str:
        self.validate(arch)
        return f"coefficients-a{arch.alpha:.6f}-b{arch.beta:.6f}-g{arch.gamma:.6f}"

    # -- search --------------------------------------------------------------------------------
    def mutate(self, arch: CoefficientTriple, rng: np.random.Generator) -> CoefficientTriple:
        """A nearest other candidate in (alpha, beta, gamma) (ties broken by `rng`)."""
        here = self.index(self.validate(arch))
        if len(self.candidates) == 1:
            return arch
        p = np.array(arch.values())
        dist = [
            float(np.linalg.norm(np.array(c.values()) - p)) if i != here else math.inf
            for i, c in enumerate(self.candidates)
        ]
        best = min(dist)
        nearest = [i for i, d in enumerate(dist) if d <= best + 1e-9]
        return self.candidates[nearest[int(rng.integers(len(nearest)))]]

    # -- networks --------------------------------------------------------------------------------
    def scaler(self, arch: CoefficientTriple) -> CompoundScaler:
        return CompoundScaler(arch.alpha, arch.beta, arch.gamma, self.resolution_divisor, self.min_resolution)

    def member_multipliers(
        self, arch: CoefficientTriple, family: Family | None = None, phi: float | None = None
    ) -> tuple[float, float, int]:
        family = family or self.family or EfficientNetFamily()
        phi = self.phi if phi is None else phi
        return self.scaler(self.validate(arch))._checked(phi, family.base_resolution)

    def build(
        self, arch: CoefficientTriple, family: Family | None = None, phi: float | None = None, **network_config: Any
    ):
        """The phi-member (phi = 1 by default) of `family` (the space's, else EfficientNet-B0).

        A `resolution` in `network_config` is ignored: the member's resolution is gamma^phi x base.
        """
        family = family or self.family or EfficientNetFamily()
        w, d, r = self.member_multipliers(arch, family, phi)
        network_config.pop("resolution", None)
        return family.build(w, d, r, **network_config)


def _label_text(t: CoefficientTriple) -> str:
    return f"{t.label} a={t.alpha:.4g} b={t.beta:.4g} g={t.gamma:.4g}"


# -- evaluators --------------------------------------------------------------------------------------
def balanced_returns_score(width_mult: float, depth_mult: float, resolution_mult: float) -> float:
    """A synthetic accuracy proxy with diminishing returns in each dimension:

        1 - (d^-1/2 + w^-1 + r^-1) / 3      (0 for the baseline, < 1 always)

    It encodes the paper's observation (its Figs. 3-4) that each single dimension saturates and
    balanced scaling does better, with the optimum of a MACs budget d w^2 r^2 = 2 at d ~ 1.26,
    w = r ~ 1.12. It is a stand-in for training, for tests and dry runs; it measures nothing.
    """
    return 1.0 - (depth_mult**-0.5 + width_mult**-1.0 + resolution_mult**-1.0) / 3.0


class MACsScore(Evaluator):
    """Cheap, deterministic metrics without data or training.

    Builds the model on the meta device (no weights), counts `params` and `macs`, and reports
    `score` = `balanced_returns_score` of the member's multipliers (its `model.scaling`; a model
    without one scores 0). Use `metrics["score"]` as the reward.
    """

    name = "macs_score"
    reward_metric = "score"

    def __init__(self, network: dict[str, Any] | None = None, resolution: int | None = None):
        self.network = dict(network or {})
        self.resolution = resolution

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "network": self.network, "resolution": self.resolution}

    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics:
        config = dict(self.network)
        if self.resolution is not None:
            config["resolution"] = self.resolution
        with torch.device("meta"):
            model = space.build(arch, **config)
        info = getattr(model, "scaling", None)
        resolution = self.resolution or getattr(model, "resolution", None) or 32
        if isinstance(info, ScalingInfo):
            resolution = info.resolution
            score = balanced_returns_score(info.width_mult, info.depth_mult, info.resolution_mult)
        else:
            score = 0.0
        return {
            "params": count_params(model),
            "macs": count_macs(model, resolution),
            "resolution": resolution,
            "score": score,
        }


class ScaledMemberEvaluator(Evaluator):
    """Evaluate a coefficient triple by its phi-member (phi = 1) of `family`.

    The inner evaluator sees a space whose `build` returns that member; an inner evaluator with a
    `resolution` setting (`ProxyTrainer`) gets a copy set to the member's resolution, so its data
    are resized to match. The metrics gain alpha, beta, gamma, the member's multipliers and
    resolution, and, when the inner evaluator reports `macs`, the ratio to the baseline's MACs.

    Args:
        family: the baseline (a `Family`; EfficientNet-B0 by default).
        inner: the evaluator of the member (`MACsScore()` by default).
        phi: the member to evaluate.
        resolution_divisor, min_resolution: resolution rounding and bound (the scaler's).
        seeds: trainings per triple, from different seeds; their metrics are combined by
            `mean_over_seeds` (1: one evaluation, as before this option existed).
    """

    name = "scaled_member"

    def __init__(
        self,
        family: Family | None = None,
        inner: ArchitectureEvaluator | None = None,
        phi: float = 1.0,
        resolution_divisor: int = 8,
        min_resolution: int = 1,
        seeds: int = 1,
    ):
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError("seeds", f"must be a positive integer, got {seeds!r}")
        self.family = family or EfficientNetFamily()
        self.inner = inner or MACsScore()
        self.phi = float(phi)
        self.resolution_divisor = resolution_divisor
        self.min_resolution = min_resolution
        self.seeds = seeds
        self._baseline_macs: int | None = None

    # read-only on purpose: the inner evaluator's metric (Evaluator declares a plain class attribute)
    @property
    def reward_metric(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "reward_metric", "val_accuracy")

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family.config(),
            "inner": describe_component(self.inner),
            "phi": self.phi,
            "resolution_divisor": self.resolution_divisor,
            "min_resolution": self.min_resolution,
            # absent at 1, so that a run stored before the option existed resumes unchanged
            **({"seeds": self.seeds} if self.seeds > 1 else {}),
        }

    def baseline_macs(self) -> int:
        if self._baseline_macs is None:
            self._baseline_macs = build_counted(self.family, 1.0, 1.0, self.family.base_resolution)[1]
        return self._baseline_macs

    def _space(self, space: SearchSpace) -> CoefficientSpace:
        if isinstance(space, CoefficientSpace):
            return space
        raise ConfigError(
            "space",
            f"scaled-member evaluation needs the coefficient space, got "
            f"{getattr(space, 'name', type(space).__name__)!r}",
            ["coefficients"],
        )

    def evaluate(self, space: SearchSpace, arch: Any, seed: int) -> Metrics:
        coeffs = self._space(space)
        triple = coeffs.validate(arch)
        scaler = CompoundScaler(triple.alpha, triple.beta, triple.gamma, self.resolution_divisor, self.min_resolution)
        w, d, r = scaler._checked(self.phi, self.family.base_resolution)
        member_space = _MemberSpace(coeffs, self.family, (w, d, r))
        inner = self.inner
        if hasattr(inner, "with_resolution"):
            inner = inner.with_resolution(r)
        elif hasattr(inner, "resolution"):
            inner = copy.copy(inner)
            inner.resolution = r
        metrics = mean_over_seeds(
            [dict(inner.evaluate(member_space, triple, s)) for s in repeat_seeds(seed, self.seeds)], self.reward_metric
        )
        metrics.update(
            {
                "alpha": triple.alpha,
                "beta": triple.beta,
                "gamma": triple.gamma,
                "label": triple.label,
                "product": triple.product,
                "phi": self.phi,
                "width_mult": w,
                "depth_mult": d,
                "resolution": r,
                "ideal_ratio": scaler.ideal_ratio(self.phi),
            }
        )
        if isinstance(metrics.get("macs"), (int, float)):
            metrics["macs_ratio"] = metrics["macs"] / self.baseline_macs()
        return metrics


def repeat_seeds(seed: int, count: int) -> list[int]:
    """`seed` itself, then `count - 1` seeds derived from it (a trial's seed rule, with the repeat as
    the index), so one seed gives exactly the single evaluation and repeats never collide."""
    from nasforge.experiment.experiment import trial_seed

    return [seed] + [trial_seed(seed, k) for k in range(1, count)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_over_seeds(runs: list[Metrics], metric: str) -> Metrics:
    """One set of metrics from the same evaluation under several seeds.

    Numbers that differ between the runs are averaged (curves of equal length point by point),
    `*_seconds` are summed (the candidate cost all the runs), anything else is the first run's.
    The values of `metric` are kept as `<metric>_seeds`, and the standard error of their mean,
    s / sqrt(K), as `<metric>_se` (the spread due to training; the coefficient search adds the
    validation set's own binomial error to it). One run is returned as it is.
    """
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        if all(_number(v) for v in values):
            if key.endswith("_seconds"):
                out[key] = math.fsum(values)  # type: ignore[arg-type]
            elif any(v != first for v in values):
                out[key] = statistics.fmean(values)  # type: ignore[arg-type]
        elif all(isinstance(v, list) and len(v) == len(first) and all(map(_number, v)) for v in values):
            out[key] = [statistics.fmean(point) for point in zip(*values)]
    scores = [run.get(metric) for run in runs]
    if all(_number(v) for v in scores):
        measured = [float(v) for v in scores]  # type: ignore[arg-type]
        out[f"{metric}_seeds"] = measured
        out[f"{metric}_se"] = statistics.stdev(measured) / math.sqrt(len(measured))
    out["seeds"] = len(runs)
    return out


class _MemberSpace(SearchSpace[CoefficientTriple]):
    """The coefficient space, with `build` fixed to one family member (what inner evaluators see)."""

    def __init__(self, space: CoefficientSpace, family: Family, member: tuple[float, float, int]):
        self.space, self.family, self.member = space, family, member
        self.name = space.name

    @property
    def decisions(self):
        return self.space.decisions

    def encode(self, arch):
        return self.space.encode(arch)

    def decode(self, choices):
        return self.space.decode(choices)

    def validate(self, arch):
        return self.space.validate(arch)

    def to_json(self, arch):
        return self.space.to_json(arch)

    def from_json(self, data):
        return self.space.from_json(data)

    def key(self, arch):
        return self.space.key(arch)

    def mutate(self, arch, rng):
        return self.space.mutate(arch, rng)

    def build(self, arch, **network_config):
        w, d, r = self.member
        network_config.pop("resolution", None)
        return self.family.build(w, d, r, **network_config)


__all__ = [
    "LABELS",
    "CoefficientSpace",
    "CoefficientTriple",
    "MACsScore",
    "ScaledMemberEvaluator",
    "admissible_triples",
    "balanced_returns_score",
    "candidates",
    "grid_values",
    "mean_over_seeds",
    "repeat_seeds",
    "single_dimension_alternatives",
]


def _register() -> None:
    from nasforge.spaces import SPACES

    if "coefficients" not in SPACES:
        SPACES.register("coefficients", CoefficientSpace)  # JSON of the default grid loads by its "space"


_register()
