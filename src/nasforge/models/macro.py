"""The NAS-Bench-Macro network (Su et al., arXiv:2103.11922, and its public code's `MacroNet`).

A 3x3 conv stem (32 channels, BN, ReLU); three stages of 2, 3 and 3 searched layers whose first
layer halves the resolution and doubles the channels (32 -> 64 -> 128 -> 256); a 1x1 conv to 1280
channels with BN and ReLU; global average pooling; a linear classifier. The two block choices are
MobileNetV2 inverted residuals (`nasforge.nn.mbconv.MBConv` with ReLU and no squeeze-and-excite);
an identity in a stage's first layer is a stride-2 1x1 conv + BN. With the defaults the network
has exactly the parameter count and MACs that the benchmark's table lists.
"""

from __future__ import annotations

import torch
from torch import nn

from nasforge.arch.macro import BLOCKS, STAGE_LAYERS, MacroArchitecture, stage_of_layers
from nasforge.errors import ConfigError
from nasforge.nn.layers import inference_layout
from nasforge.nn.mbconv import MBConv, conv_bn_act


def macro_block(op: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if op == "identity":
        if stride == 1 and in_ch == out_ch:
            return nn.Identity()
        return conv_bn_act(in_ch, out_ch, 1, stride, act=None)
    expansion, kernel = BLOCKS[op]
    return MBConv(in_ch, out_ch, kernel, stride, expand_ratio=expansion, se_ratio=0.0, act=nn.ReLU)


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
        self.stem = conv_bn_act(in_channels, stem_channels, 3, act=nn.ReLU)
        layers: list[nn.Module] = []
        c = stem_channels
        for op, (stage, first) in zip(arch.layers, stage_of_layers()):
            out = stage_channels[stage] if first else c
            layers.append(macro_block(op, c, out, 2 if first else 1))
            c = out
        self.layers = nn.Sequential(*layers)
        self.head = conv_bn_act(c, head_channels, 1, act=nn.ReLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(head_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(inference_layout(x, self.training))))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


__all__ = ["MacroNetwork", "macro_block"]
