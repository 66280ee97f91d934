"""The MnasNet-style MBConv search space (Tan et al., MnasNet, CVPR 2019, section 4.1), for
searching a scalable baseline.

The network keeps EfficientNet-B0's skeleton: seven stages with B0's strides. Each stage chooses
its depthwise kernel, expansion ratio, SE ratio, repeats (B0's count -1, +0 or +1, at least 1) and
output width (0.75, 1.0 or 1.25 x B0's, rounded with `round_filters` to a multiple of 8): five
decisions per stage, 35 in all. EfficientNet-B0 itself is the member `B0_ARCH`.

An architecture stores the resolved stage values (kernel, expansion, SE ratio, repeats, channels),
so its JSON describes the network on its own. Where two decisions resolve to the same value (16 x
0.75 rounds up to 16; one repeat minus one is clamped to one) the architectures are the same
value, `encode` returns the neutral choice (ratio 1.0, change 0) and the keys are equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from nasforge.arch.mbconv import B0_SKELETON, MBConvArchitecture, MBConvStage
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.models.efficientnet import EfficientNet, StageSpec
from nasforge.nn.mbconv import round_filters
from nasforge.spaces.base import SPACES, Decision, SearchSpace, stage_objects

KERNELS: tuple[int, ...] = (3, 5)
EXPANSIONS: tuple[int, ...] = (1, 4, 6)
SE_RATIOS: tuple[float, ...] = (0.0, 0.25)
REPEAT_CHANGES: tuple[int, ...] = (-1, 0, 1)
WIDTH_RATIOS: tuple[float, ...] = (0.75, 1.0, 1.25)
FIELDS = ("kernel", "expansion", "se_ratio", "repeats", "channels")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@SPACES.register("mbconv")
class MBConvSpace(SearchSpace[MBConvArchitecture]):
    """Per stage: kernel, expansion, SE ratio, repeats change and width ratio (in that order)."""

    name = "mbconv"
    proxy_network = MappingProxyType({"width_mult": 0.25, "depth_mult": 0.25})
    scaling_family = "mbconv"
    drawing = "stages"

    def __init__(
        self,
        kernels: Sequence[int] = KERNELS,
        expansions: Sequence[int] = EXPANSIONS,
        se_ratios: Sequence[float] = SE_RATIOS,
        repeat_changes: Sequence[int] = REPEAT_CHANGES,
        width_ratios: Sequence[float] = WIDTH_RATIOS,
        skeleton: Sequence[tuple[int, int, int]] = B0_SKELETON,
        divisor: int = 8,
    ):
        for name, values in (
            ("kernels", kernels),
            ("expansions", expansions),
            ("se_ratios", se_ratios),
            ("repeat_changes", repeat_changes),
            ("width_ratios", width_ratios),
            ("skeleton", skeleton),
        ):
            if not values:
                raise ConfigError(name, "needs at least one option")
        for k in kernels:
            if not _is_int(k) or k < 1 or k % 2 == 0:
                raise ConfigError("kernels", f"kernel sizes must be odd positive integers, got {k!r}")
        for e in expansions:
            if not _is_int(e) or e < 1:
                raise ConfigError("expansions", f"expansion ratios must be integers >= 1, got {e!r}")
        for s in se_ratios:
            if not _is_number(s) or not 0 <= s <= 1:
                raise ConfigError("se_ratios", f"SE ratios must be in [0, 1], got {s!r}")
        for r in width_ratios:
            if not _is_number(r) or r <= 0:
                raise ConfigError("width_ratios", f"width ratios must be > 0, got {r!r}")
        self.kernels = tuple(int(k) for k in kernels)
        self.expansions = tuple(int(e) for e in expansions)
        self.se_ratios = tuple(float(s) for s in se_ratios)
        self.repeat_changes = tuple(int(c) for c in repeat_changes)
        self.width_ratios = tuple(float(r) for r in width_ratios)
        self.skeleton = tuple(tuple(int(v) for v in s) for s in skeleton)
        self.divisor = divisor
        # Per stage: the resolved repeats / channels each option gives (duplicates possible).
        self._repeat_options = [tuple(max(1, reps + c) for c in self.repeat_changes) for _, _, reps in self.skeleton]
        self._width_options = [
            tuple(round_filters(ch, r, divisor) for r in self.width_ratios) for _, ch, _ in self.skeleton
        ]
        self._decisions = self._make_decisions()

    def __repr__(self) -> str:
        return f"MBConvSpace(stages={len(self.skeleton)}, size={self.size():.3g})"

    @property
    def num_stages(self) -> int:
        return len(self.skeleton)

    def strides(self) -> tuple[int, ...]:
        return tuple(s for s, _, _ in self.skeleton)

    # -- decision sequence -------------------------------------------------------------------
    def _make_decisions(self) -> tuple[Decision, ...]:
        steps = []
        for i in range(self.num_stages):
            p = f"stages[{i}]"
            steps += [
                Decision(f"{p}.kernel", len(self.kernels), tuple(map(str, self.kernels))),
                Decision(f"{p}.expansion", len(self.expansions), tuple(map(str, self.expansions))),
                Decision(f"{p}.se_ratio", len(self.se_ratios), tuple(map(str, self.se_ratios))),
                Decision(f"{p}.repeats", len(self.repeat_changes), tuple(f"{c:+d}" for c in self.repeat_changes)),
                Decision(f"{p}.channels", len(self.width_ratios), tuple(f"x{r:g}" for r in self.width_ratios)),
            ]
        return tuple(steps)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    @staticmethod
    def _neutral_index(options: Sequence[Any], value: Any, neutral_first: Sequence[int]) -> int:
        for i in neutral_first:
            if options[i] == value:
                return i
        return list(options).index(value)

    def encode(self, arch: MBConvArchitecture) -> tuple[int, ...]:
        self.validate(arch)
        out: list[int] = []
        rep_order = sorted(range(len(self.repeat_changes)), key=lambda i: abs(self.repeat_changes[i]))
        width_order = sorted(range(len(self.width_ratios)), key=lambda i: abs(self.width_ratios[i] - 1.0))
        for i, s in enumerate(arch.stages):
            out += [
                self.kernels.index(s.kernel),
                self.expansions.index(s.expansion),
                self.se_ratios.index(s.se_ratio),
                self._neutral_index(self._repeat_options[i], s.repeats, rep_order),
                self._neutral_index(self._width_options[i], s.channels, width_order),
            ]
        return tuple(out)

    def decode(self, choices: Sequence[int]) -> MBConvArchitecture:
        c = self.check_choices(choices)
        stages = []
        for i in range(self.num_stages):
            k, e, se, r, w = c[5 * i : 5 * i + 5]
            stages.append(
                MBConvStage(
                    self.kernels[k],
                    self.expansions[e],
                    self.se_ratios[se],
                    self._repeat_options[i][r],
                    self._width_options[i][w],
                )
            )
        return MBConvArchitecture(tuple(stages))

    # -- validation and JSON -----------------------------------------------------------------
    def validate(self, arch: MBConvArchitecture) -> MBConvArchitecture:
        if not isinstance(arch, MBConvArchitecture):
            raise ArchitectureError("architecture", f"expected an MBConvArchitecture, got {type(arch).__name__}")
        if not isinstance(arch.stages, tuple) or len(arch.stages) != self.num_stages:
            n = len(arch.stages) if isinstance(arch.stages, (tuple, list)) else arch.stages
            raise ArchitectureError("stages", f"expected {self.num_stages} stages, got {n!r}")
        for i, s in enumerate(arch.stages):
            where = f"stages[{i}]"
            if not isinstance(s, MBConvStage):
                raise ArchitectureError(where, f"expected an MBConvStage, got {type(s).__name__}")
            checks = (
                ("kernel", s.kernel, self.kernels),
                ("expansion", s.expansion, self.expansions),
                ("se_ratio", s.se_ratio, self.se_ratios),
                ("repeats", s.repeats, sorted(set(self._repeat_options[i]))),
                ("channels", s.channels, sorted(set(self._width_options[i]))),
            )
            for name, value, allowed in checks:
                ok = _is_number(value) if name == "se_ratio" else _is_int(value)
                if not ok or value not in allowed:
                    raise ArchitectureError(f"{where}.{name}", f"invalid value {value!r}", allowed)
        return arch

    def to_json(self, arch: MBConvArchitecture) -> dict[str, Any]:
        return {
            "space": "mbconv",
            "stages": [
                {
                    "kernel": s.kernel,
                    "expansion": s.expansion,
                    "se_ratio": s.se_ratio,
                    "repeats": s.repeats,
                    "channels": s.channels,
                }
                for s in arch.stages
            ],
        }

    def from_json(self, data: Any) -> MBConvArchitecture:
        if not isinstance(data, dict):
            raise ArchitectureError("architecture", "expected a JSON object with a 'stages' list")
        if data.get("space", "mbconv") != "mbconv":
            raise ArchitectureError("space", f"expected 'mbconv', got {data.get('space')!r}", ["mbconv"])
        stages = []
        for st in stage_objects(data, FIELDS, self.num_stages):
            se = st["se_ratio"]
            stages.append(
                MBConvStage(
                    st["kernel"], st["expansion"], float(se) if _is_number(se) else se, st["repeats"], st["channels"]
                )
            )
        return self.validate(MBConvArchitecture(tuple(stages)))

    def key(self, arch: MBConvArchitecture) -> str:
        """Hash of the resolved stage values (each architecture value is already canonical)."""
        self.validate(arch)
        canon = [[s.kernel, s.expansion, float(s.se_ratio), s.repeats, s.channels] for s in arch.stages]
        digest = hashlib.sha256(json.dumps(canon).encode()).hexdigest()
        return f"mbconv-{digest[:24]}"

    # -- search --------------------------------------------------------------------------------
    def mutate(self, arch: MBConvArchitecture, rng: np.random.Generator) -> MBConvArchitecture:
        """Change one decision of one stage to another option that changes the architecture."""
        choices = list(self.encode(arch))
        positions = rng.permutation(len(choices))
        for pos in positions:
            d = self._decisions[int(pos)]
            options = []
            for o in range(d.num_options):
                if o == choices[pos]:
                    continue
                trial = choices.copy()
                trial[pos] = o
                if self.decode(trial) != arch:
                    options.append(o)
            if options:
                choices[pos] = options[int(rng.integers(len(options)))]
                return self.decode(choices)
        return arch  # a space with one architecture

    # -- networks --------------------------------------------------------------------------------
    def stage_specs(self, arch: MBConvArchitecture) -> tuple[StageSpec, ...]:
        """The architecture as an EfficientNet stage table (`nasforge.models.efficientnet.StageSpec`)."""
        self.validate(arch)
        return tuple(
            StageSpec(s.expansion, s.kernel, stride, s.channels, s.repeats, s.se_ratio)
            for s, stride in zip(arch.stages, self.strides())
        )

    def build(
        self,
        arch: MBConvArchitecture,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        resolution: int = 224,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        **network: Any,
    ):
        """An EfficientNet network with this stage table (see `nasforge.models.efficientnet`)."""
        return EfficientNet(
            self.stage_specs(arch),
            width_mult=width_mult,
            depth_mult=depth_mult,
            resolution=resolution,
            dropout=dropout,
            drop_connect_rate=drop_connect_rate,
            num_classes=num_classes,
            divisor=self.divisor,
            **_network_options(network),
        )


def _network_options(network: dict[str, Any]) -> dict[str, Any]:
    allowed = ("in_channels", "stem_channels", "head_channels", "bn_momentum", "bn_eps")
    for key in network:
        if key not in allowed:
            raise ConfigError(
                key,
                "not an option of MBConv networks",
                ("num_classes", "width_mult", "depth_mult", "resolution", "dropout", "drop_connect_rate") + allowed,
            )
    return network


__all__ = ["MBConvSpace"]
