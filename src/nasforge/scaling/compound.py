"""Compound scaling: phi -> (width, depth, resolution), and families of counted members.

`CompoundScaler(alpha, beta, gamma)` is the paper's Eq. 3 (Tan & Le, EfficientNet, ICML 2019,
section 3.3): depth alpha^phi, width beta^phi, resolution gamma^phi x base (rounded to a multiple
of `resolution_divisor`), so MACs grow by about (alpha beta^2 gamma^2)^phi, about 2^phi.
`PublishedScaler` is the other mode: the released EfficientNet B0-B7 rows, which are *not*
alpha^phi, beta^phi, gamma^phi (see docs/scaling.md).

Both give `family(baseline, phis)`: every member built (on PyTorch's meta device, so no weights are
allocated and even B7 costs a fraction of a second), its parameters and MACs counted with
`nasforge.profile`, and the measured MACs ratio to phi = 0 beside the ideal one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from nasforge.errors import ConfigError
from nasforge.profile import count_macs, count_params
from nasforge.scaling.family import Family, family_from

#: The paper's coefficients for EfficientNet-B0 (Tan & Le 2019, section 3.3).
EFFICIENTNET_COEFFICIENTS = (1.2, 1.1, 1.15)

#: Released EfficientNet rows by phi: (width, depth, resolution), as in the reference implementation's
#: `efficientnet_params` (tensorflow/tpu, models/official/efficientnet/efficientnet_builder.py).
EFFICIENTNET_PUBLISHED: dict[int, tuple[float, float, int]] = {
    0: (1.0, 1.0, 224),
    1: (1.0, 1.1, 240),
    2: (1.1, 1.2, 260),
    3: (1.2, 1.4, 300),
    4: (1.4, 1.8, 380),
    5: (1.6, 2.2, 456),
    6: (1.8, 2.6, 528),
    7: (2.0, 3.1, 600),
}


@dataclass(frozen=True)
class Member:
    """One member of a scaled family, counted."""

    phi: float
    width_mult: float
    depth_mult: float
    resolution: int
    params: int
    macs: int
    macs_ratio: float  # measured MACs / MACs at phi = 0
    ideal_ratio: float  # the scaler's own prediction: (alpha beta^2 gamma^2)^phi, or d w^2 r^2
    target_ratio: float  # 2^phi
    structure: dict[str, Any] | None = None  # the family's `describe` (channels, repeats, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_phi(phi: Any) -> float:
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi):
        raise ConfigError("phi", f"must be a finite number, got {phi!r}")
    return float(phi)


def count_member(model: torch.nn.Module, resolution: int) -> tuple[int, int]:
    """(params, MACs) of a built model."""
    return count_params(model), count_macs(model, resolution)


def build_counted(
    family: Family,
    width_mult: float,
    depth_mult: float,
    resolution: int,
    num_classes: int | None = None,
    device: str | torch.device = "meta",
) -> tuple[int, int]:
    """Build a member on `device` (meta by default: shapes only, no weights) and count it."""
    with torch.device(device):
        model = family.build(width_mult, depth_mult, resolution, num_classes=num_classes)
    return count_member(model, resolution)


class Scaler(ABC):
    """phi -> (width multiplier, depth multiplier, resolution) for a baseline resolution."""

    min_resolution: int = 32

    @abstractmethod
    def multipliers(self, phi: float, base_resolution: int) -> tuple[float, float, int]:
        """(width_mult, depth_mult, resolution) of member phi."""

    @abstractmethod
    def ideal_ratio(self, phi: float, base_resolution: int) -> float:
        """The MACs ratio this scaler predicts for member phi."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able description."""

    def _checked(self, phi: float, base_resolution: int) -> tuple[float, float, int]:
        w, d, r = self.multipliers(phi, base_resolution)
        if r < self.min_resolution:
            raise ConfigError(
                "resolution",
                f"phi={phi:g} gives {r} px, under the minimum of "
                f"{self.min_resolution} px (set min_resolution to allow it)",
            )
        if w <= 0 or d <= 0:
            raise ConfigError(
                "width_mult" if w <= 0 else "depth_mult",
                f"phi={phi:g} gives a non-positive multiplier ({w if w <= 0 else d})",
            )
        return w, d, r

    def family(
        self,
        baseline: Family | str,
        phis: Iterable[float] = range(8),
        num_classes: int | None = None,
        device: str | torch.device = "meta",
        describe: bool = True,
    ) -> list[Member]:
        """Every member of `phis` built, counted and compared with phi = 0."""
        family = family_from(baseline)
        phis = [_check_phi(p) for p in phis]
        if not phis:
            raise ConfigError("phis", "give at least one phi")
        base = family.base_resolution
        todo = list(dict.fromkeys([0.0, *phis]))
        sizes = {phi: self._checked(phi, base) for phi in todo}  # every error before any building
        counted: dict[float, tuple[float, float, int, int, int]] = {}
        for phi in todo:
            w, d, r = sizes[phi]
            counted[phi] = (w, d, r, *build_counted(family, w, d, r, num_classes, device))
        base_macs = counted[0.0][4]
        members = []
        for phi in phis:
            w, d, r, params, macs = counted[phi]
            members.append(
                Member(
                    phi,
                    w,
                    d,
                    r,
                    params,
                    macs,
                    macs / base_macs,
                    self.ideal_ratio(phi, base),
                    2.0**phi,
                    family.describe(w, d) if describe else None,
                )
            )
        return members


def round_resolution(resolution: float, divisor: int = 8) -> int:
    """Nearest multiple of `divisor` (halves round up), at least `divisor`."""
    return max(divisor, int(math.floor(resolution / divisor + 0.5)) * divisor)


class CompoundScaler(Scaler):
    """Eq. 3: depth alpha^phi, width beta^phi, resolution gamma^phi x base.

    Args:
        alpha, beta, gamma: the coefficients (each >= 1).
        resolution_divisor: members' resolutions are rounded to a multiple of this.
        min_resolution: members under this many pixels are refused (a `ConfigError`).
    """

    def __init__(
        self,
        alpha: float = 1.2,
        beta: float = 1.1,
        gamma: float = 1.15,
        resolution_divisor: int = 8,
        min_resolution: int = 32,
    ):
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(name, f"must be a number, got {value!r}")
            if value < 1:
                raise ConfigError(name, f"must be >= 1 (compound scaling only grows a baseline), got {value:g}")
        if isinstance(resolution_divisor, bool) or not isinstance(resolution_divisor, int) or resolution_divisor < 1:
            raise ConfigError("resolution_divisor", f"must be an integer >= 1, got {resolution_divisor!r}")
        if isinstance(min_resolution, bool) or not isinstance(min_resolution, int) or min_resolution < 1:
            raise ConfigError("min_resolution", f"must be an integer >= 1, got {min_resolution!r}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.resolution_divisor = resolution_divisor
        self.min_resolution = min_resolution

    def __repr__(self) -> str:
        return f"CompoundScaler(alpha={self.alpha:g}, beta={self.beta:g}, gamma={self.gamma:g})"

    @property
    def product(self) -> float:
        """alpha x beta^2 x gamma^2: the MACs growth per unit of phi."""
        return self.alpha * self.beta**2 * self.gamma**2

    def depth_mult(self, phi: float) -> float:
        return self.alpha ** _check_phi(phi)

    def width_mult(self, phi: float) -> float:
        return self.beta ** _check_phi(phi)

    def exact_resolution(self, phi: float, base_resolution: int) -> float:
        return base_resolution * self.gamma ** _check_phi(phi)

    def resolution(self, phi: float, base_resolution: int) -> int:
        return round_resolution(self.exact_resolution(phi, base_resolution), self.resolution_divisor)

    def multipliers(self, phi: float, base_resolution: int) -> tuple[float, float, int]:
        return self.width_mult(phi), self.depth_mult(phi), self.resolution(phi, base_resolution)

    def ideal_ratio(self, phi: float, base_resolution: int = 0) -> float:
        return self.product ** _check_phi(phi)

    def config(self) -> dict[str, Any]:
        return {
            "mode": "formula",
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "resolution_divisor": self.resolution_divisor,
            "min_resolution": self.min_resolution,
        }


class PublishedScaler(Scaler):
    """A lookup table phi -> (width, depth, resolution); EfficientNet B0-B7 by default.

    For a baseline whose resolution differs from the table's phi = 0 row, resolutions are scaled
    by base / table base and rounded to `resolution_divisor`.
    """

    def __init__(
        self,
        table: Mapping[int, tuple[float, float, int]] | None = None,
        resolution_divisor: int = 8,
        min_resolution: int = 32,
    ):
        self.table = {
            int(k): (float(w), float(d), int(r)) for k, (w, d, r) in (table or EFFICIENTNET_PUBLISHED).items()
        }
        if 0 not in self.table:
            raise ConfigError("table", "needs a phi = 0 row (the baseline)")
        self.resolution_divisor = resolution_divisor
        self.min_resolution = min_resolution

    def multipliers(self, phi: float, base_resolution: int) -> tuple[float, float, int]:
        phi = _check_phi(phi)
        if phi not in self.table:
            raise ConfigError("phi", f"the published table has no row for phi={phi:g}", sorted(self.table))
        w, d, r = self.table[int(phi)]
        table_base = self.table[0][2]
        if base_resolution != table_base:
            r = round_resolution(r * base_resolution / table_base, self.resolution_divisor)
        return w, d, r

    def ideal_ratio(self, phi: float, base_resolution: int) -> float:
        """d x w^2 x (r / r0)^2 of the row itself."""
        w, d, r = self.multipliers(phi, base_resolution)
        w0, d0, r0 = self.multipliers(0, base_resolution)
        return (d / d0) * (w / w0) ** 2 * (r / r0) ** 2

    def config(self) -> dict[str, Any]:
        return {
            "mode": "published",
            "table": {str(k): list(v) for k, v in self.table.items()},
            "resolution_divisor": self.resolution_divisor,
            "min_resolution": self.min_resolution,
        }


def published_vs_formula(
    scaler: CompoundScaler | None = None, phis: Iterable[int] = range(8), base_resolution: int = 224
) -> list[dict[str, Any]]:
    """The released EfficientNet rows next to Eq. 3's values (multipliers only; nothing is built)."""
    scaler = scaler or CompoundScaler(*EFFICIENTNET_COEFFICIENTS)
    published = PublishedScaler()
    rows = []
    for phi in phis:
        pw, pd, pr = published.multipliers(phi, base_resolution)
        rows.append(
            {
                "phi": phi,
                "model": f"efficientnet_b{phi}",
                "published_width": pw,
                "published_depth": pd,
                "published_resolution": pr,
                "formula_width": scaler.width_mult(phi),
                "formula_depth": scaler.depth_mult(phi),
                "formula_resolution": scaler.resolution(phi, base_resolution),
                "formula_exact_resolution": scaler.exact_resolution(phi, base_resolution),
                "published_ideal_ratio": published.ideal_ratio(phi, base_resolution),
                "formula_ideal_ratio": scaler.ideal_ratio(phi),
            }
        )
    return rows


__all__ = [
    "EFFICIENTNET_COEFFICIENTS",
    "EFFICIENTNET_PUBLISHED",
    "CompoundScaler",
    "Member",
    "PublishedScaler",
    "Scaler",
    "build_counted",
    "published_vs_formula",
    "round_resolution",
]
