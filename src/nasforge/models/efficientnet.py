"""EfficientNet networks built from a stage list, and the published B0-B7 (B8, L2) registry entries.

A network is a stem (3x3 stride-2 conv, BN, SiLU), the MBConv stages, a head (1x1 conv, BN, SiLU),
global average pooling, dropout and a linear classifier. A width multiplier scales every channel
count through `round_filters` (stem and head included), a depth multiplier scales every stage's
repeats through `round_repeats`; the resolution does not change the network's weights, only its
cost, and is kept on the model as `resolution`. Only the first block of a stage strides.

With the B0 stage table and the published (width, depth, resolution, dropout) rows this reproduces
torchvision's and timm's parameter counts exactly and the reference multiply-add counts
(tensorflow/tpu efficientnet_model.py and efficientnet_builder.py):
symmetric padding, PyTorch BatchNorm defaults, SE on the block input width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from nasforge.arch.mbconv import B0_ARCH, B0_SKELETON
from nasforge.errors import ConfigError
from nasforge.nn.layers import DropPath, inference_layout
from nasforge.nn.mbconv import MBConv, conv_bn_act, round_filters, round_repeats


@dataclass(frozen=True)
class StageSpec:
    """One row of an EfficientNet stage table: `repeats` identical MBConv blocks."""

    expand_ratio: float
    kernel: int
    stride: int
    channels: int
    repeats: int
    se_ratio: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: EfficientNet-B0 (Tan & Le 2019, Table 1; efficientnet_builder.py's block strings): expansion,
#: kernel, stride, output channels, repeats, SE ratio; the B0 member of the MBConv space's values.
B0_STAGES: tuple[StageSpec, ...] = tuple(
    StageSpec(s.expansion, s.kernel, stride, s.channels, s.repeats, s.se_ratio)
    for s, (stride, _, _) in zip(B0_ARCH.stages, B0_SKELETON)
)

#: Published (width, depth, resolution, dropout) per model
#: (tensorflow/tpu efficientnet_builder.py, `efficientnet_params`).
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
    "efficientnet_b8": (2.2, 3.6, 672, 0.5),
    "efficientnet_l2": (4.3, 5.3, 800, 0.5),
}

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class ScaledStage:
    expand_ratio: float
    kernel: int
    stride: int
    in_channels: int
    channels: int
    repeats: int
    se_ratio: float


@dataclass(frozen=True)
class EfficientNetPlan:
    """The concrete widths and depths a stage table takes under a width and depth multiplier."""

    stem: int
    stages: tuple[ScaledStage, ...]
    head: int

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(s.channels for s in self.stages)

    @property
    def repeats(self) -> tuple[int, ...]:
        return tuple(s.repeats for s in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.repeats)


def stages_from(value: Iterable[Any]) -> tuple[StageSpec, ...]:
    """Accept `StageSpec`s, dicts of its fields, or 5/6-tuples (e, k, s, c, r[, se])."""
    out = []
    for i, raw in enumerate(value):
        if isinstance(raw, StageSpec):
            stage = raw
        elif isinstance(raw, dict):
            try:
                stage = StageSpec(**raw)
            except TypeError as exc:
                raise ConfigError(
                    f"stages[{i}]", f"bad stage fields ({exc})", list(StageSpec.__dataclass_fields__)
                ) from None
        elif isinstance(raw, (tuple, list)) and len(raw) in (5, 6):
            stage = StageSpec(*raw)
        else:
            raise ConfigError(f"stages[{i}]", f"expected a StageSpec, a dict or a 5/6-tuple, got {raw!r}")
        _check_stage(stage, i)
        out.append(stage)
    if not out:
        raise ConfigError("stages", "need at least one stage")
    return tuple(out)


def _check_stage(s: StageSpec, i: int) -> None:
    where = f"stages[{i}]"
    for name in ("kernel", "stride", "channels", "repeats"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}.{name}", f"must be an integer >= 1, got {v!r}")
    if s.kernel % 2 == 0:
        raise ConfigError(f"{where}.kernel", f"must be odd, got {s.kernel}")
    if not isinstance(s.expand_ratio, (int, float)) or s.expand_ratio < 1:
        raise ConfigError(f"{where}.expand_ratio", f"must be >= 1, got {s.expand_ratio!r}")
    if not isinstance(s.se_ratio, (int, float)) or not 0 <= s.se_ratio <= 1:
        raise ConfigError(f"{where}.se_ratio", f"must be in [0, 1], got {s.se_ratio!r}")


def efficientnet_plan(
    stages: Sequence[StageSpec] = B0_STAGES,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stem_channels: int = STEM_CHANNELS,
    head_channels: int = HEAD_CHANNELS,
    divisor: int = 8,
) -> EfficientNetPlan:
    """Stem, per-stage and head widths and per-stage repeats after scaling (tensorflow/tpu
    efficientnet_model.py's round_filters / round_repeats)."""
    stem = round_filters(stem_channels, width_mult, divisor)
    prev = stem
    scaled = []
    for s in stages:
        out = round_filters(s.channels, width_mult, divisor)
        scaled.append(
            ScaledStage(s.expand_ratio, s.kernel, s.stride, prev, out, round_repeats(s.repeats, depth_mult), s.se_ratio)
        )
        prev = out
    return EfficientNetPlan(stem, tuple(scaled), round_filters(head_channels, width_mult, divisor))


def _check_number(
    name: str, value: Any, low: float, high: float | None = None, integer: bool = False, low_inclusive: bool = True
) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        raise ConfigError(name, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < low or (not low_inclusive and value == low) or (high is not None and value >= high):
        rng = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ConfigError(name, f"must be {rng}, got {value!r}")


class EfficientNet(nn.Module):
    """An EfficientNet-style network from a stage table.

    Args:
        stages: the stage table (B0's by default); see `StageSpec` and `stages_from`.
        width_mult, depth_mult: compound-scaling multipliers (round_filters / round_repeats).
        resolution: the input resolution the network is meant for (kept as `self.resolution`).
        dropout: dropout rate before the classifier.
        drop_connect_rate: stochastic depth; block i of n uses rate x i / n.
        num_classes, in_channels: classifier width and image channels.
        stem_channels, head_channels, divisor: unscaled stem/head widths and the rounding divisor.
        bn_momentum, bn_eps: BatchNorm settings (PyTorch defaults, as torchvision B0-B4 and timm).
    """

    def __init__(
        self,
        stages: Sequence[Any] = B0_STAGES,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        resolution: int = 224,
        dropout: float = 0.2,
        drop_connect_rate: float = 0.2,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_channels: int = STEM_CHANNELS,
        head_channels: int = HEAD_CHANNELS,
        divisor: int = 8,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        stages = stages_from(stages)
        _check_number("width_mult", width_mult, 0, low_inclusive=False)
        _check_number("depth_mult", depth_mult, 0, low_inclusive=False)
        _check_number("resolution", resolution, 1, integer=True)
        _check_number("dropout", dropout, 0, 1)
        _check_number("drop_connect_rate", drop_connect_rate, 0, 1)
        _check_number("num_classes", num_classes, 1, integer=True)
        _check_number("in_channels", in_channels, 1, integer=True)
        _check_number("divisor", divisor, 1, integer=True)
        bn: dict[str, Any] = {"momentum": bn_momentum, "eps": bn_eps}
        self.stage_specs = stages
        self.width_mult, self.depth_mult = float(width_mult), float(depth_mult)
        self.resolution = resolution
        self.plan = efficientnet_plan(stages, width_mult, depth_mult, stem_channels, head_channels, divisor)
        plan = self.plan

        self.stem = conv_bn_act(in_channels, plan.stem, 3, stride=2, bn=bn)
        total = plan.num_blocks
        index = 0
        stage_modules = []
        for s in plan.stages:
            blocks = []
            for r in range(s.repeats):
                blocks.append(
                    MBConv(
                        s.in_channels if r == 0 else s.channels,
                        s.channels,
                        s.kernel,
                        s.stride if r == 0 else 1,
                        s.expand_ratio,
                        s.se_ratio,
                        drop_connect_rate * index / total,
                        bn=bn,
                    )
                )
                index += 1
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_modules)
        self.head = conv_bn_act(plan.stages[-1].channels, plan.head, 1, bn=bn)
        self.num_features = plan.head
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(plan.head, num_classes)
        self.drop_connect_rate = float(drop_connect_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        """TF reference init: conv N(0, sqrt(2 / fan_out)) with fan_out = k*k*out/groups; dense
        U(+-1/sqrt(out)), zero bias; BN weight 1, bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def set_drop_connect_rate(self, rate: float) -> None:
        """Reset stochastic depth: block i of n gets rate x i / n (blocks without a skip have none)."""
        _check_number("drop_connect_rate", rate, 0, 1)
        self.drop_connect_rate = float(rate)
        blocks = [b for stage in self.stages for b in cast(nn.Sequential, stage)]  # stages of blocks
        for i, b in enumerate(blocks):
            if isinstance(b.drop_path, DropPath):
                b.drop_path.rate = rate * i / len(blocks)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map, in the memory format of `x`."""
        features = self._features(x)
        return features if features.is_contiguous() or not x.is_contiguous() else features.contiguous()

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(inference_layout(x, self.training))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._features(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def efficientnet(name: str = "efficientnet_b0", **overrides: Any) -> EfficientNet:
    """A published EfficientNet by name with its (width, depth, resolution, dropout) row."""
    if name not in EFFICIENTNET_PARAMS:
        raise ConfigError("name", f"unknown EfficientNet {name!r}", list(EFFICIENTNET_PARAMS))
    w, d, r, p = EFFICIENTNET_PARAMS[name]
    return EfficientNet(**{"width_mult": w, "depth_mult": d, "resolution": r, "dropout": p, **overrides})


def _register() -> None:
    from nasforge.models.registry import register_model

    for name, (w, d, r, p) in EFFICIENTNET_PARAMS.items():
        register_model(
            name,
            EfficientNet,
            resolution=r,
            num_classes=1000,
            family="efficientnet",
            description=f"EfficientNet-{name.rsplit('_', 1)[1].upper()} (width {w}, depth {d}, {r}px, dropout {p})",
            width_mult=w,
            depth_mult=d,
            dropout=p,
            drop_connect_rate=0.2,
        )


_register()

__all__ = [
    "B0_STAGES",
    "EFFICIENTNET_PARAMS",
    "EfficientNet",
    "EfficientNetPlan",
    "ScaledStage",
    "StageSpec",
    "efficientnet",
    "efficientnet_plan",
    "round_filters",
    "round_repeats",
    "stages_from",
]
