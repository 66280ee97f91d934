"""A ResNet-style macro space (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016),
searched over stages as RegNet's AnyNet design space is (Radosavovic et al., "Designing Network
Design Spaces", CVPR 2020, section 3.1).

The network is a stem, a few stages and a head. The stem is one 3x3 conv (16 channels, BN, ReLU,
stride 1: the CIFAR ResNets' stem, He et al. section 4.2; the network options `stem_channels` and
`stem_kernel` change it); stage 1 keeps the resolution and every later stage halves it in its
first block; the head is global average pooling, optional dropout (`dropout`) and a linear
classifier. Per stage the space chooses:

=========  ===============================  ==================================================
field      options (defaults)               meaning
=========  ===============================  ==================================================
block      basic, bottleneck                two kxk convs, or 1x1 -> kxk -> 1x1 with a quarter
                                            of the width inside (He et al., Figure 5)
depth      1, 2, 3                          residual blocks in the stage
width      0.5, 0.75, 1, 1.5 x the stage's  output channels; stage i's base is 16 x 2^i
           base                             (16, 32, 64: the CIFAR ResNets' widths)
kernel     3, 5                             kernel of the stage's kxk convs
=========  ===============================  ==================================================

Every block is ReLU(F(x) + shortcut(x)) with BN after each conv; the shortcut is the identity, or
a strided 1x1 conv + BN (He et al.'s projection shortcut, option B) where the block changes the
resolution or the width. A bottleneck block strides in its kxk conv (as torchvision's ResNets do).

ResNet-20 (He et al., section 4.2: three stages of three basic 3x3 blocks, 16, 32 and 64 wide) is
the member `RESNET20` (0.27 M parameters, 41 M MACs on 32x32 images). Four decisions per stage,
48 options per stage, 110,592 architectures with the default three stages (`ResNetSpace(stages=4)`
adds a fourth, 128 wide at its base). The default networks are CIFAR-sized: on 32x32 images a
random member has 16 M MACs (median; 0.9 M to 247 M), so the default network is also what a
proxy search trains (`proxy_network` is empty).

An architecture stores the resolved stage values, so its JSON describes the network on its own:
``{"space": "resnet", "stages": [{"block": "basic", "depth": 3, "width": 16, "kernel": 3}, ...]}``.
No two decision sequences give the same network, so the key is the stage values written out,
``resnet-basic3x16k3-basic3x32k3-basic3x64k3``: the same for any spelling of the JSON and for any
order of the space's options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.errors import ArchitectureError, ConfigError
from nasforge.spaces.base import Decision, SearchSpace, stage_objects

BLOCKS: tuple[str, ...] = ("basic", "bottleneck")
DEPTHS: tuple[int, ...] = (1, 2, 3)
WIDTH_RATIOS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5)
KERNELS: tuple[int, ...] = (3, 5)
#: stage i's base width is BASE_WIDTH * 2**i (16, 32, 64, 128, ...)
BASE_WIDTH = 16
#: a bottleneck block's inner width is its output width divided by this (He et al.'s 4)
BOTTLENECK_RATIO = 4
FIELDS: tuple[str, ...] = ("block", "depth", "width", "kernel")
#: at most this many stages (a sixth stage's image is 32 / 2**5 = 1 pixel wide)
MAX_STAGES = 6


# -- the architecture as a value --------------------------------------------------------------------
@dataclass(frozen=True)
class ResNetStage:
    """`depth` residual blocks of type `block` ("basic" or "bottleneck"), `width` output channels,
    `kernel` x `kernel` convolutions."""

    block: str
    depth: int
    width: int
    kernel: int

    @property
    def code(self) -> str:
        return f"{self.block}{self.depth}x{self.width}k{self.kernel}"


@dataclass(frozen=True)
class ResNetArchitecture:
    stages: tuple[ResNetStage, ...]


#: ResNet-20 of He et al. (section 4.2), a member of the default space.
RESNET20 = ResNetArchitecture(tuple(ResNetStage("basic", 3, w, 3) for w in (16, 32, 64)))


def inner_width(stage: ResNetStage) -> int:
    """The width inside the stage's blocks: a bottleneck's 1x1 conv reduces to a quarter."""
    return max(1, stage.width // BOTTLENECK_RATIO) if stage.block == "bottleneck" else stage.width


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# -- the network -----------------------------------------------------------------------------------------
def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return layers


class ResidualBlock(nn.Module):
    """ReLU(branch(x) + shortcut(x)): a basic (kxk, kxk) or bottleneck (1x1, kxk, 1x1) branch, and
    an identity shortcut or, where the block changes the resolution or the width, a projection
    (strided 1x1 conv + BN)."""

    def __init__(self, block: str, in_ch: int, out_ch: int, kernel: int, stride: int):
        super().__init__()
        if block == "basic":
            layers = _conv_bn(in_ch, out_ch, kernel, stride) + _conv_bn(out_ch, out_ch, kernel, relu=False)
        else:
            mid = inner_width(ResNetStage(block, 1, out_ch, kernel))
            layers = _conv_bn(in_ch, mid, 1) + _conv_bn(mid, mid, kernel, stride) + _conv_bn(mid, out_ch, 1, relu=False)
        self.branch = nn.Sequential(*layers)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride, relu=False))
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class ResNetNetwork(nn.Module):
    """Stem (kxk conv, BN, ReLU), the stages' residual blocks (each stage's first block strided as
    `strides` says), global average pooling, optional dropout, linear classifier."""

    def __init__(
        self,
        arch: ResNetArchitecture,
        strides: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 16,
        stem_kernel: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("stem_channels", stem_channels),
            ("stem_kernel", stem_kernel),
        ):
            if not _is_int(value) or value < 1:
                raise ConfigError(f"network.{name}", f"must be a positive integer, got {value!r}")
        if stem_kernel % 2 == 0:
            raise ConfigError("network.stem_kernel", f"must be odd (the stem keeps the image size), got {stem_kernel}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ConfigError("network.dropout", f"must be a number in [0, 1), got {dropout!r}")
        self.stem = nn.Sequential(*_conv_bn(in_channels, stem_channels, stem_kernel))
        stages: list[nn.Module] = []
        c = stem_channels
        for stage, stride in zip(arch.stages, strides):
            blocks = []
            for i in range(stage.depth):
                blocks.append(ResidualBlock(stage.block, c, stage.width, stage.kernel, stride if i == 0 else 1))
                c = stage.width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():  # He et al.'s initialisation, as torchvision's ResNets
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


# -- the space -------------------------------------------------------------------------------------------
def _options(name: str, values: Sequence[Any], check: Any, what: str) -> tuple[Any, ...]:
    values = tuple(values)
    if not values:
        raise ConfigError(name, "needs at least one option")
    for v in values:
        if not check(v):
            raise ConfigError(name, f"{what}, got {v!r}")
    if len(set(values)) != len(values):
        raise ConfigError(name, f"repeated option in {list(values)}")
    return values


class ResNetSpace(SearchSpace[ResNetArchitecture]):
    """ResNet-style stages: per stage block type, depth, width and kernel (He et al. 2016)."""

    name = "resnet"
    drawing = "stages"

    def __init__(
        self,
        stages: int = 3,
        blocks: Sequence[str] = BLOCKS,
        depths: Sequence[int] = DEPTHS,
        width_ratios: Sequence[float] = WIDTH_RATIOS,
        kernels: Sequence[int] = KERNELS,
        base_width: int = BASE_WIDTH,
    ):
        if not _is_int(stages) or not 1 <= stages <= MAX_STAGES:
            raise ConfigError("stages", f"must be an integer from 1 to {MAX_STAGES}, got {stages!r}")
        if not _is_int(base_width) or base_width < 1:
            raise ConfigError("base_width", f"must be a positive integer, got {base_width!r}")
        self.num_stages = int(stages)
        self.blocks = _options("blocks", blocks, lambda b: b in BLOCKS, f"blocks are {' or '.join(BLOCKS)}")
        self.depths = tuple(
            int(d) for d in _options("depths", depths, lambda d: _is_int(d) and d >= 1, "depths are integers >= 1")
        )
        self.width_ratios = tuple(
            float(r)
            for r in _options(
                "width_ratios",
                width_ratios,
                lambda r: isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0,
                "width ratios are numbers > 0",
            )
        )
        self.kernels = tuple(
            int(k)
            for k in _options(
                "kernels", kernels, lambda k: _is_int(k) and k >= 1 and k % 2 == 1, "kernels are odd integers >= 1"
            )
        )
        self.base_width = int(base_width)
        #: per stage, the output width each ratio gives
        self._widths = tuple(
            tuple(max(1, round(self.base_width * 2**i * r)) for r in self.width_ratios) for i in range(self.num_stages)
        )
        for i, widths in enumerate(self._widths):
            if len(set(widths)) != len(widths):
                raise ConfigError("width_ratios", f"two ratios give the same width {list(widths)} in stage {i}")
        steps: list[Decision] = []
        for i in range(self.num_stages):
            p = f"stages[{i}]"
            steps += [
                Decision(f"{p}.block", len(self.blocks), self.blocks),
                Decision(f"{p}.depth", len(self.depths), tuple(map(str, self.depths))),
                Decision(f"{p}.width", len(self._widths[i]), tuple(map(str, self._widths[i]))),
                Decision(f"{p}.kernel", len(self.kernels), tuple(map(str, self.kernels))),
            ]
        self._decisions = tuple(steps)

    def __repr__(self) -> str:
        return f"ResNetSpace(stages={self.num_stages}, size={self.size()})"

    @classmethod
    def for_json(cls, data: Any) -> ResNetSpace:
        """A default space with as many stages as the JSON has (so a four-stage net reads too)."""
        if isinstance(data, dict) and isinstance(data.get("stages"), list) and 1 <= len(data["stages"]) <= MAX_STAGES:
            return cls(stages=len(data["stages"]))
        return cls()

    def strides(self) -> tuple[int, ...]:
        """Stage 1 keeps the stem's resolution, every later stage halves it."""
        return tuple(1 if i == 0 else 2 for i in range(self.num_stages))

    def widths(self, stage: int) -> tuple[int, ...]:
        """The widths stage `stage` can have."""
        return self._widths[stage]

    # -- decision sequence -----------------------------------------------------------------------
    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def encode(self, arch: ResNetArchitecture) -> tuple[int, ...]:
        self.validate(arch)
        out: list[int] = []
        for i, s in enumerate(arch.stages):
            out += [
                self.blocks.index(s.block),
                self.depths.index(s.depth),
                self._widths[i].index(s.width),
                self.kernels.index(s.kernel),
            ]
        return tuple(out)

    def decode(self, choices: Sequence[int]) -> ResNetArchitecture:
        c = self.check_choices(choices)
        return ResNetArchitecture(
            tuple(
                ResNetStage(
                    self.blocks[c[4 * i]],
                    self.depths[c[4 * i + 1]],
                    self._widths[i][c[4 * i + 2]],
                    self.kernels[c[4 * i + 3]],
                )
                for i in range(self.num_stages)
            )
        )

    # -- validation and JSON ---------------------------------------------------------------------
    def validate(self, arch: ResNetArchitecture) -> ResNetArchitecture:
        if not isinstance(arch, ResNetArchitecture):
            raise ArchitectureError("architecture", f"expected a ResNetArchitecture, got {type(arch).__name__}")
        if not isinstance(arch.stages, tuple) or len(arch.stages) != self.num_stages:
            n = len(arch.stages) if isinstance(arch.stages, (tuple, list)) else arch.stages
            raise ArchitectureError("stages", f"expected {self.num_stages} stages, got {n!r}")
        for i, s in enumerate(arch.stages):
            where = f"stages[{i}]"
            if not isinstance(s, ResNetStage):
                raise ArchitectureError(where, f"expected a ResNetStage, got {type(s).__name__}")
            for name, value, allowed in (
                ("block", s.block, self.blocks),
                ("depth", s.depth, self.depths),
                ("width", s.width, self._widths[i]),
                ("kernel", s.kernel, self.kernels),
            ):
                ok = isinstance(value, str) if name == "block" else _is_int(value)
                if not ok or value not in allowed:
                    raise ArchitectureError(f"{where}.{name}", f"invalid value {value!r}", allowed)
        return arch

    def to_json(self, arch: ResNetArchitecture) -> dict[str, Any]:
        self.validate(arch)
        return {
            "space": self.name,
            "stages": [{"block": s.block, "depth": s.depth, "width": s.width, "kernel": s.kernel} for s in arch.stages],
        }

    def from_json(self, data: Any) -> ResNetArchitecture:
        if not isinstance(data, dict):
            raise ArchitectureError("architecture", 'expected a JSON object {"space": "resnet", "stages": [...]}')
        if data.get("space", self.name) != self.name:
            raise ArchitectureError("space", f"expected {self.name!r}, got {data.get('space')!r}", [self.name])
        extra = sorted(set(data) - {"space", "stages"})
        if extra:
            raise ArchitectureError(extra[0], "unknown field", ["space", "stages"])
        stages = []
        for st in stage_objects(data, FIELDS, self.num_stages):
            stages.append(ResNetStage(st["block"], st["depth"], st["width"], st["kernel"]))
        return self.validate(ResNetArchitecture(tuple(stages)))

    def key(self, arch: ResNetArchitecture) -> str:
        """The stage values written out (no two decision sequences build the same network)."""
        self.validate(arch)
        return "resnet-" + "-".join(s.code for s in arch.stages)

    # -- search ----------------------------------------------------------------------------------
    def mutate(self, arch: ResNetArchitecture, rng: np.random.Generator) -> ResNetArchitecture:
        """One decision of one stage changes to another of its options."""
        choices = list(self.encode(arch))
        movable = [i for i, d in enumerate(self._decisions) if d.num_options > 1]
        if not movable:
            return arch  # a space of one architecture
        pos = movable[int(rng.integers(len(movable)))]
        others = [o for o in range(self._decisions[pos].num_options) if o != choices[pos]]
        choices[pos] = others[int(rng.integers(len(others)))]
        return self.decode(choices)

    # -- pictures ------------------------------------------------------------------------------
    def stage_rows(self, arch: ResNetArchitecture) -> list[dict[str, Any]]:
        """The stages as the report's "stages" picture draws them (`SearchSpace.stage_rows`): block
        type and kernel as the operator, depth as repeats, width as channels, the stage's stride,
        and the width inside its blocks (a bottleneck's 1x1-reduced width) as a column."""
        self.validate(arch)
        return [
            {
                "operator": f"{s.block.capitalize()} {s.kernel}x{s.kernel}",
                "kernel": s.kernel,
                "repeats": s.depth,
                "channels": s.width,
                "stride": stride,
                "inner_width": inner_width(s),
            }
            for s, stride in zip(arch.stages, self.strides())
        ]

    # -- networks --------------------------------------------------------------------------------
    def build(
        self,
        arch: ResNetArchitecture,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 16,
        stem_kernel: int = 3,
        dropout: float = 0.0,
        resolution: int | None = None,
        **unused: Any,
    ) -> ResNetNetwork:
        """The network of `arch` (`ResNetNetwork`); `resolution` is accepted and unused."""
        if unused:
            raise ConfigError(
                f"network.{sorted(unused)[0]}",
                "unknown option for a resnet network",
                ["num_classes", "in_channels", "stem_channels", "stem_kernel", "dropout", "resolution"],
            )
        return ResNetNetwork(
            self.validate(arch), self.strides(), num_classes, in_channels, stem_channels, stem_kernel, dropout
        )


__all__ = ["RESNET20", "ResNetArchitecture", "ResNetNetwork", "ResNetSpace", "ResNetStage", "ResidualBlock"]
