"""The NAS-Bench-Macro space (Su et al., CVPR 2021) and its network.

Eight searchable layers in three stages of 2, 3 and 3 layers, each layer one of three blocks,
written as one digit (layer 1 first), so an architecture is an 8-digit code such as "01201122":

=====  ==========  ==============================================================
digit  name        block
=====  ==========  ==============================================================
0      identity    nothing; in a stage's first layer a stride-2 1x1 conv + BN
1      MB3_K3      MobileNetV2 inverted residual, expansion 3, 3x3 depthwise
2      MB6_K5      MobileNetV2 inverted residual, expansion 6, 5x5 depthwise
=====  ==========  ==============================================================

The network: a 3x3 conv stem (32 channels, BN, ReLU); the stages, whose first layer halves the
resolution and doubles the channels (32 -> 64 -> 128 -> 256); a 1x1 conv to 1280 channels with
BN and ReLU; global average pooling; a linear classifier. With the defaults it has exactly the
parameter count and MACs that the benchmark's table lists.

Canonical key: the benchmark's own duplicate rule. Within a stage the first layer is kept, and
the remaining layers keep their non-identity blocks in order followed by their identities (an
identity after a stage's first layer just passes its input on, so where it sits does not change
the network). That leaves 3,969 distinct networks among the 6,561 codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces.base import SPACES, Decision, SearchSpace, unwrap_json

MACRO_OPS: tuple[str, ...] = ("identity", "MB3_K3", "MB6_K5")
#: (expansion, kernel) of the two inverted-residual choices.
BLOCKS: dict[str, tuple[int, int]] = {"MB3_K3": (3, 3), "MB6_K5": (6, 5)}
STAGE_LAYERS: tuple[int, ...] = (2, 3, 3)
NUM_LAYERS = sum(STAGE_LAYERS)


@dataclass(frozen=True)
class MacroArchitecture:
    """One block name per layer, layer 1 first."""

    layers: tuple[str, ...]

    @property
    def code(self) -> str:
        """The benchmark's digit code (unknown block names show as '?')."""
        return "".join(str(MACRO_OPS.index(op)) if op in MACRO_OPS else "?" for op in self.layers)

    @classmethod
    def from_code(cls, code: str) -> MacroArchitecture:
        return cls(tuple(parse_code(code)))

    def __str__(self) -> str:
        return self.code


def parse_code(code: Any) -> list[str]:
    """Block names of an 8-digit code; errors name the layer and the allowed digits."""
    if isinstance(code, int) and not isinstance(code, bool):
        raise ArchitectureError(
            "arch",
            f"expected the code as a string of {NUM_LAYERS} digits, got the "
            f"number {code}; a number loses leading zeros (read table columns "
            f"as strings)",
        )
    if not isinstance(code, str):
        raise ArchitectureError("arch", f"expected a string of {NUM_LAYERS} digits, got {code!r}")
    code = code.strip()
    if len(code) != NUM_LAYERS:
        hint = " (leading zeros lost?)" if code.isdigit() and len(code) < NUM_LAYERS else ""
        raise ArchitectureError("arch", f"expected {NUM_LAYERS} digits, got {len(code)} in {code!r}{hint}")
    ops = []
    for i, ch in enumerate(code):
        if ch not in "012":
            raise ArchitectureError(
                f"layers[{i}]", f"invalid digit {ch!r} in {code!r}", [f"{d}={op}" for d, op in enumerate(MACRO_OPS)]
            )
        ops.append(MACRO_OPS[int(ch)])
    return ops


def stage_of_layers() -> list[tuple[int, bool]]:
    """(stage index, is first layer of its stage) for each of the eight layers."""
    out = []
    for s, n in enumerate(STAGE_LAYERS):
        out += [(s, k == 0) for k in range(n)]
    return out


@SPACES.register("macro")
class MacroSpace(SearchSpace[MacroArchitecture]):
    """Eight layer decisions, each among identity, MB3_K3 and MB6_K5."""

    name = "macro"
    default_evaluator = "macro"  # the NAS-Bench-Macro table

    def __init__(self):
        self._decisions = tuple(Decision(f"layers[{i}]", len(MACRO_OPS), MACRO_OPS) for i in range(NUM_LAYERS))

    def __repr__(self) -> str:
        return "MacroSpace()"

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def encode(self, arch: MacroArchitecture) -> tuple[int, ...]:
        self.validate(arch)
        return tuple(MACRO_OPS.index(op) for op in arch.layers)

    def decode(self, choices: Sequence[int]) -> MacroArchitecture:
        return MacroArchitecture(tuple(MACRO_OPS[c] for c in self.check_choices(choices)))

    def validate(self, arch: MacroArchitecture) -> MacroArchitecture:
        if not isinstance(arch, MacroArchitecture):
            raise ArchitectureError("architecture", f"expected a MacroArchitecture, got {type(arch).__name__}")
        if not isinstance(arch.layers, tuple) or len(arch.layers) != NUM_LAYERS:
            raise ArchitectureError("layers", f"expected a tuple of {NUM_LAYERS} block names, got {arch.layers!r}")
        for i, op in enumerate(arch.layers):
            if op not in MACRO_OPS:
                raise ArchitectureError(f"layers[{i}]", f"unknown block {op!r}", MACRO_OPS)
        return arch

    def to_json(self, arch: MacroArchitecture) -> dict[str, Any]:
        return {"space": self.name, "arch": self.validate(arch).code}

    def from_table_cell(self, cell: str) -> MacroArchitecture:
        text = cell.strip()
        if text.isdigit() and len(text) < NUM_LAYERS:
            text = text.zfill(NUM_LAYERS)  # a spreadsheet or pandas dropped the leading zeros
        return super().from_table_cell(text)

    def from_json(self, data: Any) -> MacroArchitecture:
        """{"space": "macro", "arch": "01201122"}, the bare code, or a list of eight block names."""
        data = unwrap_json(data, self.name, f"a string of {NUM_LAYERS} digits 0-2")
        if isinstance(data, (list, tuple)):
            return self.validate(MacroArchitecture(tuple(data)))
        return MacroArchitecture.from_code(data)

    # -- identity ----------------------------------------------------------------------------
    def canonical_code(self, arch: MacroArchitecture) -> str:
        """The benchmark's de-duplicated code (its ``canonical_arch``)."""
        code = self.validate(arch).code
        out, start = [], 0
        for n in STAGE_LAYERS:
            stage = code[start : start + n]
            rest = stage[1:]
            out.append(stage[0] + rest.replace("0", "") + "0" * rest.count("0"))
            start += n
        return "".join(out)

    def key(self, arch: MacroArchitecture) -> str:
        return f"macro-{self.canonical_code(arch)}"

    def mutate(self, arch: MacroArchitecture, rng: np.random.Generator) -> MacroArchitecture:
        """One layer gets a different block."""
        self.validate(arch)
        i = int(rng.integers(NUM_LAYERS))
        options = [o for o in MACRO_OPS if o != arch.layers[i]]
        layers = list(arch.layers)
        layers[i] = options[int(rng.integers(len(options)))]
        return MacroArchitecture(tuple(layers))

    # -- networks ----------------------------------------------------------------------------
    def build(
        self,
        arch: MacroArchitecture,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 32,
        stage_channels: Sequence[int] = (64, 128, 256),
        head_channels: int = 1280,
        dropout: float = 0.0,
        resolution: int | None = None,
        **unused: Any,
    ) -> MacroNetwork:
        """The benchmark's network (see `MacroNetwork`); `resolution` is accepted and unused."""
        if unused:
            raise ConfigError(
                f"network.{sorted(unused)[0]}",
                "unknown option for a macro network",
                [
                    "num_classes",
                    "in_channels",
                    "stem_channels",
                    "stage_channels",
                    "head_channels",
                    "dropout",
                    "resolution",
                ],
            )
        return MacroNetwork(
            self.validate(arch), num_classes, in_channels, stem_channels, tuple(stage_channels), head_channels, dropout
        )


# -- the network ---------------------------------------------------------------------------------
def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=False))
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand -> BN -> ReLU -> kxk depthwise (strided) -> BN -> ReLU -> 1x1 linear -> BN,
    plus the input when the shapes match (stride 1 and equal channels)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.body = nn.Sequential(
            *_conv_bn(in_ch, hidden, 1),
            *_conv_bn(hidden, hidden, kernel, stride, hidden),
            *_conv_bn(hidden, out_ch, 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def macro_block(op: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if op == "identity":
        if stride == 1 and in_ch == out_ch:
            return nn.Identity()
        return nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride, relu=False))
    expansion, kernel = BLOCKS[op]
    return InvertedResidual(in_ch, out_ch, kernel, expansion, stride)


class MacroNetwork(nn.Module):
    """Stem, the eight chosen layers in stages of 2, 3, 3 (each stage's first layer strided and
    widening), a 1x1 head conv, global average pooling, optional dropout, linear classifier."""

    def __init__(
        self,
        arch: MacroArchitecture,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 32,
        stage_channels: tuple[int, ...] = (64, 128, 256),
        head_channels: int = 1280,
        dropout: float = 0.0,
    ):
        super().__init__()
        for field, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("stem_channels", stem_channels),
            ("head_channels", head_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"network.{field}", f"must be a positive integer, got {value!r}")
        if len(stage_channels) != len(STAGE_LAYERS) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in stage_channels
        ):
            raise ConfigError(
                "network.stage_channels", f"expected {len(STAGE_LAYERS)} positive integers, got {list(stage_channels)}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError("network.dropout", f"must be in [0, 1), got {dropout!r}")
        self.arch = arch
        self.stem = nn.Sequential(*_conv_bn(in_channels, stem_channels, 3))
        layers: list[nn.Module] = []
        c = stem_channels
        for op, (stage, first) in zip(arch.layers, stage_of_layers()):
            out = stage_channels[stage] if first else c
            layers.append(macro_block(op, c, out, 2 if first else 1))
            c = out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(*_conv_bn(c, head_channels, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


__all__ = [
    "BLOCKS",
    "InvertedResidual",
    "MACRO_OPS",
    "MacroArchitecture",
    "MacroNetwork",
    "MacroSpace",
    "NUM_LAYERS",
    "STAGE_LAYERS",
    "parse_code",
]
