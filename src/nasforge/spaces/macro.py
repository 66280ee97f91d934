"""The NAS-Bench-Macro space (Su et al., arXiv:2103.11922).

Eight searchable layers in three stages of 2, 3 and 3 layers, each layer one of three blocks,
written as one digit (layer 1 first), so an architecture is an 8-digit code such as "01201122":

=====  ==========  ==============================================================
digit  name        block
=====  ==========  ==============================================================
0      identity    nothing; in a stage's first layer a stride-2 1x1 conv + BN
1      MB3_K3      MobileNetV2 inverted residual, expansion 3, 3x3 depthwise
2      MB6_K5      MobileNetV2 inverted residual, expansion 6, 5x5 depthwise
=====  ==========  ==============================================================

The network is `nasforge.models.macro.MacroNetwork`.

Canonical key: the benchmark's own duplicate rule. Within a stage the first layer is kept, and
the remaining layers keep their non-identity blocks in order followed by their identities (an
identity after a stage's first layer just passes its input on, so where it sits does not change
the network). That leaves 3,969 distinct networks among the 6,561 codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nasforge.arch.macro import MACRO_OPS, NUM_LAYERS, STAGE_LAYERS, MacroArchitecture
from nasforge.errors import ArchitectureError, ConfigError
from nasforge.models.macro import MacroNetwork
from nasforge.spaces.base import SPACES, Decision, SearchSpace, unwrap_json


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


__all__ = ["MacroSpace"]
