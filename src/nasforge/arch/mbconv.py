"""MBConv-stage architectures as values: the resolved kernel, expansion, SE ratio, repeats and width of
each of the seven stages of EfficientNet-B0's skeleton (Tan & Le, ICML 2019, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

#: B0's (stride, channels, repeats) per stage (Tan & Le 2019, Table 1); the skeleton the space varies.
B0_SKELETON: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (2, 24, 2),
    (2, 40, 2),
    (2, 80, 3),
    (1, 112, 3),
    (2, 192, 4),
    (1, 320, 1),
)


@dataclass(frozen=True)
class MBConvStage:
    """One stage: `repeats` MBConv blocks of this kernel, expansion, SE ratio and output width."""

    kernel: int
    expansion: int
    se_ratio: float
    repeats: int
    channels: int


@dataclass(frozen=True)
class MBConvArchitecture:
    stages: tuple[MBConvStage, ...]


#: EfficientNet-B0 as a member of the default space (Tan & Le 2019, Table 1; with B0_SKELETON's strides it
#: is `nasforge.models.efficientnet.B0_STAGES`).
B0_ARCH = MBConvArchitecture(
    (
        MBConvStage(3, 1, 0.25, 1, 16),
        MBConvStage(3, 6, 0.25, 2, 24),
        MBConvStage(5, 6, 0.25, 2, 40),
        MBConvStage(3, 6, 0.25, 3, 80),
        MBConvStage(5, 6, 0.25, 3, 112),
        MBConvStage(5, 6, 0.25, 4, 192),
        MBConvStage(3, 6, 0.25, 1, 320),
    )
)


def with_stage(arch: MBConvArchitecture, index: int, **changes: Any) -> MBConvArchitecture:
    """A copy of `arch` with stage `index` changed (validate it with the space afterwards)."""
    stages = list(arch.stages)
    stages[index] = replace(stages[index], **changes)
    return MBConvArchitecture(tuple(stages))


__all__ = ["B0_ARCH", "B0_SKELETON", "MBConvArchitecture", "MBConvStage", "with_stage"]
