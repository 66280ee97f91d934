"""The network of a layer-wise architecture (Zoph & Le, ICLR 2017, section 4.1).

A layer's input is the channel concatenation of the earlier outputs it chose (the image when it
chose none); maps of different sizes are zero-padded, centred, to the largest before
concatenation; each layer is conv (kh x kw, 'same' padding, no bias) -> BN -> ReLU; the classifier
reads every layer output no later layer consumed, through global average pooling and a linear layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nasforge.arch.layerwise import Layer, LayerwiseArchitecture
from nasforge.errors import ConfigError
from nasforge.nn.layers import ConvBNSequential, inference_layout


def _concat_padded(xs: list[torch.Tensor]) -> torch.Tensor:
    """Channel concatenation, smaller maps zero-padded (centred) to the largest height/width."""
    if len(xs) == 1:
        return xs[0]
    h = max([int(x.shape[2]) for x in xs])
    w = max([int(x.shape[3]) for x in xs])
    out: list[torch.Tensor] = []
    for x in xs:
        dh = h - int(x.shape[2])
        dw = w - int(x.shape[3])
        if dh or dw:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        out.append(x)
    return torch.cat(out, 1)


class _ConvUnit(nn.Module):
    """conv -> BN -> ReLU reading the concatenation of `srcs` (earlier layers; [-1] = the image)."""

    def __init__(self, layer: Layer, in_ch: int):
        super().__init__()
        self.srcs = list(layer.inputs) or [-1]  # never empty, so TorchScript can type it
        self.body = ConvBNSequential(
            nn.Conv2d(
                in_ch,
                layer.filters,
                (layer.height, layer.width),
                layer.stride,
                (layer.height // 2, layer.width // 2),
                bias=False,
            ),
            nn.BatchNorm2d(layer.filters),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LayerwiseNetwork(nn.Module):
    """The network of a layer-wise architecture (wiring in the module docstring)."""

    def __init__(self, arch: LayerwiseArchitecture, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        for field, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"network.{field}", f"must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError("network.dropout", f"must be in [0, 1), got {dropout!r}")
        self.arch = arch
        self.outputs = list(arch.output_layers())  # never empty: the last layer is always one
        self.layers = nn.ModuleList(
            _ConvUnit(layer, sum(arch.layers[j].filters for j in layer.inputs) if layer.inputs else in_channels)
            for layer in arch.layers
        )
        width = sum(arch.layers[j].filters for j in self.outputs)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = inference_layout(x, self.training)
        outs: list[torch.Tensor] = []
        # torch types ModuleList items as Module, not _ConvUnit, and TorchScript compiles no cast here
        for layer in self.layers:
            if layer.srcs[0] < 0:  # type: ignore[index]
                inp = x
            else:
                inp = _concat_padded([outs[j] for j in layer.srcs])  # type: ignore[union-attr]
            outs.append(layer(inp))
        y = _concat_padded([outs[j] for j in self.outputs])
        return self.classifier(self.dropout(torch.flatten(self.pool(y), 1)))


__all__ = ["LayerwiseNetwork"]
